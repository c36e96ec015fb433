"""Incremental, fail-fast UTF-8 validation of text messages (RFC 6455 section 8.1).

CPython's incremental UTF-8 decoder keeps an incomplete trailing sequence pending without
checking that it can still become valid: ``b"\\xed\\xa0"`` (the start of a surrogate) waits
for more input instead of failing. A WebSocket endpoint must fail as soon as an invalid byte
arrives, so after each chunk we check the pending tail against the well-formed byte ranges of
RFC 3629 section 4 ourselves. The tail is at most 3 bytes, so this costs nothing on the bulk.
"""

from __future__ import annotations

import codecs

__all__ = ["Utf8Validator"]

# For each lead byte of a multi-byte sequence: the allowed range of the second byte.
# Every later continuation byte is 0x80-0xBF, which the decoder itself checks as it goes.
_SECOND_BYTE_RANGE: dict[int, tuple[int, int]] = {}
for _lead in range(0xC2, 0xE0):
    _SECOND_BYTE_RANGE[_lead] = (0x80, 0xBF)
_SECOND_BYTE_RANGE[0xE0] = (0xA0, 0xBF)  # no overlong 3-byte forms
for _lead in range(0xE1, 0xF0):
    _SECOND_BYTE_RANGE[_lead] = (0x80, 0xBF)
_SECOND_BYTE_RANGE[0xED] = (0x80, 0x9F)  # no UTF-16 surrogates
_SECOND_BYTE_RANGE[0xF0] = (0x90, 0xBF)  # no overlong 4-byte forms
for _lead in range(0xF1, 0xF4):
    _SECOND_BYTE_RANGE[_lead] = (0x80, 0xBF)
_SECOND_BYTE_RANGE[0xF4] = (0x80, 0x8F)  # nothing above U+10FFFF

_Decoder = codecs.getincrementaldecoder("utf-8")


class Utf8Validator:
    """Validate a byte stream chunk by chunk; ``feed`` returns False at the first bad byte."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Decoder("strict")

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Validate the next chunk; False as soon as the stream cannot be valid UTF-8."""
        decoder = self._decoder
        try:
            decoder.decode(data)
        except UnicodeDecodeError:
            return False
        pending = decoder.getstate()[0]
        if len(pending) >= 2:
            allowed = _SECOND_BYTE_RANGE.get(pending[0])
            if allowed is None or not allowed[0] <= pending[1] <= allowed[1]:
                return False
        return True

    def complete(self) -> bool:
        """True if the stream validated so far ends on a complete character."""
        return not self._decoder.getstate()[0]
