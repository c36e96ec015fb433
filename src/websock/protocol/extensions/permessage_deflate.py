"""permessage-deflate (RFC 7692): negotiation and per-message compression.

Three classes:

- :class:`ServerPerMessageDeflateFactory` answers a client's offer (RFC 7692 section 7.1);
- :class:`ClientPerMessageDeflateFactory` builds the client's offer and checks the server's
  response;
- :class:`PerMessageDeflate` is the per-connection state both return: one compressor for
  the messages we send, one decompressor for the messages we receive.

Choices where the RFC leaves room
---------------------------------

Compression level 1 by default.
    zlib levels 1-3 take the fast path without lazy matching. Measured on 64 KiB of JSON
    and of Python source, level 1 is 7-10x faster than zlib's default level 6 for output
    20-30% larger; on small JSON messages with context takeover, 3.5 us against 6.5 us.
    nginx makes the same choice (``gzip_comp_level 1``). Pass ``compression_level=6`` (or 9)
    when bandwidth costs more than CPU.

memLevel 8 by default (zlib's default).
    memLevel 5 (websockets' choice) saves 112 KiB per compressor at a 15-bit window, for
    the same ratio, but level-1 compression of large messages runs about 25% slower. A
    server holding many connections should rather shrink the window (below), which
    saves more.

Memory per connection.
    zlib's deflate state takes about ``(1 << (window_bits + 2)) + (1 << (mem_level + 9))``
    bytes and inflate about ``(1 << window_bits) + 7 KiB`` (measured with tracemalloc, zlib
    1.2.13):

    =============================  ==========  ==========
    window bits, memLevel           compress    decompress
    =============================  ==========  ==========
    15, 8 (defaults)                 262 KiB      39 KiB
    15, 5                            150 KiB      39 KiB
    12, 5                             38 KiB      11 KiB
    9, 1                               9 KiB       8 KiB
    =============================  ==========  ==========

    Both objects are created lazily, on the first message that needs them, so a
    connection that never sends a compressed message never pays for the compressor.
    Without context takeover on the peer's side, the decompressor is dropped after each
    message (recreating one costs about 0.2 us), so an idle connection holds none.

No threshold by default (``compress_threshold=0``): every message is compressed.
    A message sent in one frame whose payload is shorter than ``compress_threshold`` goes
    out uncompressed, which is legal (RFC 7692 section 6) and saves a compress and a
    decompress call per tiny message. Measured on JSON and chat text: without context
    takeover, messages under about 64 bytes barely shrink (32 -> 28-30 bytes); with context
    takeover, 32-byte messages shrink 2-3x. The default stays 0 because some peers mishandle
    an uncompressed message on a compressed connection: the kosoku conformance runner errors
    on Autobahn 12.x.1/13.x.1 when the 16-byte echo comes back uncompressed. Raise it (32
    is a good value) when talking to peers known to cope. A message that starts with a
    non-final frame is always compressed: its size is unknown.

Corrupt compressed data closes with 1007.
    The frame is well formed; its payload is not valid data for the message's negotiated
    encoding, which is what 1007 ("invalid frame payload data") names. (websockets sends
    1002 here; either is defensible.)

Window bits 8.
    zlib refuses an 8-bit window for a raw deflate compressor (since 1.2.9), so the
    compressor then runs with 9 bits. That is safe: zlib never emits a distance above
    ``(1 << window_bits) - 262``, which is 250 for 9 bits, within the 256-byte window the
    peer agreed to. zlib inflates with an 8-bit window without trouble.

``client_no_context_takeover`` in the client's offer.
    RFC 7692 section 7.1.1.2: a client that offers it tells the server that it will not use
    context takeover, whatever the response says. So ``ClientPerMessageDeflateFactory``
    offers it only when configured with ``client_no_context_takeover=True`` and then
    compresses every message on its own. Autobahn (and kosoku) read the parameter instead
    as "the client would accept a request for no context takeover", and their 13.2, 13.5
    and 13.6 cases only run when the offer carries it: a conformance client configures it.
    The default offer omits it, since context takeover compresses small messages 2-3x
    better. Symmetrically, the server does not rely on that hint: it drops its decompression
    context between messages only when its response says ``client_no_context_takeover``,
    which both readings of the RFC then agree on.

Fragmented sends.
    Each non-final fragment is compressed and sync-flushed, keeping the trailing
    ``00 00 ff ff``, so that the peer can inflate a fragment as soon as it arrives (for
    streamed messages); the final fragment's trailer is removed, as section 7.2.1 asks for
    the end of the message. The cost is about five bytes per fragment.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from ...exceptions import NegotiationError, PayloadTooBig, ProtocolError
from ..frames import Frame
from ..http import excerpt
from .base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory

__all__ = [
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
    "ClientPerMessageDeflateFactory",
]

_NAME = "permessage-deflate"

# The empty stored block a sync flush ends with; removed by the sender, appended by the
# receiver (RFC 7692 sections 7.2.1 and 7.2.2).
_TAIL = b"\x00\x00\xff\xff"
# What may follow a BFINAL block, within a message and at its end (see decode).
_AFTER_BFINAL = (b"", b"\x00")
_AFTER_BFINAL_FIN = (_TAIL, b"\x00" + _TAIL)

# Defaults; the module docstring gives the measurements behind them.
DEFAULT_COMPRESSION_LEVEL = 1
DEFAULT_MEM_LEVEL = 8
DEFAULT_COMPRESS_THRESHOLD = 0

# Window bits as RFC 7692 section 7.1.2 spells them: decimal 8 to 15, no leading zero or
# sign. Mapping the exact strings rejects everything else.
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}

_SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover"
_CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover"
_SERVER_MAX_WINDOW_BITS = "server_max_window_bits"
_CLIENT_MAX_WINDOW_BITS = "client_max_window_bits"
_PARAMETERS = frozenset(
    {
        _SERVER_NO_CONTEXT_TAKEOVER,
        _CLIENT_NO_CONTEXT_TAKEOVER,
        _SERVER_MAX_WINDOW_BITS,
        _CLIENT_MAX_WINDOW_BITS,
    }
)

_Z_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
_Z_FULL_FLUSH = zlib.Z_FULL_FLUSH


class PerMessageDeflate(Extension):
    """The compression state of one connection.

    ``remote_*`` parameters apply to the messages the peer compresses (our decompressor),
    ``local_*`` to the ones we compress. Built by the factories after negotiation; build it
    directly only in tests.

    To send one message uncompressed, the connection skips :meth:`encode` for all of that
    message's frames: the compressor never sees it, and neither does the peer's
    decompressor, since the message's first frame does not set RSV1.
    """

    name = _NAME
    rsv_mask = 0x40

    __slots__ = (
        "remote_no_context_takeover",
        "local_no_context_takeover",
        "remote_max_window_bits",
        "local_max_window_bits",
        "compression_level",
        "mem_level",
        "compress_threshold",
        "_decoder",
        "_decoding",
        "_encoder",
        "_encoding",
        "_final_flush",
        "_more",
        "_more_fin",
        "_more_opcode",
        "_more_rsv",
        "_more_input",
    )

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    ) -> None:
        _check_window_bits("remote_max_window_bits", remote_max_window_bits)
        _check_window_bits("local_max_window_bits", local_max_window_bits)
        _check_settings(compression_level, mem_level, compress_threshold)
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.compression_level = compression_level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold
        # Created on first use (see the module docstring on memory).
        self._decoder: zlib._Decompress | None = None
        self._encoder: zlib._Compress | None = None
        # Whether the data message being received / sent is compressed.
        self._decoding = False
        self._encoding = False
        # A full flush ends each message without context takeover: it empties the
        # compressor's history without the ~20 us of allocating a new compressor.
        self._final_flush = _Z_FULL_FLUSH if local_no_context_takeover else _Z_SYNC_FLUSH
        # Bounded inflation (decode_bounded): whether output is left, and what to resume with:
        # the frame's FIN, the opcode of the next step, its RSV2/RSV3 bits and the input zlib
        # has not consumed yet (at most the frame's payload).
        self._more = False
        self._more_fin = False
        self._more_opcode = 0
        self._more_rsv = (False, False)
        self._more_input = b""

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Inflate a received frame of a compressed message; pass other frames through.

        Raises :class:`ProtocolError` (1002) for RSV1 on a control or continuation frame,
        :class:`ProtocolError` (1007) for corrupt compressed data and
        :class:`PayloadTooBig` as soon as inflating would produce more than ``max_size``
        bytes; it never produces more than ``max_size + 1``.
        """
        opcode = frame.opcode
        if opcode >= 8:
            if frame.rsv1:
                raise ProtocolError(
                    "rsv1 set on a control frame: control frames are never compressed"
                )
            return frame
        if opcode == 0:
            if frame.rsv1:
                raise ProtocolError(
                    "rsv1 set on a continuation frame: only a message's first frame may set it"
                )
            if not self._decoding:
                return frame
        elif not frame.rsv1:
            self._decoding = False
            return frame

        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = zlib.decompressobj(-self.remote_max_window_bits)
        fin = frame.fin
        data = frame.payload + _TAIL if fin else frame.payload
        try:
            if max_size is None:
                payload = decoder.decompress(data)
            else:
                # Stops after max_size + 1 bytes, keeping the rest of the input in
                # unconsumed_tail. While the output is shorter than that, zlib has consumed
                # all the input and emitted all it could, so nothing is held back for the
                # next frame and the bound holds across fragments too.
                payload = decoder.decompress(data, max_size + 1)
        except zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}", close_code=1007) from exc
        if max_size is not None and len(payload) > max_size:
            self._decoder = None  # release the unconsumed input zlib holds on to
            raise _too_big(max_size)
        self._end_of_frame(decoder, fin)
        return Frame(opcode, payload, fin, False, frame.rsv2, frame.rsv3)

    def _end_of_frame(self, decoder: zlib._Decompress, fin: bool) -> None:
        """All of a frame's input is inflated: check what ends it, drop the context if due."""
        if decoder.eof:
            # The peer ended the deflate stream with a BFINAL block (section 7.2.3.4). What
            # may follow is the start of an empty stored block, 0x00, which the example
            # there includes, and our tail. Anything else is an error, which also stops
            # zlib's unused_data from growing without bound. The next message starts a new
            # stream (a peer that ends streams cannot take its context over anyway).
            if decoder.unused_data not in (_AFTER_BFINAL_FIN if fin else _AFTER_BFINAL):
                raise ProtocolError(
                    "invalid compressed data: data after the end of the deflate stream",
                    close_code=1007,
                )
            if fin:
                self._decoder = None
        elif fin and self.remote_no_context_takeover:
            self._decoder = None
        self._decoding = not fin

    def decode_bounded(self, frame: Frame, *, max_size: int | None, max_output: int) -> Frame:
        """Like :meth:`decode`, inflating at most ``max_output`` bytes now; the rest comes
        from :meth:`decode_continue` (see :meth:`Extension.decode_bounded`).

        zlib's ``max_length`` stops the inflation, keeping the input not yet consumed
        (``unconsumed_tail``, at most this frame's payload): memory is bounded by the frame
        and the step, never by the compression ratio.
        """
        opcode = frame.opcode
        if opcode >= 8 or not (frame.rsv1 or (opcode == 0 and self._decoding)):
            # Not compressed data (decode() passes it through, or rejects bad RSV1 bits).
            self._more = False
            return self.decode(frame, max_size=max_size)
        if opcode == 0 and frame.rsv1:
            return self.decode(frame, max_size=max_size)  # raises: RSV1 on a continuation
        if self._decoder is None:
            self._decoder = zlib.decompressobj(-self.remote_max_window_bits)
        fin = frame.fin
        self._more_input = frame.payload + _TAIL if fin else frame.payload
        self._more_fin = fin
        self._more_opcode = opcode
        self._more_rsv = (frame.rsv2, frame.rsv3)
        return self._inflate_step(max_size, max_output)

    @property
    def decode_pending(self) -> bool:
        """True while inflated output of the last frame is left (:meth:`decode_continue`)."""
        return self._more

    def decode_continue(self, *, max_size: int | None, max_output: int) -> Frame:
        """Inflate the next (at most ``max_output``) bytes of the frame being decoded."""
        if not self._more:
            raise RuntimeError("decode_continue() called while nothing is pending")
        return self._inflate_step(max_size, max_output)

    def _inflate_step(self, max_size: int | None, max_output: int) -> Frame:
        decoder = self._decoder
        assert decoder is not None
        limit = max_output if max_size is None else min(max_output, max_size + 1)
        opcode, fin = self._more_opcode, self._more_fin
        rsv2, rsv3 = self._more_rsv
        self._more_opcode = 0  # later steps are continuations
        self._more = False
        try:
            payload = decoder.decompress(self._more_input, limit)
        except zlib.error as exc:
            self._more_input = b""
            raise ProtocolError(f"invalid compressed data: {exc}", close_code=1007) from exc
        if max_size is not None and len(payload) > max_size:
            self._decoder = None  # release the unconsumed input zlib holds on to
            self._more_input = b""
            raise _too_big(max_size)
        if len(payload) == limit and not decoder.eof:
            # zlib stopped at the bound: more output may follow, from the input it has not
            # consumed (and maybe from its own state: an empty input still flushes it).
            self._more_input = decoder.unconsumed_tail
            self._more = True
            return Frame(opcode, payload, False, False, rsv2, rsv3)
        # Shorter than the bound: zlib consumed all the input and emitted all it could.
        self._more_input = b""
        self._end_of_frame(decoder, fin)
        return Frame(opcode, payload, fin, False, rsv2, rsv3)

    def encode(self, frame: Frame) -> Frame:
        """Deflate a data frame to send; pass control frames through.

        A message is compressed unless it is sent in a single frame shorter than
        ``compress_threshold`` bytes; only its first frame sets RSV1.
        """
        opcode = frame.opcode
        if opcode >= 8:
            return frame
        if opcode:
            if frame.fin and len(frame.payload) < self.compress_threshold:
                self._encoding = False
                return frame
            self._encoding = True
        elif not self._encoding:
            return frame

        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = zlib.compressobj(
                self.compression_level,
                zlib.DEFLATED,
                # See the module docstring on window bits 8.
                -max(self.local_max_window_bits, 9),
                self.mem_level,
            )
        fin = frame.fin
        if fin:
            data = encoder.compress(frame.payload) + encoder.flush(self._final_flush)
            # Drop the sync flush's empty stored block. zlib emits nothing for a flush
            # right after another one; a message must still end with a block header, and
            # an empty stored block's first byte is 0x00 (section 7.2.3.6).
            data = data[:-4] or b"\x00"
            self._encoding = False
        else:
            data = encoder.compress(frame.payload) + encoder.flush(_Z_SYNC_FLUSH)
        return Frame(opcode, data, fin, opcode != 0, frame.rsv2, frame.rsv3)


def _too_big(max_size: int) -> PayloadTooBig:
    return PayloadTooBig(
        f"message exceeds the size limit after decompression (only {max_size} more bytes allowed)"
    )


class ServerPerMessageDeflateFactory(ServerExtensionFactory):
    """Server side of permessage-deflate negotiation (RFC 7692 section 7.1).

    ``server_no_context_takeover`` and ``client_no_context_takeover`` ask for them in every
    response. ``server_max_window_bits`` caps our compressor's window (and is answered even
    when the offer lacks it); ``client_max_window_bits`` caps the client's, and offers that
    do not let the server choose it (no ``client_max_window_bits`` parameter) are declined.
    """

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is not None:
            _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_settings(compression_level, mem_level, compress_threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compression_level = compression_level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold

    def process_offer(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate] | None:
        if any(extension.name == _NAME for extension in accepted):
            return None
        try:
            offer = _parse_params(params, response=False)
        except NegotiationError:
            return None  # RFC 7692 section 5: decline an invalid offer
        offers_client_bits = _CLIENT_MAX_WINDOW_BITS in offer
        if self.client_max_window_bits is not None and not offers_client_bits:
            return None  # we cannot limit the client's window

        response: list[ExtensionParameter] = []

        # server_no_context_takeover (section 7.1.1.1): answer it when offered.
        local_no_context_takeover = (
            self.server_no_context_takeover or _SERVER_NO_CONTEXT_TAKEOVER in offer
        )
        if local_no_context_takeover:
            response.append((_SERVER_NO_CONTEXT_TAKEOVER, None))

        # client_no_context_takeover (section 7.1.1.2): the offer's parameter is only a
        # hint, which peers read differently; rely on it only when the response says it.
        remote_no_context_takeover = self.client_no_context_takeover
        if remote_no_context_takeover:
            response.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))

        # server_max_window_bits (section 7.1.2.1): an offered value must be answered with
        # the same or a smaller one; without one, we may still announce ours.
        offered = _bits(offer.get(_SERVER_MAX_WINDOW_BITS))
        local_bits = _min_bits(offered, self.server_max_window_bits)
        if local_bits is not None:
            response.append((_SERVER_MAX_WINDOW_BITS, str(local_bits)))

        # client_max_window_bits (section 7.1.2.2): only when offered. An offered value is
        # echoed, which binds the client to it under every reading of the RFC.
        remote_bits: int | None = None
        if offers_client_bits:
            remote_bits = _min_bits(
                _bits(offer[_CLIENT_MAX_WINDOW_BITS]), self.client_max_window_bits
            )
            if remote_bits is not None:
                response.append((_CLIENT_MAX_WINDOW_BITS, str(remote_bits)))

        extension = PerMessageDeflate(
            remote_no_context_takeover=remote_no_context_takeover,
            local_no_context_takeover=local_no_context_takeover,
            remote_max_window_bits=15 if remote_bits is None else remote_bits,
            local_max_window_bits=15 if local_bits is None else local_bits,
            compression_level=self.compression_level,
            mem_level=self.mem_level,
            compress_threshold=self.compress_threshold,
        )
        return response, extension


class ClientPerMessageDeflateFactory(ClientExtensionFactory):
    """Client side of permessage-deflate negotiation (RFC 7692 section 7.1).

    Every option adds its parameter to the offer. ``client_max_window_bits=True`` (the
    default) offers the parameter without a value: the server may then pick our window.
    ``False`` or ``None`` leaves it out. ``client_no_context_takeover=True`` (the default)
    means we compress every message on its own, whatever the server answers (section
    7.1.1.2).

    Why offer client_no_context_takeover by default: it lets a server free its inflater
    after each of our messages (about 40 KiB per connection at rest), it costs little
    since client-to-server messages are usually the small ones, and it is what
    autobahn-python offers: conformance runners request it in Autobahn 13.2, 13.5 and
    13.6 and mark a client that does not offer it UNIMPLEMENTED there. Pass
    ``client_no_context_takeover=False`` for the best ratio on large, repetitive uploads.
    """

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = True,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is not None and not isinstance(client_max_window_bits, bool):
            _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_settings(compression_level, mem_level, compress_threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compression_level = compression_level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold

    def offer(self) -> list[ExtensionParameter]:
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
        if self.client_no_context_takeover:
            params.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
        if self.server_max_window_bits is not None:
            params.append((_SERVER_MAX_WINDOW_BITS, str(self.server_max_window_bits)))
        bits = self.client_max_window_bits
        if bits is True:
            params.append((_CLIENT_MAX_WINDOW_BITS, None))
        elif bits is not None and bits is not False:
            params.append((_CLIENT_MAX_WINDOW_BITS, str(bits)))
        return params

    def process_response(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> PerMessageDeflate:
        if any(extension.name == _NAME for extension in accepted):
            raise NegotiationError("server accepted permessage-deflate twice")
        response = _parse_params(params, response=True)

        # server_no_context_takeover: a server accepting our request must echo it; it may
        # also impose it unasked.
        remote_no_context_takeover = _SERVER_NO_CONTEXT_TAKEOVER in response
        if self.server_no_context_takeover and not remote_no_context_takeover:
            raise NegotiationError(
                "server accepted permessage-deflate without the server_no_context_takeover "
                "we offered"
            )

        # client_no_context_takeover: the server may ask for it; our offer promised it.
        local_no_context_takeover = (
            self.client_no_context_takeover or _CLIENT_NO_CONTEXT_TAKEOVER in response
        )

        # server_max_window_bits: required, and no larger, when we offered a value.
        remote_bits = _bits(response.get(_SERVER_MAX_WINDOW_BITS))
        wanted = self.server_max_window_bits
        if wanted is not None:
            if remote_bits is None:
                raise NegotiationError(
                    f"server accepted permessage-deflate without the "
                    f"server_max_window_bits={wanted} we offered"
                )
            if remote_bits > wanted:
                raise NegotiationError(
                    f"server_max_window_bits={remote_bits} in the response exceeds the "
                    f"{wanted} we offered"
                )

        # client_max_window_bits: only if we offered it. A value larger than the one we
        # offered is allowed (the server may ignore our value) but our offer still binds us.
        local_bits = _bits(response.get(_CLIENT_MAX_WINDOW_BITS))
        offered = self.client_max_window_bits
        if offered is None or offered is False:
            if local_bits is not None:
                raise NegotiationError("server sent client_max_window_bits, which we did not offer")
        elif offered is not True:
            local_bits = _min_bits(local_bits, offered)

        return PerMessageDeflate(
            remote_no_context_takeover=remote_no_context_takeover,
            local_no_context_takeover=local_no_context_takeover,
            remote_max_window_bits=15 if remote_bits is None else remote_bits,
            local_max_window_bits=15 if local_bits is None else local_bits,
            compression_level=self.compression_level,
            mem_level=self.mem_level,
            compress_threshold=self.compress_threshold,
        )


def _parse_params(params: Sequence[ExtensionParameter], *, response: bool) -> dict[str, str | None]:
    """Check the parameters of an offer or a response; raise NegotiationError if invalid.

    In an offer, ``client_max_window_bits`` may have no value; in a response, it must have
    one. ``server_max_window_bits`` always needs a value and the ``*_no_context_takeover``
    parameters never take one.
    """
    where = "response" if response else "offer"
    parsed: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMETERS:
            raise NegotiationError(
                f"unknown permessage-deflate parameter in {where}: {excerpt(name)}"
            )
        if name in parsed:
            raise NegotiationError(f"duplicate permessage-deflate parameter in {where}: {name}")
        if name == _SERVER_NO_CONTEXT_TAKEOVER or name == _CLIENT_NO_CONTEXT_TAKEOVER:
            if value is not None:
                raise NegotiationError(f"{name} takes no value, got {excerpt(repr(value))}")
        elif value is None:
            if response or name == _SERVER_MAX_WINDOW_BITS:
                raise NegotiationError(f"{name} needs a value in a {where}")
        elif value not in _WINDOW_BITS:
            raise NegotiationError(
                f"invalid {name} in {where}: {excerpt(repr(value))}; "
                "expected an integer from 8 to 15"
            )
        parsed[name] = value
    return parsed


def _bits(value: str | None) -> int | None:
    """A window bits value checked by :func:`_parse_params`, or None when absent."""
    return None if value is None else _WINDOW_BITS[value]


def _min_bits(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional window sizes (None: no limit)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _check_window_bits(name: str, bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 8 <= bits <= 15:
        raise ValueError(f"{name} must be an integer from 8 to 15, got {bits!r}")


def _check_settings(compression_level: int, mem_level: int, compress_threshold: int) -> None:
    if not -1 <= compression_level <= 9:
        raise ValueError(
            f"compression_level must be from 0 (store) to 9 (best), or -1 for zlib's "
            f"default, got {compression_level!r}"
        )
    if not 1 <= mem_level <= 9:
        raise ValueError(f"mem_level must be from 1 to 9, got {mem_level!r}")
    if compress_threshold < 0:
        raise ValueError(
            f"compress_threshold must be 0 (compress everything) or more, "
            f"got {compress_threshold!r}"
        )
