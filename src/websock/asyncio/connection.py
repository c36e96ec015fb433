"""The asyncio side of one WebSocket connection, shared by server and client.

:class:`Connection` is an :class:`asyncio.Protocol`: the event loop calls
``data_received`` with each chunk read, and the sans-I/O core turns it into messages and
bytes to write. There is no task per connection and none per message: received messages
go into a bounded deque that :meth:`Connection.recv` pops, and ``send`` writes to the
transport at once.

Ordering rules that the conformance suite and real users depend on:

- A Close or a protocol violation received after some messages takes effect when the
  application has consumed those messages (it calls ``recv`` again and finds nothing
  left), or after ``close_timeout`` if it never does. So a message that preceded a bad
  frame is delivered, and its echo is written, before our Close.
- Messages passed to ``send`` are written before any Close frame that follows them.
- Once the closing handshake is over, the server closes TCP at once; the client waits for
  the server to do so and closes TCP itself after ``close_timeout``. Over TLS the server
  waits at most ``TLS_CLOSE_GRACE`` for the peer's close_notify before dropping TCP.
- If the peer's EOF arrives while its Close still waits behind unread messages, the Close
  is answered at once: the transport is about to close, and the outcome (a clean closing
  handshake) must not depend on whether EOF came in the same read.
- Writes are corked while received messages wait unread (see ``_flush``), but never beyond
  the write buffer's high-water mark, so backpressure holds in that case too.

Flow control, so that no peer can make us buffer without bound:

- The receive queue is bounded in messages and in bytes (``max_queue``): the pieces of a
  streamed message (:meth:`Connection.recv_streaming`) count as messages and bytes too, so
  a message streamed through it holds no more than the queue, whatever its size. The core is given
  the queue's free space before each read (``set_receive_room``) and stops parsing when it is
  used up, holding the rest of the read; reading then pauses until the application has
  consumed the queue down to its low-water mark. Compressed messages are therefore inflated
  no faster than they are consumed.
- While the write buffer is above its high-water mark, the core coalesces the Pongs it owes
  (one pending Pong at most), so nothing the core writes on its own can grow the buffer:
  Pongs are bounded by that, Close replies are one frame, and the application's own sends
  wait in ``send()`` (an echo therefore stops consuming, the queue fills, reading pauses).
  Reading is *not* paused merely because the write buffer is full: a peer that writes a
  whole message before it reads our replies (Autobahn's fuzzing server does) would then
  wait for us while we wait for it, a deadlock seen in 12.2.15/12.5.15.
- When the server ends TCP (after the closing handshake, after failing the connection, after
  an HTTP error response) it half-closes: FIN after the bytes still buffered, then it reads
  and drops whatever the peer still sends until the peer's EOF or ``CLOSE_GRACE``. So the
  peer receives our Close (or response) and our FIN, never a reset caused by unread data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Set
from typing import Any, cast

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from ..options import CLOSE_GRACE, DEFAULT_MAX_QUEUE_BYTES, Options
from ..protocol import connection as core
from ..protocol.broadcast import SharedFrames
from ..protocol.close import CloseCode
from ..protocol.extensions.base import Extension
from . import transports
from .waiter import Waiter, can_run_inline

__all__ = ["Connection", "Data", "DEFAULT_MAX_QUEUE_BYTES", "CLOSE_GRACE", "TLS_CLOSE_GRACE"]

Data = str | bytes
_Piece = core.MessagePiece

# Over TLS, asyncio's transport.close() sends close_notify and closes TCP only when the peer
# answers with its own (or after ssl_shutdown_timeout, 30 s). Peers that answer do so within a
# round trip; RFC 5246 7.2.1 does not require waiting for the answer; and once the WebSocket
# closing handshake is over nothing more can be said. So we wait at most this long (and at
# most close_timeout) before dropping TCP, and a peer that ignores close_notify still sees
# the server end TCP promptly, as RFC 6455 7.1.1 asks.
TLS_CLOSE_GRACE = 1.0
# Over plain TCP the server half-closes and then drains what the peer still sends (see the
# module docstring) for at most CLOSE_GRACE, and at most close_timeout. CLOSE_GRACE and
# DEFAULT_MAX_QUEUE_BYTES are defined in websock.options and re-exported from here.


# Received bytes are read into one buffer per event loop (asyncio.BufferedProtocol), not
# into a new bytes object per read: asyncio's default read allocates 256 KiB per call,
# which glibc serves with mmap/munmap (its threshold is 128 KiB), so every small message
# paid two system calls and page faults. One buffer per loop suffices because a read is
# handled completely, synchronously, before the loop reads again, and the core keeps no
# reference to it; per loop, not per process, because loops in other threads run
# concurrently. Reads of up to this size are copied out at once; larger ones are parsed
# from the buffer in place.
RECEIVE_BUFFER_SIZE = 256 * 1024
_COPY_READS_UP_TO = 4096
_receive_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


def _receive_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    buffer = _receive_buffers.get(loop)
    if buffer is None:
        buffer = _receive_buffers[loop] = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
    return buffer


# Before Python 3.12, asyncio's writelines() joins its arguments (a copy of every payload);
# from 3.12 it hands them to one sendmsg() call. uvloop never copies.
_WRITELINES_JOINS = sys.version_info < (3, 12)
# Chunks at least this large are written on their own rather than copied into a join.
_LARGE_WRITE = 262144


_OPEN = core.State.OPEN

# What Connection._broadcast did with a message.
BROADCAST_SENT = 0
BROADCAST_SLOW = 1
BROADCAST_SKIPPED = 2


def _write_chunks(transport: asyncio.Transport, out: list[bytes]) -> None:
    """Write ``out`` in order, copying no large chunk where writelines() would."""
    if len(out) == 1:
        transport.write(out[0])
        return
    if not _WRITELINES_JOINS:
        transport.writelines(out)
        return
    # Runs of small chunks joined, large chunks written as they are.
    small: list[bytes] = []
    for chunk in out:
        if len(chunk) >= _LARGE_WRITE:
            if small:
                transport.write(small[0] if len(small) == 1 else b"".join(small))
                small = []
            transport.write(chunk)
        else:
            small.append(chunk)
    if small:
        transport.write(small[0] if len(small) == 1 else b"".join(small))


def _tls_pending(transport: asyncio.Transport) -> bool:
    """True while a TLS transport still has bytes to hand to the kernel.

    The TLS transport's own count misses what it already passed to the TCP transport below
    it; that one is reached through a private attribute (CPython 3.10-3.14), when present.
    """
    if transport.get_write_buffer_size():
        return True
    below = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    return below is not None and bool(below.get_write_buffer_size())


class Connection(asyncio.BufferedProtocol):
    """State and API common to :class:`~websock.ServerConnection` and
    :class:`~websock.ClientConnection`."""

    # Slots keep an idle connection small (a 40-attribute __dict__ costs ~1.5 KiB);
    # "__dict__" still lets applications attach their own attributes to a connection.
    __slots__ = (
        "_close_timer",
        "_corked",
        "_data_seen",
        "_draining",
        "_drop_overflow",
        "_drain_waiters",
        "_flush_handle",
        "_keepalive_payload",
        "_keepalive_sent_at",
        "_latency",
        "_keepalive_timer",
        "_lost",
        "_lost_exc",
        "_messages",
        "_pings",
        "_queue_low",
        "_queue_low_bytes",
        "_queue_max",
        "_queue_max_bytes",
        "_queued_bytes",
        "_read_buffer",
        "_reading_direct",
        "_reading_paused",
        "_recv_waiter",
        "_resume_handle",
        "_role",
        "_send_in_progress",
        "_stream_discard",
        "_stream_drop",
        "_stream_task",
        "_stream_token",
        "_streaming",
        "_terminal_timer",
        "_tls",
        "_write_high",
        "_write_low",
        "_write_paused",
        "connection_lost_waiter",
        "extensions",
        "logger",
        "loop",
        "options",
        "protocol",
        "subprotocol",
        "transport",
        "__dict__",
        "__weakref__",
    )

    def __init__(
        self,
        role: core.Role,
        options: Options,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self._role = role
        #: The settings of this connection (see :class:`~websock.options.Options`), as given
        #: to :func:`serve` or :func:`connect`.
        self.options = options
        self.logger = logger
        # Derived from options once: read on every read and write (the hot path), where a
        # property of Options would cost a call each time.
        queue_messages, queue_bytes = options.queue_bounds
        self._queue_max = queue_messages
        self._queue_low = None if queue_messages is None else max(1, queue_messages // 4)
        self._queue_max_bytes = queue_bytes
        self._queue_low_bytes = None if queue_bytes is None else queue_bytes // 4
        self._queued_bytes = 0
        self._write_high, self._write_low = options.write_marks

        self.loop = asyncio.get_running_loop()
        self._read_buffer = _receive_buffer(self.loop)
        self.transport: asyncio.Transport | None = None
        #: The sans-I/O core; None until the opening handshake succeeds.
        self.protocol: core.Connection | None = None
        #: The negotiated subprotocol, if any.
        self.subprotocol: str | None = None
        #: The negotiated extensions.
        self.extensions: list[Extension] = []

        # Created on the first event: an empty deque costs ~600 bytes per idle connection.
        self._messages: deque[Data | core.MessagePiece] | None = None
        # Streaming (recv_streaming): whether the core streams messages; the iteration in
        # the middle of a message (a token, and its task); whether the rest of a message
        # left unfinished is to be dropped; whether close() dropped a piece of the message
        # arriving (so its other pieces are dropped too).
        self._streaming = False
        self._stream_token: object | None = None
        self._stream_task: asyncio.Task[Any] | None = None
        self._stream_discard = False
        self._stream_drop = False
        self._recv_waiter: Waiter | None = None
        self._resume_handle: asyncio.Handle | None = None
        self._reading_paused = False  # by the receive queue (or input the core holds)
        self._draining = False  # TCP half-closed by us: input is dropped until EOF
        self._drop_overflow = False  # close() called: messages beyond a full queue are dropped
        self._data_seen = False  # bytes arrived since the last keepalive ping
        self._reading_direct = False  # get_buffer() returned the core's receive_buffer()
        # Bounds the wait for the application to consume the messages that precede the
        # peer's Close or violation (see _dispatch).
        self._terminal_timer: asyncio.TimerHandle | None = None
        # The core will deliver no more messages: it reported the peer's Close or a violation
        # (it drops all input after those), or we failed the connection (keepalive timeout,
        # internal error). recv() raises once the queue is empty.
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._send_in_progress: asyncio.Future[None] | None = None
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._keepalive_payload: bytes | None = None
        self._keepalive_sent_at = 0.0
        self._latency = 0.0
        self._close_timer: asyncio.TimerHandle | None = None
        self._tls = False
        self._flush_handle: asyncio.Handle | None = None
        self._corked = 0  # bytes queued in the core while writes are corked (see _flush)
        self._lost = False
        self._lost_exc: BaseException | None = None
        #: Done when the TCP connection is closed.
        self.connection_lost_waiter: asyncio.Future[None] = self.loop.create_future()

    # ------------------------------------------------------------------ properties

    @property
    def latency(self) -> float:
        """The last round-trip time measured by a Ping (keepalive or :meth:`ping`), in
        seconds; 0.0 until one was answered."""
        return self._latency

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (``(host, port)`` for IPv4)."""
        if self.transport is None:
            return None
        return self.transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """Our address, as the socket reports it."""
        if self.transport is None:
            return None
        return self.transport.get_extra_info("sockname")

    @property
    def state(self) -> core.State | None:
        """OPEN, CLOSING or CLOSED; None before the opening handshake completes."""
        if self.protocol is None:
            return None
        if self._lost:
            return core.State.CLOSED
        return self.protocol.state

    @property
    def close_code(self) -> int | None:
        """The close code received (or 1006 once closed abnormally); None while open."""
        if self.protocol is None or not self._lost and self.protocol.state is core.State.OPEN:
            return None
        rcvd = self.protocol.close_rcvd
        if rcvd is not None:
            return rcvd.code
        return CloseCode.ABNORMAL_CLOSURE if self._lost else None

    @property
    def close_reason(self) -> str | None:
        """The close reason received; None while open or if no Close arrived."""
        if self.protocol is None or self.protocol.close_rcvd is None:
            return None
        return self.protocol.close_rcvd.reason

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement the interface without
        # inheriting from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self._tls = transport.get_extra_info("ssl_object") is not None
        self.transport.set_write_buffer_limits(high=self._write_high, low=self._write_low)

    def _open(self, extensions: list[Extension], trailing: bytes) -> None:
        """Start the WebSocket phase once the opening handshake succeeded."""
        self.extensions = extensions
        options = self.options
        self.protocol = core.Connection(
            self._role,
            extensions=extensions,
            max_message_size=options.max_message_size,
            max_frame_size=options.max_frame_size,
            max_fragments=options.max_fragments,
            max_streaming_size=options.max_streaming_size,
        )
        if options.streaming:  # every message in pieces from the first (Options.streaming)
            self.protocol.set_streaming(True)
            self._streaming = True
        if self._write_paused:
            self.protocol.pause_writing()
        self._schedule_keepalive()
        if trailing:
            self._receive(trailing)

    def get_buffer(self, sizehint: int) -> memoryview:
        protocol = self.protocol
        if protocol is not None:
            # The rest of a large message goes straight into its own bytes object.
            direct = protocol.receive_buffer()
            if direct is not None:
                self._reading_direct = True
                return direct
        # Reset here, not only in buffer_updated(): transports may ask for a buffer and
        # then read nothing (a partial TLS record, EAGAIN).
        self._reading_direct = False
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._draining:
            return  # TCP is ending: drop what the peer still sends
        protocol = self.protocol
        if protocol is None:
            # The opening handshake keeps what it reads: it gets a copy.
            self.data_received(self._read_buffer[:nbytes].tobytes())
            return
        self._data_seen = True
        try:
            if self._messages or self._drop_overflow:
                self._set_room(protocol)
            else:  # the common case, inlined: an empty queue has all its room
                protocol.set_receive_room(self._queue_max, self._queue_max_bytes)
            if self._reading_direct:
                self._reading_direct = False
                protocol.buffer_received(nbytes)
            elif nbytes > _COPY_READS_UP_TO:
                protocol.receive_data(self._read_buffer[:nbytes])
            else:
                protocol.receive_data(self._read_buffer[:nbytes].tobytes())
            self._process_events(protocol)
        except Exception as exc:
            self._internal_error(exc)

    def data_received(self, data: bytes) -> None:
        """Bytes read from the network (called by :meth:`buffer_updated`)."""
        if self._draining:
            return
        self._receive(data)

    def _receive(self, data: bytes | memoryview) -> None:
        protocol = self.protocol
        assert protocol is not None
        self._data_seen = True
        try:
            self._set_room(protocol)
            protocol.receive_data(data)
            self._process_events(protocol)
        except Exception as exc:
            self._internal_error(exc)

    def _set_room(self, protocol: core.Connection) -> None:
        """Tell the core how much the receive queue can still take (see set_receive_room)."""
        messages = self._messages
        queued = len(messages) if messages else 0
        max_queue = self._queue_max
        max_bytes = self._queue_max_bytes
        room = None if max_queue is None else max_queue - queued
        room_bytes = None if max_bytes is None else max_bytes - self._queued_bytes
        if self._drop_overflow:
            # A queue's worth at a time: what does not fit is dropped (see close()).
            room = None if room is None else max(room, max_queue or 1)
            room_bytes = None if room_bytes is None else max(room_bytes, max_bytes or 1)
        protocol.set_receive_room(room, room_bytes)

    def _process_events(self, protocol: core.Connection) -> None:
        events = protocol.events_received()
        if events:
            self._dispatch(events)
        if protocol.receiving_held:
            # The queue is full and the core keeps the rest of the input: stop reading
            # until the application catches up (recv() gives room again). Applied even if
            # the flag was set already: someone else may have resumed the transport.
            self._reading_paused = True
            self._apply_reading()
            if self._queue_has_room():
                # The application consumed messages meanwhile (or close() drops the
                # overflow): go on, but in a callback of its own (see _schedule_resume).
                self._schedule_resume()
        self._flush()

    def _schedule_resume(self) -> None:
        """Parse held input at the next loop iteration rather than now.

        Held input can be a whole read of compressed messages (~260 x 1 MB in 256 KiB):
        parsing it batch after batch in one callback, while the application consumes each
        batch inline, would hold the event loop for seconds and starve every other
        connection. One batch (a queue's worth) per loop iteration keeps them served.
        """
        if self._resume_handle is None:
            self._resume_handle = self.loop.call_soon(self._resume_receiving)

    def _queue_has_room(self) -> bool:
        """Whether held input may be parsed now: the queue is not full, or close() drops
        what does not fit."""
        return self._drop_overflow or self._queue_not_full()

    def _queue_not_full(self) -> bool:
        messages = self._messages
        n = 0 if messages is None else len(messages)
        max_queue = self._queue_max
        return (max_queue is None or n < max_queue) and (
            self._queue_max_bytes is None or self._queued_bytes < self._queue_max_bytes
        )

    def _queue_below_low(self) -> bool:
        messages = self._messages
        n = 0 if messages is None else len(messages)
        return (self._queue_low is None or n <= self._queue_low) and (
            self._queue_low_bytes is None or self._queued_bytes <= self._queue_low_bytes
        )

    def _resume_receiving(self) -> None:
        """The queue drained to its low-water mark: parse held input, then read again."""
        handle = self._resume_handle
        if handle is not None:
            handle.cancel()
            self._resume_handle = None
        self._reading_paused = False
        protocol = self.protocol
        if protocol is not None and protocol.receiving_held:
            try:
                self._set_room(protocol)
                self._process_events(protocol)  # may pause again
            except Exception as exc:
                self._internal_error(exc)
        self._apply_reading()
        self._wake_reader()  # recv() re-checks (events may have been none: EOF, say)

    def _internal_error(self, exc: Exception) -> None:
        """A bug in websock (an unexpected exception while handling input): Close 1011.

        The details go to the log, not on the wire. The core may be in an inconsistent
        state, so if even failing raises, the transport is dropped.
        """
        self.logger.error("internal error while processing input: closing with 1011", exc_info=exc)
        protocol = self.protocol
        try:
            assert protocol is not None
            protocol.fail(CloseCode.INTERNAL_ERROR)
            self._read_after_terminal()
            self._flush_now()
        except Exception:
            self._abort_transport()
        self._start_close_timer()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        if self.protocol is not None and not self._draining:
            if self.protocol.terminal_pending:
                # The peer's Close (or violation) waits behind unread messages, but the
                # transport closes now: answer it while we still can, so that the
                # outcome does not depend on whether EOF came in the same read.
                self._act_on_terminal()
            # The transport closes when we return: write what is corked (see _flush).
            self._flush_now()
            self.protocol.receive_eof()
            self._dispatch(self.protocol.events_received())
        # Returning None closes our side too: nothing more can be said after the peer's EOF
        # (a Close frame must precede EOF anyway).
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._lost_exc = exc
        if self.protocol is not None:
            self.protocol.receive_eof()
        for handle in (
            self._close_timer,
            self._keepalive_timer,
            self._terminal_timer,
            self._flush_handle,
        ):
            if handle is not None:
                handle.cancel()
        self._wake_reader()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if self._pings:
            closed = self._closed_exception()
            for fut, _ in self._pings.values():
                if not fut.done():
                    fut.set_exception(closed)
                    fut.exception()  # nobody may await this ping: don't log it as unretrieved
            self._pings.clear()
        if not self.connection_lost_waiter.done():
            self.connection_lost_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.protocol is not None:
            self.protocol.pause_writing()  # coalesce the Pongs we owe (module docstring)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.protocol is not None:
            self.protocol.resume_writing()
            self._flush_now()  # the Pong still owed, if any
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _apply_reading(self) -> None:
        """Pause or resume the transport's reading as the receive queue says."""
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            return
        if self._reading_paused and not self._draining:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transports.resume_reading(transport)

    # ------------------------------------------------------------------ events

    def _dispatch(self, events: list[core.Event]) -> None:
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        drop_overflow = self._drop_overflow
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                if drop_overflow and not self._queue_not_full():
                    continue  # close() was called and the queue is full (see close())
                messages.append(event)  # type: ignore[arg-type]
                self._queued_bytes += len(event)  # type: ignore[arg-type]
            elif kind is _Piece:
                if drop_overflow and (self._stream_drop or not self._queue_not_full()):
                    # As for messages (see close()), but a message cut is dropped whole.
                    self._stream_drop = not event.last  # type: ignore[union-attr]
                    continue
                messages.append(event)  # type: ignore[arg-type]
                self._queued_bytes += len(event.data)  # type: ignore[union-attr]
            elif kind is core.Pong:
                self._pong_received(event)  # type: ignore[arg-type]
            elif kind is core.Ping:
                pass  # the core already queued the Pong
            else:
                # The peer's Close or a violation (the last event: the core drops what
                # follows). The core answers it once the application has consumed the
                # messages that came first (module docstring): now if there are none,
                # else when recv() finds the queue empty, or after close_timeout.
                assert isinstance(event, (core.CloseReceived, core.ProtocolViolation))
                close_timeout = self.options.close_timeout
                if not messages:
                    self._act_on_terminal()
                elif close_timeout is not None and self._terminal_timer is None:
                    protocol = self.protocol
                    if protocol is not None and protocol.terminal_pending:
                        self._terminal_timer = self.loop.call_later(
                            close_timeout, self._act_on_terminal
                        )
        if messages:
            # Called from a protocol callback: resume a task waiting in recv() at once, so
            # that its answer is written in this loop iteration (see waiter.py).
            self._wake_reader(inline=True)

    def _act_on_terminal(self) -> None:
        """The messages before the peer's Close or violation are consumed, or we stop
        waiting for the application: the core answers (``messages_consumed``) by echoing the
        Close or failing with the violation's code. Then TCP's end is awaited."""
        timer = self._terminal_timer
        if timer is not None:
            timer.cancel()
            self._terminal_timer = None
        protocol = self.protocol
        assert protocol is not None
        if protocol.terminal_pending:
            error = protocol.failure
            if error is not None:
                self.logger.info("failing connection with %d: %s", error.close_code, error)
            protocol.messages_consumed()
        self._read_after_terminal()
        self._flush()
        self._start_close_timer()
        self._wake_reader()

    def _read_after_terminal(self) -> None:
        """The core drops input now: read on (paused by a full queue or not), so that the
        peer's EOF is seen (client) and nothing unread is left when TCP closes."""
        if self._reading_paused:
            self._reading_paused = False
            self._apply_reading()

    def _wake_reader(self, inline: bool = False) -> None:
        waiter = self._recv_waiter
        if waiter is not None:
            waiter.wake(inline and can_run_inline(self.loop))

    # ------------------------------------------------------------------ writing

    def _write(self, out: list[bytes]) -> None:
        transport = self.transport
        if transport is None or self._lost or self._draining:
            # After our FIN (draining) nothing more may be written. (After a reset, send()
            # raises before writing: see _transport_gone.)
            return
        for i, chunk in enumerate(out):
            if not chunk:
                # End of the closing handshake on the server: write what precedes, close TCP.
                if i:
                    _write_chunks(transport, out[:i])
                # After a complete closing handshake the peer has nothing more to send:
                # close at once. After failing, it may still be sending: half-close, drain.
                protocol = self.protocol
                self._close_tcp(drain=protocol is None or protocol.close_rcvd is None)
                return
        _write_chunks(transport, out)

    def _flush(self, size: int = 0) -> None:
        """Write what the core has queued, coalescing writes while more input is pending.

        While received messages wait in the queue, the application is likely to answer
        them in the same step (an echo, a request/response protocol): writing now would
        cost one system call per message. So we cork: the bytes stay in the core's queue
        and go out in one write when the queue runs dry, or at the next loop iteration at
        the latest. With nothing pending, the write happens at once (no added latency).
        """
        if self._messages and not self._lost:
            # ``size`` is what the caller just queued: the cork holds at most the write
            # buffer's high-water mark, or a loop of send() calls that never yields (it
            # does not while the buffer is below the mark) would pile up data without bound.
            self._corked += size
            if self._corked < self._write_high:
                if self._flush_handle is None:
                    self._flush_handle = self.loop.call_soon(self._flush_now)
                return
        self._flush_now()

    def _flush_now(self) -> None:
        self._corked = 0
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self._flush_handle = None
        if self.protocol is not None:
            out = self.protocol.data_to_send()
            if out:
                self._write(out)

    async def _drain(self) -> None:
        if self._write_paused and not self._lost:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _close_tcp(self, peer_dead: bool = False, drain: bool = True) -> None:
        """End TCP after what is buffered is written, without lingering (module docstring).

        Plain TCP: FIN now (after the buffered bytes), then read and drop until the peer's
        EOF. TLS: close_notify (the TLS layer reads on for the peer's). Either way the
        transport is dropped after ``CLOSE_GRACE`` (at most close_timeout), or later while
        a slow reader is still being written to, up to close_timeout; at once after the
        grace when the peer is known to be dead (keepalive). ``drain=False`` (the peer's
        Close has arrived: nothing more will come) closes plain TCP at once instead.
        """
        transport = self.transport
        if transport is None or self._lost or self._draining:
            return
        self._draining = True
        if not self._tls and not drain:
            transport.close()
            return  # the close timer, if any, still bounds a slow reader
        if not self._tls and transport.can_write_eof():
            transport.write_eof()
            # Drain: whatever the peer still sends is read and dropped (buffer_updated), so
            # that closing never leaves unread data that would make the kernel send RST.
            self._reading_paused = False
            if not transport.is_reading():
                transports.resume_reading(transport)
        else:
            transport.close()
        grace = TLS_CLOSE_GRACE if self._tls else CLOSE_GRACE
        now = self.loop.time()
        close_timeout = self.options.close_timeout
        if close_timeout is not None:
            grace = min(grace, close_timeout)
        if peer_dead:
            deadline: float | None = now + grace
        else:
            deadline = None if close_timeout is None else now + close_timeout
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self.loop.call_later(grace, self._close_expired, deadline)

    def _close_expired(self, deadline: float | None) -> None:
        """Drop TCP unless data is still being written to a slow reader (then wait on)."""
        transport = self.transport
        if self._lost or transport is None:
            return
        pending = _tls_pending(transport) if self._tls else transport.get_write_buffer_size() > 0
        if pending and (deadline is None or self.loop.time() < deadline):
            self._close_timer = self.loop.call_later(CLOSE_GRACE, self._close_expired, deadline)
            return
        transport.abort()

    def _start_close_timer(self) -> None:
        """Bound the wait for the end of TCP once the closing handshake started."""
        close_timeout = self.options.close_timeout
        if self._close_timer is None and not self._lost and close_timeout is not None:
            self._close_timer = self.loop.call_later(close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        if self._lost or self.transport is None:
            return
        protocol = self.protocol
        close_timeout = self.options.close_timeout
        if protocol is not None and protocol.close_sent is not None and protocol.close_rcvd is None:
            # We sent a Close (close_sent) and none came back (close_rcvd): exactly that.
            self.logger.info("peer did not answer our Close within %ss", close_timeout)
        self._flush_now()
        if protocol is not None and self._role is core.Role.CLIENT:
            # RFC 6455 7.1.1: the client closes TCP itself when the server does not.
            self.transport.close()
            self._close_timer = self.loop.call_later(close_timeout or 0, self._abort_transport)
        else:
            self._abort_transport()

    def _abort_transport(self) -> None:
        if not self._lost and self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ public API

    # ------------------------------------------------------------------ broadcast

    def _broadcast(self, frames: SharedFrames, bound: int | None) -> int:
        """Take one broadcast message (websock.asyncio.broadcast), in one call per
        connection since broadcast() makes one per subscriber: BROADCAST_SENT,
        BROADCAST_SLOW (more than ``bound`` bytes unsent: nothing done) or BROADCAST_SKIPPED
        (not open, closing, or a fragmented message in progress).

        The shared frame is written straight to the transport when nothing waits in the
        core's queue or the cork (the usual case: one write, no copy, no bookkeeping);
        otherwise it is queued behind what waits, and written with it.
        """
        protocol = self.protocol
        transport = self.transport
        if (
            protocol is None
            or transport is None
            or self._lost
            or protocol.state is not _OPEN
            or self._send_in_progress is not None
            or transport.is_closing()
        ):
            return BROADCAST_SKIPPED
        corked = self._corked
        if bound is not None and corked + transport.get_write_buffer_size() > bound:
            return BROADCAST_SLOW
        frame = frames.frame_for(protocol)
        if frame is None:  # a client: its frames are masked one by one
            protocol.send_data(frames.payload, text=frames.is_text, compress=frames.compress)
            self._flush(len(frames.payload))
        elif corked or protocol.output_pending:
            protocol.send_frame(frame)
            self._flush(len(frame))
        else:
            transport.write(frame)
        return BROADCAST_SENT

    def _unsent_bytes(self) -> int:
        """Output not yet taken by the kernel: the transport's buffer and what is corked."""
        transport = self.transport
        size = self._corked
        if transport is not None:
            size += transport.get_write_buffer_size()
        return size

    def _transport_gone(self) -> bool:
        """True once the transport is closing although we sent no Close: the peer reset it.

        asyncio closes a transport whose write failed at once, but calls connection_lost()
        only at the next loop iteration: writes in between would be logged as errors.
        """
        transport = self.transport
        return transport is not None and transport.is_closing() and not self._draining

    def _closed_exception(self) -> ConnectionClosed:
        """How the connection ended, for the application (the core decides OK or Error)."""
        protocol = self.protocol
        if protocol is None:
            return ConnectionClosedError(None, None)
        # The socket error that ended TCP, if any, is the cause when no violation is.
        return protocol.close_exception(self._lost_exc)

    def _no_more_messages(self) -> bool:
        """True when recv() can never return another message (the queue being empty)."""
        protocol = self.protocol
        if protocol is not None and protocol.input_over:
            return True
        # After connection loss, input held for lack of room may still hold messages.
        return self._lost and not (self.protocol is not None and self.protocol.receiving_held)

    async def recv(self, decode: bool | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        ``decode=True`` returns binary messages decoded as UTF-8 too (UnicodeDecodeError if
        they are not), ``decode=False`` text messages as their UTF-8 bytes.
        Raise :class:`ConnectionClosedOK` after a normal closing handshake,
        :class:`ConnectionClosedError` otherwise. Safe to cancel: a message is never lost.

        After :meth:`recv_streaming`, messages keep arriving in pieces: recv() joins them,
        and fails the connection with 1009 if the message exceeds ``max_message_size`` (as
        it would without streaming). If an iteration was left in the middle of a message,
        the rest of that message is dropped first.
        """
        while True:
            messages = self._messages  # created lazily by _dispatch: read it each time
            if messages:
                message = messages.popleft()
                if type(message) is not _Piece:
                    self._queued_bytes -= len(message)  # type: ignore[arg-type]
                    if self._reading_paused and self._queue_below_low():
                        self._schedule_resume()
                    if decode is None:
                        return message  # type: ignore[return-value]
                    return core.as_requested(message, decode)  # type: ignore[arg-type]
                messages.appendleft(message)  # a streamed message: join its pieces
                return await self._recv_joined(decode)
            if self._stream_token is not None or self._stream_discard:
                return await self._recv_joined(decode)
            await self._wait_input()

    async def _wait_input(self) -> None:
        """The queue is empty: wait until input may have come (or raise if none can)."""
        protocol = self.protocol
        if protocol is not None and protocol.receiving_held:
            # Empty queue, held input (the connection may even be lost): it is parsed
            # at the next loop iteration, which wakes us up.
            self._schedule_resume()
        elif protocol is not None and protocol.terminal_pending:
            # Every message that preceded the Close or violation has been consumed.
            self._act_on_terminal()
        if not (protocol is not None and protocol.receiving_held) and self._no_more_messages():
            if not self._lost and self._close_timer is not None:
                # Raise once the closing handshake is over (or close_timeout ran out),
                # so that the exception tells how it ended: the peer's Close, if any,
                # is still on its way when we fail the connection or answer it. Only
                # while a close timer bounds the wait (close_timeout=None: at once).
                await asyncio.shield(self.connection_lost_waiter)
            raise self._closed_exception()
        if self._recv_waiter is not None:
            raise ConcurrencyError(
                "recv() is already waiting in another coroutine; "
                "read from one task, or share messages through a queue"
            )
        waiter = Waiter(self.loop)
        self._recv_waiter = waiter
        try:
            await waiter
        finally:
            self._recv_waiter = None

    async def _next_entry(self) -> Data | core.MessagePiece:
        """Pop the next message or piece of the queue, waiting for one as recv() does."""
        while True:
            messages = self._messages
            if messages:
                entry = messages.popleft()
                if type(entry) is _Piece:
                    self._queued_bytes -= len(entry.data)
                else:
                    self._queued_bytes -= len(entry)  # type: ignore[arg-type]
                if self._reading_paused and self._queue_below_low():
                    self._schedule_resume()
                return entry
            await self._wait_input()

    def _take_stream_turn(self) -> None:
        """Before reading a message in pieces or joining one: check that nobody else is
        reading, and drop what an abandoned iteration left of its message."""
        if self._recv_waiter is not None:
            raise ConcurrencyError(
                "recv() is already waiting in another coroutine; "
                "read from one task, or share messages through a queue"
            )
        if self._stream_token is None:
            return
        task = self._stream_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            raise ConcurrencyError(
                "recv_streaming() is reading a message in another task; read from one "
                "task, or close that iteration (aclose()) before reading here"
            )
        # Left in the middle of a message by this task (or by a task that ended): the
        # rest of that message is dropped.
        self._stream_token = self._stream_task = None
        self._stream_discard = True

    async def _discard_abandoned(self) -> None:
        """Drop the rest of a message whose iteration stopped before its last piece."""
        while self._stream_discard:
            entry = await self._next_entry()
            if type(entry) is not _Piece:  # cannot happen: pieces come before later messages
                self._stream_discard = False
                assert self._messages is not None
                self._messages.appendleft(entry)
                self._queued_bytes += len(entry)  # type: ignore[arg-type]
            elif entry.last:
                self._stream_discard = False

    def _set_streaming(self, on: bool) -> None:
        """Switch the core's streaming mode (and handle what that delivers at once)."""
        protocol = self.protocol
        if on is self._streaming or protocol is None:
            return
        self._streaming = on
        try:
            protocol.set_streaming(on)
            self._process_events(protocol)
        except Exception as exc:
            self._internal_error(exc)

    async def _recv_joined(self, decode: bool | None) -> Data:
        """recv() of a streamed message (or after an abandoned one): join its pieces.

        The message is bounded by ``max_message_size``, as recv() promises: beyond it the
        connection fails with 1009, as the core fails a message it reassembles itself.
        """
        self._take_stream_turn()
        await self._discard_abandoned()
        parts: list[Any] = []
        size = 0
        limit = self.options.max_message_size
        try:
            while True:
                entry = await self._next_entry()
                if type(entry) is not _Piece:
                    message: Data = entry  # type: ignore[assignment]
                    break
                size += len(entry.data)
                if limit is not None and size > limit:
                    parts = []
                    self._fail_too_big(limit)
                    continue  # the queue is empty now: raises how the connection ended
                parts.append(entry.data)
                if entry.last:
                    message = parts[0] if len(parts) == 1 else parts[0][:0].join(parts)
                    parts = []
                    break
        finally:
            if parts:
                # Cancelled (or the connection ended) in the middle: nothing is lost, what
                # was taken goes back as one piece.
                piece = core.MessagePiece(parts[0][:0].join(parts), False)
                if self._messages is None:
                    self._messages = deque()
                self._messages.appendleft(piece)
                self._queued_bytes += len(piece.data)
        return message if decode is None else core.as_requested(message, decode)

    def _fail_too_big(self, limit: int) -> None:
        """recv() joined pieces beyond ``max_message_size``: fail with 1009 (the queued
        input is dropped, as after any failure)."""
        reason = f"message exceeds the {limit}-byte limit"
        self.logger.info("failing connection with %d: %s", CloseCode.MESSAGE_TOO_BIG, reason)
        protocol = self.protocol
        assert protocol is not None
        protocol.fail(CloseCode.MESSAGE_TOO_BIG, reason)
        if self._messages:
            self._messages.clear()
        self._queued_bytes = 0
        self._read_after_terminal()
        self._flush_now()
        self._start_close_timer()

    def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[Data]:
        """Iterate over the next message in pieces, as they arrive: ``str`` pieces for a
        text message, ``bytes`` pieces for a binary one; their concatenation is the message.

        ``async for chunk in ws.recv_streaming(): ...`` holds no more of a message than the
        receive queue (``max_queue``) and one read, whatever its size: a large message can
        be written to a file or a socket as it arrives. Its size is bounded by
        ``max_streaming_size`` instead of ``max_message_size``. Text pieces are validated
        and decoded as they arrive (a character is never split between pieces; invalid
        UTF-8 closes the connection with 1007 at once). ``decode`` converts the pieces as
        :meth:`recv` does (True: binary decoded as UTF-8, False: text encoded).

        The iteration yields at least one piece (an empty one for an empty message), and no
        other empty one.

        Streaming starts when this method is called, before the iteration: from then on the
        connection receives every message in pieces, and :meth:`recv` joins them and holds
        them to ``max_message_size`` (so whether a message may exceed ``max_message_size``
        never depends on when a call comes). A message that grew beyond
        ``max_message_size`` before the first call fails the connection with 1009 as ever:
        call it before the peer may send one, e.g. before sending the request it answers
        (``pieces = ws.recv_streaming(); await ws.send(request); async for ...``), or
        give ``streaming=True`` to ``serve()``/``connect()``: streaming from the start. What
        arrived of a message in progress at the first call (at most ``max_message_size``)
        is its first piece.

        Stopping before the last piece (``break``, an exception) leaves the rest of the
        message to be dropped by the next :meth:`recv` or ``recv_streaming()``.
        Raise :class:`ConnectionClosed` as :meth:`recv` does (also when the connection ends
        in the middle of the message), and :class:`ConcurrencyError` if another coroutine
        is receiving.
        """
        self._set_streaming(True)
        return self._stream_pieces(decode)

    async def _stream_pieces(self, decode: bool | None) -> AsyncIterator[Data]:
        """The iteration of :meth:`recv_streaming`."""
        self._take_stream_turn()
        await self._discard_abandoned()
        converter = None if decode is None else core.PieceDecoder(decode)
        token: object | None = None  # set while in the middle of the message
        yielded = False
        try:
            while True:
                if token is not None and self._stream_token is not token:
                    raise ConcurrencyError(
                        "this recv_streaming() iteration was abandoned: recv() or "
                        "recv_streaming() was called in the middle of its message"
                    )
                entry = await self._next_entry()
                data: Data
                if type(entry) is _Piece:
                    data, last = entry.data, entry.last
                else:
                    data, last = entry, True  # type: ignore[assignment]
                if last:
                    if token is not None and self._stream_token is token:
                        self._stream_token = self._stream_task = None
                    token = None
                elif token is None:
                    token = self._stream_token = object()
                    self._stream_task = asyncio.current_task()
                if converter is not None:
                    data = converter.convert(data, last)
                if data or (last and not yielded):
                    yielded = True
                    yield data
                if last:
                    return
        finally:
            if token is not None and self._stream_token is token:
                # Stopped in the middle of the message: its rest is dropped by the next read.
                self._stream_token = self._stream_task = None
                self._stream_discard = True

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> Data:
        """The next message; the iteration ends quietly after a normal close."""
        messages = self._messages
        if messages and not self._reading_paused:
            # recv()'s first step, inlined: a message is waiting (the common case in a
            # busy echo or request/response loop).
            message = messages.popleft()
            if type(message) is not _Piece:
                self._queued_bytes -= len(message)  # type: ignore[arg-type]
                return message  # type: ignore[return-value]
            messages.appendleft(message)
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Data] | AsyncIterable[Data],
        *,
        text: bool | None = None,
        compress: bool = True,
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable or async iterable of ``str`` (or of bytes-like) is sent as one
        fragmented message, a frame per item. ``text=True`` sends bytes as a text message
        (they must be UTF-8 already: JSON from orjson, say; not checked), ``text=False``
        sends str as binary (UTF-8 encoded); for fragments it sets the message's type.
        ``compress=False`` sends this message uncompressed even when permessage-deflate is
        on. Returns once the write buffer is below its high-water mark. Raise
        :class:`ConnectionClosed` if the connection is closing or closed.
        """
        protocol = self.protocol
        if protocol is None:
            raise InvalidState("the opening handshake has not completed")
        while self._send_in_progress is not None:
            # A fragmented message is being sent: wait so frames don't interleave.
            await asyncio.shield(self._send_in_progress)
        # The close_sent attribute rather than close_expected(): this runs for every message
        # sent, and the call costs ~10x the read (~0.2 us on Python 3.11). The one case it
        # misses, the stream ended (the peer's EOF) before connection_lost(), is caught by
        # _transport_gone(): the transport is closing by then.
        if self._lost or protocol.close_sent is not None or self._transport_gone():
            raise self._closed_exception()
        if text is not None and isinstance(message, (str, bytes, bytearray, memoryview)):
            protocol.send_data(message, text=text, compress=compress)
        elif isinstance(message, str):
            protocol.send_text(message, compress=compress)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            protocol.send_binary(message, compress=compress)
        elif isinstance(message, (Mapping, Set)) or not isinstance(
            message, (AsyncIterable, Iterable)
        ):
            # A dict or a set iterates over its keys in no meaningful order: sending them as
            # fragments is never what was meant.
            raise TypeError(
                f"cannot send {type(message).__name__}: a message is str (text), bytes-like "
                "(binary), or an iterable / async iterable of str or bytes (fragments); "
                "serialize other objects first (e.g. json.dumps)"
            )
        else:
            await self._send_fragments(
                cast("Iterable[Data] | AsyncIterable[Data]", message), compress, text
            )
            return
        self._flush(len(message))
        if self._write_paused:
            await self._drain()

    async def _send_fragments(
        self,
        fragments: Iterable[Data] | AsyncIterable[Data],
        compress: bool,
        message_text: bool | None = None,
    ) -> None:
        protocol = self.protocol
        assert protocol is not None
        done: asyncio.Future[None] = self.loop.create_future()
        self._send_in_progress = done
        try:
            if isinstance(fragments, AsyncIterable):
                iterator: Any = fragments.__aiter__()
                is_async = True
            else:
                iterator = iter(fragments)
                is_async = False
            text: bool | None = None
            pending: Data | None = None
            while True:
                try:
                    item = await iterator.__anext__() if is_async else next(iterator)
                except (StopIteration, StopAsyncIteration):
                    break
                if isinstance(item, str):
                    kind = True
                elif isinstance(item, (bytes, bytearray, memoryview)):
                    kind = False
                else:
                    raise TypeError(f"cannot send a fragment of type {type(item).__name__}")
                if message_text is not None:
                    text = message_text  # send(text=...) chose the type: items may mix
                elif text is None:
                    text = kind
                elif kind is not text:
                    raise TypeError("all fragments of a message must be str, or all bytes")
                if pending is not None:
                    # Send the previous fragment now that we know it is not the last.
                    await self._send_fragment(pending, text, False, compress)
                pending = item if isinstance(item, str) else bytes(item)
            if pending is None:
                return  # an empty iterable sends nothing
            await self._send_fragment(pending, bool(text), True, compress)
        except BaseException:
            if not self._lost and not protocol.close_expected() and protocol.fragment_in_progress:
                # A half-sent message cannot be completed: the connection is unusable.
                protocol.fail(CloseCode.INTERNAL_ERROR, "message interrupted")
                self._read_after_terminal()
                self._flush()
                self._start_close_timer()
            raise
        finally:
            self._send_in_progress = None
            done.set_result(None)

    async def _send_fragment(self, data: Data, text: bool, fin: bool, compress: bool) -> None:
        protocol = self.protocol
        assert protocol is not None
        if self._lost or protocol.close_expected() or self._transport_gone():
            raise self._closed_exception()
        payload = data.encode() if isinstance(data, str) else data
        protocol.send_fragment(payload, text=text, fin=fin, compress=compress)
        self._flush(len(payload))
        await self._drain()

    async def ping(self, data: str | bytes | None = None) -> float:
        """Send a Ping and wait for its Pong; return the round-trip time in seconds.

        ``data`` (at most 125 bytes) defaults to 4 random bytes. Raise
        :class:`ConnectionClosed` if the connection closes first.
        """
        protocol = self.protocol
        if protocol is None:
            raise InvalidState("the opening handshake has not completed")
        if self._lost or protocol.close_expected():
            raise self._closed_exception()
        if data is None:
            payload = os.urandom(4)
            while protocol.ping_outstanding(payload):
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if protocol.ping_outstanding(payload):
                # Keepalive pings included: their Pongs could not be told apart.
                raise InvalidState("a ping with the same payload is already waiting for its pong")
        protocol.send_ping(payload)
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._pings[payload] = (waiter, time.monotonic())
        self._flush()
        return await asyncio.shield(waiter)

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a unidirectional heartbeat)."""
        protocol = self.protocol
        if protocol is None:
            raise InvalidState("the opening handshake has not completed")
        if self._lost or protocol.close_expected():
            raise self._closed_exception()
        protocol.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._flush()

    def _pong_received(self, pong: core.Pong) -> None:
        # The core lists the Pings this Pong answers: its own and every earlier one (RFC
        # 6455 5.5.3), keepalive Pings included. Empty for an unsolicited Pong.
        acknowledged = pong.acknowledged
        if not acknowledged:
            return
        now = time.monotonic()
        if self._keepalive_payload in acknowledged:
            self._keepalive_payload = None
            self._latency = now - self._keepalive_sent_at
            self._schedule_keepalive()
        pings = self._pings
        if pings:
            for payload in acknowledged:
                entry = pings.pop(payload, None)
                if entry is not None:
                    waiter, sent_at = entry
                    self._latency = now - sent_at
                    if not waiter.done():
                        waiter.set_result(now - sent_at)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake and wait until TCP is closed (at most close_timeout).

        Messages already passed to :meth:`send` are written before the Close frame.
        Calling close() again, or on a closed connection, does nothing.
        """
        protocol = self.protocol
        if protocol is None:
            if self.transport is not None and not self._lost:
                self.transport.close()
            return
        if protocol.terminal_pending:
            # A Close or a violation waits behind unread messages: it decides how we close
            # (echo the peer's code, or fail with 1002/1007/1009), not ``code``.
            self._act_on_terminal()
        elif not self._lost and not protocol.close_expected():
            protocol.send_close(code, reason)
            self._flush()
        self._expect_peer_close()
        if not self._lost:
            self._start_close_timer()
            await asyncio.shield(self.connection_lost_waiter)

    def _expect_peer_close(self) -> None:
        """We sent our Close: the peer's must be read, even behind a full receive queue.

        From now on messages that do not fit the queue are dropped (they are still parsed
        one at a time, so memory stays bounded) instead of pausing reading.
        """
        if not self._drop_overflow:
            self._drop_overflow = True
            if self._reading_paused and not self._lost:
                self._resume_receiving()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self.connection_lost_waiter)

    # ------------------------------------------------------------------ keepalive

    def _schedule_keepalive(self) -> None:
        ping_interval = self.options.ping_interval
        if ping_interval is not None and not self._lost:
            if self._keepalive_timer is not None:
                self._keepalive_timer.cancel()
            self._keepalive_timer = self.loop.call_later(ping_interval, self._keepalive_ping)

    def _keepalive_ping(self) -> None:
        protocol = self.protocol
        if protocol is None or self._lost or protocol.state is not core.State.OPEN:
            return
        payload = os.urandom(4)
        self._keepalive_payload = payload
        self._keepalive_sent_at = time.monotonic()
        self._data_seen = False
        protocol.send_ping(payload)
        self._flush()
        ping_timeout = self.options.ping_timeout
        if ping_timeout is not None:
            self._keepalive_timer = self.loop.call_later(ping_timeout, self._keepalive_expired)

    def _keepalive_expired(self) -> None:
        protocol = self.protocol
        if protocol is None or self._lost or self._keepalive_payload is None:
            return
        if self._data_seen or self._reading_paused:
            # Any byte received proves the peer alive: its Pong may simply be queued behind
            # a large frame it is still sending. And while our full queue keeps us from
            # reading, the peer cannot prove anything: its Pong waits unread.
            self._keepalive_payload = None
            self._schedule_keepalive()
            return
        self.logger.info(
            "no pong within %ss of a keepalive ping: closing with 1011", self.options.ping_timeout
        )
        protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._flush_now()
        # The peer is gone: don't wait close_timeout for a Close that will not come.
        self._close_tcp(peer_dead=True)
        self._wake_reader()
