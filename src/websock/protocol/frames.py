"""Frames (RFC 6455 section 5): opcodes, the Frame value, serialisation and masking.

Parsing lives in :mod:`websock.protocol.connection`, where the receive buffer is, so that
the hot path reads headers straight from that buffer without creating a Frame per frame;
Frame objects are built only where extensions need them.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ACCELERATED",
    "Opcode",
    "Frame",
    "DATA_OPCODES",
    "CONTROL_OPCODES",
    "serialize_frame",
    "frame_header",
    "apply_mask",
    "apply_mask_python",
    "masked_frame",
    "masked_frame_python",
    "mask_inplace",
    "mask_inplace_python",
    "message_buffer",
    "message_buffer_python",
]


class Opcode(enum.IntEnum):
    """Frame opcodes defined by RFC 6455."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


@dataclass(slots=True)
class Frame:
    """One WebSocket frame, payload unmasked."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


def apply_mask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3).

    Pure Python at near memory speed: one big-integer XOR instead of a loop per byte.
    The reference for the C accelerator, and the fallback when it is not built.
    """
    n = len(data)
    if n == 0:
        return b""
    key = mask * (n // 4 + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
        n, "little"
    )


def masked_frame_python(prefix: bytes, data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """``prefix`` followed by ``data`` masked with ``mask``: a client frame after its header."""
    return prefix + apply_mask_python(data, mask)


def mask_inplace_python(buffer: bytearray | memoryview, mask: bytes, offset: int) -> None:
    """XOR a writable ``buffer`` in place with ``mask``, starting at phase ``offset`` of it."""
    k = offset & 3
    buffer[:] = apply_mask_python(buffer, mask[k:] + mask[:k] if k else mask)


def message_buffer_python(n: int) -> tuple[bytes | bytearray, memoryview]:
    """A buffer of ``n`` bytes to receive a message into, and a writable view of it.

    The fallback returns a bytearray (the message costs one more copy when it is turned into
    bytes); the C accelerator returns the bytes object itself.
    """
    buffer = bytearray(n)
    return buffer, memoryview(buffer)


# The C accelerator (websock/_speedups.c) does the same a machine word at a time, 5-10x
# faster on large payloads, builds a masked frame in one allocation, and receives a message
# straight into its bytes object. Setting WEBSOCK_PURE_PYTHON=1 forces the fallback, so that
# the test suite can run against both.
apply_mask = apply_mask_python
masked_frame = masked_frame_python
mask_inplace = mask_inplace_python
message_buffer: Callable[[int], tuple[bytes | bytearray, memoryview]] = message_buffer_python
#: True when the C accelerator is in use (``python -m websock --version`` says it too).
ACCELERATED = False
if not os.environ.get("WEBSOCK_PURE_PYTHON"):
    try:
        from .._speedups import apply_mask, mask_inplace, masked_frame
        from .._speedups import message_buffer as _message_buffer_c

        message_buffer = _message_buffer_c
        ACCELERATED = True
    except ImportError:  # pragma: no cover - depends on the build
        pass


_pack_h2 = struct.Struct("!BB").pack
_pack_h4 = struct.Struct("!BBH").pack
_pack_h10 = struct.Struct("!BBQ").pack


def frame_header(opcode: int, length: int, *, fin: bool = True, rsv: int = 0) -> bytes:
    """The header of an unmasked frame carrying ``length`` payload bytes."""
    first = (0x80 if fin else 0) | rsv | opcode
    if length < 126:
        return _pack_h2(first, length)
    if length < 65536:
        return _pack_h4(first, 126, length)
    return _pack_h10(first, 127, length)


def serialize_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """Serialise one frame. ``rsv`` is the RSV bits as a mask of the first byte (0x70).

    With ``mask`` (4 bytes), the frame is masked as a client must; without, unmasked as a
    server must.
    """
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        header = _pack_h2(first, mask_bit | n)
    elif n < 65536:
        header = _pack_h4(first, mask_bit | 126, n)
    else:
        header = _pack_h10(first, mask_bit | 127, n)
    if mask is None:
        return header + payload
    return masked_frame(header + mask, payload, mask)
