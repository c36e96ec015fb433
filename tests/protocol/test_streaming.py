"""The core's streaming mode: messages delivered as MessagePiece events as they arrive.

Invariants checked, whole and byte by byte, compressed and not:

- the concatenation of a message's pieces is the message, whatever the chunking of the
  input and the fragmentation of the message; text pieces are ``str`` (a character split
  between reads or frames comes whole in the later piece), binary pieces ``bytes``;
- invalid UTF-8 fails the connection (1007) as soon as the bad byte arrives;
- a streamed message is bounded by ``max_streaming_size``, not ``max_message_size``;
- pieces use the receive room: parsing and inflation stop when it runs out, hold the rest,
  and resume when room is given, so that what one feed delivers is bounded by the room
  plus one read (or one inflation step), never by the message.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire import deflate

from websock.protocol.connection import (
    INFLATE_STEP,
    Connection,
    Event,
    MessagePiece,
    PieceDecoder,
    Ping,
    ProtocolViolation,
    Role,
)
from websock.protocol.frames import Opcode, serialize_frame

MiB = 1 << 20


def pair(compressed: bool, **limits: int | None) -> tuple[Connection, Connection]:
    """A client core (the sender) and a streaming server core (the receiver)."""
    client = Connection(Role.CLIENT, extensions=[deflate()] if compressed else [])
    server = Connection(Role.SERVER, extensions=[deflate()] if compressed else [], **limits)
    server.set_streaming(True)
    return client, server


def wire(client: Connection, fragments: list[bytes], *, text: bool) -> bytes:
    """The bytes of one message sent in ``fragments`` (one frame each)."""
    if len(fragments) == 1:
        if text:
            client.send_text(fragments[0])
        else:
            client.send_binary(fragments[0])
    else:
        for i, fragment in enumerate(fragments):
            client.send_fragment(fragment, text=text, fin=i == len(fragments) - 1)
    return b"".join(client.data_to_send())


def feed(server: Connection, data: bytes, cuts: list[int]) -> list[Event]:
    """Feed ``data`` cut at ``cuts``, with unlimited room; return every event."""
    events: list[Event] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        server.receive_data(data[start:cut])
        events.extend(server.events_received())
        start = cut
    return events


def joined(events: list[Event]) -> str | bytes:
    """The message the events deliver, checking the shape of the pieces."""
    pieces = [e for e in events if isinstance(e, MessagePiece)]
    whole = [e for e in events if isinstance(e, (str, bytes))]
    if whole:
        assert not pieces and len(whole) == 1
        return whole[0]
    assert pieces and pieces[-1].last
    assert not any(p.last for p in pieces[:-1])
    assert all(p.data for p in pieces[:-1])  # only the last piece may be empty
    kind = type(pieces[0].data)
    assert all(type(p.data) is kind for p in pieces)
    return pieces[0].data[:0].join(p.data for p in pieces)  # type: ignore[arg-type]


def split(payload: bytes, sizes: list[int]) -> list[bytes]:
    """``payload`` cut into fragments of the given sizes (the last takes the rest)."""
    fragments, pos = [], 0
    for size in sizes:
        fragments.append(payload[pos : pos + size])
        pos += size
    fragments.append(payload[pos:])
    return fragments


TEXT = "aé€𝄞z" * 7  # 1-, 2-, 3- and 4-byte characters


@settings(max_examples=300, deadline=None)
@given(
    text=st.booleans(),
    compressed=st.booleans(),
    message=st.text(max_size=300),
    fragment_sizes=st.lists(st.integers(0, 40), max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_any_chunking_gives_the_message(
    text: bool, compressed: bool, message: str, fragment_sizes: list[int], cuts: list[int]
) -> None:
    client, server = pair(compressed, max_message_size=10)
    payload = message.encode()
    data = wire(client, split(payload, fragment_sizes), text=text)
    events = feed(server, data, [c for c in cuts if c <= len(data)])
    assert joined(events) == (message if text else payload)
    assert server.failure is None


@pytest.mark.parametrize("compressed", [False, True])
def test_text_split_at_every_position(compressed: bool) -> None:
    payload = TEXT.encode()
    for fragments in ([payload], [payload[:5], payload[5:17], payload[17:]]):
        for cut in range(len(payload) + 12):
            client, server = pair(compressed, max_message_size=4)
            data = wire(client, fragments, text=True)
            events = feed(server, data, [min(cut, len(data))])
            assert joined(events) == TEXT, cut


def test_byte_by_byte() -> None:
    client, server = pair(False, max_message_size=4)
    payload = TEXT.encode()
    data = wire(client, [payload[:3], payload[3:]], text=True)
    events = feed(server, data, list(range(len(data))))
    pieces = [e for e in events if isinstance(e, MessagePiece)]
    assert len(pieces) > 10
    assert joined(events) == TEXT


@pytest.mark.parametrize("compressed", [False, True])
def test_empty_message_is_one_empty_last_piece(compressed: bool) -> None:
    for text in (True, False):
        client, server = pair(compressed)
        # Two frames, so that the message is not delivered whole by the fast path.
        data = wire(client, [b"", b""], text=text)
        assert feed(server, data, []) == [MessagePiece("" if text else b"", True)]


def test_whole_message_in_one_read_may_come_whole() -> None:
    client, server = pair(False)
    data = wire(client, [b"hello"], text=True)
    assert feed(server, data, []) == ["hello"]


def test_message_larger_than_max_message_size_is_streamed() -> None:
    client, server = pair(False, max_message_size=10, max_streaming_size=1000)
    payload = bytes(range(256)) * 3
    data = wire(client, [payload], text=False)
    events = feed(server, data, [100, 400])
    assert [type(e) for e in events] == [MessagePiece] * 3
    assert joined(events) == payload


@pytest.mark.parametrize("compressed", [False, True])
def test_max_streaming_size_exceeded(compressed: bool) -> None:
    client, server = pair(compressed, max_message_size=10, max_streaming_size=1000)
    data = wire(client, [b"a" * 600, b"a" * 600], text=True)
    events = feed(server, data, [30])
    violation = events[-1]
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.close_code == 1009
    delivered = "".join(e.data for e in events[:-1] if isinstance(e, MessagePiece))  # type: ignore[misc]
    assert len(delivered) <= 1000
    # The connection fails with 1009 once the messages before are consumed.
    server.messages_consumed()
    assert server.close_sent is not None and server.close_sent.code == 1009


def test_max_streaming_size_none_is_unlimited() -> None:
    client, server = pair(False, max_message_size=10, max_streaming_size=None)
    data = wire(client, [b"x" * 5000], text=False)
    assert joined(feed(server, data, [17])) == b"x" * 5000


def test_max_streaming_size_checked_from_the_header() -> None:
    """An uncompressed frame over the bound fails before its payload arrives."""
    _, server = pair(False, max_streaming_size=100)
    header = serialize_frame(Opcode.BINARY.value, b"x" * 101, mask=b"abcd")[:8]
    server.receive_data(header)
    [violation] = server.events_received()
    assert isinstance(violation, ProtocolViolation) and violation.error.close_code == 1009


@pytest.mark.parametrize("compressed", [False, True])
def test_invalid_utf8_fails_at_the_first_bad_piece(compressed: bool) -> None:
    # A surrogate's first two bytes: CPython's incremental decoder alone would wait.
    bad = "ok é".encode() + b"\xed\xa0\x80" + b"rest" * 50
    client, server = pair(compressed)
    data = wire(client, [bad[:4], bad[4:]], text=True)
    if compressed:
        events = feed(server, data, [])
    else:
        # Cut right after the bad bytes: the violation comes without the rest of the frame.
        # Frames: 2 + 4 (mask) + 4 bytes, then 2 + 2 + 4 of header, "é", 0xED 0xA0.
        cut = 10 + 8 + 4
        server.receive_data(data[:cut])
        events = server.events_received()
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].error.close_code == 1007
    assert "".join(e.data for e in events[:-1] if isinstance(e, MessagePiece)) == "ok "  # type: ignore[misc]


def test_invalid_utf8_split_between_reads() -> None:
    client, server = pair(False)
    data = wire(client, [b"abc\xf4", b"\x90\x80\x80"], text=True)
    events = feed(server, data, [10])
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].error.close_code == 1007


def test_truncated_character_at_the_end_fails() -> None:
    client, server = pair(False)
    data = wire(client, [b"abc", b"\xe2\x82"], text=True)
    events = feed(server, data, [])
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].error.close_code == 1007


def test_control_frames_keep_their_order() -> None:
    client, server = pair(False)
    client.send_fragment(b"one", fin=False)
    client.send_ping(b"p")
    client.send_fragment(b"two", fin=True)
    data = b"".join(client.data_to_send())
    events = feed(server, data, [])
    assert events == [MessagePiece(b"one", False), Ping(b"p"), MessagePiece(b"two", True)]


def test_pieces_of_one_feed_are_joined() -> None:
    """A message in tiny fragments costs one event per feed, not one per fragment."""
    client, server = pair(False)
    data = wire(client, [b"x"] * 1000, text=False)
    events = feed(server, data, [len(data) // 2])
    assert len(events) == 2
    assert joined(events) == b"x" * 1000


def test_switching_on_in_the_middle_of_a_message() -> None:
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER, max_message_size=100, max_streaming_size=10_000)
    data = wire(client, [TEXT.encode()[:10], TEXT.encode()[10:]] + [b"y" * 1000], text=True)
    server.receive_data(data[:30])  # part of a message, received whole so far
    assert server.events_received() == []
    server.set_streaming(True)  # what arrived is delivered at once, as the first piece
    first = server.events_received()
    assert len(first) == 1 and isinstance(first[0], MessagePiece) and not first[0].last
    server.receive_data(data[30:])
    events = first + server.events_received()
    assert joined(events) == TEXT + "y" * 1000  # beyond max_message_size: streamed


def test_switching_off_leaves_a_streamed_message_streamed() -> None:
    client, server = pair(False, max_message_size=10, max_streaming_size=10_000)
    data = wire(client, [b"a" * 500, b"b" * 500], text=False)
    server.receive_data(data[:100])
    events = server.events_received()
    server.set_streaming(False)
    server.receive_data(data[100:])
    events += server.events_received()
    assert joined(events) == b"a" * 500 + b"b" * 500
    # The next message is received whole, within max_message_size.
    client.send_binary(b"c" * 11)
    server.receive_data(b"".join(client.data_to_send()))
    [violation] = server.events_received()
    assert isinstance(violation, ProtocolViolation) and violation.error.close_code == 1009


def test_no_direct_buffer_while_streaming() -> None:
    """A large frame is not received into one buffer of the message's size."""
    _, server = pair(False, max_streaming_size=None)
    length = 32 * MiB
    header = bytes([0x82, 0xFF]) + length.to_bytes(8, "big") + b"abcd"
    server.receive_data(header)
    assert server.receive_buffer() is None


def test_room_holds_and_resumes_uncompressed() -> None:
    client, server = pair(False, max_streaming_size=None)
    payload = bytes(range(256)) * (4 * MiB // 256)
    data = wire(client, [payload[: 2 * MiB], payload[2 * MiB :]], text=False)
    received: list[bytes] = []
    pos = 0
    reads = 0
    while pos < len(data) or server.receiving_held:
        reads += 1
        assert reads < 1000
        server.set_receive_room(16, 256 * 1024)
        if not server.receiving_held and pos < len(data):
            server.receive_data(data[pos : pos + 65536])
            pos += 65536
        delivered = [e for e in server.events_received() if isinstance(e, MessagePiece)]
        # Room plus one read, at most.
        assert sum(len(e.data) for e in delivered) <= 256 * 1024 + 65536
        received.extend(e.data for e in delivered)  # type: ignore[misc]
    assert b"".join(received) == payload


@pytest.mark.parametrize("fragments", [1, 3])
def test_room_holds_and_resumes_inflation(fragments: int) -> None:
    """A bomb-like message (highly compressible) is inflated one room's worth at a time."""
    client, server = pair(True, max_message_size=1000, max_streaming_size=None)
    size = 16 * MiB
    payload = b"\x00" * size
    step = size // fragments
    data = wire(client, split(payload, [step] * (fragments - 1)), text=False)
    assert len(data) < size // 200  # level 1 deflate: ~230:1
    room = 100_000
    server.set_receive_room(16, room)
    server.receive_data(data)  # the whole message, in one feed
    total = 0
    rounds = 0
    last = False
    while True:
        events = server.events_received()
        delivered = sum(len(e.data) for e in events if isinstance(e, MessagePiece))
        assert delivered <= room + INFLATE_STEP  # never the whole 16 MiB at once
        total += delivered
        last = any(isinstance(e, MessagePiece) and e.last for e in events)
        if not server.receiving_held:
            break
        rounds += 1
        assert rounds < 1000
        server.set_receive_room(16, room)
    assert last and total == size
    assert rounds > size // (room + INFLATE_STEP) - 2
    assert server.failure is None


def test_room_holds_inflation_then_more_input() -> None:
    """Input that arrives while inflation waits is parsed after it, in order."""
    client, server = pair(True, max_streaming_size=None)
    first = wire(client, [b"\x00" * (4 * MiB)], text=False)
    client.send_binary(b"next")
    second = b"".join(client.data_to_send())
    server.set_receive_room(16, 10_000)
    server.receive_data(first)
    assert server.receiving_held
    server.receive_data(second)  # kept while held
    events = server.events_received()
    for _ in range(2000):
        if not server.receiving_held:
            break
        server.set_receive_room(16, 100_000)
        events += server.events_received()
    assert not server.receiving_held
    assert events[-1] in (b"next", MessagePiece(b"next", True))
    assert joined(events[:-1]) == b"\x00" * (4 * MiB)


def test_eof_during_held_inflation_comes_after_it() -> None:
    client, server = pair(True, max_streaming_size=None)
    data = wire(client, [b"\x00" * MiB], text=False)
    server.set_receive_room(16, 1000)
    server.receive_data(data)
    server.receive_eof()
    assert not server.input_over
    total = 0
    for _ in range(2000):
        total += sum(len(e.data) for e in server.events_received() if isinstance(e, MessagePiece))
        if not server.receiving_held:
            break
        server.set_receive_room(16, 100_000)
    assert total == MiB
    assert server.input_over


def test_corrupt_compressed_data_fails_with_1007() -> None:
    _, server = pair(True)
    payload = zlib.compressobj(1, zlib.DEFLATED, -15).compress(b"x" * 100) + b"\xff\xff\xff"
    server.receive_data(serialize_frame(Opcode.BINARY.value, payload, rsv=0x40, mask=b"abcd"))
    events = server.events_received()
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].error.close_code == 1007


def test_non_streaming_default_unchanged() -> None:
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER, max_message_size=10)
    client.send_fragment(b"abc", fin=False)
    client.send_fragment(b"def", fin=True)
    server.receive_data(b"".join(client.data_to_send()))
    assert server.events_received() == [b"abcdef"]


@pytest.mark.parametrize(
    ("decode", "pieces", "expected"),
    [
        (None, [b"a\xc3", b"\xa9"], [b"a\xc3", b"\xa9"]),
        (True, [b"a\xc3", b"\xa9"], ["a", "é"]),
        (True, ["é"], ["é"]),
        (False, ["é", "z"], ["é".encode(), b"z"]),
        (False, [b"x"], [b"x"]),
    ],
)
def test_piece_decoder(
    decode: bool | None, pieces: list[str | bytes], expected: list[str | bytes]
) -> None:
    converter = PieceDecoder(decode)
    out = [converter.convert(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
    assert out == expected


def test_piece_decoder_rejects_invalid_utf8() -> None:
    converter = PieceDecoder(True)
    assert converter.convert(b"\xc3", False) == ""
    with pytest.raises(UnicodeDecodeError):
        converter.convert(b"", True)


def test_invalid_max_streaming_size() -> None:
    with pytest.raises(ValueError, match="max_streaming_size"):
        Connection(Role.SERVER, max_streaming_size=-1)


# A frame of the fuzzed stream: opcode (CONT, TEXT, BINARY, PING), FIN, RSV1, payload.
_FRAME = st.tuples(
    st.sampled_from([0, 1, 2, 9]),
    st.booleans(),
    st.booleans(),
    st.one_of(st.binary(max_size=40), st.text(max_size=20).map(str.encode)),
)


def _stream_bytes(frames: list[tuple[int, bool, bool, bytes]], compressed: bool) -> bytes:
    """Masked client frames; with ``compressed``, RSV1 frames carry deflate data (one
    context, as the receiver's extension keeps it), so that most of them are valid."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = []
    for opcode, fin, rsv1, payload in frames:
        if compressed and rsv1 and opcode != 9:
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if fin:
                payload = payload[:-4]
        rsv = 0x40 if rsv1 else 0
        out.append(serialize_frame(opcode, payload, fin=fin, rsv=rsv, mask=b"\x01\x02\x03\x04"))
    return b"".join(out)


def _messages(events: list[Event]) -> tuple[list[str | bytes], int | None]:
    """The complete messages the events deliver (pieces joined), and the violation's code."""
    messages: list[str | bytes] = []
    parts: list[Any] = []
    code = None
    for event in events:
        if isinstance(event, (str, bytes)):
            assert not parts
            messages.append(event)
        elif isinstance(event, MessagePiece):
            parts.append(event.data)
            if event.last:
                messages.append(parts[0][:0].join(parts))
                parts = []
        elif isinstance(event, ProtocolViolation):
            code = event.error.close_code
    return messages, code


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(_FRAME, max_size=12),
    compressed=st.booleans(),
    cuts=st.lists(st.integers(0, 800), max_size=6),
    room=st.integers(1, 120),
)
def test_differential_against_whole_messages(
    frames: list[tuple[int, bool, bool, bytes]], compressed: bool, cuts: list[int], room: int
) -> None:
    """On any frame stream, valid or not, a streaming core delivers the same complete
    messages as a core that reassembles them, and fails with the same close code, whatever
    the chunking and however little room it is given at a time."""
    data = _stream_bytes(frames, compressed)
    extensions = (lambda: [deflate()]) if compressed else list
    whole = Connection(Role.SERVER, extensions=extensions(), max_message_size=None)
    whole.receive_data(data)
    expected = _messages(whole.events_received())

    streaming = Connection(Role.SERVER, extensions=extensions(), max_streaming_size=None)
    streaming.set_streaming(True)
    events: list[Event] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        streaming.set_receive_room(2, room)
        streaming.receive_data(data[start:cut])
        start = cut
        for _ in range(10_000):
            events.extend(streaming.events_received())
            if not streaming.receiving_held:
                break
            streaming.set_receive_room(2, room)
        assert not streaming.receiving_held
    assert _messages(events) == expected
