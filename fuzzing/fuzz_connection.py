"""Fuzz the sans-I/O connection core: frame parser, reassembly, UTF-8, inflation, closing,
flow control.

The input is 5 configuration bytes followed by the byte stream the peer sends:

    c0 bit 0     role: 0 server (peer frames must be masked), 1 client (must not be)
       bit 1     negotiate permessage-deflate, options from c1 and c2 (the server may
                 decline and the client may refuse the answer: then no extension)
       bits 2-4  max_message_size, from MAX_MESSAGE_SIZES
       bits 5-6  max_frame_size, from MAX_FRAME_SIZES
       bit 7     the application echoes every message it reads
    c1           client factory options (see negotiate)
    c2           server factory options (see negotiate)
    c3           chunking seed (_common.chunk_sizes) and the seed of the choices made at
                 each read: how many messages the application reads, whether writing is
                 paused, whether the application closes, whether the read goes into the
                 direct buffer (and fills it, repeating the chunk), whether it arrives
                 although reading is paused, whether the close timeout "expires"
    c4 bits 0-1  receive queue bound in messages, from QUEUE_MESSAGES
       bits 2-3  receive queue bound in bytes, from QUEUE_BYTES
       bits 4-5  max_fragments, from MAX_FRAGMENTS
       bit 6     the application may start the closing handshake itself
       bit 7     the write buffer may fill up (pause_writing / resume_writing)

The harness drives the core as the asyncio layer (websock/asyncio/connection.py) does: the
receive queue's free space goes to set_receive_room before each read; receive_data (or
receive_buffer/buffer_received for a large message) per chunk; events_received and
data_to_send after each; while the core holds input and the queue is full, no reading until
the application has consumed messages (except a read already in flight, sometimes);
reply_to_close() or fail(code, str(error)) on the
terminal event once the messages before it are consumed (or at once when the close timeout
"expires"); at the end, the pending terminal event is answered, then receive_eof, then the
application drains the queue (which parses any held input).

Invariants checked (a failure raises, and libFuzzer records the input as a crash):

I1  No call raises: peer errors become ProtocolViolation events, never exceptions.
I2  Events are exactly str, bytes, Ping, Pong, CloseReceived, ProtocolViolation. A
    violation carries a ProtocolError whose close_code is 1002, 1007 or 1009, and 1009
    exactly for PayloadTooBig; it is also ``conn.failure``.
I3  At most one terminal event (CloseReceived or ProtocolViolation) and no event after it.
I4  A message is at most max_message_size bytes (text: its UTF-8 length). Ping and Pong
    payloads are at most 125 bytes. A received Close has a receivable code (RFC 6455 7.4,
    or 1005 with an empty reason) and a reason of at most 123 UTF-8 bytes.
I5  What we send decodes, in a Connection of the other role holding the extension the
    handshake gave the other side, to exactly: the Pongs (one per Ping, or only the latest
    one while writing is paused), the echoed messages, and our Close (1000 for a Close
    without code, the peer's code otherwise, the violation's code after a violation), in
    the order they were queued (a Pong still owed when the peer's EOF arrived is not
    sent, nor anything once the EOF is applied); the peer sees no violation. ``b""`` (close
    TCP) is sent once, last, exactly when we are the server and both Close frames were
    exchanged or we failed the connection before the EOF.
I6  Memory: the unparsed buffer ``_buf`` holds at most 139 bytes (a 14-byte header and a
    125-byte control payload), or the rest of the last read while input is held; the
    message being reassembled is never larger than max_message_size and ``_msg_size`` is
    what ``_msg_parts`` holds; a direct receive buffer is 64 KiB .. min(max_message_size,
    64 MiB); zlib holds no unconsumed input and at most 5 bytes of unused data between
    calls (until a violation); the bytes we send are bounded by what we answer; the
    tracemalloc peak of an input (sampled, see _common.MemoryCheck) stays below
    PEAK_BASE + 3 x the queue's largest size + 12 x the largest message the input can
    legitimately produce + 2 x the direct buffer + 16 x the input length.
I7  One feed delivers a message only while room is left (messages > 0 and bytes > 0
    before it: so the room is exceeded by the last message at most). Once the EOF is
    given and held input processed, the state is CLOSED; close_expected() is True once we
    sent a Close.

Run with WEBSOCK_PURE_PYTHON=1 to fuzz the pure-Python fallback instead of _speedups.
"""

from __future__ import annotations

import sys

from _common import MemoryCheck, atheris, chunk_sizes, run

with atheris.instrument_imports(include=["websock"]):
    from websock.exceptions import NegotiationError, PayloadTooBig, ProtocolError
    from websock.protocol import frames
    from websock.protocol.close import Close, is_valid_received_code
    from websock.protocol.connection import (
        DEFAULT_MAX_FRAGMENTS,
        CloseReceived,
        Connection,
        Ping,
        Pong,
        ProtocolViolation,
        Role,
        State,
    )
    from websock.protocol.extensions.permessage_deflate import (
        ClientPerMessageDeflateFactory,
        PerMessageDeflate,
        ServerPerMessageDeflateFactory,
    )

MAX_MESSAGE_SIZES = (1 << 20, 0, 1, 125, 1000, 65536, 100_000, None)
MAX_FRAME_SIZES = (None, 0, 125, 4096)
QUEUE_MESSAGES = (None, 1, 2, 16)
QUEUE_BYTES = (None, 1, 1000, 1 << 20)
MAX_FRAGMENTS = (DEFAULT_MAX_FRAGMENTS, 1, 2, None)
BUF_BOUND = 14 + 125
DIRECT_MIN = 65536
DIRECT_MAX = 64 * 1024 * 1024
PEAK_BASE = 2 * 1024 * 1024  # interpreter noise, two zlib states (~300 KiB each), events
# deflate cannot expand more than 1032:1; a bound on what n input bytes can inflate to.
INFLATE_RATIO = 1100
# A read into a direct buffer may fill it all (see Driver.read) up to this size.
BULK_MAX = 1 << 20

C_SPEEDUPS = frames.message_buffer is not frames.message_buffer_python

_CLIENT_BITS = (None, True, 10, 8)
_SERVER_CLIENT_BITS = (None, 8, 12, 15)


def negotiate(c1: int, c2: int) -> tuple[PerMessageDeflate, PerMessageDeflate] | None:
    """Run permessage-deflate negotiation as the handshake does; (server's, client's) or None.

    c1 (client): bit 0 server_no_context_takeover, bit 1 client_no_context_takeover,
    bits 2-3 client_max_window_bits (None, True, 10, 8), bits 4-7 server_max_window_bits
    (8-15, else not offered). c2 (server): bit 0 server_no_context_takeover, bit 1
    client_no_context_takeover, bits 2-5 server_max_window_bits (8-15, else none), bits 6-7
    client_max_window_bits (None, 8, 12, 15).
    """
    smwb = c1 >> 4
    client = ClientPerMessageDeflateFactory(
        server_no_context_takeover=bool(c1 & 1),
        client_no_context_takeover=bool(c1 & 2),
        client_max_window_bits=_CLIENT_BITS[(c1 >> 2) & 3],
        server_max_window_bits=smwb if smwb >= 8 else None,
    )
    ssmwb = (c2 >> 2) & 15
    server = ServerPerMessageDeflateFactory(
        server_no_context_takeover=bool(c2 & 1),
        client_no_context_takeover=bool(c2 & 2),
        server_max_window_bits=ssmwb if ssmwb >= 8 else None,
        client_max_window_bits=_SERVER_CLIENT_BITS[c2 >> 6],
    )
    outcome = server.process_offer(client.offer(), [])
    if outcome is None:
        return None
    params, server_ext = outcome
    try:
        client_ext = client.process_response(params, [])
    except NegotiationError:
        # The client refuses the answer; the handshake fails: no connection at all. Fuzz
        # the connection without the extension rather than not at all.
        return None
    assert isinstance(server_ext, PerMessageDeflate)
    return server_ext, client_ext


def _utf8_len(message: str | bytes) -> int:
    return len(message.encode()) if type(message) is str else len(message)


def check_internals(conn: Connection, limit: int | None, held_bound: int) -> None:
    """I6 on the receive side's buffers."""
    bound = held_bound if conn.receiving_held else BUF_BOUND
    assert len(conn._buf) <= bound, f"_buf holds {len(conn._buf)} bytes (bound {bound})"
    held = sum(len(p) for p in conn._msg_parts)
    assert held == conn._msg_size, f"_msg_parts hold {held} bytes, _msg_size {conn._msg_size}"
    if limit is not None:
        assert conn._msg_size <= limit, f"message being reassembled: {conn._msg_size} > {limit}"
    direct = conn._direct_buffer
    if direct is not None:
        assert C_SPEEDUPS, "direct receive without the C accelerator"
        assert DIRECT_MIN <= len(direct) <= DIRECT_MAX, f"direct buffer of {len(direct)}"
        assert limit is None or len(direct) <= limit, f"direct buffer {len(direct)} > {limit}"
    for ext in conn.extensions:
        decoder = ext._decoder  # type: ignore[attr-defined]
        # After a violation the decoder is never used again (and may hold the bad input).
        if decoder is not None and not conn._discarding:
            assert not decoder.unconsumed_tail, f"zlib holds {len(decoder.unconsumed_tail)} B"
            assert len(decoder.unused_data) <= 5, f"zlib unused_data {decoder.unused_data!r}"


class Driver:
    """The harness's stand-in for the asyncio layer and the application (I5's expectations)."""

    def __init__(self, conn: Connection, limit: int | None, echo: bool, c4: int) -> None:
        self.conn = conn
        self.limit = limit
        self.echo = echo
        self.max_queue = QUEUE_MESSAGES[c4 & 3]
        self.max_queue_bytes = QUEUE_BYTES[(c4 >> 2) & 3]
        self.queue: list[str | bytes] = []
        self.queued_bytes = 0
        self.largest_queue = 0
        self.reading_paused = False
        self.terminal: CloseReceived | ProtocolViolation | None = None
        self.terminal_done = False
        self.failed_before_eof = False
        self.out: list[bytes] = []
        self.out_bound = 0
        self.expected: list[object] = []  # what the peer must decode from self.out, in order
        self.writing_paused = False
        self.pong_owed: bytes | None = None
        self.largest_direct = 0
        self.bulk_bytes = 0
        self.held_bound = BUF_BOUND
        self.room: tuple[int | None, int | None] = (None, None)

    # -- the I/O layer

    def set_room(self) -> None:
        """_set_room: the queue's free space."""
        mq, mb = self.max_queue, self.max_queue_bytes
        room = None if mq is None else mq - len(self.queue)
        room_bytes = None if mb is None else mb - self.queued_bytes
        self.room = (room, room_bytes)
        self.conn.set_receive_room(room, room_bytes)

    def queue_has_room(self) -> bool:
        mq, mb = self.max_queue, self.max_queue_bytes
        return (mq is None or len(self.queue) < mq) and (mb is None or self.queued_bytes < mb)

    def read(self, chunk: bytes, use_direct: bool, bulk: bool) -> None:
        """buffer_updated: one read from the network.

        Normally reading is paused while the core holds input and the queue is full; a read
        may still arrive then (the harness's "sloppy" I/O layer), and the core must keep it.
        With ``bulk``, a read into a direct buffer fills all of it, repeating ``chunk``:
        large messages complete without a large input.
        """
        conn = self.conn
        if conn.receiving_held:
            self.held_bound += len(chunk)  # held input grows by what is read meanwhile
        else:
            self.held_bound = BUF_BOUND + len(chunk)
        self.set_room()
        pong = conn.close_sent is None
        if use_direct:
            view = conn.receive_buffer()
            if view is not None:
                assert len(view) > 0 and not conn.receiving_held
                if bulk and len(view) <= BULK_MAX:
                    n = len(view)
                    view[:] = (chunk * (n // len(chunk) + 1))[:n]
                    self.bulk_bytes += n
                    conn.buffer_received(n)
                    self.process_events(pong)
                    return
                n = min(len(view), len(chunk))
                view[:n] = chunk[:n]
                conn.buffer_received(n)
                self.process_events(pong)
                chunk = chunk[n:]
                if not chunk or self.reading_paused:
                    return  # (a real read would not have read past the direct buffer)
                self.set_room()
                pong = conn.close_sent is None
        conn.receive_data(chunk)
        self.process_events(pong)

    def process_events(self, pong: bool) -> None:
        """_process_events: dispatch, and parse held input while the queue has room."""
        conn = self.conn
        while True:
            events = conn.events_received()
            self.check_room(events)
            self.after_parse(events, pong)
            if not conn.receiving_held:
                break
            if not self.queue_has_room():
                self.reading_paused = True
                break
            self.set_room()
        self.flush()

    def check_room(self, events: list[object]) -> None:
        """I7: one feed delivers a message only while room is left."""
        room, room_bytes = self.room
        left = 1 << 62 if room is None else room
        left_bytes = 1 << 62 if room_bytes is None else room_bytes
        for event in events:
            if type(event) is str or type(event) is bytes:
                assert left > 0 and left_bytes > 0, f"message past the room {self.room}"
                left -= 1
                left_bytes -= _utf8_len(event)  # type: ignore[arg-type]
        self.room = (None, None)

    def after_parse(self, events: list[object], pong: bool) -> None:
        conn = self.conn
        direct = conn._direct_buffer
        if direct is not None:
            self.largest_direct = max(self.largest_direct, len(direct))
        check_internals(conn, self.limit, self.held_bound)
        for event in events:
            # Pongs were queued while parsing, before anything the application sends.
            if type(event) is Ping and pong:
                if self.writing_paused:
                    self.pong_owed = event.payload
                else:
                    self.expected.append(Pong(event.payload))
                    self.out_bound += len(event.payload) + 6
            self.check_event(event)
            kind = type(event)
            if kind is str or kind is bytes:
                self.queue.append(event)  # type: ignore[arg-type]
                self.queued_bytes += _utf8_len(event)  # type: ignore[arg-type]
                self.largest_queue = max(self.largest_queue, self.queued_bytes)
            elif kind is CloseReceived or kind is ProtocolViolation:
                self.terminal = event  # type: ignore[assignment]
        if self.terminal is not None and not self.queue:
            self.act_on_terminal()

    def check_event(self, event: object) -> None:
        """I2, I3, I4."""
        conn = self.conn
        assert self.terminal is None, f"event {event!r} after terminal {self.terminal!r}"
        kind = type(event)
        if kind is str or kind is bytes:
            size = _utf8_len(event)  # type: ignore[arg-type]
            assert self.limit is None or size <= self.limit, f"message of {size} bytes"
        elif kind is Ping or kind is Pong:
            payload = event.payload  # type: ignore[union-attr]
            assert type(payload) is bytes and len(payload) <= 125, "bad control payload"
        elif kind is CloseReceived:
            close = event.close  # type: ignore[union-attr]
            assert type(close) is Close
            if close.code == 1005:
                assert close.reason == "", "reason without a code"
            else:
                assert is_valid_received_code(close.code), f"close code {close.code}"
            assert len(close.reason.encode()) <= 123, "close reason over 123 bytes"
            assert conn.close_rcvd is close
        elif kind is ProtocolViolation:
            error = event.error  # type: ignore[union-attr]
            assert isinstance(error, ProtocolError), f"violation carries {error!r}"
            assert error.close_code in (1002, 1007, 1009), f"close code {error.close_code}"
            assert (error.close_code == 1009) == isinstance(error, PayloadTooBig), error
            assert conn.failure is error
        else:
            raise AssertionError(f"undocumented event {event!r}")

    def act_on_terminal(self) -> None:
        """_act_on_terminal: answer the peer's Close, or fail after a violation."""
        if self.terminal is None or self.terminal_done:
            return
        self.terminal_done = True
        conn = self.conn
        had_sent = conn.close_sent is not None
        # The EOF may have been applied already (it waits behind held input): then nothing
        # can be written any more.
        eof = conn._eof
        if type(self.terminal) is ProtocolViolation:
            error = self.terminal.error
            self.failed_before_eof = not eof
            conn.fail(error.close_code, str(error))
            code = error.close_code
        else:
            conn.reply_to_close()
            code = self.terminal.close.code
            if code == 1005:
                code = 1000
        if had_sent or eof:
            assert had_sent == (conn.close_sent is not None), "a Close sent after EOF"
        else:
            sent = conn.close_sent
            assert sent is not None and conn.close_expected(), "no Close sent"
            assert sent.code == code, sent
            if type(self.terminal) is ProtocolViolation:
                assert str(self.terminal.error).startswith(sent.reason), sent
            self.send_pong_owed()
            self.expected.append(Close(code, sent.reason))
            self.out_bound += 139
        self.flush()

    def send_pong_owed(self) -> None:
        """Our Close is going out: a Pong held while writing was paused goes just before."""
        if self.pong_owed is not None:
            self.expected.append(Pong(self.pong_owed))
            self.out_bound += len(self.pong_owed) + 6
            self.pong_owed = None

    def flush(self) -> None:
        self.out.extend(self.conn.data_to_send())

    # -- the application and the write buffer

    def consume(self, count: int) -> None:
        """recv() ``count`` times (fewer if nothing is left), echoing what it returns."""
        conn = self.conn
        for _ in range(count):
            if self.queue:
                message = self.queue.pop(0)
                self.queued_bytes -= _utf8_len(message)
                # send() raises ConnectionClosed once our Close is sent or TCP is gone.
                if self.echo and conn.close_sent is None and conn.state is not State.CLOSED:
                    compress = bool(len(self.expected) & 1)
                    if type(message) is str:
                        conn.send_text(message, compress=compress)
                    else:
                        conn.send_binary(message, compress=compress)
                    self.expected.append(message)
                    size = _utf8_len(message)
                    self.out_bound += size + size // 1000 + 64
                    self.flush()
                if self.reading_paused and self.below_low():
                    self.resume_receiving()
            elif conn.receiving_held:
                self.resume_receiving()
                if self.queue:
                    continue
            if not self.queue and self.terminal is not None:
                self.act_on_terminal()

    def below_low(self) -> bool:
        mq, mb = self.max_queue, self.max_queue_bytes
        return (mq is None or len(self.queue) <= max(1, mq // 4)) and (
            mb is None or self.queued_bytes <= mb // 4
        )

    def resume_receiving(self) -> None:
        self.reading_paused = False
        if self.conn.receiving_held:
            self.set_room()
            self.process_events(self.conn.close_sent is None)

    def app_close(self) -> None:
        """close() before any terminal event: our Close goes first."""
        conn = self.conn
        if conn.close_sent is not None or self.terminal is not None:
            return
        conn.send_close(1000)
        self.send_pong_owed()
        self.expected.append(Close(1000))
        self.out_bound += 139
        self.flush()

    def set_writing(self, paused: bool) -> None:
        conn = self.conn
        if paused and not self.writing_paused:
            self.writing_paused = True
            conn.pause_writing()
        elif not paused and self.writing_paused:
            self.writing_paused = False
            conn.resume_writing()
            if self.pong_owed is not None:
                # Nothing is written after our Close, nor once TCP has ended.
                if conn.close_sent is None and not conn._eof:
                    self.expected.append(Pong(self.pong_owed))
                    self.out_bound += len(self.pong_owed) + 6
                self.pong_owed = None
            self.flush()


def verify_output(driver: Driver, role: Role, peer_ext: PerMessageDeflate | None) -> None:
    """I5: decode what we sent with a peer Connection and compare."""
    conn = driver.conn
    out = driver.out
    ends = [i for i, chunk in enumerate(out) if not chunk]
    # RFC 6455 7.1.1 and 7.1.7: the server ends TCP once both Close frames were exchanged,
    # or once it failed the connection (unless the peer's EOF came first).
    both = conn.close_sent is not None and conn.close_rcvd is not None
    if role is Role.SERVER and (both or driver.failed_before_eof):
        assert ends == [len(out) - 1], f"b'' at {ends} of {len(out)} chunks"
    else:
        assert not ends, f"b'' at {ends}: {role.name}, both closes {both}"
    total = sum(len(chunk) for chunk in out)
    assert total <= driver.out_bound, f"sent {total} bytes, bound {driver.out_bound}"

    peer_role = Role.CLIENT if role is Role.SERVER else Role.SERVER
    peer = Connection(
        peer_role,
        extensions=[peer_ext] if peer_ext else [],
        max_message_size=None,
        max_fragments=None,
    )
    for chunk in out:
        if chunk:
            peer.receive_data(chunk)
    got: list[object] = []
    for event in peer.events_received():
        if type(event) is ProtocolViolation:
            raise AssertionError(f"the peer cannot decode what we sent: {event.error}")
        got.append(event.close if type(event) is CloseReceived else event)
    assert got == driver.expected, f"peer decoded {got!r}\nexpected {driver.expected!r}"


def test_one_input(data: bytes) -> None:
    if len(data) < 5:
        return
    c0, c1, c2, c3, c4 = data[:5]
    stream = data[5:]
    role = Role.CLIENT if c0 & 1 else Role.SERVER
    limit = MAX_MESSAGE_SIZES[(c0 >> 2) & 7]
    exts = negotiate(c1, c2) if c0 & 2 else None
    if exts is None:
        ours = peers = None
    elif role is Role.SERVER:
        ours, peers = exts
    else:
        peers, ours = exts

    memory.start(data)
    conn = Connection(
        role,
        extensions=[ours] if ours else [],
        max_message_size=limit,
        max_frame_size=MAX_FRAME_SIZES[(c0 >> 5) & 3],
        max_fragments=MAX_FRAGMENTS[(c4 >> 4) & 3],
    )
    driver = Driver(conn, limit, bool(c0 & 0x80), c4)
    may_close = bool(c4 & 0x40)
    may_pause = bool(c4 & 0x80)
    pos = 0
    choices = c3 * 0x9E3779B1
    for n in chunk_sizes(c3, len(stream)):
        choices = (choices * 1103515245 + 12345) & 0x7FFFFFFF
        r = choices >> 4
        # The application reads 0-3 messages after each read (more when reading is paused,
        # since reading resumes only once it has caught up).
        # ... unless a read arrives although reading is paused (r & 0x8000).
        while driver.reading_paused and not r & 0x8000:
            driver.consume(1 + (r & 3))
        if may_pause:
            driver.set_writing(bool(r & 0x100))
        if may_close and (r >> 9) & 15 == 0:
            driver.app_close()
        driver.read(stream[pos : pos + n], use_direct=bool(r & 0x2000), bulk=bool(r & 0x10000))
        pos += n
        driver.consume(r & 3)
        # The close timeout "expires": answer the terminal event with messages still queued.
        if r & 0x4000:
            driver.act_on_terminal()
    # eof_received: answer a pending terminal event, then the EOF; then the application
    # reads everything left (held input included).
    driver.act_on_terminal()
    conn.receive_eof()
    driver.process_events(False)
    while driver.queue or conn.receiving_held:
        driver.consume(1)
    driver.act_on_terminal()
    driver.set_writing(False)
    driver.flush()
    assert not conn.receiving_held
    assert conn.state is State.CLOSED, f"state {conn.state.name} after EOF"
    check_internals(conn, limit, BUF_BOUND)
    assert conn._direct_buffer is None and not conn._buf

    verify_output(driver, role, peers)

    # Largest message the input can produce, then what it may cost (I6).
    largest = len(stream) * (INFLATE_RATIO if ours else 1) + driver.bulk_bytes
    if limit is not None:
        largest = min(largest, limit)
    bound = (
        PEAK_BASE
        + 3 * driver.largest_queue
        + 12 * largest
        + 2 * driver.largest_direct
        + 16 * len(data)
    )
    memory.check(bound, "connection")
    memory.stop()


memory = MemoryCheck()

if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    run(test_one_input)
