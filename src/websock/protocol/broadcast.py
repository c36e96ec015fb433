"""Encode once, send to many: the frames of one message for many server connections.

A server sends a broadcast message as the same bytes to every connection that can take
them, instead of framing (and maybe compressing) it once per connection:

- **uncompressed**: one frame (header and payload in one bytes object) serves every server
  connection, with or without permessage-deflate: a message may always be sent with RSV1
  clear, and an uncompressed message leaves both sides' compression contexts untouched
  (RFC 7692 section 6: only messages with RSV1 set go through the inflater);
- **compressed**: one deflated frame per distinct setting (window bits, level, memory
  level) serves the connections that negotiated ``server_no_context_takeover``: their
  compressor starts every message afresh, so a message deflated once, without history, is
  exactly what each of them would send. A connection that keeps its context cannot share
  one (the next message it compresses on its own would refer to history its peer does not
  have in that order), so it gets the uncompressed frame. A server makes shared compression
  the norm with ``ServerPerMessageDeflateFactory(server_no_context_takeover=True)``.

Client connections mask every frame with a fresh key: they cannot share bytes
(:meth:`SharedFrames.frame_for` returns None, and the I/O layer sends per connection).
"""

from __future__ import annotations

import zlib

from .connection import Connection, Role
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import Opcode, frame_header

__all__ = ["SharedFrames", "message_payload"]

_RSV1 = 0x40


def message_payload(
    message: str | bytes | bytearray | memoryview, text: bool | None, verb: str = "broadcast"
) -> tuple[bytes, bool]:
    """A message to send to many, as (payload bytes, is text): str is text, bytes-like is
    binary, unless ``text`` says otherwise (as ``send(text=)``). TypeError for anything
    else, naming what was attempted (``verb``)."""
    if isinstance(message, str):
        return message.encode(), True if text is None else text
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message), bool(text)
    raise TypeError(
        f"cannot {verb} {type(message).__name__}: a message is str (text) or bytes-like (binary)"
    )


class SharedFrames:
    """The wire forms of one message, each built the first time a connection needs it.

    ``message``: str is sent as text, bytes-like as binary; ``text`` overrides that as in
    ``send(text=)`` (bytes sent as text must be UTF-8 already). ``compress=False`` sends
    it uncompressed everywhere. :attr:`compressions` counts how many times the payload was
    deflated (once per distinct setting, however many connections share it).
    """

    __slots__ = ("payload", "opcode", "is_text", "compress", "compressions", "_plain", "_deflated")

    def __init__(
        self,
        message: str | bytes | bytearray | memoryview,
        *,
        text: bool | None = None,
        compress: bool = True,
    ) -> None:
        payload, is_text = message_payload(message, text)
        self.payload = payload
        self.is_text = is_text
        self.opcode = Opcode.TEXT if is_text else Opcode.BINARY
        self.compress = compress
        self.compressions = 0
        self._plain: bytes | None = None
        self._deflated: dict[tuple[int, int, int], bytes] = {}

    def frame_for(self, connection: Connection) -> bytes | None:
        """The frame to write to ``connection`` (the same object for every connection of
        one wire form), or None when it cannot take a shared frame (a client: its frames
        are masked; an extension other than permessage-deflate)."""
        if connection.role is not Role.SERVER:
            return None
        extensions = connection.extensions
        if not extensions:
            return self.plain_frame()
        if len(extensions) != 1 or type(extensions[0]) is not PerMessageDeflate:
            return None
        deflate = extensions[0]
        if (
            self.compress
            and deflate.local_no_context_takeover
            and len(self.payload) >= deflate.compress_threshold
        ):
            return self._deflated_frame(deflate)
        return self.plain_frame()

    def plain_frame(self) -> bytes:
        """The uncompressed, unmasked frame."""
        frame = self._plain
        if frame is None:
            frame = self._plain = frame_header(self.opcode, len(self.payload)) + self.payload
        return frame

    def _deflated_frame(self, deflate: PerMessageDeflate) -> bytes:
        key = (max(deflate.local_max_window_bits, 9), deflate.compression_level, deflate.mem_level)
        frame = self._deflated.get(key)
        if frame is None:
            bits, level, mem_level = key
            # As PerMessageDeflate.encode does for a whole message without context
            # takeover: a fresh stream (window bits 8 become 9: see that module), flushed,
            # without the flush's trailing empty block (RFC 7692 section 7.2.1).
            encoder = zlib.compressobj(level, zlib.DEFLATED, -bits, mem_level)
            data = encoder.compress(self.payload) + encoder.flush(zlib.Z_SYNC_FLUSH)
            data = data[:-4] or b"\x00"
            self.compressions += 1
            frame = frame_header(self.opcode, len(data), rsv=_RSV1) + data
            self._deflated[key] = frame
        return frame
