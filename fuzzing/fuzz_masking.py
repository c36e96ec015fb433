"""Differential fuzzing of the C accelerator (_speedups) against the pure-Python masking.

Not a parser, but the C code every received frame goes through. The input is a 4-byte mask,
one byte (its low two bits: the phase offset for mask_inplace) and the data.

Invariants checked (skipped, with a note on stderr, when _speedups is not built):

I1  apply_mask equals apply_mask_python, on bytes, bytearray and memoryview inputs, and
    applying it twice gives the data back.
I2  masked_frame(prefix, data, mask) == prefix + apply_mask(data, mask).
I3  mask_inplace on a bytearray and on memoryview slices at every phase and alignment
    equals the Python version; the bytes around the slice are untouched.

Each input is checked as it is, then repeated to a length of up to ~8 KiB (picked by its
fifth byte), since the C loops work a machine word at a time.
I4  message_buffer(n), n >= 2, gives a buffer of n bytes and a writable view of it; what is written
    through the view is what the buffer holds.
"""

from __future__ import annotations

import sys

from _common import atheris, run

with atheris.instrument_imports(include=["websock"]):
    from websock.protocol import frames

try:
    from websock import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None
    sys.stderr.write("fuzz_masking: websock._speedups is not built; nothing to compare\n")


def check(payload: bytes, mask: bytes, offset: int) -> None:
    expected = frames.apply_mask_python(payload, mask)
    for view in (payload, bytearray(payload), memoryview(payload)):
        got = _speedups.apply_mask(view, mask)
        assert got == expected, "apply_mask differs from the Python version"
        assert type(got) is bytes
    assert _speedups.apply_mask(expected, mask) == payload
    prefix = mask[:2]
    assert _speedups.masked_frame(prefix, payload, mask) == prefix + expected

    buf = bytearray(payload)
    ref = bytearray(payload)
    _speedups.mask_inplace(buf, mask, offset)
    frames.mask_inplace_python(ref, mask, offset)
    assert buf == ref, "mask_inplace differs from the Python version"
    # Slices at every alignment of a larger buffer: the bytes around must not change.
    n = len(payload)
    for align in range(8):
        big = bytearray(b"\xaa" * align + payload + b"\xbb" * 3)
        assert _speedups.apply_mask(memoryview(big)[align : align + n], mask) == expected
        _speedups.mask_inplace(memoryview(big)[align : align + n], mask, offset)
        assert big[:align] == b"\xaa" * align and big[align + n :] == b"\xbb" * 3
        assert big[align : align + n] == ref, f"mask_inplace at alignment {align}"

    if n >= 2:  # its minimum (the core asks for 64 KiB at least)
        buffer, view = _speedups.message_buffer(n)
        assert len(buffer) == n and len(view) == n
        view[:] = payload
        assert bytes(buffer) == payload


def test_one_input(data: bytes) -> None:
    if _speedups is None or len(data) < 5:
        return
    mask = data[:4]
    offset = data[4] & 3
    payload = data[5:]
    check(payload, mask, offset)
    # The word-at-a-time loops need longer data than the fuzzer's small inputs: the same
    # bytes repeated to a length that the fifth byte picks (up to ~8 KiB).
    if payload:
        length = (data[4] >> 2) * 131 + len(payload)
        check((payload * (length // len(payload) + 1))[:length], mask, offset)


if __name__ == "__main__":
    run(test_one_input)
