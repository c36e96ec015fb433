"""Fuzz the Close payload parser: Close.parse (websock/protocol/close.py).

The input is the payload of a received Close frame (any length: the connection passes at
most 125 bytes, the parser must not care).

Invariants checked:

I1  Close.parse raises nothing but ProtocolError, with close code 1002 (bad length or code)
    or 1007 (reason not UTF-8).
I2  An empty payload parses as 1005 with no reason; a payload of one byte is rejected.
I3  A parsed Close has a code that may be received (1000-1003, 1007-1014, 3000-4999), the
    payload's first two bytes big-endian, and the rest decoded as UTF-8 for reason.
I4  Round trip: for a payload of at most 125 bytes, serialize() gives the payload back, and
    str() works.
I5  Memory: the tracemalloc peak (sampled) stays below 64 KiB + 8 x the input length.
"""

from __future__ import annotations

import sys

from _common import MemoryCheck, atheris, run

with atheris.instrument_imports(include=["websock"]):
    from websock.exceptions import ProtocolError
    from websock.protocol.close import Close, is_valid_received_code


def test_one_input(data: bytes) -> None:
    memory.start(data)
    try:
        close = Close.parse(data)
    except ProtocolError as exc:
        assert type(exc) is ProtocolError, exc
        assert exc.close_code in (1002, 1007), exc
        if exc.close_code == 1007:
            assert len(data) >= 2 and is_valid_received_code(int.from_bytes(data[:2], "big"))
        else:
            assert len(data) == 1 or not is_valid_received_code(int.from_bytes(data[:2], "big"))
        memory.stop()
        return
    assert type(close) is Close
    if not data:
        assert close.code == 1005 and close.reason == ""
    else:
        assert len(data) >= 2
        assert close.code == int.from_bytes(data[:2], "big")
        assert is_valid_received_code(close.code), close
        assert close.reason.encode() == data[2:]
        if len(data) <= 125:
            assert close.serialize() == data
    str(close)
    memory.check(65536 + 8 * len(data), "close")
    memory.stop()


memory = MemoryCheck()

if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    run(test_one_input)
