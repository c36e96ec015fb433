"""websock.protocol.connection: flow control, and the bounds that protect the I/O layer.

- ``set_receive_room(messages, size)`` bounds what parsing may produce. Each data message
  delivered uses one message and its length in bytes; once either is used up, parsing stops
  at that message's end and the rest of the input is *held* (``receiving_held``). More input
  is appended to the held input; giving room again parses it at once; an EOF that arrives
  while input is held takes effect after that input. A message is never cut, so the last one
  delivered may exceed the byte room, never the message room.
- ``pause_writing()`` / ``resume_writing()``: while paused, the Pongs answering Pings are
  coalesced into one, for the latest Ping, queued on resume (or before our Close).
- ``max_fragments`` bounds the frames of one message (1009 beyond).
- ``fail()`` on a server queues our Close then ``b""`` (end TCP) exactly once; a client waits
  for the server to end TCP.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import cycle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import deflate, norm, wire_frames

from websock.exceptions import InvalidState, PayloadTooBig
from websock.protocol.close import Close
from websock.protocol.connection import (
    _DIRECT_AVAILABLE,
    DEFAULT_MAX_FRAGMENTS,
    CloseReceived,
    Connection,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
)
from websock.protocol.extensions.base import Extension
from websock.protocol.frames import Frame, Opcode, serialize_frame

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
MASK = b"\x37\xfa\x21\x3d"
ROLES = [Role.SERVER, Role.CLIENT]


# ---------------------------------------------------------------------- helpers


def opposite(role: Role) -> Role:
    return Role.CLIENT if role is Role.SERVER else Role.SERVER


def frame_to(
    role: Role, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
) -> bytes:
    """A frame as the peer of ``role`` sends it (masked towards a server)."""
    mask = MASK if role is Role.SERVER else None
    return serialize_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)


def messages_to(role: Role, *payloads: bytes | str) -> bytes:
    """Whole messages as the peer of ``role`` sends them."""
    out = b""
    for payload in payloads:
        if isinstance(payload, str):
            out += frame_to(role, TEXT, payload.encode())
        else:
            out += frame_to(role, BINARY, payload)
    return out


def feed(conn: Connection, *chunks: bytes) -> list[Event]:
    for chunk in chunks:
        conn.receive_data(chunk)
    # A copy: when there are no events, events_received() returns the core's own (empty)
    # list, which later events are appended to.
    return list(conn.events_received())


def replies(conn: Connection) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each frame queued; ``b""`` (end TCP) as (-1, b"")."""
    out: list[tuple[int, bytes]] = []
    for item in conn.data_to_send():
        if item == b"":
            out.append((-1, b""))
        else:
            out.extend((f.opcode, f.payload) for f in wire_frames(item))
    return out


def size_of(event: Event) -> int:
    """The bytes a data message uses of the room: its payload's length (UTF-8 for text)."""
    assert isinstance(event, str | bytes), event
    return len(event.encode()) if isinstance(event, str) else len(event)


def data_messages(events: list[Event]) -> list[str | bytes]:
    return [e for e in events if isinstance(e, str | bytes)]


def state(conn: Connection) -> State:
    # A call, not an attribute: mypy would keep the attribute narrowed across calls.
    return conn.state


class CountingDeflate(Extension):
    """permessage-deflate that counts the data frames (pieces) it decodes."""

    name = "permessage-deflate"
    rsv_mask = 0x40

    def __init__(self) -> None:
        self.inner = deflate()
        self.decoded = 0

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        if frame.opcode < 8:
            self.decoded += 1
        return self.inner.decode(frame, max_size=max_size)

    def encode(self, frame: Frame) -> Frame:
        return self.inner.encode(frame)


def compressed_to(role: Role, *payloads: bytes | str) -> bytes:
    """Compressed messages as the peer of ``role`` sends them (context takeover)."""
    sender = Connection(opposite(role), extensions=[deflate()])
    for payload in payloads:
        if isinstance(payload, str):
            sender.send_text(payload)
        else:
            sender.send_binary(payload)
    return b"".join(sender.data_to_send())


# ---------------------------------------------------------------------- receive room


@pytest.mark.parametrize("role", ROLES)
class TestReceiveRoom:
    def test_unlimited_by_default(self, role: Role) -> None:
        conn = Connection(role)
        assert not conn.receiving_held
        payloads = [bytes([i]) * i for i in range(200)]
        assert feed(conn, messages_to(role, *payloads)) == payloads
        assert not conn.receiving_held

    def test_message_room(self, role: Role) -> None:
        # Fast path: whole, unfragmented messages in one chunk.
        conn = Connection(role)
        conn.set_receive_room(2, None)
        data = messages_to(role, "one", b"two", "three", b"four", "five")
        assert feed(conn, data) == ["one", b"two"]
        assert conn.receiving_held
        # Giving room parses the held input at once, without more input.
        conn.set_receive_room(2, None)
        assert conn.events_received() == ["three", b"four"]
        assert conn.receiving_held
        conn.set_receive_room(2, None)
        assert conn.events_received() == ["five"]
        assert not conn.receiving_held  # one message of room left
        assert feed(conn, messages_to(role, "six", "seven")) == ["six"]
        assert conn.receiving_held
        conn.set_receive_room(None, None)
        assert conn.events_received() == ["seven"]
        assert not conn.receiving_held

    def test_room_of_one_message(self, role: Role) -> None:
        conn = Connection(role)
        payloads = [f"message {i}" for i in range(10)]
        conn.set_receive_room(1, None)
        assert feed(conn, messages_to(role, *payloads)) == payloads[:1]
        for expected in payloads[1:]:
            assert conn.receiving_held
            conn.set_receive_room(1, None)
            assert conn.events_received() == [expected]
        assert conn.receiving_held  # the room of the last one is used up too
        conn.set_receive_room(1, None)
        assert conn.events_received() == []
        assert not conn.receiving_held

    def test_byte_room(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(None, 10)
        data = messages_to(role, b"1234", b"5678", b"9abc", b"def")
        # 4 + 4 leaves 2 bytes of room: the third message is delivered whole, then held.
        assert feed(conn, data) == [b"1234", b"5678", b"9abc"]
        assert conn.receiving_held
        conn.set_receive_room(None, 3)
        assert conn.events_received() == [b"def"]
        assert conn.receiving_held  # exactly used up

    def test_byte_room_exactly_used(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(None, 8)
        assert feed(conn, messages_to(role, b"1234", b"5678", b"more")) == [b"1234", b"5678"]
        assert conn.receiving_held

    def test_byte_room_counts_utf8_bytes(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(None, 4)
        # "éé" is 2 characters, 4 bytes: it uses the whole room.
        assert feed(conn, messages_to(role, "éé", "x")) == ["éé"]
        assert conn.receiving_held

    def test_empty_messages_use_message_room(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(3, 100)
        assert feed(conn, messages_to(role, b"", "", b"", b"")) == [b"", "", b""]
        assert conn.receiving_held

    def test_either_bound_holds(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(5, 6)
        assert feed(conn, messages_to(role, b"aaa", b"bbb", b"c")) == [b"aaa", b"bbb"]
        assert conn.receiving_held
        conn.set_receive_room(1, 1000)
        assert conn.events_received() == [b"c"]
        assert conn.receiving_held

    def test_control_frames_use_no_room_but_wait_behind_held_input(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = (
            frame_to(role, PING, b"before")
            + frame_to(role, PONG, b"pong")
            + messages_to(role, "one")
            + frame_to(role, PING, b"after")
            + messages_to(role, "two")
        )
        assert feed(conn, data) == [Ping(b"before"), Pong(b"pong"), "one"]
        assert replies(conn) == [(PONG, b"before")]
        # The second Ping is held, unanswered, until there is room.
        assert conn.receiving_held
        conn.set_receive_room(1, None)
        assert conn.events_received() == [Ping(b"after"), "two"]
        assert replies(conn) == [(PONG, b"after")]

    def test_room_still_zero_keeps_holding(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        assert feed(conn, messages_to(role, "a", "b")) == ["a"]
        conn.set_receive_room(0, 100)
        assert conn.events_received() == []
        assert conn.receiving_held
        conn.set_receive_room(100, 0)
        assert conn.events_received() == []
        assert conn.receiving_held
        conn.set_receive_room(-1, -1)
        assert conn.events_received() == []
        assert conn.receiving_held
        conn.set_receive_room(1, 1)
        assert conn.events_received() == ["b"]

    def test_more_data_while_held_is_appended(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = messages_to(role, "one", "two", "three") + frame_to(role, PING, b"p")
        # The first chunk ends inside the second message's header.
        first = len(messages_to(role, "one")) + 1
        assert feed(conn, data[:first]) == ["one"]
        assert conn.receiving_held
        for i in range(first, len(data)):  # byte by byte while held: nothing parsed
            assert feed(conn, data[i : i + 1]) == []
            assert replies(conn) == []
        conn.set_receive_room(None, None)
        assert conn.events_received() == ["two", "three", Ping(b"p")]
        assert replies(conn) == [(PONG, b"p")]
        assert not conn.receiving_held

    def test_fragmented_messages(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = (
            frame_to(role, TEXT, b"fr", fin=False)
            + frame_to(role, PING, b"1")
            + frame_to(role, CONT, b"ag", fin=False)
            + frame_to(role, CONT, b"")
            + frame_to(role, BINARY, b"sec", fin=False)
            + frame_to(role, PING, b"2")
            + frame_to(role, CONT, b"ond")
            + frame_to(role, BINARY, b"x", fin=False)
        )
        # Held right after the empty final fragment of the first message.
        assert feed(conn, data) == [Ping(b"1"), "frag"]
        assert conn.receiving_held
        conn.set_receive_room(1, None)
        assert conn.events_received() == [Ping(b"2"), b"second"]
        assert conn.receiving_held
        conn.set_receive_room(1, None)
        assert conn.events_received() == []  # a message in progress
        assert not conn.receiving_held
        assert feed(conn, frame_to(role, CONT, b"yz")) == [b"xyz"]
        assert conn.receiving_held

    def test_fragmented_message_split_inside_payload(self, role: Role) -> None:
        # The message completes in the middle of a chunk, inside the payload path.
        conn = Connection(role)
        conn.set_receive_room(1, None)
        first = frame_to(role, BINARY, b"a" * 300, fin=False)
        last = frame_to(role, CONT, b"b" * 300)
        data = first + last + messages_to(role, b"next")
        cut = len(first) + 10
        assert feed(conn, data[:cut]) == []
        assert feed(conn, data[cut:]) == [b"a" * 300 + b"b" * 300]
        assert conn.receiving_held
        conn.set_receive_room(1, None)
        assert conn.events_received() == [b"next"]

    def test_compressed_messages_not_inflated_until_room(self, role: Role) -> None:
        ext = CountingDeflate()
        conn = Connection(role, extensions=[ext])
        conn.set_receive_room(1, None)
        payloads: list[bytes | str] = ["first " * 100, b"second" * 100, "third " * 100]
        assert feed(conn, compressed_to(role, *payloads)) == payloads[:1]
        assert conn.receiving_held
        assert ext.decoded == 1  # the other two wait, compressed
        conn.set_receive_room(1, None)
        assert conn.events_received() == payloads[1:2]
        assert ext.decoded == 2
        conn.set_receive_room(None, None)
        assert conn.events_received() == payloads[2:]
        assert ext.decoded == 3

    def test_compressed_byte_room_counts_inflated_size(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        conn.set_receive_room(None, 1000)
        payloads: list[bytes | str] = [b"z" * 999, b"y", b"x" * 5000, b"w"]
        data = compressed_to(role, *payloads)
        assert len(data) < 1000
        assert feed(conn, data) == payloads[:2]
        assert conn.receiving_held
        conn.set_receive_room(None, 10)
        assert conn.events_received() == payloads[2:3]  # exceeds the room: never cut
        assert conn.receiving_held

    def test_compressed_fragmented(self, role: Role) -> None:
        sender = Connection(opposite(role), extensions=[deflate()])
        sender.send_fragment(b"abc" * 50, text=True)
        sender.send_ping(b"between")
        sender.send_fragment(b"def" * 50, fin=True)
        sender.send_binary(b"second" * 30)
        conn = Connection(role, extensions=[deflate()])
        conn.set_receive_room(1, None)
        assert feed(conn, b"".join(sender.data_to_send())) == [
            Ping(b"between"),
            "abc" * 50 + "def" * 50,
        ]
        assert conn.receiving_held
        conn.set_receive_room(1, None)
        assert conn.events_received() == [b"second" * 30]

    def test_held_input_then_eof(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = messages_to(role, "one", "two", "three")
        assert feed(conn, data + data[:3]) == ["one"]  # ends inside a header
        conn.receive_eof()
        # The EOF waits behind the held input.
        assert state(conn) is State.OPEN
        assert not conn.close_expected()
        assert conn.events_received() == []
        with pytest.raises(InvalidState):
            conn.receive_data(b"more")
        conn.receive_eof()  # again: still deferred, no error
        assert state(conn) is State.OPEN
        conn.set_receive_room(1, None)
        assert conn.events_received() == ["two"]
        assert state(conn) is State.OPEN
        conn.set_receive_room(5, None)
        assert conn.events_received() == ["three"]
        # The held input is parsed: now the stream ends (abnormally: no Close).
        assert not conn.receiving_held
        assert state(conn) is State.CLOSED
        assert conn.close_expected()
        assert conn.close_rcvd is None
        assert conn.data_to_send() == []
        with pytest.raises(InvalidState):
            conn.receive_data(b"more")

    def test_eof_held_until_last_message_parsed(self, role: Role) -> None:
        # The held input ends exactly with a message that uses the last room.
        conn = Connection(role)
        conn.set_receive_room(1, None)
        assert feed(conn, messages_to(role, "one", "two")) == ["one"]
        conn.receive_eof()
        conn.set_receive_room(1, None)
        assert conn.events_received() == ["two"]
        # Held again (room used up) with nothing left to parse: the EOF may apply now or
        # after the next room; either way it applies once the room is given.
        conn.set_receive_room(1, None)
        assert not conn.receiving_held
        assert state(conn) is State.CLOSED

    def test_eof_while_not_held_applies_at_once(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(2, None)
        assert feed(conn, messages_to(role, "one")) == ["one"]
        conn.receive_eof()
        assert state(conn) is State.CLOSED

    def test_held_input_ending_in_violation(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = messages_to(role, "one", "two") + frame_to(role, 3, b"bad") + messages_to(role, "x")
        assert feed(conn, data) == ["one"]
        conn.set_receive_room(5, None)
        events = conn.events_received()
        assert events[0] == "two"
        assert isinstance(events[1], ProtocolViolation)
        assert len(events) == 2
        assert not conn.receiving_held
        assert conn.failure is not None and conn.failure.close_code == 1002
        assert feed(conn, messages_to(role, "dropped")) == []

    def test_held_input_ending_in_close(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = messages_to(role, "one") + frame_to(role, CLOSE, b"\x03\xe8bye")
        assert feed(conn, data + messages_to(role, "late")) == ["one"]
        assert conn.close_rcvd is None
        conn.set_receive_room(1, None)
        assert conn.events_received() == [CloseReceived(Close(1000, "bye"))]
        assert conn.close_rcvd == Close(1000, "bye")
        assert not conn.receiving_held
        assert state(conn) is State.CLOSING

    def test_fail_drops_held_input(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        assert feed(conn, messages_to(role, "one", "two", "three")) == ["one"]
        conn.fail(1008)
        assert not conn.receiving_held
        conn.set_receive_room(None, None)
        assert conn.events_received() == []
        assert [op for op, _ in replies(conn)] == [CLOSE] + ([-1] if role is Role.SERVER else [])

    def test_set_room_when_nothing_held(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(3, 100)
        assert conn.events_received() == []
        assert not conn.receiving_held
        assert feed(conn, messages_to(role, "a", "b")) == ["a", "b"]
        assert not conn.receiving_held
        # A new room replaces the old one (it is not added to what is left).
        conn.set_receive_room(1, None)
        assert feed(conn, messages_to(role, "c", "d")) == ["c"]
        assert conn.receiving_held


# ---------------------------------------------------------------------- direct receive path


def read_into(conn: Connection, data: bytes, read_size: int) -> bool:
    """Feed ``data`` as an I/O layer with ``recv_into`` does: into receive_buffer() when
    the core offers one, else through receive_data(). True if a buffer was offered."""
    offered = False
    pos = 0
    while pos < len(data):
        buffer = conn.receive_buffer()
        if buffer is not None:
            offered = True
            n = min(len(buffer), read_size, len(data) - pos)
            buffer[:n] = data[pos : pos + n]
            del buffer
            conn.buffer_received(n)
        else:
            n = min(read_size, len(data) - pos)
            conn.receive_data(data[pos : pos + n])
        pos += n
    return offered


@pytest.mark.parametrize("role", ROLES)
class TestDirectReceive:
    big = bytes(range(256)) * 300  # 76,800 bytes: past the direct-receive threshold

    def test_large_message_then_held(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = frame_to(role, BINARY, self.big)
        offered = read_into(conn, data, 20000)
        assert offered is _DIRECT_AVAILABLE
        assert conn.events_received() == [self.big]
        assert conn.receiving_held
        # While held, no buffer is offered; what arrives is held.
        assert conn.receive_buffer() is None
        rest = (
            frame_to(role, PING, b"p") + frame_to(role, BINARY, self.big) + messages_to(role, "x")
        )
        assert read_into(conn, rest, 20000) is False
        assert conn.events_received() == []
        assert replies(conn) == []
        conn.set_receive_room(1, None)
        assert conn.events_received() == [Ping(b"p"), self.big]
        assert conn.receiving_held
        conn.set_receive_room(1, None)
        assert conn.events_received() == ["x"]

    def test_large_message_exceeds_byte_room(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(None, 1000)
        data = messages_to(role, b"small") + frame_to(role, TEXT, b"t" * 70000)
        read_into(conn, data + messages_to(role, "after"), 8192)
        assert conn.events_received() == [b"small", "t" * 70000]
        assert conn.receiving_held
        conn.set_receive_room(None, 1000)
        assert conn.events_received() == ["after"]

    def test_large_message_after_room_given(self, role: Role) -> None:
        # Room given back with a large message's header in the held input: the rest of
        # its payload may then go into the offered buffer.
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = messages_to(role, "one") + frame_to(role, BINARY, self.big)
        cut = len(messages_to(role, "one")) + 1000
        assert feed(conn, data[:cut]) == ["one"]
        conn.set_receive_room(1, None)
        assert conn.events_received() == []
        assert not conn.receiving_held
        offered = read_into(conn, data[cut:], 30000)
        assert offered is _DIRECT_AVAILABLE
        assert conn.events_received() == [self.big]
        assert conn.receiving_held

    def test_eof_deferred_behind_held_large_message(self, role: Role) -> None:
        conn = Connection(role)
        conn.set_receive_room(1, None)
        data = messages_to(role, "one") + frame_to(role, BINARY, self.big)
        read_into(conn, data, 65536)
        assert conn.events_received() == ["one"]
        conn.receive_eof()
        assert state(conn) is State.OPEN
        conn.set_receive_room(1, None)
        assert conn.events_received() == [self.big]
        conn.set_receive_room(1, None)
        assert state(conn) is State.CLOSED


# ---------------------------------------------------------------------- property


@st.composite
def flow_streams(draw: st.DrawFn, role: Role) -> tuple[bytes, bool]:
    """A valid stream towards ``role`` built by a peer's send_* methods: text and binary
    messages, whole or fragmented, compressed or not, Pings between and inside messages,
    maybe a Close at the end. Returns the bytes and whether permessage-deflate is on."""
    compressed = draw(st.booleans())
    sender = Connection(opposite(role), extensions=[deflate()] if compressed else ())
    sizes = st.one_of(
        st.integers(0, 200),
        st.integers(201, 5000),
        st.sampled_from([125, 126, 65535, 65536, 70000]),
    )
    pings = st.lists(st.binary(max_size=20), max_size=2)
    for index in range(draw(st.integers(1, 8))):
        size = draw(sizes)
        text = draw(st.booleans())
        raw = ("aé€😀"[index % 4] * size).encode()[:size] if text else bytes([index]) * size
        if text:
            raw = raw.decode(errors="ignore").encode()
        compress = draw(st.booleans())
        for payload in draw(pings):
            sender.send_ping(payload)
        if draw(st.booleans()):
            cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=3)))
            pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
            for i, piece in enumerate(pieces):
                if i:
                    for payload in draw(pings):
                        sender.send_ping(payload)
                last = i == len(pieces) - 1
                sender.send_fragment(piece, text=text, fin=last, compress=compress)
        elif text:
            sender.send_text(raw, compress=compress)
        else:
            sender.send_binary(raw, compress=compress)
    if draw(st.booleans()):
        sender.send_close(1001, "bye")
    return b"".join(sender.data_to_send()), compressed


rooms = st.tuples(st.none() | st.integers(1, 4), st.none() | st.integers(1, 6000))


class RoomChecker:
    """Drives a core with rooms given in turn, checking every batch of events against
    the room last given."""

    def __init__(self, conn: Connection, room_values: list[tuple[int | None, int | None]]):
        self.conn = conn
        self.rooms: Iterator[tuple[int | None, int | None]] = cycle(room_values)
        self.events: list[Event] = []
        self.give_room()

    def give_room(self) -> None:
        self.room = next(self.rooms)
        self.count = 0
        self.sizes: list[int] = []
        self.conn.set_receive_room(*self.room)
        self.check()

    def check(self) -> None:
        batch = self.conn.events_received()
        self.events += batch
        for event in data_messages(batch):
            self.count += 1
            self.sizes.append(size_of(event))
        messages, size = self.room
        # Never more messages than the room; never a message started once the byte room
        # was used up (only the last one may exceed it).
        if messages is not None:
            assert self.count <= messages, (self.room, self.count)
        if size is not None:
            assert sum(self.sizes[:-1]) < size, (self.room, self.sizes)
        used_up = (messages is not None and self.count >= messages) or (
            size is not None and sum(self.sizes) >= size
        )
        if self.conn.receiving_held:
            assert used_up, (self.room, self.count, self.sizes)
        elif self.conn.close_rcvd is None:
            assert not used_up, (self.room, self.count, self.sizes)

    def feed(self, chunk: bytes) -> None:
        self.conn.receive_data(chunk)
        self.check()

    def drain(self) -> None:
        """Give room until nothing is held."""
        for _ in range(100_000):
            if not self.conn.receiving_held:
                return
            self.give_room()
        pytest.fail("still held")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_room_never_changes_what_is_delivered(data: st.DataObject, role: Role) -> None:
    """Any chunking, any sequence of rooms (given again whenever held, at once or after
    more input arrived): the same events in the same order, the same replies and the same
    end state as feeding everything at once with unlimited room."""
    stream, compressed = data.draw(flow_streams(role))

    def make() -> Connection:
        return Connection(role, extensions=[deflate()] if compressed else ())

    reference = make()
    reference.receive_data(stream)
    expected = norm(reference.events_received())
    expected_replies = replies(reference)
    ends_with_close = reference.close_rcvd is not None
    if not ends_with_close:
        reference.receive_eof()

    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=10))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [chunk for chunk in chunks if chunk]
    room_values = data.draw(st.lists(rooms, min_size=1, max_size=6))
    eager = data.draw(st.lists(st.booleans(), min_size=1, max_size=6))

    conn = make()
    checker = RoomChecker(conn, room_values)
    for i, chunk in enumerate(chunks):
        checker.feed(chunk)
        if eager[i % len(eager)]:
            checker.drain()  # as an I/O layer does: room before the next read
        # else: more input arrives while held, appended to the held input
    if not ends_with_close:
        conn.receive_eof()
        checker.check()
        if conn.receiving_held:
            assert state(conn) is State.OPEN  # the EOF waits behind the held input
    checker.drain()
    assert norm(checker.events) == expected
    assert replies(conn) == expected_replies
    assert conn.close_rcvd == reference.close_rcvd
    assert state(conn) is state(reference)
    assert conn.failure is None


# ---------------------------------------------------------------------- pong coalescing


@pytest.mark.parametrize("role", ROLES)
class TestPauseWriting:
    def test_pings_answered_at_once_when_not_paused(self, role: Role) -> None:
        conn = Connection(role)
        data = b"".join(frame_to(role, PING, b"%d" % i) for i in range(3))
        assert feed(conn, data) == [Ping(b"0"), Ping(b"1"), Ping(b"2")]
        assert replies(conn) == [(PONG, b"0"), (PONG, b"1"), (PONG, b"2")]

    def test_100_pings_while_paused_get_one_pong(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        for i in range(100):
            assert feed(conn, frame_to(role, PING, b"ping %d" % i)) == [Ping(b"ping %d" % i)]
        assert conn.data_to_send() == []
        conn.resume_writing()
        assert replies(conn) == [(PONG, b"ping 99")]
        conn.resume_writing()  # nothing more owed
        assert conn.data_to_send() == []
        # Not paused any more: Pings are answered at once again.
        feed(conn, frame_to(role, PING, b"next"))
        assert replies(conn) == [(PONG, b"next")]

    def test_pong_frame_is_well_formed(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        feed(conn, frame_to(role, PING, b"a"), frame_to(role, PING, b""))
        conn.resume_writing()
        (frame,) = wire_frames(b"".join(conn.data_to_send()))
        assert (frame.opcode, frame.fin, frame.payload) == (PONG, True, b"")
        assert frame.masked is (role is Role.CLIENT)

    def test_data_still_sent_while_paused(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        feed(conn, frame_to(role, PING, b"p"))
        conn.send_text("hello")
        assert replies(conn) == [(TEXT, b"hello")]
        conn.resume_writing()
        assert replies(conn) == [(PONG, b"p")]

    def test_resume_without_ping(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        conn.pause_writing()
        conn.resume_writing()
        assert conn.data_to_send() == []

    def test_held_pong_goes_before_our_close(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        for i in range(5):
            feed(conn, frame_to(role, PING, b"%d" % i))
        conn.send_close(1001)
        assert replies(conn) == [(PONG, b"4"), (CLOSE, b"\x03\xe9")]
        conn.resume_writing()
        assert conn.data_to_send() == []

    def test_no_pong_after_our_close(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_close(1000)
        conn.data_to_send()
        conn.pause_writing()
        assert feed(conn, frame_to(role, PING, b"late")) == [Ping(b"late")]
        conn.resume_writing()
        assert conn.data_to_send() == []
        # Not paused either.
        assert feed(conn, frame_to(role, PING, b"later")) == [Ping(b"later")]
        assert conn.data_to_send() == []

    def test_held_pong_before_the_close_fail_sends(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        feed(conn, frame_to(role, PING, b"a"), frame_to(role, PING, b"b"))
        conn.fail(1011)
        expected = [(PONG, b"b"), (CLOSE, b"\x03\xf3")]
        assert replies(conn) == expected + ([(-1, b"")] if role is Role.SERVER else [])
        conn.resume_writing()
        assert conn.data_to_send() == []

    def test_held_pong_before_reply_to_close(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        data = frame_to(role, PING, b"x") + frame_to(role, CLOSE, b"\x03\xe8")
        assert feed(conn, data) == [Ping(b"x"), CloseReceived(Close(1000))]
        assert conn.data_to_send() == []
        conn.reply_to_close()
        expected = [(PONG, b"x"), (CLOSE, b"\x03\xe8")]
        assert replies(conn) == expected + ([(-1, b"")] if role is Role.SERVER else [])
        conn.resume_writing()
        assert conn.data_to_send() == []

    def test_pings_in_one_chunk_while_paused(self, role: Role) -> None:
        conn = Connection(role)
        conn.pause_writing()
        data = b"".join(frame_to(role, PING, bytes([i]) * (i % 126)) for i in range(100))
        assert len(feed(conn, data)) == 100
        assert conn.data_to_send() == []
        conn.resume_writing()
        assert replies(conn) == [(PONG, bytes([99]) * 99)]


# ---------------------------------------------------------------------- max_fragments


def fragmented_to(role: Role, count: int, opcode: int = BINARY, piece: bytes = b"") -> bytes:
    """One message in ``count`` frames."""
    if count == 1:
        return frame_to(role, opcode, piece)
    return (
        frame_to(role, opcode, piece, fin=False)
        + frame_to(role, CONT, piece, fin=False) * (count - 2)
        + frame_to(role, CONT, piece)
    )


def assert_too_many_fragments(events: list[Event], limit: int) -> None:
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, ProtocolViolation), events
    assert isinstance(last.error, PayloadTooBig)
    assert last.error.close_code == 1009
    assert f"{limit}-fragment" in str(last.error)


@pytest.mark.parametrize("role", ROLES)
class TestMaxFragments:
    def test_default(self, role: Role) -> None:
        assert DEFAULT_MAX_FRAGMENTS == 262_144
        assert Connection(role).max_fragments == DEFAULT_MAX_FRAGMENTS

    @pytest.mark.parametrize("limit", [1, 2, 5, 64])
    def test_exactly_max_is_fine(self, role: Role, limit: int) -> None:
        conn = Connection(role, max_fragments=limit)
        data = fragmented_to(role, limit, piece=b"ab")
        assert feed(conn, data) == [b"ab" * limit]
        # The count starts again with each message.
        assert feed(conn, fragmented_to(role, limit, TEXT, b"c")) == ["c" * limit]
        assert conn.failure is None

    @pytest.mark.parametrize("limit", [1, 2, 5, 64])
    def test_one_more_fails_with_1009(self, role: Role, limit: int) -> None:
        conn = Connection(role, max_fragments=limit)
        data = fragmented_to(role, limit + 1, piece=b"ab") + messages_to(role, "after")
        events = feed(conn, data)
        assert len(events) == 1
        assert_too_many_fragments(events, limit)
        assert conn.failure is not None and conn.failure.close_code == 1009

    def test_fails_at_the_header_of_the_extra_frame(self, role: Role) -> None:
        conn = Connection(role, max_fragments=3)
        prefix = fragmented_to(role, 4, piece=b"x" * 10)[: -len(frame_to(role, CONT, b"x" * 10))]
        header = frame_to(role, CONT, b"x" * 10)[:-10]
        assert feed(conn, prefix) == []
        assert_too_many_fragments(feed(conn, header), 3)

    def test_control_frames_do_not_count(self, role: Role) -> None:
        conn = Connection(role, max_fragments=2)
        data = (
            frame_to(role, TEXT, b"a", fin=False)
            + frame_to(role, PING, b"1")
            + frame_to(role, PONG, b"2")
            + frame_to(role, PING, b"3")
            + frame_to(role, CONT, b"b")
        )
        assert feed(conn, data) == [Ping(b"1"), Pong(b"2"), Ping(b"3"), "ab"]

    def test_compressed_fragments_count(self, role: Role) -> None:
        sender = Connection(opposite(role), extensions=[deflate()])
        for i in range(4):
            sender.send_fragment(b"piece%d" % i, fin=i == 3)
        data = b"".join(sender.data_to_send())
        conn = Connection(role, extensions=[deflate()], max_fragments=4)
        assert feed(conn, data) == [b"piece0piece1piece2piece3"]
        sender.send_fragment(b"", fin=False)
        for _ in range(4):
            sender.send_fragment(b"more", fin=False)
        assert_too_many_fragments(feed(conn, b"".join(sender.data_to_send())), 4)

    def test_none_is_unlimited(self, role: Role) -> None:
        conn = Connection(role, max_fragments=None)
        assert feed(conn, fragmented_to(role, 5000, piece=b"z")) == [b"z" * 5000]

    @pytest.mark.parametrize("invalid", [0, -1, -(1 << 20)])
    def test_invalid(self, role: Role, invalid: int) -> None:
        with pytest.raises(ValueError, match="max_fragments"):
            Connection(role, max_fragments=invalid)


def test_default_max_fragments_exactly() -> None:
    """The default in practice (a client's peer sends unmasked 2-byte empty frames)."""
    n = DEFAULT_MAX_FRAGMENTS
    body = serialize_frame(BINARY, b"", fin=False) + serialize_frame(CONT, b"", fin=False) * (n - 2)
    last = serialize_frame(CONT, b"")
    conn = Connection(Role.CLIENT)
    assert feed(conn, body + last) == [b""]
    conn = Connection(Role.CLIENT)
    events = feed(conn, body + serialize_frame(CONT, b"", fin=False) + last)
    assert len(events) == 1
    assert_too_many_fragments(events, n)


# ---------------------------------------------------------------------- fail() ends TCP


class TestFailEndsTcp:
    def test_server_queues_close_then_end_once(self) -> None:
        conn = Connection(Role.SERVER)
        conn.fail(1008, "policy")
        conn.fail(1011)
        assert conn.data_to_send() == [serialize_frame(CLOSE, b"\x03\xf0policy"), b""]
        assert state(conn) is State.CLOSED
        assert conn.close_expected()
        conn.fail(1002)
        conn.receive_eof()
        assert conn.data_to_send() == []

    def test_server_fail_after_send_close(self) -> None:
        conn = Connection(Role.SERVER)
        conn.send_close(1001, "away")
        conn.fail(1011)
        conn.fail(1011)
        assert conn.data_to_send() == [serialize_frame(CLOSE, b"\x03\xe9away"), b""]
        assert state(conn) is State.CLOSED
        assert conn.close_sent == Close(1001, "away")

    def test_server_fail_after_close_sent_and_data_taken(self) -> None:
        conn = Connection(Role.SERVER)
        conn.send_close(1000)
        assert conn.data_to_send() == [serialize_frame(CLOSE, b"\x03\xe8")]
        conn.fail(1011)
        assert conn.data_to_send() == [b""]

    def test_server_fail_after_closing_handshake(self) -> None:
        conn = Connection(Role.SERVER)
        conn.send_close(1000)
        feed(conn, frame_to(Role.SERVER, CLOSE, b"\x03\xe8"))
        assert conn.data_to_send() == [serialize_frame(CLOSE, b"\x03\xe8"), b""]
        conn.fail(1011)
        assert conn.data_to_send() == []  # b"" was queued already: not twice

    def test_server_fail_after_peer_close(self) -> None:
        conn = Connection(Role.SERVER)
        feed(conn, frame_to(Role.SERVER, CLOSE, b"\x03\xe8"))
        conn.fail(1011)
        assert conn.data_to_send() == [serialize_frame(CLOSE, b"\x03\xf3"), b""]
        assert state(conn) is State.CLOSED

    def test_server_fail_after_eof(self) -> None:
        conn = Connection(Role.SERVER)
        conn.receive_eof()
        conn.fail(1011)
        assert conn.data_to_send() == []
        assert state(conn) is State.CLOSED

    def test_client_waits_for_the_server(self) -> None:
        conn = Connection(Role.CLIENT)
        conn.fail(1011)
        conn.fail(1002)
        out = conn.data_to_send()
        assert b"" not in out
        assert [(f.opcode, f.payload) for f in wire_frames(b"".join(out))] == [(CLOSE, b"\x03\xf3")]
        assert state(conn) is State.CLOSING
        assert conn.close_expected()
        # The server's Close is not processed; its EOF ends the connection.
        assert feed(conn, frame_to(Role.CLIENT, CLOSE, b"\x03\xf3")) == []
        assert state(conn) is State.CLOSING
        conn.receive_eof()
        assert state(conn) is State.CLOSED
        assert conn.close_rcvd is None
        assert conn.data_to_send() == []

    @pytest.mark.parametrize("split", [-1, 0, 1, 5])
    def test_violation_mid_frame_then_peer_close(self, split: int) -> None:
        """The bad byte is in the middle of a frame; the rest of the frame and the peer's
        Close follow: none of it is parsed, and after fail() the server sends exactly its
        Close, then ends TCP."""
        conn = Connection(Role.SERVER)
        payload = b"valid " * 10 + b"\xff" + b"x" * 40
        frame = frame_to(Role.SERVER, TEXT, payload)
        bad_at = len(frame) - len(payload) + 60
        # The first chunk ends a few bytes before the bad byte, right before it, or right
        # after it; the rest of the frame and the peer's Close come in the second.
        cut = bad_at - split
        rest = (
            frame[cut:]
            + frame_to(Role.SERVER, PING, b"after")
            + frame_to(Role.SERVER, CLOSE, b"\x03\xe8")
            + messages_to(Role.SERVER, "late")
        )
        first = feed(conn, frame[:cut])
        assert len(first) == (1 if split < 0 else 0)
        events = first + feed(conn, rest)
        assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
        assert events[0].error.close_code == 1007
        assert conn.data_to_send() == []  # no Pong: the Ping came after the violation
        assert conn.close_rcvd is None
        assert state(conn) is State.OPEN
        conn.fail(1007)
        assert conn.data_to_send() == [serialize_frame(CLOSE, b"\x03\xef"), b""]
        assert state(conn) is State.CLOSED
        assert conn.close_rcvd is None
        assert conn.close_rcvd_then_sent is False
        assert feed(conn, frame_to(Role.SERVER, CLOSE, b"\x03\xef")) == []
        assert conn.close_rcvd is None
        assert conn.data_to_send() == []


# ---------------------------------------------------------------------- EOF and zero room


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("last", ["close", "violation"])
def test_eof_behind_held_terminal_event(role: Role, last: str) -> None:
    end = frame_to(role, CLOSE, b"\x03\xe8") if last == "close" else frame_to(role, 3)
    data = messages_to(role, "one", "two") + end
    # Reference: unlimited room.
    reference = Connection(role)
    reference.receive_data(data)
    reference.receive_eof()
    assert state(reference) is State.CLOSED
    # Same input, held after "one".
    conn = Connection(role)
    conn.set_receive_room(1, None)
    assert feed(conn, data) == ["one"]
    conn.receive_eof()
    conn.set_receive_room(None, None)
    assert len(conn.events_received()) == 2
    assert state(conn) is State.CLOSED


def test_fail_with_eof_held() -> None:
    conn = Connection(Role.CLIENT)
    conn.set_receive_room(1, None)
    assert feed(conn, messages_to(Role.CLIENT, "one", "two")) == ["one"]
    conn.receive_eof()
    conn.fail(1011)
    # The peer has ended its side already: the client must not wait for it.
    assert state(conn) is State.CLOSED


@pytest.mark.parametrize("room", [(0, None), (0, 100), (5, 0)])
def test_room_of_zero_given_while_not_held(room: tuple[int | None, int | None]) -> None:
    conn = Connection(Role.CLIENT)
    conn.set_receive_room(*room)
    assert feed(conn, messages_to(Role.CLIENT, "a", "b")) == []
    assert conn.receiving_held
