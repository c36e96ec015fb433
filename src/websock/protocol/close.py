"""Close codes (RFC 6455 section 7.4) and the Close frame payload."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..exceptions import ProtocolError

__all__ = ["CloseCode", "Close", "is_valid_received_code", "is_valid_sent_code"]


class CloseCode(enum.IntEnum):
    """Close codes registered by RFC 6455 and IANA."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never on the wire
    ABNORMAL_CLOSURE = 1006  # never on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


# Codes below 3000 that may appear on the wire: the RFC's and IANA's registered ones,
# minus 1004 (reserved) and 1005/1006/1015 (reserved for local use, never sent).
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

_MAX_REASON_BYTES = 123  # 125-byte control payload minus the 2-byte code


def is_valid_received_code(code: int) -> bool:
    """True if a peer may send ``code`` in a Close frame."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


def is_valid_sent_code(code: int) -> bool:
    """True if we may send ``code``: 1000-1003, 1007-1014 minus reserved, or 3000-4999."""
    return is_valid_received_code(code)


_DESCRIPTIONS = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
}


@dataclass(frozen=True, slots=True)
class Close:
    """The code and reason carried by a Close frame."""

    code: int
    reason: str = ""

    def __str__(self) -> str:
        if 3000 <= self.code < 4000:
            what = "registered"
        elif 4000 <= self.code < 5000:
            what = "private use"
        else:
            what = _DESCRIPTIONS.get(self.code, "unknown")
        text = f"{self.code} ({what})"
        return f"{text} {self.reason}" if self.reason else text

    @classmethod
    def parse(cls, payload: bytes) -> Close:
        """Parse a received Close payload; raise ProtocolError if it breaks RFC 6455 5.5.1.

        An empty payload means "no status" and parses as 1005.
        """
        if not payload:
            return cls(CloseCode.NO_STATUS_RCVD)
        if len(payload) == 1:
            raise ProtocolError("close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not is_valid_received_code(code):
            raise ProtocolError(f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in close reason", close_code=1007) from None
        return cls(code, reason)

    def serialize(self) -> bytes:
        """The payload of a Close frame carrying this code and reason.

        1005 serializes as an empty payload. Raise ValueError for a code that may not be
        sent or a reason longer than 123 UTF-8 bytes.
        """
        if self.code == CloseCode.NO_STATUS_RCVD:
            if self.reason:
                raise ValueError("a close frame without a code cannot carry a reason")
            return b""
        if not is_valid_sent_code(self.code):
            raise ValueError(
                f"close code {self.code} may not be sent: use 1000-1003, 1007-1014 or 3000-4999"
            )
        reason = self.reason.encode("utf-8")
        if len(reason) > _MAX_REASON_BYTES:
            raise ValueError(
                f"close reason is {len(reason)} bytes in UTF-8; at most {_MAX_REASON_BYTES} fit"
            )
        return self.code.to_bytes(2, "big") + reason
