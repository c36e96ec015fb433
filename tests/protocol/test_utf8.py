"""Tests for websock.protocol.utf8: incremental, fail-fast UTF-8 validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from websock.protocol.utf8 import Utf8Validator


def first_bad_byte(data: bytes) -> tuple[int | None, bool]:
    """Reference DFA from RFC 3629 section 4.

    Return the index of the first byte that no valid UTF-8 text can have there (None if
    there is none), and whether the stream ends on a character boundary.
    """
    need = 0
    lo, hi = 0x80, 0xBF
    for i, b in enumerate(data):
        if need == 0:
            if b < 0x80:
                continue
            if 0xC2 <= b <= 0xDF:
                need, lo, hi = 1, 0x80, 0xBF
            elif b == 0xE0:
                need, lo, hi = 2, 0xA0, 0xBF
            elif b == 0xED:
                need, lo, hi = 2, 0x80, 0x9F
            elif 0xE1 <= b <= 0xEF:
                need, lo, hi = 2, 0x80, 0xBF
            elif b == 0xF0:
                need, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= b <= 0xF3:
                need, lo, hi = 3, 0x80, 0xBF
            elif b == 0xF4:
                need, lo, hi = 3, 0x80, 0x8F
            else:
                return i, False
        else:
            if not lo <= b <= hi:
                return i, False
            need -= 1
            lo, hi = 0x80, 0xBF
    return None, need == 0


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


# Bytes near the edges of the well-formed ranges, to hit every rule often.
EDGE_BYTES = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF]
EDGE_BYTES += [0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
streams = st.lists(
    st.one_of(
        st.text(max_size=4).map(str.encode),
        st.sampled_from(EDGE_BYTES).map(lambda b: bytes([b])),
        st.binary(max_size=3),
    ),
    max_size=12,
).map(b"".join)


def test_reference_agrees_with_python() -> None:
    for text in ["", "a", "κόσμε", "\U0010ffff", "\ud7ff\ue000"]:
        assert first_bad_byte(text.encode()) == (None, True)
    assert first_bad_byte(b"\xed\xa0\x80") == (1, False)


@settings(max_examples=300, deadline=None)
@given(data=streams, cuts=st.lists(st.integers(0, 100), max_size=6))
def test_matches_reference_for_any_chunking(data: bytes, cuts: list[int]) -> None:
    bad, complete = first_bad_byte(data)
    validator = Utf8Validator()
    pos = 0
    for chunk in split(data, cuts):
        ok = validator.feed(chunk)
        pos += len(chunk)
        if bad is not None and bad < pos:
            # Fails with the chunk that holds the first invalid byte, not later.
            assert not ok
            return
        assert ok
    assert bad is None
    assert validator.complete() == complete
    # A complete valid stream is what Python's strict decoder accepts.
    if complete:
        data.decode()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=50))
def test_valid_text_byte_by_byte(text: str) -> None:
    validator = Utf8Validator()
    data = text.encode()
    for i in range(len(data)):
        assert validator.feed(data[i : i + 1])
    assert validator.complete()


@pytest.mark.parametrize(
    "data",
    [
        b"\xed\xa0",  # start of a UTF-16 surrogate: CPython keeps it pending
        b"\xed\xbf",
        b"\xe0\x80",  # overlong 3-byte form
        b"\xe0\x9f",
        b"\xf0\x80",  # overlong 4-byte form
        b"\xf0\x8f",
        b"\xf4\x90",  # above U+10FFFF
        b"\xc0",
        b"\xc1",
        b"\xf5",
        b"\xff",
        b"\x80",
        b"\xe1\x80\x41",
        b"\xf0\x90\x80\xc0",
    ],
)
def test_invalid_prefix_fails_at_once(data: bytes) -> None:
    assert not Utf8Validator().feed(b"ok" + data)


@pytest.mark.parametrize("data", [b"\xce", b"\xe1\x80", b"\xf0\x90\x80", b"\xed\x9f", b"\xf4\x8f"])
def test_incomplete_but_valid_prefix(data: bytes) -> None:
    validator = Utf8Validator()
    assert validator.feed(data)
    assert not validator.complete()


def test_autobahn_6_4_3() -> None:
    # κόσμε, then U+110000 (invalid), then "edited": fails on the invalid bytes.
    validator = Utf8Validator()
    assert validator.feed(bytes.fromhex("cebae1bdb9cf83cebcceb5"))
    assert not validator.feed(bytes.fromhex("f4908080"))


def test_autobahn_6_4_4_first_invalid_byte_alone() -> None:
    validator = Utf8Validator()
    assert validator.feed(bytes.fromhex("cebae1bdb9cf83cebcceb5"))
    assert validator.feed(b"\xf4")  # may still become valid
    assert not validator.feed(b"\x90")


def test_empty_feeds() -> None:
    validator = Utf8Validator()
    assert validator.feed(b"")
    assert validator.complete()
    assert validator.feed(b"\xe2")
    assert validator.feed(b"")
    assert validator.feed(b"\x82")
    assert not validator.complete()
    assert validator.feed(b"\xac")
    assert validator.complete()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_buffer_types(kind: type) -> None:
    assert Utf8Validator().feed(kind("€".encode()))
    assert not Utf8Validator().feed(kind(b"\xff"))
