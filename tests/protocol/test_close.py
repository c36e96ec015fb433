"""Tests for websock.protocol.close: close codes and the Close payload."""

from __future__ import annotations

import pytest

from websock.exceptions import ProtocolError
from websock.protocol.close import Close, CloseCode, is_valid_received_code, is_valid_sent_code

VALID = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
VALID |= set(range(3000, 5000))
INVALID = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def test_valid_codes_exhaustive() -> None:
    for code in range(0, 1 << 16):
        assert is_valid_received_code(code) == (code in VALID), code
        assert is_valid_sent_code(code) == (code in VALID), code


def test_parse_empty_is_no_status() -> None:
    assert Close.parse(b"") == Close(1005)
    assert Close.parse(b"").code == CloseCode.NO_STATUS_RCVD


def test_parse_one_byte() -> None:
    with pytest.raises(ProtocolError) as info:
        Close.parse(b"\x03")
    assert info.value.close_code == 1002


@pytest.mark.parametrize("code", INVALID)
def test_parse_invalid_code(code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        Close.parse(code.to_bytes(2, "big") + b"reason")
    assert info.value.close_code == 1002
    assert str(code) in str(info.value)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999])
def test_parse_valid_code(code: int) -> None:
    assert Close.parse(code.to_bytes(2, "big")) == Close(code, "")
    assert Close.parse(code.to_bytes(2, "big") + "héllo €".encode()) == Close(code, "héllo €")


@pytest.mark.parametrize(
    "reason", [b"\xff", b"ok\xce", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
)
def test_parse_invalid_utf8_reason(reason: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        Close.parse(b"\x03\xe8" + reason)
    assert info.value.close_code == 1007


def test_serialize() -> None:
    assert Close(1000).serialize() == b"\x03\xe8"
    assert Close(1001, "bye").serialize() == b"\x03\xe9bye"
    assert Close(4999, "é").serialize() == b"\x13\x87\xc3\xa9"
    assert Close(CloseCode.NO_STATUS_RCVD).serialize() == b""


def test_serialize_round_trip() -> None:
    for code in (1000, 1003, 1014, 3000, 4321):
        close = Close(code, "reason ✓")
        assert Close.parse(close.serialize()) == close


def test_serialize_no_status_with_reason() -> None:
    with pytest.raises(ValueError):
        Close(1005, "reason").serialize()


@pytest.mark.parametrize("code", [c for c in INVALID if c != 1005])
def test_serialize_invalid_code(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        Close(code).serialize()


def test_serialize_reason_length() -> None:
    assert len(Close(1000, "x" * 123).serialize()) == 125
    with pytest.raises(ValueError, match="124 bytes"):
        Close(1000, "x" * 124).serialize()
    # The limit is on UTF-8 bytes, not characters: 62 two-byte characters are 124 bytes.
    with pytest.raises(ValueError):
        Close(1000, "é" * 62).serialize()
    assert len(Close(1000, "é" * 61 + "x").serialize()) == 125


def test_str() -> None:
    assert str(Close(1000)) == "1000 (OK)"
    assert str(Close(1001, "bye")) == "1001 (going away) bye"
    assert str(Close(3001)) == "3001 (registered)"
    assert str(Close(4001, "x")) == "4001 (private use) x"
    assert str(Close(2000)) == "2000 (unknown)"
    assert str(Close(1005)) == "1005 (no status received)"
