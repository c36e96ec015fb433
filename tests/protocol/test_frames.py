"""Tests for websock.protocol.frames: serialisation and masking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from websock.protocol.frames import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    Frame,
    Opcode,
    apply_mask,
    serialize_frame,
)

MASK = b"\x12\x34\x56\x78"


def naive_mask(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_opcodes() -> None:
    assert [op.value for op in Opcode] == [0x0, 0x1, 0x2, 0x8, 0x9, 0xA]
    assert DATA_OPCODES == {Opcode.CONT, Opcode.TEXT, Opcode.BINARY}
    assert CONTROL_OPCODES == {Opcode.CLOSE, Opcode.PING, Opcode.PONG}
    assert all(op < 8 for op in DATA_OPCODES) and all(op >= 8 for op in CONTROL_OPCODES)


def test_frame_defaults() -> None:
    frame = Frame(Opcode.TEXT, b"x")
    assert (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (True, False, False, False)


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x82\x00"),
        (1, b"\x82\x01"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (127, b"\x82\x7e\x00\x7f"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (70000, b"\x82\x7f" + (70000).to_bytes(8, "big")),
    ],
)
def test_length_encodings(length: int, header: bytes) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    assert serialize_frame(Opcode.BINARY, payload) == header + payload


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_length_encodings_masked(length: int) -> None:
    payload = b"\xa5" * length
    data = serialize_frame(Opcode.BINARY, payload, mask=MASK)
    unmasked = serialize_frame(Opcode.BINARY, payload)
    hdr = len(unmasked) - length
    # Same header with the mask bit set, then the key, then the masked payload.
    assert data[0] == unmasked[0]
    assert data[1] == unmasked[1] | 0x80
    assert data[2:hdr] == unmasked[2:hdr]
    assert data[hdr : hdr + 4] == MASK
    assert len(data) == len(unmasked) + 4
    assert naive_mask(data[hdr + 4 :], MASK) == payload


def test_text_frame_rfc_examples() -> None:
    # RFC 6455 section 5.7.
    assert serialize_frame(Opcode.TEXT, b"Hello") == b"\x81\x05\x48\x65\x6c\x6c\x6f"
    assert (
        serialize_frame(Opcode.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d")
        == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    )
    assert serialize_frame(Opcode.TEXT, b"Hel", fin=False) == b"\x01\x03\x48\x65\x6c"
    assert serialize_frame(Opcode.CONT, b"lo") == b"\x80\x02\x6c\x6f"
    assert serialize_frame(Opcode.PING, b"Hello") == b"\x89\x05\x48\x65\x6c\x6c\x6f"


@pytest.mark.parametrize(
    ("rsv", "fin", "first"),
    [
        (0x40, True, 0xC1),
        (0x20, True, 0xA1),
        (0x10, True, 0x91),
        (0x70, True, 0xF1),
        (0x40, False, 0x41),
        (0, False, 0x01),
    ],
)
def test_first_byte(rsv: int, fin: bool, first: int) -> None:
    assert serialize_frame(Opcode.TEXT, b"a", fin=fin, rsv=rsv)[0] == first


def test_apply_mask_empty() -> None:
    assert apply_mask(b"", MASK) == b""


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_apply_mask_buffer_types(kind: type) -> None:
    data = b"abcdefghij"
    result = apply_mask(kind(data), MASK)
    assert type(result) is bytes
    assert result == naive_mask(data, MASK)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_reference(data: bytes, mask: bytes) -> None:
    masked = apply_mask(data, mask)
    assert masked == naive_mask(data, mask)
    assert apply_mask(masked, mask) == data  # an involution


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=100),
    mask=st.binary(min_size=4, max_size=4),
    offset=st.integers(0, 100),
)
def test_mask_rotation(data: bytes, mask: bytes, offset: int) -> None:
    # Unmasking a frame from its middle: the key rotated by the offset.
    offset %= len(data)
    k = offset % 4
    rotated = mask[k:] + mask[:k]
    assert apply_mask(data[offset:], rotated) == naive_mask(data, mask)[offset:]


def test_mask_large_payload() -> None:
    data = bytes(range(256)) * 300 + b"xyz"
    assert apply_mask(data, MASK) == naive_mask(data, MASK)
