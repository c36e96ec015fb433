"""The sans-I/O WebSocket connection: bytes in, events out; calls in, bytes out.

The I/O contract (every I/O layer drives a :class:`Connection` the same way):

- :meth:`Connection.receive_data` with each chunk read from the network;
  :meth:`Connection.receive_eof` when the peer closed its side.
- :meth:`Connection.events_received` returns what those bytes meant, in order:
  ``str`` for a text message, ``bytes`` for a binary message, :class:`MessagePiece` for a
  piece of a streamed message (see :meth:`Connection.set_streaming`), :class:`Ping`,
  :class:`Pong`, :class:`CloseReceived` and :class:`ProtocolViolation`.
- The ``send_*`` methods queue frames; :meth:`Connection.data_to_send` returns the bytes
  to write, in order. An empty ``bytes`` in that list means "now close the TCP connection".
- :meth:`Connection.close_expected` tells the I/O layer that the connection is over from the
  protocol's point of view and TCP should end soon (it starts the close timeout).
- Flow control: :meth:`Connection.set_receive_room` with the free space of the I/O layer's
  receive queue, and :attr:`Connection.receiving_held` to know when to stop reading;
  :meth:`Connection.pause_writing` / :meth:`Connection.resume_writing` as the I/O layer's
  write buffer crosses its water marks.

Peer errors never raise: they become a :class:`ProtocolViolation` event carrying the
:class:`~websock.exceptions.ProtocolError` (with its close code). Misuse by the caller raises
:class:`~websock.exceptions.InvalidState` or ``ValueError`` at once. Any other exception is a
bug.

Two decisions keep the Autobahn verdicts strict and deterministic:

- A received Close and a protocol violation are *terminal events*: the core does not answer
  them by itself. Messages that arrived before them are delivered first, and the I/O layer
  calls :meth:`Connection.reply_to_close` or :meth:`Connection.fail` once the application
  has consumed those messages (or a grace time ran out). An echo of a valid message that
  preceded a bad frame therefore always goes out before our Close.
- Frame payloads are processed as they arrive, not when the frame is complete: UTF-8 is
  validated and compressed data inflated piece by piece, so an invalid byte fails the
  connection as soon as it arrives (Autobahn 6.4.x), and a decompression bomb is stopped
  after at most ``max_message_size`` bytes of output.

After a terminal event the core ignores all further input (*drop mode*). RFC 6455 7.1.7:
once an endpoint fails the connection it must not process data from the peer any more,
"including a responding Close frame"; and after the peer's Close nothing may follow. A server
that failed or finished the closing handshake queues ``b""`` at once: the I/O layer sends its
FIN right after the Close and drains the socket without parsing until the peer's EOF (or a
short grace), so that the peer always sees our Close, then our FIN, and never a reset caused
by unread data.

Two bounds protect the I/O layer from a peer that sends faster than the application reads:

- :meth:`Connection.set_receive_room` bounds how many messages (and bytes of messages) one
  feed may produce. Once the room is used up the core stops parsing and *holds* the rest of
  the input (:attr:`Connection.receiving_held`); the I/O layer stops reading and gives more
  room as the application consumes messages. So compressed messages are inflated no faster
  than they are consumed.
- :meth:`Connection.pause_writing` tells the core that the I/O layer's write buffer is full:
  until :meth:`Connection.resume_writing`, Pongs answering the peer's Pings are coalesced
  into one (RFC 6455 5.5.3 allows answering the most recent Ping only), so a peer that sends
  Pings and never reads cannot make us buffer Pongs without bound.

Streaming (:meth:`Connection.set_streaming`): while it is on, a data message is delivered as
:class:`MessagePiece` events as its bytes arrive, bounded by ``max_streaming_size`` rather
than ``max_message_size``; the pieces use up the receive room as messages do, so memory is
bounded by the I/O layer's queue and one read, whatever the message's size. Compressed
pieces are inflated in steps of at most ``INFLATE_STEP`` bytes, no faster than the room
allows.
"""

from __future__ import annotations

import codecs
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from . import frames
from .close import Close, CloseCode
from .extensions.base import Extension
from .frames import Frame, Opcode, apply_mask, serialize_frame
from .utf8 import Utf8Validator

__all__ = [
    "Role",
    "State",
    "Connection",
    "Event",
    "Ping",
    "Pong",
    "CloseReceived",
    "ProtocolViolation",
    "MessagePiece",
    "PieceDecoder",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_STREAMING_SIZE",
    "INFLATE_STEP",
    "as_requested",
]


class Role(enum.Enum):
    """Which end of the connection this is; it decides who masks frames."""

    SERVER = "server"
    CLIENT = "client"


class State(enum.IntEnum):
    """The connection's state after the opening handshake."""

    OPEN = 1  # messages flow both ways
    CLOSING = 2  # a Close was sent or received (not both)
    CLOSED = 3  # Close sent and received, or the stream ended


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer sent a Ping; a Pong with the same payload has already been queued (unless
    we had sent a Close: RFC 6455 5.5.1 allows nothing after it)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer sent a Pong.

    ``acknowledged`` lists the payloads of the Pings we sent (with :meth:`Connection.send_ping`)
    that this Pong answers, oldest first: the Ping with the same payload and every Ping sent
    before it (RFC 6455 5.5.3: a Pong may answer only the most recent Ping). Empty for an
    unsolicited Pong.
    """

    payload: bytes
    acknowledged: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer sent a Close. The core answers it when the I/O layer calls
    :meth:`Connection.messages_consumed`."""

    close: Close


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the protocol. The core fails the connection (Close with
    ``error.close_code``) when the I/O layer calls :meth:`Connection.messages_consumed`."""

    error: ProtocolError


@dataclass(frozen=True, slots=True)
class MessagePiece:
    """A piece of a data message delivered while streaming (see
    :meth:`Connection.set_streaming`).

    ``data`` is ``str`` for a text message (decoded: a character split between pieces comes
    whole in the later one) and ``bytes`` for a binary message. ``last`` is True on the
    message's final piece, which may be empty. The concatenation of a message's pieces is
    the message.
    """

    data: str | bytes
    last: bool


_Bytes = bytes | bytearray | memoryview

Event = str | bytes | MessagePiece | Ping | Pong | CloseReceived | ProtocolViolation

#: 1 MiB: large enough for typical chat/feed/dashboard messages, small enough that a few
#: thousand connections each holding a maximal message stay within a server's memory.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

#: 262,144 frames per message: four times the most any Autobahn case sends (9.3.1/9.4.1: a
#: 4 MiB message in 64-byte fragments, 65,536 frames), so legitimate streams of small
#: fragments pass, while the work one message can cost stays bounded whatever its size limit.
DEFAULT_MAX_FRAGMENTS = 1 << 18

#: 1 GiB: the bound on a streamed message (see Connection.set_streaming). Its pieces are
#: delivered as they arrive, so this bounds what the application is made to process, not
#: what the connection holds; None lifts it.
DEFAULT_MAX_STREAMING_SIZE = 1 << 30

# Pieces delivered within one feed are joined into one event up to this size (a read's).
_PIECE_MAX = 262144

#: A compressed streamed message is inflated in steps of at most this many bytes, each
#: delivered as (part of) a piece before the next is inflated: with deflate's ~1000:1
#: ratio, one 64 KiB read could otherwise inflate to 64 MiB at once.
INFLATE_STEP = 65536

_UNLIMITED = 1 << 62

# A closing handshake with these codes on both sides ends with ConnectionClosedOK: 1000 and
# 1001 are normal ends, and 1005 is how a Close without a code is read (it means "no reason
# given", not an error).
_OK_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})

_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CONT = Opcode.CONT.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value
_KNOWN_OPCODES = frozenset({_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG})
# First bytes of the frames the fast path takes: FIN, no RSV bit, text or binary.
_FIN_TEXT = 0x80 | _TEXT
_FIN_BINARY = 0x80 | _BINARY

# Above this size, masked payloads are unmasked from a memoryview of the receive buffer
# rather than from a slice (which would copy them once more).
_VIEW_THRESHOLD = 2048

# A message in one uncompressed frame at least this large is received straight into the
# bytes object delivered to the application (see receive_buffer): one copy fewer.
_DIRECT_MIN = 65536
# ... and at most this large: a bound on what one frame header can make us reserve.
_DIRECT_MAX = 64 * 1024 * 1024
# Only with the C accelerator, whose buffer is the final bytes object and is not written
# before data arrives: the fallback's bytearray would be zero-filled (resident memory for
# a header alone) and copied into bytes at the end anyway, so it gains nothing.
_DIRECT_AVAILABLE = frames.message_buffer is not frames.message_buffer_python

# Unmasked payloads at least this large are queued apart from their header (see _send_data).
_SEPARATE_PAYLOAD = 262144

# Pieces of a message at least this large are kept as separate objects until the message is
# complete; smaller ones are packed together (see _finish_piece).
_LARGE_PIECE = 16384

# Mask keys come from os.urandom (RFC 6455 10.3 asks for a strong source) drawn in
# batches: one system call per 1,024 frames instead of one per frame.
_MASK_POOL_SIZE = 4096


def _drop_tracebacks(error: BaseException) -> None:
    """Detach ``error`` from its traceback and from the exceptions chained to it.

    Their tracebacks hold the parser's frames, whose locals include the caller's (maybe
    reused) buffer. The chain is cut rather than cleared: its far end may be an exception
    the caller is handling, whose traceback is the caller's business. The ProtocolError's
    own message says what the peer did wrong.
    """
    error.__traceback__ = None
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True


def _decode_header(data: _Bytes, pos: int, end: int) -> tuple[int, int, bytes | None, int] | None:
    """Decode the frame header at ``data[pos:end]`` (RFC 6455 5.2).

    Return ``(first byte, payload length, mask or None, offset of the payload)``, or None
    while the header is incomplete. A 64-bit length with its most significant bit set is
    returned as soon as it is read, without its mask: the frame is invalid whatever follows
    (see Connection._header_error), and is reported at once.
    """
    if end - pos < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length >= 126:
        start = pos + (4 if length == 126 else 10)
        if end < start:
            return None
        length = int.from_bytes(data[pos + 2 : start], "big")
        if length >> 63:
            return data[pos], length, None, start
    if not second & 0x80:
        return data[pos], length, None, start
    if end - start < 4:
        return None
    mask = data[start : start + 4]
    if type(mask) is not bytes:
        # Kept for the rest of the frame's payload: a memoryview slice would keep the
        # caller's buffer (which it may reuse), and a bytearray's is made bytes too.
        mask = bytes(mask)
    return data[pos], length, mask, start + 4


class Connection:
    """One WebSocket connection after the opening handshake (RFC 6455 sections 5-7)."""

    # Slots: a server holds thousands of these; a __dict__ of 35 attributes costs ~1.5 KiB.
    __slots__ = (
        "_buf",
        "_decoders",
        "_direct_buffer",
        "_direct_view",
        "_discarding",
        "_eof_held",
        "_eof",
        "_events",
        "_frame_fin",
        "_frame_first_piece",
        "_frame_left",
        "_frame_mask",
        "_frame_offset",
        "_frame_opcode",
        "_frame_rsv",
        "_inflate_last",
        "_inflating",
        "_msg_fragments",
        "_msg_streamed",
        "_msg_text",
        "_pieces",
        "_pieces_size",
        "_stream_limit",
        "_streaming",
        "_pings_sent",
        "_pong_held",
        "_room_bytes",
        "_room_messages",
        "_tcp_end_queued",
        "_writing_paused",
        "_is_client",
        "_mask_pool",
        "_mask_pos",
        "_msg_compressed",
        "_msg_parts",
        "_msg_size",
        "_msg_opcode",
        "_msg_utf8",
        "_msg_wire_size",
        "_out",
        "_rsv_allowed",
        "_send_fragment_encoded",
        "_sending_fragmented",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "extensions",
        "failure",
        "receiving_held",
        "terminal_pending",
        "max_fragments",
        "max_frame_size",
        "max_message_size",
        "max_streaming_size",
        "role",
        "state",
    )

    def __init__(
        self,
        role: Role,
        *,
        extensions: Sequence[Extension] = (),
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        max_streaming_size: int | None = DEFAULT_MAX_STREAMING_SIZE,
    ) -> None:
        """Create the connection state for ``role``.

        ``max_message_size`` bounds a reassembled message after decompression (None: no
        limit); ``max_frame_size`` bounds one frame's payload as it appears on the wire
        (None: bounded by the message limit only); ``max_fragments`` bounds the number of
        frames of one message (None: no limit); ``max_streaming_size`` bounds a message
        delivered in pieces, after decompression, instead of ``max_message_size`` (see
        :meth:`set_streaming`; None: no limit). Exceeding any fails the connection with
        close code 1009.
        """
        if max_message_size is not None and max_message_size < 0:
            raise ValueError("max_message_size must be >= 0 or None")
        if max_frame_size is not None and max_frame_size < 0:
            raise ValueError("max_frame_size must be >= 0 or None")
        if max_fragments is not None and max_fragments < 1:
            raise ValueError("max_fragments must be >= 1 or None")
        if max_streaming_size is not None and max_streaming_size < 0:
            raise ValueError("max_streaming_size must be >= 0 or None")
        self.role = role
        self.state = State.OPEN
        self.extensions: tuple[Extension, ...] = tuple(extensions)
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.max_fragments = max_fragments
        self.max_streaming_size = max_streaming_size

        #: The Close received from the peer, and the one we sent (None until then).
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        #: True if the peer started the closing handshake, False if we did.
        self.close_rcvd_then_sent: bool | None = None
        #: The violation that failed the connection, if any.
        self.failure: ProtocolError | None = None
        #: A Close or a violation was received and is not answered yet: the I/O layer
        #: delivers the messages that preceded it, then calls messages_consumed().
        self.terminal_pending = False

        self._is_client = role is Role.CLIENT
        self._rsv_allowed = 0
        for ext in self.extensions:
            self._rsv_allowed |= ext.rsv_mask
        self._decoders = tuple(reversed(self.extensions))
        self._mask_pool = b""
        self._mask_pos = 0

        # Receive side.
        self._buf = b""  # unparsed bytes (never more than a header or a control frame)
        self._events: list[Event] = []
        self._discarding = False  # after a terminal event: all input is dropped
        self._eof = False
        # Room for messages (see set_receive_room): parsing stops, holding the rest of the
        # input in _buf, when either runs out. Large numbers rather than None: one compare
        # on the hot path.
        self._room_messages = _UNLIMITED
        self._room_bytes = _UNLIMITED
        #: True while input is kept unparsed for lack of room (see set_receive_room): the I/O
        #: layer should stop reading. An attribute, not a property: read once per feed.
        self.receiving_held = False
        self._eof_held = False  # EOF arrived while input was held: apply it after that input
        # The frame whose payload is arriving: opcode, bytes left, mask, offset in the mask.
        self._frame_opcode = -1
        self._frame_fin = False
        self._frame_left = 0
        self._frame_mask: bytes | None = None
        self._frame_offset = 0
        self._frame_rsv = 0
        self._frame_first_piece = False
        # The data message being reassembled (opcode -1 when none).
        self._msg_opcode = -1
        self._msg_compressed = False
        self._msg_parts: list[bytes | bytearray] = []
        self._msg_size = 0  # decoded bytes so far
        self._msg_wire_size = 0
        self._msg_fragments = 0
        self._msg_utf8: Utf8Validator | None = None
        # Streaming (see set_streaming): whether new messages are streamed, whether the one
        # being received is, its size limit, its text decoder, the output not yet delivered
        # (joined into one piece per feed), and inflation left to do for lack of room.
        self._streaming = False
        self._msg_streamed = False
        self._stream_limit: int | None = None
        self._msg_text: _Utf8Decoder | None = None
        self._pieces: list[str | bytes] = []
        self._pieces_size = 0
        self._inflating = False
        self._inflate_last = False
        # A large single-frame message received into its final buffer (see _DIRECT_MIN).
        self._direct_buffer: bytes | bytearray | None = None
        self._direct_view: memoryview | None = None  # filled up to len - _frame_left

        # Send side.
        self._out: list[bytes] = []
        self._sending_fragmented = False
        self._send_fragment_encoded = True
        self._writing_paused = False
        self._pong_held: bytes | None = None  # the latest Ping's payload, while paused
        self._pings_sent: list[bytes] = []  # payloads of our Pings not yet answered
        self._tcp_end_queued = False

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: _Bytes) -> None:
        """Feed bytes read from the network.

        ``data`` may be any bytes-like object; no reference to it is kept after the call,
        so the caller may reuse its buffer (the asyncio layer reads into a shared one).
        """
        if self._eof or self._eof_held:
            raise InvalidState("receive_data() called after receive_eof()")
        if not data or self._discarding:
            return
        if type(data) is memoryview and data.itemsize != 1:
            data = data.cast("B")  # index bytes, not wider items
        if self.receiving_held:
            # No room: keep the bytes unparsed (the I/O layer has stopped reading).
            self._buf += data
            return
        if self._buf:
            data = self._buf + data
            self._buf = b""
        self._parse(data)
        if self._pieces:
            self._flush_pieces(False)

    def set_receive_room(self, messages: int | None, size: int | None) -> None:
        """Bound what the next feeds may produce: ``messages`` data messages, ``size`` bytes.

        The I/O layer passes the free space of its receive queue. Each data message
        delivered uses one message and its length in bytes of the room; once either is used
        up, the core stops parsing at that message's end and keeps the rest of the input
        unparsed (:attr:`receiving_held` is then True): the I/O layer should stop reading
        until it can give room again. Giving room parses held input at once (its events
        are then in :meth:`events_received`). A message is never cut: the room may be
        exceeded by the last message delivered. None means no bound.

        Pieces of a streamed message (:class:`MessagePiece`) use the room in bytes as they
        are delivered, and one message with the last piece; a compressed one is inflated no
        further than the room allows (plus one step, ``INFLATE_STEP``), the rest of its
        inflation waiting for room as held input does.
        """
        self._room_messages = _UNLIMITED if messages is None else messages
        self._room_bytes = _UNLIMITED if size is None else size
        if self._room_messages <= 0 or self._room_bytes <= 0:
            if not self._discarding and not self._eof:
                self.receiving_held = True  # no room at all: hold from the next byte on
            return
        if self.receiving_held:
            self.receiving_held = False
            if self._inflating and not self._discarding:
                # Inflation stopped for lack of room comes before the input held after it.
                self._inflate_more()
                if self._pieces:
                    self._flush_pieces(False)
                if self.receiving_held or self._discarding:
                    return
            data, self._buf = self._buf, b""
            if not self._discarding and data:
                self._parse(data)
                if self._pieces:
                    self._flush_pieces(False)
            if not self.receiving_held and self._eof_held:
                self._eof_held = False
                self.receive_eof()

    def _hold(self, data: _Bytes, pos: int) -> None:
        """The room is used up: keep ``data[pos:]`` unparsed until more room is given."""
        self.receiving_held = True
        if pos < len(data):
            self._buf = bytes(data[pos:])

    def set_streaming(self, on: bool) -> None:
        """Deliver data messages in pieces (``on``) or whole, from now on.

        While streaming is on, a data message whose first frame arrives is *streamed*: it is
        delivered as :class:`MessagePiece` events as its payload arrives (text decoded, and
        validated as ever: invalid UTF-8 fails the connection with 1007 as soon as it
        arrives), its size bounded by ``max_streaming_size`` instead of
        ``max_message_size``. A message that arrives whole in one read may still come as a
        plain ``str``/``bytes`` event: the I/O layer hands it over as a single piece. A
        message being received when streaming is switched on becomes streamed: what arrived
        of it so far is delivered at once as its first piece (unless it is being received
        into its own buffer, see :meth:`receive_buffer`: it then comes whole, within
        ``max_message_size``).

        Switching streaming off applies from the next message on: a streamed message in
        progress stays streamed to its end, within ``max_streaming_size`` (the form and the
        bound of a message are decided when it starts, never by when a call comes).

        Events may follow this call (a first piece): collect them with
        :meth:`events_received` as after a feed.
        """
        self._streaming = on
        if self._msg_opcode < 0 or self._discarding or self._msg_streamed:
            return
        if not on or self._direct_view is not None:
            return
        # The message in progress becomes streamed: what arrived of it is its first piece.
        self._msg_streamed = True
        self._stream_limit = self.max_streaming_size
        parts = self._msg_parts
        data = b"".join(parts) if parts else b""
        self._msg_parts = []
        self._msg_size = 0  # counted again by _emit_piece
        self._msg_utf8 = None
        if self._msg_opcode == _TEXT:
            self._msg_text = _Utf8Decoder()
        if data:
            self._emit_piece(data, False)
            if self._pieces:
                self._flush_pieces(False)

    def _start_direct(self, length: int) -> None:
        """Allocate the bytes object of a large message whose header just arrived.

        The C allocation is not touched until data arrives (the kernel maps pages as they
        are written), so a peer announcing a large message without sending it costs
        address space, not memory; _DIRECT_MAX bounds even that. If the allocation fails,
        the message is received piece by piece as any other.
        """
        try:
            self._direct_buffer, self._direct_view = frames.message_buffer(length)
        except MemoryError:
            self._direct_buffer = self._direct_view = None

    def receive_buffer(self) -> memoryview | None:
        """A writable buffer for the rest of the large message being received, or None.

        An I/O layer that can read into a buffer (``recv_into``) should ask before each
        read: while a large message sent in one frame arrives, this is the part of the
        message's own bytes object still to fill, exactly as long as the bytes missing, and
        reading into it spares a copy. Report what was read with :meth:`buffer_received`;
        otherwise feed :meth:`receive_data` as usual.
        """
        view = self._direct_view
        if view is None or self._discarding or self.receiving_held:
            return None
        return view[len(view) - self._frame_left :]

    def buffer_received(self, nbytes: int) -> None:
        """``nbytes`` were read into the start of the buffer :meth:`receive_buffer` gave."""
        view = self._direct_view
        if view is None and self._discarding and not self._eof:
            # The connection failed between receive_buffer() and this call: the bytes were
            # read into a buffer dropped since, and are dropped too.
            return
        if view is None or self._eof:
            raise InvalidState("buffer_received() without a receive_buffer() to fill")
        if not 0 <= nbytes <= self._frame_left:
            raise ValueError(f"{nbytes} bytes do not fit the {self._frame_left} expected")
        pos = len(view) - self._frame_left
        target = view[pos : pos + nbytes]
        mask = self._frame_mask
        if mask is not None:
            frames.mask_inplace(target, mask, self._frame_offset)
        self._frame_left -= nbytes
        self._frame_offset += nbytes
        self._direct_received(target)

    def _direct_received(self, target: memoryview) -> None:
        """Bytes of a direct message arrived in ``target`` (unmasked); deliver it once complete.

        Text is validated as it arrives, but for the last bytes: the decoding of the whole
        message validates them (_deliver_message).
        """
        if self._frame_left:
            validator = self._msg_utf8
            if validator is not None and not validator.feed(target):
                self._invalid_utf8()
            return
        buffer = self._direct_buffer
        assert buffer is not None
        opcode = self._msg_opcode
        self._reset_message()
        self._deliver_message(opcode, buffer if type(buffer) is bytes else bytes(buffer))

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        if self._eof:
            return
        if self.receiving_held and not self._discarding:
            # Input is held for lack of room: the stream ends after it (set_receive_room).
            self._eof_held = True
            return
        self._eof = True
        self._eof_held = False
        self._buf = b""
        self._direct_buffer = self._direct_view = None
        if self.state is State.CLOSED:
            return
        if not self._discarding and self.close_rcvd is None:
            # The stream ended without a closing handshake: 1006, abnormal closure.
            self._discarding = True
        self.state = State.CLOSED

    def events_received(self) -> list[Event]:
        """Return (and forget) the events parsed since the last call."""
        events = self._events
        if events:
            self._events = []
        return events

    def _parse(self, data: _Bytes) -> None:
        """Parse frames from ``data``; keep an incomplete header in ``self._buf``.

        Parsing stops at the first terminal event (the rest is dropped) and when the room
        runs out (the rest is held, see set_receive_room). Each header is decoded by
        _decode_header. The most frequent frame, a whole unfragmented and uncompressed data
        message already in ``data``, takes a fast path. Any other is validated
        (_header_error), then handled whole if it is a control frame (_control_frame);
        a data frame has its limits checked and its message started (_start_data_frame),
        then its payload is consumed as it arrives (_take_payload). Every message ends in
        _deliver_message.
        """
        pos = 0
        end = len(data)
        if self._frame_left:
            # The rest of a data frame's payload comes first.
            pos = self._take_payload(data, 0)
            if self._discarding or pos == end:
                return
            if self.receiving_held:
                self._hold(data, pos)
                return
        is_client = self._is_client
        # The largest payload the fast path may take: a frame above either limit goes the
        # long way, where _start_data_frame reports it. Read once per feed: parsing does not
        # change them.
        fast_max = self.max_message_size
        if fast_max is None:
            fast_max = _UNLIMITED
        max_frame = self.max_frame_size
        if max_frame is not None and max_frame < fast_max:
            fast_max = max_frame
        while pos < end:
            header = _decode_header(data, pos, end)
            if header is None:
                self._buf = bytes(data[pos:])
                return
            first, length, mask, start = header
            if (
                (first == _FIN_BINARY or first == _FIN_TEXT)
                and (mask is None) is is_client
                and length <= end - start
                and length <= fast_max
                and self._msg_opcode < 0
            ):
                # Fast path: FIN, no RSV bit, a new text or binary message, masked as the
                # role requires, within the limits and complete. _header_error and
                # _start_data_frame would accept it (test_receive_paths.py checks this for
                # every first byte), so these few comparisons stand for their checks; and
                # it needs no state across feeds. The calls to the shared decoder and
                # delivery cost less than the checks skipped: this path is faster than the
                # former one, all inline with the full checks (measured on small frames).
                pos = start + length
                if mask is None:
                    payload = bytes(data[start:pos])
                elif length > _VIEW_THRESHOLD:
                    # Unmask straight from the receive buffer: one copy, not two.
                    payload = apply_mask(memoryview(data)[start:pos], mask)
                else:
                    payload = apply_mask(data[start:pos], mask)
                self._deliver_message(first & 0x0F, payload)
                if self._discarding:
                    return
                if self.receiving_held:
                    self._hold(data, pos)
                    return
                continue
            error = self._header_error(first, length, mask is not None)
            if error is not None:
                self._violation(ProtocolError(error))
                return
            if first & 0x08:  # opcodes 0x8-0xF are control frames
                pos = self._control_frame(data, pos, first, length, mask, start)
            elif self._start_data_frame(first, length, mask):
                pos = self._take_payload(data, start)
            if self._discarding:
                return
            if self.receiving_held:
                self._hold(data, pos)
                return

    def _header_error(self, first: int, length: int, masked: bool) -> str | None:
        """Why a frame header breaks RFC 6455 (5.2-5.5), or None if it does not.

        ``first`` is the header's first byte (FIN, RSV bits, opcode). Checked: the length
        (63 bits at most), RSV bits (only those an extension claimed), the opcode, masking
        (client frames masked, server frames not), control frames (not fragmented, at most
        125 bytes), and the order of data frames (a continuation continues a message, a
        new message waits for the end of the previous one). Size limits are not protocol
        rules but our bounds: _start_data_frame checks them.
        """
        if length >> 63:
            return "frame length with the most significant bit set"
        opcode = first & 0x0F
        if first & 0x70 & ~self._rsv_allowed:
            return "reserved bits must be 0"
        if opcode not in _KNOWN_OPCODES:
            return f"unknown opcode {opcode:#x}"
        if masked == self._is_client:
            if self._is_client:
                return "server frames must not be masked"
            return "client frames must be masked"
        if opcode >= 8:
            if not first & 0x80:
                return "control frames must not be fragmented"
            if length > 125:
                return "control frame payload larger than 125 bytes"
        elif opcode == _CONT:
            if self._msg_opcode < 0:
                return "continuation frame without a message to continue"
        elif self._msg_opcode >= 0:
            return "new data frame inside a fragmented message"
        return None

    def _control_frame(
        self, data: _Bytes, pos: int, first: int, length: int, mask: bytes | None, start: int
    ) -> int:
        """Handle a control frame (its header validated); return where parsing resumes.

        A control frame is at most 125 bytes, so it is handled whole: until all of it has
        arrived, it stays in ``self._buf``, header included.
        """
        end = start + length
        if len(data) < end:
            self._buf = bytes(data[pos:])
            return len(data)
        if mask is not None:
            payload = apply_mask(data[start:end], mask)
        else:
            payload = bytes(data[start:end])
        opcode = first & 0x0F
        if first & 0x70:
            # Only extensions can claim RSV bits; let them judge control frames.
            try:
                self._decode_control(
                    Frame(
                        opcode,
                        payload,
                        True,
                        bool(first & 0x40),
                        bool(first & 0x20),
                        bool(first & 0x10),
                    )
                )
            except ProtocolError as exc:
                self._violation(exc)
                return end
        if opcode == _PING:
            self._ping_received(payload)
        elif opcode == _PONG:
            self._pong_received(payload)
        else:
            self._close_frame(payload)
        return end

    def _ping_received(self, payload: bytes) -> None:
        """Answer a Ping at once (or later, coalesced, while writing is paused)."""
        if self._pieces:
            self._flush_pieces(False)  # events stay in order
        if self.close_sent is None:  # nothing may follow our Close (RFC 6455 5.5.1)
            if self._writing_paused:
                self._pong_held = payload  # coalesced (see pause_writing)
            else:
                self._out.append(self._frame_bytes(_PONG, payload))
        self._events.append(Ping(payload))

    def _pong_received(self, payload: bytes) -> None:
        """Report a Pong with the Pings of ours it answers: its own and every earlier one."""
        if self._pieces:
            self._flush_pieces(False)  # events stay in order
        pings = self._pings_sent
        if payload in pings:
            i = pings.index(payload) + 1
            acked = tuple(pings[:i])
            del pings[:i]
            self._events.append(Pong(payload, acked))
        else:
            self._events.append(Pong(payload))

    def _start_data_frame(self, first: int, length: int, mask: bytes | None) -> bool:
        """Check a data frame's limits, start or continue its message, and get ready for its
        payload (header validated). False after a violation.

        The limits are checked from the header, before any of the payload is buffered.
        """
        max_frame = self.max_frame_size
        if max_frame is not None and length > max_frame:
            self._violation(
                PayloadTooBig(f"frame of {length} bytes exceeds the {max_frame}-byte limit")
            )
            return False
        opcode = first & 0x0F
        if opcode == _CONT:
            # Each frame costs a header's parsing and a piece's handling whatever its size:
            # bound their number, not only the message's bytes.
            self._msg_fragments += 1
            max_fragments = self.max_fragments
            if max_fragments is not None and self._msg_fragments > max_fragments:
                self._violation(
                    PayloadTooBig(f"message exceeds the {max_fragments}-fragment limit")
                )
                return False
        else:
            self._msg_opcode = opcode
            # Any RSV bit (not only RSV1, permessage-deflate's) marks a message that an
            # extension encoded: only claimed bits got past _header_error.
            self._msg_compressed = bool(first & 0x70) and bool(self._decoders)
            self._msg_wire_size = 0
            self._msg_fragments = 1
            if self._streaming:
                self._msg_streamed = True
                self._stream_limit = self.max_streaming_size
                self._msg_text = _Utf8Decoder() if opcode == _TEXT else None
            else:
                self._msg_utf8 = Utf8Validator() if opcode == _TEXT else None
        # An uncompressed message is refused from the frame header, before its payload is
        # buffered. A compressed one is streamed through the inflater, whose output is
        # bounded while inflating (_decode_piece): its wire size needs no bound, which
        # spares legitimate messages compressed in many tiny fragments.
        limit = self._stream_limit if self._msg_streamed else self.max_message_size
        if limit is not None and not self._msg_compressed:
            if self._msg_wire_size + length > limit:
                self._violation(PayloadTooBig(f"message exceeds the {limit}-byte limit"))
                return False
        self._msg_wire_size += length
        fin = bool(first & 0x80)
        if (
            fin
            and opcode != _CONT
            and not self._msg_compressed
            and not self._msg_streamed  # would allocate the whole message at once
            and _DIRECT_MIN <= length <= _DIRECT_MAX
            and _DIRECT_AVAILABLE
        ):
            self._start_direct(length)  # within max_message_size: checked just above
        self._frame_opcode = opcode
        self._frame_fin = fin
        self._frame_left = length
        self._frame_mask = mask
        self._frame_offset = 0
        self._frame_rsv = first & 0x70
        self._frame_first_piece = True
        return True

    def _take_payload(self, data: _Bytes, pos: int) -> int:
        """Consume as much of the current data frame's payload as ``data`` holds (maybe
        none of it); return where parsing resumes."""
        n = len(data) - pos
        if n > self._frame_left:
            n = self._frame_left
        mask = self._frame_mask
        direct = self._direct_view
        if direct is not None:
            start = len(direct) - self._frame_left
            target = direct[start : start + n]
            target[:] = data[pos : pos + n]
            if mask is not None:
                frames.mask_inplace(target, mask, self._frame_offset)
            self._frame_left -= n
            self._frame_offset += n
            self._direct_received(target)
            return pos + n
        if mask is None:
            piece = bytes(data[pos : pos + n])
        else:
            k = self._frame_offset & 3
            view = memoryview(data)[pos : pos + n] if n > _VIEW_THRESHOLD else data[pos : pos + n]
            piece = apply_mask(view, mask[k:] + mask[:k] if k else mask)
        self._frame_left -= n
        self._frame_offset += n
        self._finish_piece(piece)
        return pos + n

    def _finish_piece(self, piece: bytes) -> None:
        """Add a piece of a data frame's payload to the message being reassembled; deliver
        the message after its last piece.

        Text is validated piece by piece, so that an invalid byte fails the connection as
        soon as it arrives; the last piece is validated by the decoding of the whole
        message (_deliver_message).
        """
        last = self._frame_left == 0 and self._frame_fin
        if self._msg_streamed:
            if self._decoders:
                self._inflate_piece(piece, last)
            else:
                self._frame_first_piece = False
                self._emit_piece(piece, last)
            return
        if self._decoders:
            decoded = self._decode_piece(piece, last)
            if decoded is None:
                return
            piece = decoded
        self._frame_first_piece = False
        parts = self._msg_parts
        if last:
            if parts:
                parts.append(piece)
                payload = b"".join(parts)
            else:
                payload = piece if type(piece) is bytes else bytes(piece)
            opcode = self._msg_opcode
            self._reset_message()
            self._deliver_message(opcode, payload)
            return
        validator = self._msg_utf8
        if validator is not None and piece and not validator.feed(piece):
            self._invalid_utf8()
            return
        # Large pieces are kept as they are and joined once at the end (one copy); small
        # ones are packed into a bytearray so that a message in many tiny fragments costs
        # no per-fragment object.
        self._msg_size += len(piece)
        if len(piece) >= _LARGE_PIECE:
            parts.append(piece)
        elif parts and type(parts[-1]) is bytearray:
            parts[-1] += piece
        else:
            parts.append(bytearray(piece))

    def _inflate_piece(self, piece: bytes, last: bool) -> None:
        """Run a piece of a streamed message through the extensions' decoders, in steps.

        The first decoder (the one that sees the wire's bytes, permessage-deflate) yields at
        most INFLATE_STEP bytes per step (Extension.decode_bounded); each step is delivered
        and counted against the room before the next, and when the room runs out the rest
        waits (_inflating) until set_receive_room gives more. Other decoders see each step
        as a frame of its own, as in _decode_piece.
        """
        if self._frame_first_piece:
            self._frame_first_piece = False
            opcode, rsv = self._frame_opcode, self._frame_rsv
        else:
            opcode, rsv = _CONT, 0
        frame = Frame(opcode, piece, last, bool(rsv & 0x40), bool(rsv & 0x20), bool(rsv & 0x10))
        first = self._decoders[0]
        limit = self._stream_limit
        remaining = None if limit is None else limit - self._msg_size
        try:
            frame = first.decode_bounded(frame, max_size=remaining, max_output=INFLATE_STEP)
            for ext in self._decoders[1:]:
                frame = ext.decode(frame, max_size=remaining)
        except ProtocolError as exc:
            self._violation(exc)
            return
        self._inflate_last = last
        self._inflating = first.decode_pending
        self._emit_piece(frame.payload, last and not self._inflating)
        self._inflate_more()

    def _inflate_more(self) -> None:
        """Go on inflating the current frame while there is room (see _inflate_piece)."""
        first = self._decoders[0] if self._decoders else None
        while self._inflating and not self.receiving_held and not self._discarding:
            assert first is not None
            limit = self._stream_limit
            remaining = None if limit is None else limit - self._msg_size
            try:
                frame = first.decode_continue(max_size=remaining, max_output=INFLATE_STEP)
                for ext in self._decoders[1:]:
                    frame = ext.decode(frame, max_size=remaining)
            except ProtocolError as exc:
                self._violation(exc)
                return
            self._inflating = first.decode_pending
            self._emit_piece(frame.payload, self._inflate_last and not self._inflating)

    def _emit_piece(self, data: bytes, last: bool) -> None:
        """Deliver bytes of a streamed message (decoded) and take them from the room.

        Pieces delivered within one feed are joined into one :class:`MessagePiece` (see
        _flush_pieces): a message in tiny fragments costs one event per feed, not one per
        fragment. The last piece ends the message and uses one message of the room.
        """
        size = len(data)
        text = self._msg_text
        if size:
            self._msg_size += size
            limit = self._stream_limit
            if limit is not None and self._msg_size > limit:
                self._violation(PayloadTooBig(f"message exceeds the {limit}-byte limit"))
                return
            if text is not None:
                chunk = text.decode(data, last)
                if chunk is None:
                    self._invalid_utf8()
                    return
                if chunk:
                    self._pieces.append(chunk)
            else:
                self._pieces.append(data)
            self._pieces_size += size
            if self._pieces_size >= _PIECE_MAX and not last:
                self._flush_pieces(False)  # bounded: inflation may produce much per feed
        elif last and text is not None and text.decode(b"", True) is None:
            self._invalid_utf8()  # the message ends in the middle of a character
            return
        self._room_bytes -= size
        if last:
            self._room_messages -= 1
            self._flush_pieces(True)
            self._reset_message()
        if self._room_messages <= 0 or self._room_bytes <= 0:
            self.receiving_held = True

    def _flush_pieces(self, last: bool) -> None:
        """Deliver what was decoded of the streamed message as one :class:`MessagePiece`.

        Called at the end of each feed, before any other event (so events stay in order),
        and with the last piece. A non-final piece is never empty; the last may be.
        """
        parts = self._pieces
        data: str | bytes
        if parts:
            if len(parts) == 1:
                data = parts[0]
            else:
                data = "".join(parts) if self._msg_text is not None else b"".join(parts)  # type: ignore[arg-type]
            self._pieces = []
            self._pieces_size = 0
        elif last:
            data = "" if self._msg_text is not None else b""
        else:
            return
        self._events.append(MessagePiece(data, last))

    def _decode_piece(self, piece: bytes, last: bool) -> bytes | None:
        """Run a piece through the extensions' decoders; None after a violation.

        Each piece goes through them as a frame of its own: the first piece of a frame
        carries the frame's opcode and RSV bits, later pieces are continuations, and only
        the last piece of the message has FIN set. Their output is bounded by what is left
        of max_message_size, so that a decompression bomb stops at the limit.
        """
        if self._frame_first_piece:
            opcode, rsv = self._frame_opcode, self._frame_rsv
        else:
            opcode, rsv = _CONT, 0
        frame = Frame(opcode, piece, last, bool(rsv & 0x40), bool(rsv & 0x20), bool(rsv & 0x10))
        limit = self.max_message_size
        remaining = None if limit is None else limit - self._msg_size
        try:
            for ext in self._decoders:
                frame = ext.decode(frame, max_size=remaining)
        except ProtocolError as exc:
            self._violation(exc)
            return None
        if remaining is not None and len(frame.payload) > remaining:
            self._violation(PayloadTooBig(f"message exceeds the {limit}-byte limit"))
            return None
        return frame.payload

    def _deliver_message(self, opcode: int, payload: bytes) -> None:
        """Deliver a complete data message and take it from the room.

        Text is decoded here, which validates what piecewise validation has not seen (all
        of a message taken by the fast path, the last piece of others). Once the room is
        used up, ``receiving_held`` tells the caller to stop parsing after this message.
        """
        if opcode == _TEXT:
            try:
                self._events.append(payload.decode())
            except UnicodeDecodeError:
                self._invalid_utf8()
                return
        else:
            self._events.append(payload)
        self._room_messages -= 1
        self._room_bytes -= len(payload)
        if self._room_messages <= 0 or self._room_bytes <= 0:
            self.receiving_held = True

    def _reset_message(self) -> None:
        """Forget the data message being received: delivered, or dropped (drop mode)."""
        if self._msg_parts:
            self._msg_parts = []
        self._msg_size = 0
        self._msg_opcode = -1
        self._msg_utf8 = None
        self._direct_buffer = self._direct_view = None
        if self._msg_streamed:
            self._msg_streamed = False
            self._msg_text = None
            self._inflating = False
            if self._pieces:
                self._pieces = []
                self._pieces_size = 0

    def _invalid_utf8(self) -> None:
        """A text message is not UTF-8: fail with 1007 (RFC 6455 8.1)."""
        self._violation(ProtocolError("invalid UTF-8 in text message", 1007))

    def _decode_control(self, frame: Frame) -> None:
        """Run a control frame with RSV bits through the extensions (they reject it)."""
        for ext in self._decoders:
            frame = ext.decode(frame, max_size=None)
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            raise ProtocolError("reserved bits set on a control frame")

    def _close_frame(self, payload: bytes) -> None:
        """Handle a received Close frame."""
        try:
            close = Close.parse(payload)
        except ProtocolError as exc:
            # A bad Close is a violation like any other: it is not a Close we may answer
            # (RFC 6455 7.1.7), and close_rcvd stays None.
            self._violation(exc)
            return
        if self._pieces:
            self._flush_pieces(False)  # what arrived of a streamed message is delivered
        self._record_close_rcvd(close)
        self._stop_receiving()
        self.terminal_pending = self.close_sent is None
        self._events.append(CloseReceived(close))

    def _record_close_rcvd(self, close: Close) -> None:
        self.close_rcvd = close
        if self.close_sent is None:
            self.close_rcvd_then_sent = True
            self.state = State.CLOSING
        else:
            self.state = State.CLOSED
            self._end_tcp()

    def _stop_receiving(self) -> None:
        """Enter drop mode: after a terminal event nothing more of the peer is processed."""
        self._discarding = True
        self.receiving_held = False
        self._buf = b""
        if self._eof_held:
            # The stream ended after the held input that held this terminal event.
            self._eof_held = False
            self.receive_eof()
        self._frame_left = 0
        self._reset_message()  # a message cut short is dropped

    def _violation(self, error: ProtocolError) -> None:
        """Stop parsing; report the violation after the events that preceded it.

        An error caught from a parser arrives with a traceback, whose frames hold the data
        being parsed (maybe the caller's reusable buffer): it is dropped, as the error is
        the peer's, not ours.
        """
        _drop_tracebacks(error)
        if self._pieces:
            self._flush_pieces(False)  # the valid part of a streamed message is delivered
        self._stop_receiving()
        self.failure = error
        self.terminal_pending = True
        self._events.append(ProtocolViolation(error))

    # ------------------------------------------------------------------ sending

    def _next_mask(self) -> bytes:
        pos = self._mask_pos
        if pos >= len(self._mask_pool):
            self._mask_pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._mask_pos = pos + 4
        return self._mask_pool[pos : pos + 4]

    def _frame_bytes(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
        if self._is_client:
            return serialize_frame(opcode, payload, fin=fin, rsv=rsv, mask=self._next_mask())
        return serialize_frame(opcode, payload, fin=fin, rsv=rsv)

    def _check_can_send(self) -> None:
        if self.close_sent is not None or self.state is State.CLOSED:
            raise InvalidState(f"cannot send: connection is {self.state.name}")

    def _send_data(self, opcode: int, payload: bytes, fin: bool, compress: bool) -> None:
        n = len(payload)
        if n < 126 and not self._is_client and not (self.extensions and compress):
            # The most frequent frame: a small unmasked one, its 2-byte header built inline.
            self._out.append(bytes(((0x80 if fin else 0) | opcode, n)) + payload)
            return
        rsv = 0
        if self.extensions and compress:
            frame = Frame(opcode, payload, fin)
            for ext in self.extensions:
                frame = ext.encode(frame)
            rsv = (frame.rsv1 and 0x40) | (frame.rsv2 and 0x20) | (frame.rsv3 and 0x10)
            opcode, payload, fin = frame.opcode, frame.payload, frame.fin
        if len(payload) >= _SEPARATE_PAYLOAD and not self._is_client:
            # Header and payload as two items: no copy of a large payload to prepend 2-10
            # bytes (the I/O layer writes them with one gathering write where it can).
            self._out.append(frames.frame_header(opcode, len(payload), fin=fin, rsv=rsv))
            self._out.append(payload)
        else:
            self._out.append(self._frame_bytes(opcode, payload, fin, rsv))

    def send_text(self, data: str | bytes, *, compress: bool = True) -> None:
        """Queue a text message (``bytes`` must already be UTF-8)."""
        self._check_can_send()
        if self._sending_fragmented:
            raise InvalidState("cannot send a message while a fragmented message is in progress")
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._send_data(_TEXT, payload, True, compress)

    def send_binary(self, data: bytes | bytearray | memoryview, *, compress: bool = True) -> None:
        """Queue a binary message."""
        self._check_can_send()
        if self._sending_fragmented:
            raise InvalidState("cannot send a message while a fragmented message is in progress")
        self._send_data(_BINARY, data if type(data) is bytes else bytes(data), True, compress)

    @property
    def output_pending(self) -> bool:
        """Whether bytes wait in :meth:`data_to_send` (an I/O layer that writes a frame
        itself, bypassing the queue, must only do so when none do: order matters)."""
        return bool(self._out)

    def send_frame(self, frame: bytes) -> None:
        """Queue a data message framed elsewhere, whole: the bytes of a frame that
        :class:`~websock.protocol.broadcast.SharedFrames` built for this connection's wire
        form (the same bytes object goes to many connections; nothing is copied here).

        Raises :class:`InvalidState` when the connection cannot send, or while a fragmented
        message is in progress (another message cannot interrupt it).
        """
        self._check_can_send()
        if self._sending_fragmented:
            raise InvalidState("cannot send a message while a fragmented message is in progress")
        self._out.append(frame)

    def send_data(
        self,
        data: str | bytes | bytearray | memoryview,
        *,
        text: bool,
        compress: bool = True,
    ) -> None:
        """Queue a message whose frame type is chosen by ``text``, not by the type of
        ``data``: str sent as binary is encoded to UTF-8; bytes sent as text must already be
        UTF-8 (not checked: pre-encoded JSON from orjson or msgspec, say)."""
        if text:
            self.send_text(data if isinstance(data, str) else bytes(data), compress=compress)
        else:
            self.send_binary(data.encode() if isinstance(data, str) else data, compress=compress)

    def send_fragment(
        self,
        data: bytes,
        *,
        text: bool = False,
        fin: bool = False,
        compress: bool = True,
    ) -> None:
        """Queue one fragment of a message sent in pieces.

        The first call starts the message (``text`` picks its type and ``compress`` whether
        it is compressed); later calls continue it; the call with ``fin=True`` ends it.
        Control frames (ping, pong, close) may be sent between fragments.
        """
        self._check_can_send()
        if self._sending_fragmented:
            opcode = _CONT
            compress = self._send_fragment_encoded
        else:
            opcode = _TEXT if text else _BINARY
            self._send_fragment_encoded = compress
        self._sending_fragmented = not fin
        self._send_data(opcode, bytes(data), fin, compress)

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a Ping (payload at most 125 bytes).

        The Pong answering it lists ``payload`` in :attr:`Pong.acknowledged`. An I/O layer
        that waits for that Pong should not send a second Ping with the same payload while
        the first waits (:meth:`ping_outstanding`): the answers could not be told apart.
        """
        payload = bytes(payload)
        self._send_control(_PING, payload)
        self._pings_sent.append(payload)

    def ping_outstanding(self, payload: bytes) -> bool:
        """Whether a Ping with ``payload`` was sent and its Pong has not arrived."""
        return payload in self._pings_sent

    @property
    def input_over(self) -> bool:
        """True once no data message can come any more: the peer's Close or a violation was
        parsed, :meth:`fail` was called, or the stream ended without a closing handshake.

        From then on the core drops what the peer sends (drop mode). While input is held
        for lack of room (:attr:`receiving_held`) it is still False: held messages follow.
        """
        return self._discarding

    @property
    def fragment_in_progress(self) -> bool:
        """True between the first and the last :meth:`send_fragment` of a message."""
        return self._sending_fragmented

    def send_pong(self, payload: bytes = b"") -> None:
        """Queue an unsolicited Pong (payload at most 125 bytes)."""
        self._send_control(_PONG, payload)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        self._check_can_send()
        if len(payload) > 125:
            raise ValueError(f"control frame payload is {len(payload)} bytes; at most 125 fit")
        self._out.append(self._frame_bytes(opcode, bytes(payload)))

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (or answer the peer's Close) with ``code``/``reason``.

        Raise ValueError for a code that may not be sent or a reason over 123 bytes.
        """
        self._check_can_send()
        if code == CloseCode.NO_STATUS_RCVD:
            # Close.serialize() maps 1005 to an empty payload (it round-trips a received
            # empty Close); a caller passing 1005 asked to send a reserved code.
            raise ValueError(
                "close code 1005 may not be sent: use 1000-1003, 1007-1014 or 3000-4999"
            )
        close = Close(code, reason)
        payload = close.serialize()  # validates code and reason
        if self._pong_held is not None:
            # A coalesced Pong still owed: nothing may follow our Close.
            self._out.append(self._frame_bytes(_PONG, self._pong_held))
            self._pong_held = None
        self._out.append(self._frame_bytes(_CLOSE, payload))
        self.close_sent = close
        self.terminal_pending = False  # our Close answers (or overrides) what was pending
        if self.close_rcvd is None:
            self.close_rcvd_then_sent = False
            self.state = State.CLOSING
            # Whatever arrives now is delivered until the peer's Close.
        else:
            self.state = State.CLOSED
            self._end_tcp()

    def messages_consumed(self) -> None:
        """The application has consumed every message delivered before the terminal event.

        The I/O layer calls this when its receive queue is empty after a
        :class:`CloseReceived` or :class:`ProtocolViolation` event (at once if the queue
        was empty then), and also when it stops waiting for the application: the peer's
        EOF, a local close(), a timeout. The core then answers: a received Close with a
        Close echoing its code (1000 if it carried none); a violation by failing the
        connection with its close code and message. Does nothing when no terminal event is
        pending, so it may be called whenever the queue runs dry.

        This keeps the strict order of Autobahn's cases deterministic: every valid message
        that preceded a bad frame (and the application's reply to it) goes out before our
        Close, however the bytes were segmented.
        """
        if not self.terminal_pending:
            return
        self.terminal_pending = False
        error = self.failure
        if error is not None:
            self.fail(error.close_code, str(error))
        else:
            self.reply_to_close()

    def close_exception(self, cause: BaseException | None = None) -> ConnectionClosed:
        """The exception that tells the application how the connection ended.

        :class:`ConnectionClosedOK` after a closing handshake where both Close frames carry
        1000, 1001 or no code; :class:`ConnectionClosedError` otherwise (a violation, an
        error code, a missing Close: 1006). It carries both Close frames and who started.
        Its ``__cause__`` is the violation that failed the connection, else ``cause`` (the
        I/O layer's reason, e.g. the socket error that ended TCP).
        """
        rcvd, sent = self.close_rcvd, self.close_sent
        ok = (
            rcvd is not None
            and sent is not None
            and rcvd.code in _OK_CODES
            and sent.code in _OK_CODES
        )
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        exc = cls(rcvd, sent, self.close_rcvd_then_sent)
        if self.failure is not None:
            exc.__cause__ = self.failure
        elif cause is not None:
            exc.__cause__ = cause
        return exc

    def reply_to_close(self) -> None:
        """Answer the Close received: echo its code, or 1000 if it carried none.

        Prefer :meth:`messages_consumed`, which answers whichever terminal event arrived.
        """
        rcvd = self.close_rcvd
        if rcvd is None:
            raise InvalidState("reply_to_close() called before a Close was received")
        self.terminal_pending = False
        if self.close_sent is not None or self._eof:
            return
        code = rcvd.code
        if code == CloseCode.NO_STATUS_RCVD:
            code = CloseCode.NORMAL_CLOSURE
        self.send_close(code)

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 7.1.7): Close with ``code`` unless one was sent.

        Used for peer errors (1002, 1007, 1009), policy (1008) and internal errors (1011).
        Nothing more from the peer is processed, not even its Close. A server ends TCP at
        once (``b""`` follows the Close in :meth:`data_to_send`); a client waits for the
        server to end it.
        """
        self.terminal_pending = False
        self._stop_receiving()
        if self.close_sent is None and self.state is not State.CLOSED:
            encoded = reason.encode()
            if len(encoded) > 123:
                reason = encoded[:123].decode(errors="ignore")
            self.send_close(code, reason)
        if not self._is_client and not self._eof:
            self.state = State.CLOSED
            self._end_tcp()

    def _end_tcp(self) -> None:
        # RFC 6455 7.1.1: the server closes TCP first once the closing handshake is done
        # (or the connection failed: 7.1.7).
        if not self._is_client and not self._tcp_end_queued:
            self._tcp_end_queued = True
            self._out.append(b"")

    def pause_writing(self) -> None:
        """The I/O layer's write buffer went above its high-water mark.

        Until :meth:`resume_writing`, the Pongs that answer the peer's Pings are coalesced:
        only the most recent Ping is answered (RFC 6455 5.5.3 allows it), when writing
        resumes. So a peer that sends Pings and never reads costs one pending Pong, not a
        write buffer that grows with every Ping.
        """
        self._writing_paused = True

    def resume_writing(self) -> None:
        """The write buffer went below its low-water mark: send the Pong still owed, if any."""
        self._writing_paused = False
        payload = self._pong_held
        if payload is not None:
            self._pong_held = None
            if self.close_sent is None and not self._eof:
                self._out.append(self._frame_bytes(_PONG, payload))

    def data_to_send(self) -> list[bytes]:
        """Return (and forget) the bytes to write; ``b""`` means close the TCP connection."""
        out = self._out
        if out:
            self._out = []
        return out

    def close_expected(self) -> bool:
        """True once the protocol expects TCP to end soon: a Close was sent, or the stream ended.

        Between a :class:`ProtocolViolation` event and :meth:`fail` it is still False: the
        I/O layer decides when to fail (after delivering the messages that came first).
        """
        return self.close_sent is not None or self.state is State.CLOSED


def as_requested(message: str | bytes, decode: bool | None) -> str | bytes:
    """A received message as the application asked for it (``recv(decode=...)``): None
    keeps its type (str for text, bytes for binary); True decodes binary as UTF-8 (raising
    UnicodeDecodeError if it is not); False returns text as its UTF-8 bytes."""
    if decode is None:
        return message
    if decode:
        return message if isinstance(message, str) else message.decode()
    return message.encode() if isinstance(message, str) else message


class PieceDecoder:
    """The pieces of one message as the application asked for them
    (``recv_streaming(decode=...)``), like :func:`as_requested` for whole messages.

    None keeps their type; True decodes binary pieces as UTF-8 (incrementally: a character
    split between pieces comes whole in the later one; UnicodeDecodeError if the message is
    not UTF-8); False encodes text pieces to UTF-8. Use one per message.
    """

    __slots__ = ("_decode", "_utf8")

    def __init__(self, decode: bool | None) -> None:
        self._decode = decode
        self._utf8: codecs.IncrementalDecoder | None = None

    def convert(self, data: str | bytes, last: bool) -> str | bytes:
        """Convert the next piece of the message (``last``: its final piece)."""
        decode = self._decode
        if decode is None:
            return data
        if decode:
            if isinstance(data, str):
                return data
            utf8 = self._utf8
            if utf8 is None:
                utf8 = self._utf8 = _IncrementalUtf8("strict")
            return utf8.decode(data, last)
        return data.encode() if isinstance(data, str) else data


_IncrementalUtf8 = codecs.getincrementaldecoder("utf-8")


class _Utf8Decoder:
    """Decode a streamed text message piece by piece, failing fast (as Utf8Validator).

    CPython's incremental decoder keeps an incomplete trailing sequence without checking
    that it can still become valid (``b"\\xed\\xa0"`` waits for more): the pending tail
    is checked by a Utf8Validator, which does (at most 3 bytes, only when a piece ends in
    the middle of a character).
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _IncrementalUtf8("strict")

    def decode(self, data: bytes, final: bool) -> str | None:
        """The text of ``data``, or None as soon as the message cannot be valid UTF-8."""
        decoder = self._decoder
        try:
            text: str = decoder.decode(data, final)
        except UnicodeDecodeError:
            return None
        if not final:
            pending = decoder.getstate()[0]
            if len(pending) >= 2 and not Utf8Validator().feed(pending):
                return None
        return text
