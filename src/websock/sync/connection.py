"""The threading side of one WebSocket connection, shared by server and client.

Threads and locks:

- Reading the socket is a *turn* held by one thread at a time. :meth:`Connection.recv`,
  finding no message queued and nobody reading, reads the socket itself and feeds the
  sans-I/O core: the message comes back in the same thread, without a hand-off between
  threads (the common request-response case). A *reader thread* per connection reads
  whenever recv() does not: when the application has been away from recv() for
  ``_DIRECT_GRACE`` (growing to ``_MAX_DIRECT_GRACE`` on a busy connection), when a send()
  blocks, when it waits for a Pong, or closes. So a peer's Pings are answered (the core
  queues the Pongs) and its Close is read even while the application does not call recv().
  Messages go to a bounded deque that recv() pops (the pieces of a streamed message too,
  see :meth:`Connection.recv_streaming`: they count in the queue's bounds as messages do).
- The application's threads call ``send``, ``recv``, ``ping`` and ``close``.
- One process-wide timer thread (``timers.py``) runs keepalive, close and grace timers.

Two locks. ``_core_lock`` guards the core and the queue, and is only ever held for
microseconds (no I/O under it). ``_write_lock`` serializes writes to the socket, so that
frames of concurrent ``send`` calls never interleave; it is taken *before* the core lock,
never after. Bytes the core queues on its own (Pongs, Close replies) are written by
whoever holds the write lock: a thread that cannot take it at once leaves them in the core,
and the holder takes them in its last look under the core lock before it releases the write
lock, so nothing is left behind. A reading thread never waits for the write lock: it must
keep reading, or a peer that writes a whole message before reading ours would wait for us
while we wait for it.

Ordering and closing follow the asyncio layer, through the same core calls: a Close or a
violation takes effect once the application has consumed the messages that preceded it
(``messages_consumed``); the server ends TCP after the closing handshake or after failing
(the core's ``b""``: FIN, then it reads and drops until the peer's EOF or ``CLOSE_GRACE``);
the client waits for the server's FIN, at most ``close_timeout``. Blocking sockets give
backpressure by themselves: ``send`` returns once the kernel took the bytes.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from typing import Any, TypeVar

from ..exceptions import ConcurrencyError, ConnectionClosedOK, InvalidState
from ..options import CLOSE_GRACE, Options
from ..protocol import connection as core
from ..protocol.close import CloseCode
from ..protocol.extensions.base import Extension
from . import timers
from .tls_tunnel import TLSTunnelSocket

__all__ = ["Connection", "Data", "read_head"]

Data = str | bytes
_Piece = core.MessagePiece

# Reads go into one buffer per connection, reused: the core keeps no reference to it. It
# starts small (an idle connection's thread holds it: 64 KiB each would be most of an idle
# connection's memory) and grows to READ_SIZE once a read fills it: a busy connection then
# reads in large chunks.
READ_SIZE = 65536
_FIRST_READ_SIZE = 4096

# Who has the read turn (Connection._reading): nobody, recv() itself, or the reader thread.
_NOBODY, _RECV, _READER = "nobody", "recv", "reader"
# How long recv() may be away (the application busy elsewhere) before the reader thread
# reads in its place: the bound on answering a peer's Ping, or seeing its Close, while the
# application neither reads nor waits for a Pong.
_DIRECT_GRACE = 0.05
# ... growing (doubling) while recv() keeps reading, up to this: the idle reader then wakes
# about once a second on a busy connection instead of twenty times (each wake-up costs the
# GIL), while a send() that blocks (the peer not reading, perhaps waiting for us to read)
# wakes it at once.
_MAX_DIRECT_GRACE = 1.0
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
# Bytes read per recv() during the opening handshake (the head is bounded separately).
HANDSHAKE_READ = 4096

Head = TypeVar("Head")


# What websock.sync reads over TLS: a plain TLS socket, or TLS inside TLS (an https proxy).
_TLS_SOCKETS = (ssl.SSLSocket, TLSTunnelSocket)


def read_head(
    sock: socket.socket,
    receive: Callable[[bytes], Head | None],
    deadline: float | None,
) -> Head | None:
    """Read an HTTP head for the opening handshake: feed what arrives to ``receive`` (a
    handshake's ``receive_data``) until it returns the parsed head. Return None if the peer
    ends TCP first; raise TimeoutError at ``deadline`` (on ``timers.clock``)."""
    while True:
        if deadline is not None:
            left = deadline - timers.clock()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
        data = sock.recv(HANDSHAKE_READ)
        if not data:
            return None
        head = receive(data)
        if head is not None:
            return head


class Connection:
    """State and API common to :class:`ServerConnection` and :class:`ClientConnection`."""

    #: The sans-I/O core; set when the opening handshake succeeds.
    protocol: core.Connection

    def __init__(
        self,
        sock: socket.socket,
        options: Options,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.socket = sock
        self._tls = isinstance(sock, _TLS_SOCKETS)
        #: The settings this connection runs with.
        self.options = options
        #: The negotiated subprotocol, if any.
        self.subprotocol: str | None = None
        #: The negotiated extensions.
        self.extensions: list[Extension] = []
        self.logger = logger
        try:
            self._remote_address: Any = sock.getpeername()
            self._local_address: Any = sock.getsockname()
        except OSError:  # already reset by the peer
            self._remote_address = self._local_address = None

        self._core_lock = threading.Lock()
        self._write_lock = threading.Lock()
        # Signalled (under the core lock) when a message arrives, when the connection's
        # state changes, and when the queue drains enough for the reader to go on.
        self._changed = threading.Condition(self._core_lock)
        self._messages: deque[Data | core.MessagePiece] = deque()
        self._queued_bytes = 0
        self._queue_max, self._queue_max_bytes = options.queue_bounds
        # Resume reading once the queue is down to a quarter (0 for max_queue < 4: a low
        # mark equal to the maximum would resume with no room and spin).
        self._queue_low = None if self._queue_max is None else self._queue_max // 4
        self._queue_low_bytes = (
            None if self._queue_max_bytes is None else self._queue_max_bytes // 4
        )
        self._recv_busy = False
        # Streaming (recv_streaming): whether the core streams messages; the iteration in
        # the middle of a message (a token, and its thread); whether the rest of a message
        # left unfinished is to be dropped; whether close() dropped a piece of the message
        # arriving (so its other pieces are dropped too).
        self._streaming = False
        self._stream_token: object | None = None
        self._stream_thread: threading.Thread | None = None
        self._stream_discard = False
        self._stream_drop = False
        self._fragment_sender: int | None = None  # the thread sending a fragmented message
        # The read turn: who reads the socket (_NOBODY, _RECV or _READER); see _read_loop.
        self._reading = _NOBODY
        self._direct_reads = 0  # reads done by recv() itself; the idle reader watches it
        self._reader_turn = threading.Condition(self._core_lock)  # the idle reader waits here
        self._reader_waiting = False  # the reader waits on _reader_turn
        self._reader_asleep = False  # ... with no timeout: recv() wakes it when it stops reading
        self._reader_wanted = False  # closing: the reader reads until the end
        self._reader_nudged = False  # the reader should read now (a Pong is awaited)
        self._grace = _DIRECT_GRACE  # the reader's current patience (see _MAX_DIRECT_GRACE)
        self._buffer = memoryview(bytearray(_FIRST_READ_SIZE))
        self._waiting = 0  # threads waiting on _changed: notify only if there are any
        self._owe_write = False  # the reader fed the core something that queues bytes
        self._closing = False  # close() was called: messages past a full queue are dropped
        self._tcp_ended = False  # we sent FIN (server) or shut the socket down
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._closed = threading.Event()  # the socket is closed: nothing more will happen
        self._pings: dict[bytes, tuple[threading.Event, float, list[float]]] = {}
        self._data_seen = False
        self._keepalive_payload: bytes | None = None
        self._keepalive_sent_at = 0.0
        self._latency = 0.0
        self._keepalive_timer: timers.Timer | None = None
        self._close_timer: timers.Timer | None = None
        self._terminal_timer: timers.Timer | None = None
        self._flush_retry = False  # a timer will retry writing a coalesced Pong

    def _open(
        self,
        role: core.Role,
        subprotocol: str | None,
        extensions: list[Extension],
        trailing: bytes,
    ) -> None:
        """The opening handshake succeeded: create the core, start reading and keepalive."""
        options = self.options
        self.protocol = core.Connection(
            role,
            extensions=extensions,
            max_message_size=options.max_message_size,
            max_frame_size=options.max_frame_size,
            max_fragments=options.max_fragments,
            max_streaming_size=options.max_streaming_size,
        )
        if options.streaming:  # every message in pieces from the first (Options.streaming)
            self.protocol.set_streaming(True)
            self._streaming = True
        self.subprotocol = subprotocol
        self.extensions = extensions
        if trailing:  # frames that came with the handshake: nobody else reads yet
            self._feed(trailing)
            if self._owe_write:
                self._flush_owed()
        self._reader = threading.Thread(
            target=self._read_loop, name=f"websock-reader {self._remote_address}", daemon=True
        )
        self._reader.start()
        self._schedule_keepalive()

    # ------------------------------------------------------------------ properties

    @property
    def latency(self) -> float:
        """The last round-trip time measured by a Ping (keepalive or :meth:`ping`), in
        seconds; 0.0 until one was answered."""
        return self._latency

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (``(host, port)`` for IPv4)."""
        return self._remote_address

    @property
    def local_address(self) -> Any:
        """Our address, as the socket reports it."""
        return self._local_address

    @property
    def state(self) -> core.State:
        """OPEN, CLOSING or CLOSED."""
        if self._lost:
            return core.State.CLOSED
        return self.protocol.state

    @property
    def close_code(self) -> int | None:
        """The close code received (or 1006 once closed abnormally); None while open."""
        if not self._lost and self.protocol.state is core.State.OPEN:
            return None
        rcvd = self.protocol.close_rcvd
        if rcvd is not None:
            return rcvd.code
        return CloseCode.ABNORMAL_CLOSURE if self._lost else None

    @property
    def close_reason(self) -> str | None:
        """The close reason received; None while open or if no Close arrived."""
        rcvd = self.protocol.close_rcvd
        return None if rcvd is None else rcvd.reason

    # ------------------------------------------------------------------ reading

    def _read_loop(self) -> None:
        """The reader thread: read whenever recv() is not reading for itself (the read turn)."""
        protocol = self.protocol
        while True:
            resumed = False
            with self._changed:
                if self._reading is not _READER:
                    if not self._await_read_turn():
                        return  # lost: whoever saw the end has handled it
                    self._reading = _READER
                # A full queue: the core holds the rest of the input, and we stop reading
                # until recv() drains the queue to its low-water mark (or close() drops the
                # overflow), then parse the held input, a queue's worth at a time.
                while protocol.receiving_held and not self._lost:
                    if self._closing or self._below_low():
                        self._set_room()
                        self._dispatch(protocol.events_received())
                        resumed = True
                    else:
                        self._wait(None)
            if resumed:
                self._flush_owed()
            if not self._read_step():
                return
            with self._changed:
                self._reader_nudged = False  # whatever it was nudged for, it just read
                if self._recv_busy and not self._reader_wanted:
                    # recv() waits: from now on it reads for itself (no hand-off).
                    self._reading = _NOBODY
                    if self._waiting:
                        self._changed.notify_all()

    def _await_read_turn(self) -> bool:
        """Reader thread, core lock held: wait until it should read the socket.

        It reads at once when asked to (``_reader_wanted``: closing; ``_reader_nudged``:
        someone waits for a Pong, or recv() cannot read for itself), and otherwise when
        recv() has not read the socket for a whole ``_DIRECT_GRACE`` and is not waiting: the
        application is busy elsewhere, and the peer's Pings and Close must still be read.
        While recv() reads, it sleeps; recv() wakes it when it stops. False once lost.
        """
        seen = self._direct_reads
        while not self._lost:
            if self._reading is _NOBODY and (self._reader_wanted or self._reader_nudged):
                self._reader_nudged = False
                return True
            self._reader_waiting = True
            try:
                if self._reading is _RECV:
                    self._reader_asleep = True
                    self._reader_turn.wait()
                    self._reader_asleep = False
                elif not self._reader_turn.wait(self._grace):
                    if (
                        self._reading is _NOBODY
                        and not self._recv_busy
                        and self._direct_reads == seen
                    ):
                        self._grace = _DIRECT_GRACE
                        return True
                    self._grace = min(2 * self._grace, _MAX_DIRECT_GRACE)
            finally:
                self._reader_waiting = False
            seen = self._direct_reads
        return False

    def _wake_reader(self, *, for_good: bool = True) -> None:
        """Core lock held: have the reader thread read now; ``for_good`` when closing (it
        then reads until the end, and recv() stops reading for itself)."""
        if for_good:
            self._reader_wanted = True
        else:
            self._reader_nudged = True
        if self._reader_waiting:
            self._reader_turn.notify()

    def _read_step(self, timeout: float | None = None) -> bool:
        """Read the socket once and feed the core (the caller has the read turn).

        With ``timeout``, wait at most that long for data first. Return False once the
        connection is lost: the peer's EOF or a socket error (``_connection_lost`` done).
        """
        exc: BaseException | None = None
        try:
            if timeout is not None and not self._readable(timeout):
                return True
            if self._read_once():
                return True
        except OSError as error:
            exc = error
        except Exception as error:  # a bug: fail the connection with 1011, log the details
            self.logger.error("internal error while reading: closing with 1011", exc_info=error)
            exc = error
            try:
                with self._changed:
                    self.protocol.fail(CloseCode.INTERNAL_ERROR)
                self._flush_owed()
            except Exception:
                pass
        self._connection_lost(exc)
        return False

    def _read_once(self) -> bool:
        """One ``recv`` from the socket, fed to the core; False at EOF."""
        protocol = self.protocol
        with self._core_lock:
            direct = protocol.receive_buffer()
        if direct is not None:
            # The rest of a large message, straight into its own bytes object.
            n = self.socket.recv_into(direct)
            if not n:
                return False
            self._data_seen = True
            with self._changed:
                protocol.buffer_received(n)
                self._dispatch(protocol.events_received())
        else:
            buffer = self._buffer
            n = self.socket.recv_into(buffer)
            if not n:
                return False
            self._feed(buffer[:n])
            if n == len(buffer) < READ_SIZE:
                self._buffer = memoryview(bytearray(READ_SIZE))
        if self._owe_write:
            self._flush_owed()
        return True

    def _tls_pending(self) -> bool:
        """Whether decrypted bytes wait in the TLS layer (never for plain TCP)."""
        sock = self.socket
        return isinstance(sock, _TLS_SOCKETS) and sock.pending() > 0

    def _readable(self, timeout: float) -> bool:
        """Whether the socket has data within ``timeout`` (or is at EOF or failed); at most
        a day per call (poll() takes an int of milliseconds): the caller looks again."""
        if self._tls_pending():
            return True  # decrypted bytes wait in the TLS layer, which poll() cannot see
        try:
            poller = select.poll()
            poller.register(self.socket.fileno(), select.POLLIN)
            return bool(poller.poll(min(timeout, 86400.0) * 1000))
        except (OSError, ValueError):  # closed meanwhile: the read reports it
            return True

    def _wait(self, timeout: float | None) -> None:
        """Wait on _changed (core lock held), counted so that notifiers can skip it."""
        self._waiting += 1
        try:
            self._changed.wait(timeout)
        finally:
            self._waiting -= 1

    def _feed(self, data: bytes | memoryview) -> None:
        self._data_seen = True
        with self._changed:
            self._set_room()
            self.protocol.receive_data(data)
            self._dispatch(self.protocol.events_received())

    def _set_room(self) -> None:
        """Tell the core how much the queue can still take (see set_receive_room)."""
        queued = len(self._messages)
        room = None if self._queue_max is None else self._queue_max - queued
        room_bytes = (
            None if self._queue_max_bytes is None else (self._queue_max_bytes - self._queued_bytes)
        )
        if self._closing:
            # close() was called: a queue's worth at a time, what does not fit is dropped,
            # so that the peer's Close is still read.
            room = None if room is None else max(room, self._queue_max or 1)
            room_bytes = None if room_bytes is None else max(room_bytes, self._queue_max_bytes or 1)
        self.protocol.set_receive_room(room, room_bytes)

    def _dispatch(self, events: list[core.Event]) -> None:
        """Handle the core's events (under the core lock)."""
        if not events:
            return
        messages = self._messages
        woke = False
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                if self._closing and not self._queue_has_room():
                    continue  # close() was called and the queue is full: dropped
                messages.append(event)  # type: ignore[arg-type]
                self._queued_bytes += len(event)  # type: ignore[arg-type]
                woke = True
            elif kind is _Piece:
                if self._closing and (self._stream_drop or not self._queue_has_room()):
                    # As for messages, but a message cut is dropped whole.
                    self._stream_drop = not event.last  # type: ignore[union-attr]
                    continue
                messages.append(event)  # type: ignore[arg-type]
                self._queued_bytes += len(event.data)  # type: ignore[union-attr]
                woke = True
            elif kind is core.Pong:
                self._pong_received(event)  # type: ignore[arg-type]
            else:
                # A Ping (the core queued its Pong), a Close or a violation (the core may
                # answer at once): bytes to write. Messages alone queue nothing, so the
                # common read costs no look at the write side.
                self._owe_write = True
                if kind is core.ProtocolViolation:
                    error = event.error  # type: ignore[union-attr]
                    self.logger.info("failing connection with %d: %s", error.close_code, error)
                if kind is not core.Ping:
                    # Input is over: the reader thread reads (and drops) until the end.
                    self._wake_reader()
                    self._terminal_received()
                    # No Pong can come after the peer's Close: ping() raises at once.
                    pings, self._pings = self._pings, {}
                    for waiter, _, _ in pings.values():
                        waiter.set()
                    woke = True
        if woke and self._waiting:
            self._changed.notify_all()

    def _terminal_received(self) -> None:
        """A Close or a violation arrived: answer it once the messages before it are read."""
        if not self.protocol.terminal_pending:
            return
        if not self._messages:
            self.protocol.messages_consumed()
            self._start_close_timer()
        elif self.options.close_timeout is not None and self._terminal_timer is None:
            # The application may never read them: answer after close_timeout anyway.
            self._terminal_timer = timers.call_later(
                self.options.close_timeout, self._terminal_timed_out
            )

    def _terminal_timed_out(self) -> None:
        with self._changed:
            self.protocol.messages_consumed()
            self._changed.notify_all()
        self._start_close_timer()
        self._write_if_ready()

    def _queue_has_room(self) -> bool:
        return (self._queue_max is None or len(self._messages) < self._queue_max) and (
            self._queue_max_bytes is None or self._queued_bytes < self._queue_max_bytes
        )

    def _pong_received(self, pong: core.Pong) -> None:
        if not pong.acknowledged:
            return
        now = timers.clock()
        for payload in pong.acknowledged:
            if payload == self._keepalive_payload:
                self._keepalive_payload = None
                self._latency = now - self._keepalive_sent_at
            entry = self._pings.pop(payload, None)
            if entry is not None:
                event, sent_at, result = entry
                self._latency = now - sent_at
                result.append(now - sent_at)
                event.set()

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The reader is done: the peer ended TCP, or the socket failed or was shut down."""
        with self._changed:
            if not self._lost_exc:
                self._lost_exc = exc
            self.protocol.receive_eof()
            self._lost = True
            self._changed.notify_all()
            self._reader_turn.notify_all()
            pings, self._pings = self._pings, {}
        for event, _, _ in pings.values():
            event.set()  # ping() raises ConnectionClosed: no RTT in its result
        for timer in (self._keepalive_timer, self._close_timer, self._terminal_timer):
            if timer is not None:
                timer.cancel()
        self._shutdown(socket.SHUT_RDWR)
        # A writer blocked in sendall() was woken by the shutdown: close once it is out.
        with self._write_lock:
            self.socket.close()
        self._closed.set()

    # ------------------------------------------------------------------ writing

    def _write(self, out: list[bytes]) -> None:
        """Write chunks in order (write lock held); ``b""`` ends TCP (the server's FIN)."""
        pending: list[bytes] = []
        for chunk in out:
            if not chunk:
                if pending:
                    self._send_all(b"".join(pending))
                    pending = []
                self._end_tcp()
                return
            if len(chunk) >= READ_SIZE:
                if pending:
                    self._send_all(b"".join(pending))
                    pending = []
                self._send_all(chunk)
            else:
                pending.append(chunk)
        if pending:
            self._send_all(pending[0] if len(pending) == 1 else b"".join(pending))

    def _send_all(self, data: bytes) -> None:
        """``sendall``, but if the socket cannot take it all at once, the reader thread is
        woken first: a peer that does not read ours may be waiting for us to read its."""
        sock = self.socket
        if self._tls or not _DONTWAIT:
            # SSLSocket takes no flags (nor does Windows have MSG_DONTWAIT): look first,
            # for large writes only (a small one rarely fills the buffer, and the reader's
            # grace bounds that case).
            if len(data) >= READ_SIZE and not self._writable():
                self._nudge_reader()
            sock.sendall(data)
            return
        try:
            sent = sock.send(data, _DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self._nudge_reader()
            sock.sendall(memoryview(data)[sent:])

    def _nudge_reader(self) -> None:
        with self._core_lock:
            if self._reading is _NOBODY:
                self._wake_reader(for_good=False)

    def _write_queued(self, out: list[bytes] | None = None) -> None:
        """Write ``out`` and what the core queued, then release the write lock (which the
        caller holds).

        The last look at the core and the release happen under the core lock: a thread that
        queued bytes and failed to take the write lock did so under the core lock too, so
        its bytes are seen here (see the module docstring).
        """
        try:
            if out and not self._tcp_ended:
                self._write(out)
            while True:
                with self._core_lock:
                    out = self.protocol.data_to_send()
                    if not out:
                        self._write_lock.release()
                        return
                if self._tcp_ended:
                    continue  # after our FIN nothing more may be written
                self._write(out)
        except BaseException:
            self._write_lock.release()
            raise

    def _flush_owed(self) -> None:
        """Write what the core queued on its own, unless another thread is writing, or the
        socket cannot take it at once: the reader must never block (module docstring).
        Then the core coalesces Pongs (pause_writing) and the timer thread retries."""
        self._owe_write = False
        with self._core_lock:
            if not self._write_lock.acquire(blocking=False):
                return  # the holder writes it before releasing the lock
        if not self._writable():
            with self._core_lock:
                self.protocol.pause_writing()
                self._write_lock.release()
            self._arm_flush_retry()
            return
        try:
            self._write_queued()
        except OSError:
            pass  # the reader sees the socket fail on its next read

    def _writable(self) -> bool:
        try:
            poller = select.poll()
            poller.register(self.socket.fileno(), select.POLLOUT)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return False

    def _arm_flush_retry(self) -> None:
        if not self._flush_retry and not self._lost:
            self._flush_retry = True
            timers.call_later(0.05, self._retry_flush)

    def _retry_flush(self) -> None:
        """Timer thread: write the coalesced Pong once the socket can take it."""
        self._flush_retry = False
        if self._lost:
            return
        with self._core_lock:
            if not self._write_lock.acquire(blocking=False):
                self._arm_flush_retry()  # someone is writing: look again later
                return
        if not self._writable():
            with self._core_lock:
                self._write_lock.release()
            self._arm_flush_retry()
            return
        with self._core_lock:
            self.protocol.resume_writing()
        try:
            self._write_queued()
        except OSError:
            pass

    def _write_if_ready(self) -> None:
        """From the timer thread, which must never block: write only small frames, and
        only if nobody is writing and the socket can take them at once."""
        with self._core_lock:
            if not self._write_lock.acquire(blocking=False):
                return  # the holder writes them
        try:
            # poll(), not select(): descriptors above 1023 are common on a busy server.
            poller = select.poll()
            poller.register(self.socket.fileno(), select.POLLOUT)
            ready = bool(poller.poll(0))
        except (OSError, ValueError):  # closed meanwhile (fileno() is -1)
            ready = False
        if not ready:
            # The peer does not read: the bytes stay queued for the next writer.
            with self._core_lock:
                self._write_lock.release()
            return
        try:
            self._write_queued()
        except OSError:
            pass  # the reader sees the socket fail

    def _end_tcp(self) -> None:
        """Half-close after our last bytes: FIN, then the reader drains until the peer's EOF.

        Over TLS the FIN goes on the TCP socket itself: ``SSLSocket.shutdown`` would drop
        the TLS state under the reader thread. The peer sees our Close, then FIN, and no
        close_notify (after a WebSocket Close, nothing more can be said anyway).
        """
        self._tcp_ended = True
        self._shutdown(socket.SHUT_WR)
        with self._core_lock:
            self._wake_reader()  # it drains until the peer's EOF
        grace = CLOSE_GRACE
        if self.options.close_timeout is not None:
            grace = min(grace, self.options.close_timeout)
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = timers.call_later(grace, self._shutdown, socket.SHUT_RDWR)

    def _shutdown(self, how: int) -> None:
        try:
            if isinstance(self.socket, TLSTunnelSocket):
                self.socket.shutdown_tcp(how)
            else:
                # Not SSLSocket.shutdown: TCP's end, without waiting for TLS's.
                socket.socket.shutdown(self.socket, how)
        except OSError:
            pass  # already closed or reset

    def _start_close_timer(self) -> None:
        """Bound the wait for the end of TCP once the closing handshake started."""
        timeout = self.options.close_timeout
        if self._close_timer is None and not self._lost and timeout is not None:
            self._close_timer = timers.call_later(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        if not self._lost:
            self.logger.info(
                "closing handshake not finished within %ss", self.options.close_timeout
            )
            self._shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ public API

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        ``decode=True`` returns binary messages decoded as UTF-8 too (UnicodeDecodeError if
        they are not), ``decode=False`` text messages as their UTF-8 bytes.

        Wait at most ``timeout`` seconds (None: no limit), then raise :class:`TimeoutError`
        (no message is lost). Raise :class:`ConnectionClosedOK` after a normal closing
        handshake, :class:`ConnectionClosedError` otherwise, and
        :class:`ConcurrencyError` if another thread is already in ``recv``.

        After :meth:`recv_streaming`, messages keep arriving in pieces: recv() joins them,
        and fails the connection with 1009 if the message exceeds ``max_message_size`` (as
        it would without streaming). If an iteration was left in the middle of a message,
        the rest of that message is dropped first.
        """
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # longer than any wait can be: no limit (inf included)
        deadline = None if timeout is None else timers.clock() + timeout
        with self._changed:
            if self._recv_busy:
                raise ConcurrencyError(
                    "recv() is already waiting in another thread; "
                    "read from one thread, or share messages through a queue.Queue"
                )
            self._recv_busy = True
            try:
                if self._stream_token is not None or self._stream_discard:
                    self._take_stream_turn()
                    self._discard_abandoned(deadline, timeout)
                message = self._next_entry(deadline, timeout)
                if type(message) is _Piece:
                    message = self._join_pieces(message, deadline, timeout)
            finally:
                self._recv_busy = False
        if message is None:
            # No more messages: flush our answer, wait for the end of TCP, tell how it ended.
            self._flush_and_wait()
            raise self.protocol.close_exception(self._lost_exc)
        return message if decode is None else core.as_requested(message, decode)  # type: ignore[arg-type, return-value]

    def _next_entry(
        self, deadline: float | None, timeout: float | None
    ) -> Data | core.MessagePiece | None:
        """Core lock held, ``_recv_busy`` set: pop the next message or piece, reading or
        waiting for one (at most until ``deadline``: TimeoutError); None once no more can
        come."""
        tried = False  # one look at the socket before a timeout, even timeout=0
        while True:
            messages = self._messages
            if messages:
                entry = messages.popleft()
                if type(entry) is _Piece:
                    self._queued_bytes -= len(entry.data)
                else:
                    self._queued_bytes -= len(entry)  # type: ignore[arg-type]
                if self.protocol.receiving_held and self._below_low():
                    self._changed.notify_all()  # the reader may go on
                return entry
            protocol = self.protocol
            if protocol.terminal_pending:
                # Every message before the Close or violation was consumed.
                protocol.messages_consumed()
                self._changed.notify_all()
            if protocol.receiving_held:
                if self._reading is _NOBODY:
                    # Input held for lack of room (the queue is empty now): parse
                    # it here, even after the connection was lost.
                    self._set_room()
                    self._dispatch(protocol.events_received())
                    self._flush_unlocked()
                    continue
                self._changed.notify_all()  # the reader holds it: it goes on
            if self._lost or protocol.input_over:
                return None
            remaining = None if deadline is None else deadline - timers.clock()
            if remaining is not None and remaining <= 0:
                if tried:
                    raise TimeoutError(f"no message within {timeout}s")
                remaining = 0.0
            tried = True
            if self._reading is _NOBODY and self._may_read_directly():
                self._read_directly(remaining)
            else:
                if self._reading is _NOBODY:
                    self._wake_reader(for_good=False)  # read for us now
                self._wait(remaining)

    def _join_pieces(
        self, first: core.MessagePiece, deadline: float | None, timeout: float | None
    ) -> Data | None:
        """recv(), core lock held: the rest of a streamed message, joined to ``first``.

        On a timeout what was taken goes back to the queue as one piece: nothing is lost.
        The message is bounded by ``max_message_size``, as recv() promises: beyond it the
        connection fails with 1009 (None is returned: the connection is over).
        """
        parts: list[Any] = [first.data]
        size = len(first.data)
        limit = self.options.max_message_size
        entry: Data | core.MessagePiece | None = first
        try:
            while True:
                if limit is not None and size > limit:
                    parts = []
                    self._fail_too_big(limit)
                    return None
                if type(entry) is not _Piece or entry.last:
                    break
                entry = self._next_entry(deadline, timeout)
                if entry is None:
                    return None  # the connection ended in the middle of the message
                assert type(entry) is _Piece  # nothing comes between a message's pieces
                parts.append(entry.data)
                size += len(entry.data)
        except BaseException:
            if not parts:
                raise
            piece = core.MessagePiece(parts[0][:0].join(parts), False)
            self._messages.appendleft(piece)
            self._queued_bytes += len(piece.data)
            raise
        return parts[0] if len(parts) == 1 else parts[0][:0].join(parts)  # type: ignore[no-any-return]

    def _fail_too_big(self, limit: int) -> None:
        """Core lock held: recv() joined pieces beyond ``max_message_size``: fail with 1009
        (the queued input is dropped, as after any failure)."""
        reason = f"message exceeds the {limit}-byte limit"
        self.logger.info("failing connection with %d: %s", CloseCode.MESSAGE_TOO_BIG, reason)
        self.protocol.fail(CloseCode.MESSAGE_TOO_BIG, reason)
        self._messages.clear()
        self._queued_bytes = 0
        self._owe_write = True
        self._wake_reader()  # input is over: the reader reads (and drops) until the end
        self._changed.notify_all()
        self._flush_unlocked()

    def _take_stream_turn(self) -> None:
        """Core lock held: before reading a message, check that no other thread is in the
        middle of one, and drop what an abandoned iteration left of its message."""
        if self._stream_token is None:
            return
        thread = self._stream_thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            raise ConcurrencyError(
                "recv_streaming() is reading a message in another thread; read from one "
                "thread, or close that iteration (close()) before reading here"
            )
        # Left in the middle of a message by this thread (or by a thread that ended).
        self._stream_token = self._stream_thread = None
        self._stream_discard = True

    def _discard_abandoned(self, deadline: float | None, timeout: float | None) -> None:
        """Core lock held: drop the rest of a message whose iteration stopped early."""
        while self._stream_discard:
            entry = self._next_entry(deadline, timeout)
            if entry is None or type(entry) is not _Piece or entry.last:
                self._stream_discard = False
                if entry is not None and type(entry) is not _Piece:  # cannot happen
                    self._messages.appendleft(entry)
                    self._queued_bytes += len(entry)  # type: ignore[arg-type]

    def _set_streaming(self, on: bool) -> None:
        """Core lock held: switch the core's streaming mode, handle what it delivers."""
        if on is self._streaming:
            return
        self._streaming = on
        self.protocol.set_streaming(on)
        self._dispatch(self.protocol.events_received())
        self._flush_unlocked()

    def recv_streaming(
        self, decode: bool | None = None, timeout: float | None = None
    ) -> Iterator[Data]:
        """Iterate over the next message in pieces, as they arrive: ``str`` pieces for a
        text message, ``bytes`` pieces for a binary one; their concatenation is the message.

        ``for chunk in ws.recv_streaming(): ...`` holds no more of a message than the
        receive queue (``max_queue``) and one read, whatever its size: a large message can
        be written to a file or a socket as it arrives. Its size is bounded by
        ``max_streaming_size`` instead of ``max_message_size``. Text pieces are validated
        and decoded as they arrive (a character is never split between pieces; invalid
        UTF-8 closes the connection with 1007 at once). ``decode`` converts the pieces as
        :meth:`recv` does; ``timeout`` bounds the wait for each piece (TimeoutError: the
        iteration may be resumed, nothing is lost).

        The iteration yields at least one piece (an empty one for an empty message), and no
        other empty one.

        Streaming starts when this method is called, before the iteration: from then on the
        connection receives every message in pieces, and :meth:`recv` joins them and holds
        them to ``max_message_size`` (so whether a message may exceed ``max_message_size``
        never depends on when a call comes). A message that grew beyond
        ``max_message_size`` before the first call fails the connection with 1009 as ever:
        call it before the peer may send one, e.g. before sending the request it answers
        (``pieces = ws.recv_streaming(); ws.send(request); for ...``), or give
        ``streaming=True`` to ``serve()``/``connect()``. What arrived of a
        message in progress at the first call (at most ``max_message_size``) is its first
        piece.

        Stopping before the last piece (``break``, an exception) leaves the rest of the
        message to be dropped by the next :meth:`recv` or ``recv_streaming()``.
        Raise :class:`ConnectionClosed` as :meth:`recv` does (also when the connection ends
        in the middle of the message), and :class:`ConcurrencyError` if another thread is
        receiving.
        """
        with self._core_lock:
            self._set_streaming(True)
        return self._stream_pieces(decode, timeout)

    def _stream_pieces(self, decode: bool | None, timeout: float | None) -> Iterator[Data]:
        """The iteration of :meth:`recv_streaming`."""
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None
        converter = None if decode is None else core.PieceDecoder(decode)
        token: object | None = None  # set while in the middle of the message
        started = False
        yielded = False
        try:
            while True:
                deadline = None if timeout is None else timers.clock() + timeout
                with self._changed:
                    if self._recv_busy:
                        raise ConcurrencyError(
                            "recv() is already waiting in another thread; "
                            "read from one thread, or share messages through a queue.Queue"
                        )
                    self._recv_busy = True
                    try:
                        if not started:
                            self._take_stream_turn()
                            self._discard_abandoned(deadline, timeout)
                            started = True
                        elif token is not None and self._stream_token is not token:
                            raise ConcurrencyError(
                                "this recv_streaming() iteration was abandoned: recv() or "
                                "recv_streaming() was called in the middle of its message"
                            )
                        entry = self._next_entry(deadline, timeout)
                        if entry is not None:
                            if type(entry) is _Piece:
                                data, last = entry.data, entry.last
                            else:
                                data, last = entry, True  # type: ignore[assignment]
                            if last:
                                if token is not None and self._stream_token is token:
                                    self._stream_token = self._stream_thread = None
                                token = None
                            elif token is None:
                                token = self._stream_token = object()
                                self._stream_thread = threading.current_thread()
                    finally:
                        self._recv_busy = False
                if entry is None:
                    self._flush_and_wait()
                    raise self.protocol.close_exception(self._lost_exc)
                if converter is not None:
                    data = converter.convert(data, last)
                if data or (last and not yielded):
                    yielded = True
                    yield data
                if last:
                    return
        finally:
            if token is not None:
                with self._core_lock:
                    if self._stream_token is token:
                        # Stopped in the middle: the rest is dropped by the next read.
                        self._stream_token = self._stream_thread = None
                        self._stream_discard = True

    def _may_read_directly(self) -> bool:
        """Core lock held: whether recv() may read the socket in this thread.

        Not when closing (the reader thread reads until the end), not in a thread that holds
        the write lock (a generator sent as fragments calling recv(): ending the connection
        there would wait for that lock), and not in the main thread, where a signal handler
        may raise out of the socket read (``signal.alarm`` timeouts, KeyboardInterrupt) and
        could cut a chunk of input in two: there the reader thread reads.
        """
        return (
            not self._reader_wanted
            and self._fragment_sender != threading.get_ident()
            and threading.current_thread() is not threading.main_thread()
        )

    def _read_directly(self, timeout: float | None) -> None:
        """recv(), core lock held: read the socket in this thread (the read turn is free).

        The common case by far: a message read here is returned without a hand-off between
        threads, which halves the latency of a request-response exchange. Over TLS with a
        timeout the reader thread reads instead: a partial TLS record would block this
        thread past the timeout.
        """
        if timeout is not None and self._tls:
            if not self._tls_pending():  # decrypted bytes already there: read them here
                self._wake_reader(for_good=False)
                self._wait(timeout)
                return
        self._reading = _RECV
        self._direct_reads += 1
        self._core_lock.release()
        try:
            self._read_step(timeout)
        finally:
            self._core_lock.acquire()
            self._reading = _NOBODY
            if self._reader_asleep:
                self._reader_turn.notify()

    def _flush_unlocked(self) -> None:
        """Core lock held: write what the core owes, with the lock released meanwhile."""
        if self._owe_write:
            self._core_lock.release()
            try:
                self._flush_owed()
            finally:
                self._core_lock.acquire()

    def _below_low(self) -> bool:
        return (self._queue_low is None or len(self._messages) <= self._queue_low) and (
            self._queue_low_bytes is None or self._queued_bytes <= self._queue_low_bytes
        )

    def _flush_and_wait(self) -> None:
        """Write what the core queued (our Close), then wait until TCP is closed (bounded)."""
        if not self._lost:
            self._start_close_timer()  # bounds the wait below
            with self._core_lock:
                self._wake_reader()  # it reads until the end of TCP
            if self._fragment_sender == threading.get_ident():
                # recv() from the generator of a fragmented send, which holds the write
                # lock: the send writes our Close when it fails, and the end of TCP (which
                # needs that lock) comes after it: waiting here would deadlock.
                return
            self._write_lock.acquire()
            try:
                self._write_queued()
            except OSError:
                pass
            if self.options.close_timeout is not None:
                self._closed.wait()
            else:
                self._closed.wait(0)

    def __iter__(self) -> Iterator[Data]:
        """Iterate over messages; the iteration ends quietly after a normal close."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Data],
        *,
        text: bool | None = None,
        compress: bool = True,
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary; thread-safe.

        ``text=True`` sends bytes as a text message (they must be UTF-8 already: JSON from
        orjson, say; not checked), ``text=False`` sends str as binary (UTF-8 encoded); for
        fragments it sets the message's type.

        An iterable of ``str`` (or of bytes-like) is sent as one fragmented message, a
        frame per item; other threads' messages wait until it is complete.
        ``compress=False`` sends this message uncompressed even when permessage-deflate is
        on. Returns once the kernel has taken the bytes (blocking sockets: that is the
        backpressure). Raise :class:`ConnectionClosed` if the connection is closing or
        closed.
        """
        if isinstance(message, str):
            kind = 1
        elif isinstance(message, (bytes, bytearray, memoryview)):
            kind = 2
        elif isinstance(message, (Mapping, Set)) or not isinstance(message, Iterable):
            raise TypeError(
                f"cannot send {type(message).__name__}: a message is str (text), bytes-like "
                "(binary), or an iterable of str or bytes (fragments); serialize other "
                "objects first (e.g. json.dumps)"
            )
        else:
            kind = 3
        self._write_lock.acquire()
        if kind == 3:
            # Releases the write lock however it ends. The items come from application
            # code that runs with the lock held (it may even call recv()): mark the thread.
            self._fragment_sender = threading.get_ident()
            try:
                self._send_fragments(message, compress, text)  # type: ignore[arg-type]
            finally:
                self._fragment_sender = None
            return
        try:
            with self._core_lock:
                self._check_open()
                if text is not None:
                    self.protocol.send_data(message, text=text, compress=compress)  # type: ignore[arg-type]
                elif kind == 1:
                    self.protocol.send_text(message, compress=compress)  # type: ignore[arg-type]
                else:
                    self.protocol.send_binary(message, compress=compress)  # type: ignore[arg-type]
                out = self.protocol.data_to_send()
        except BaseException:
            self._write_lock.release()
            raise
        self._write_or_raise(out)

    def _check_open(self) -> None:
        """Raise ConnectionClosed unless we may still send (core lock held)."""
        if self._lost or self.protocol.close_expected() or self._tcp_ended:
            raise self.protocol.close_exception(self._lost_exc)

    def _write_or_raise(self, out: list[bytes]) -> None:
        """Write ``out``, the caller's frames, then what the core queued meanwhile (write lock
        held, released here).

        A socket error on the caller's frames means they were not sent: raise
        ConnectionClosed, as recv() will. An error on what follows (a Close reply the reader
        queued while the peer was ending TCP) is not the caller's: the reader sees the end.
        """
        try:
            if out and not self._tcp_ended:
                self._write(out)
        except OSError as exc:
            self._write_lock.release()
            self._shutdown(socket.SHUT_RDWR)  # the reader ends the connection
            with self._core_lock:
                self._wake_reader()
            self._closed.wait(self.options.close_timeout)
            raise self.protocol.close_exception(self._lost_exc or exc) from exc
        try:
            self._write_queued()
        except OSError:
            pass

    def _send_fragments(
        self, fragments: Iterable[Data], compress: bool, message_text: bool | None = None
    ) -> None:
        """Send one fragmented message: the write lock, held on entry, is kept throughout
        (other threads' messages wait) and released however this ends."""
        protocol = self.protocol
        text: bool | None = None
        pending: bytes | None = None
        try:
            for item in fragments:
                if isinstance(item, str):
                    kind = True
                    data = item.encode()
                elif isinstance(item, (bytes, bytearray, memoryview)):
                    kind = False
                    data = bytes(item)
                else:
                    raise TypeError(f"cannot send a fragment of type {type(item).__name__}")
                if message_text is not None:
                    text = message_text  # send(text=...) chose the type: items may mix
                elif text is None:
                    text = kind
                elif kind is not text:
                    raise TypeError("all fragments of a message must be str, or all bytes")
                if pending is not None:
                    # The previous fragment is not the last: send it now.
                    with self._core_lock:
                        self._check_open()
                        protocol.send_fragment(pending, text=text, fin=False, compress=compress)
                        out = protocol.data_to_send()
                    self._write(out)
                pending = data
            if pending is None:
                self._write_lock.release()
                return  # an empty iterable sends nothing
            with self._core_lock:
                self._check_open()
                protocol.send_fragment(pending, text=bool(text), fin=True, compress=compress)
                out = protocol.data_to_send()
        except BaseException as exc:
            with self._changed:
                if protocol.fragment_in_progress and not protocol.close_expected():
                    # A half-sent message cannot be completed: the connection is unusable.
                    protocol.fail(CloseCode.INTERNAL_ERROR, "message interrupted")
                    self._wake_reader()
                    self._changed.notify_all()
            try:
                self._write_queued()
            except OSError:
                pass
            if isinstance(exc, OSError):  # the socket failed: the connection is gone
                self._shutdown(socket.SHUT_RDWR)
                with self._core_lock:
                    self._wake_reader()
                raise self.protocol.close_exception(self._lost_exc or exc) from exc
            raise
        self._write_or_raise(out)

    def ping(self, data: str | bytes | None = None, timeout: float | None = None) -> float:
        """Send a Ping, wait for its Pong, and return the round-trip time in seconds.

        ``data`` (at most 125 bytes) defaults to 4 random bytes. Raise
        :class:`TimeoutError` after ``timeout`` seconds without the Pong,
        :class:`ConnectionClosed` if the connection closes first.
        """
        event = threading.Event()
        result: list[float] = []
        self._write_lock.acquire()
        try:
            with self._core_lock:
                self._check_open()
                if self.protocol.input_over:
                    # The peer's Close (or a violation) arrived: no Pong will come.
                    raise self.protocol.close_exception(self._lost_exc)
                if data is None:
                    payload = os.urandom(4)
                    while self.protocol.ping_outstanding(payload):
                        payload = os.urandom(4)
                else:
                    payload = data.encode() if isinstance(data, str) else bytes(data)
                    if self.protocol.ping_outstanding(payload):
                        raise InvalidState(
                            "a ping with the same payload is already waiting for its pong"
                        )
                self.protocol.send_ping(payload)
                self._pings[payload] = (event, timers.clock(), result)
                out = self.protocol.data_to_send()
                # Someone must read the Pong now, even if recv() is not being called.
                self._wake_reader(for_good=False)
        except BaseException:
            self._write_lock.release()
            raise
        self._write_or_raise(out)
        if not event.wait(timeout):
            raise TimeoutError(f"no pong within {timeout}s")
        if not result:
            raise self.protocol.close_exception(self._lost_exc)
        return result[0]

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a unidirectional heartbeat)."""
        self._write_lock.acquire()
        try:
            with self._core_lock:
                self._check_open()
                self.protocol.send_pong(data.encode() if isinstance(data, str) else bytes(data))
                out = self.protocol.data_to_send()
        except BaseException:
            self._write_lock.release()
            raise
        self._write_or_raise(out)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake and wait until TCP is closed (at most close_timeout).

        Messages already sent are written before the Close frame. If the peer's Close (or
        a violation) waits behind unread messages, it decides how we close, not ``code``.
        Calling close() again, or on a closed connection, does nothing.
        """
        self._start_closing(code, reason)
        self._closed.wait()

    def _start_closing(self, code: int, reason: str) -> None:
        """Send our Close (or answer the peer's) and arm the close timer; don't wait."""
        # First: a writer blocked in sendall() (a peer that does not read) holds the write
        # lock; the timer shuts the socket down after close_timeout, which frees it.
        self._start_close_timer()
        self._write_lock.acquire()
        try:
            with self._changed:
                if self.protocol.terminal_pending:
                    self.protocol.messages_consumed()
                elif not self._lost and not self.protocol.close_expected():
                    self.protocol.send_close(code, reason)
                self._closing = True
                self._changed.notify_all()  # the reader goes on past a full queue
                self._wake_reader()
        except BaseException:
            self._write_lock.release()
            raise
        try:
            self._write_queued()
        except OSError:
            pass
        self._start_close_timer()

    def _close_nowait(self, code: int, reason: str) -> None:
        """Queue our Close, write it if that cannot block, arm the close timer (shutdown)."""
        self._start_close_timer()
        with self._changed:
            if self.protocol.terminal_pending:
                self.protocol.messages_consumed()
            elif not self._lost and not self.protocol.close_expected():
                self.protocol.send_close(code, reason)
            self._closing = True
            self._changed.notify_all()
            self._wake_reader()
        self._write_if_ready()  # else the write lock's holder writes it, or the timer ends

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the TCP connection is closed; return False on timeout."""
        return self._closed.wait(timeout)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ keepalive

    def _schedule_keepalive(self) -> None:
        interval = self.options.ping_interval
        if interval is not None and not self._lost:
            self._keepalive_timer = timers.call_later(interval, self._keepalive_ping)

    def _keepalive_ping(self) -> None:
        with self._core_lock:
            if self._lost or self.protocol.state is not core.State.OPEN:
                return
            payload = os.urandom(4)
            while self.protocol.ping_outstanding(payload):
                payload = os.urandom(4)
            self._keepalive_payload = payload
            self._keepalive_sent_at = timers.clock()
            self._data_seen = False
            self.protocol.send_ping(payload)
        self._write_if_ready()
        timeout = self.options.ping_timeout
        if timeout is not None:
            self._keepalive_timer = timers.call_later(timeout, self._keepalive_expired)
        else:
            self._schedule_keepalive()

    def _keepalive_expired(self) -> None:
        with self._core_lock:
            if self._lost:
                return
            alive = (
                self._keepalive_payload is None
                or self._data_seen
                or self.protocol.receiving_held  # our full queue keeps its Pong unread
            )
            if not alive:
                self.logger.info(
                    "no pong within %ss of a keepalive ping: closing with 1011",
                    self.options.ping_timeout,
                )
                self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                self._wake_reader()
                self._changed.notify_all()
        if alive:
            self._keepalive_payload = None
            self._schedule_keepalive()
            return
        self._write_if_ready()
        # The peer is gone: don't wait close_timeout for a Close that will not come.
        grace = CLOSE_GRACE
        if self.options.close_timeout is not None:
            grace = min(grace, self.options.close_timeout)
        self._close_timer = timers.call_later(grace, self._shutdown, socket.SHUT_RDWR)
