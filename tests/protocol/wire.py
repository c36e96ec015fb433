"""Helpers shared by the core's tests: a permessage-deflate instance, reading back the
frames a core wrote, and putting events in a comparable form."""

from __future__ import annotations

from dataclasses import dataclass

from websock.protocol.connection import Event, ProtocolViolation
from websock.protocol.extensions.permessage_deflate import PerMessageDeflate
from websock.protocol.frames import apply_mask


def deflate(threshold: int = 0) -> PerMessageDeflate:
    """permessage-deflate with the widest windows and context takeover both ways."""
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
        compress_threshold=threshold,
    )


@dataclass(frozen=True)
class WireFrame:
    """One frame as written: its first byte, its mask (None if unmasked), its payload
    unmasked."""

    first: int
    mask: bytes | None
    payload: bytes

    @property
    def fin(self) -> bool:
        return bool(self.first & 0x80)

    @property
    def rsv(self) -> int:
        return self.first & 0x70

    @property
    def opcode(self) -> int:
        return self.first & 0x0F

    @property
    def masked(self) -> bool:
        return self.mask is not None


def wire_frames(data: bytes) -> list[WireFrame]:
    """Split bytes a core wrote into frames; fails on a truncated frame."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        length = b1 & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        mask = None
        if b1 & 0x80:
            mask = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + length]
        assert len(payload) == length, "truncated frame"
        pos += length
        if mask is not None:
            payload = apply_mask(payload, mask)
        frames.append(WireFrame(b0, mask, payload))
    return frames


def norm(events: list[Event]) -> list[object]:
    """Events in a comparable form (exceptions compare by identity)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, ProtocolViolation):
            error = event.error
            out.append(("violation", type(error).__name__, error.close_code, str(error)))
        else:
            out.append(event)
    return out
