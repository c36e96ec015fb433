"""websock.protocol.connection receiving from a reused buffer.

The asyncio layer reads into one buffer per event loop and feeds the core memoryviews of it;
the next read, for any connection on that loop, overwrites it. So ``receive_data`` accepts
any bytes-like object and must keep no reference to it once it returns.

Invariant checked here: feeding a stream in chunks, each chunk a memoryview of one reused
bytearray that is overwritten with garbage right after every ``receive_data`` call, yields
exactly the events, the replies and the close state that feeding the whole stream as
``bytes`` in one call yields. After every call the bytearray must also be resizable: a
memoryview of it kept alive anywhere (a slice stored by the core, a frame held by a
traceback) would forbid that, even if its content were never read again.

The streams mix text and binary messages, whole or fragmented, with pings and pongs between
fragments, payloads from 0 to ~70 KB (7-, 16- and 64-bit lengths, masked payloads past the
2048-byte memoryview threshold, pieces past 16384 bytes kept apart until the message is
complete), split at random points and inside headers and mask keys. Client-masked frames go
into a server-role core, unmasked frames into a client-role core.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import deflate, norm, wire_frames

from websock.protocol.close import Close
from websock.protocol.connection import (
    DEFAULT_MAX_MESSAGE_SIZE,
    CloseReceived,
    Connection,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
)
from websock.protocol.frames import Opcode, serialize_frame

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
ROLES = [Role.SERVER, Role.CLIENT]
GARBAGE = 0xAA
MASK = b"\x5a\xc3\x0f\x96"

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------- feeding


class ReusedBuffer:
    """One bytearray reused for every chunk, as the asyncio layer reuses its read buffer."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, conn: Connection, chunk: bytes) -> None:
        n = len(chunk)
        if n > len(self.buffer):
            self.assert_not_exported()
            self.buffer.extend(bytes(n - len(self.buffer)))
        self.buffer[:n] = chunk
        view = memoryview(self.buffer)[:n]
        conn.receive_data(view)
        del view
        # What the next read (of this connection or another) does to the buffer.
        self.buffer[:] = bytes([GARBAGE]) * len(self.buffer)
        self.assert_not_exported()

    def assert_not_exported(self) -> None:
        try:
            self.buffer.append(GARBAGE)
        except BufferError:
            pytest.fail(
                "receive_data() kept a view of the buffer it was given (a slice it stored, "
                "or an exception's traceback holding a parser frame whose locals include it)"
            )
        del self.buffer[-1]


@dataclass
class Outcome:
    """What the core made of a stream, in a comparable form."""

    events: list[object]
    replies: list[tuple[int, bytes]]
    state: object
    close_rcvd: Close | None
    failure: tuple[str, int, str] | None


def checked_norm(events: list[Event]) -> list[object]:
    """norm(), after checking that data left the core as objects of its own, never views."""
    for event in events:
        if isinstance(event, Ping | Pong):
            assert type(event.payload) is bytes, event
        else:
            assert type(event) in (str, bytes, CloseReceived, ProtocolViolation), event
    return norm(events)


def outcome(conn: Connection) -> Outcome:
    failure = conn.failure
    return Outcome(
        events=checked_norm(conn.events_received()),
        replies=[(f.first, f.payload) for f in wire_frames(b"".join(conn.data_to_send()))],
        state=conn.state,
        close_rcvd=conn.close_rcvd,
        failure=None
        if failure is None
        else (type(failure).__name__, failure.close_code, str(failure)),
    )


def whole(make: Callable[[], Connection], data: bytes) -> Outcome:
    conn = make()
    conn.receive_data(bytes(data))
    return outcome(conn)


def reused(make: Callable[[], Connection], chunks: list[bytes]) -> Outcome:
    conn = make()
    buffer = ReusedBuffer()
    for chunk in chunks:
        buffer.feed(conn, chunk)
    return outcome(conn)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


# ---------------------------------------------------------------------- building streams


@dataclass
class Stream:
    """Frames as the peer of ``role`` sends them; where each header starts and ends."""

    role: Role
    parts: list[bytes] = field(default_factory=list)
    #: (offset, header length, frame length) of each frame
    frames: list[tuple[int, int, int]] = field(default_factory=list)
    size: int = 0

    def add(
        self,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bytes | None = None,
        masked: bool | None = None,
    ) -> None:
        """Append a frame, masked if the peer is a client (unless ``masked`` says otherwise)."""
        if masked is None:
            masked = self.role is Role.SERVER
        frame = serialize_frame(
            opcode, payload, fin=fin, rsv=rsv, mask=(mask or MASK) if masked else None
        )
        self.frames.append((self.size, len(frame) - len(payload), len(frame)))
        self.parts.append(frame)
        self.size += len(frame)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def binary_payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Multi-byte characters, so that fragments and chunks cut through them.
ALPHABET = "aZ0 é߷€語😀"


def text_payload(seed: int, size: int) -> str:
    """Text of roughly ``size`` bytes of UTF-8."""
    return "".join(random.Random(seed).choices(ALPHABET, k=size // 2))


# Payload sizes around every boundary that matters to the parser.
sizes = st.one_of(
    st.integers(0, 125),  # 7-bit length
    st.integers(126, 2048),  # 16-bit length, masked payloads unmasked from a slice
    st.integers(2049, 20000),  # unmasked from a memoryview; pieces past 16384 kept apart
    st.integers(65536, 70000),  # 64-bit length
    st.sampled_from([125, 126, 2048, 2049, 16383, 16384, 16385, 65535, 65536]),
)
masks = st.binary(min_size=4, max_size=4)
control_payloads = st.binary(max_size=125) | st.sampled_from([b"", b"p" * 125])


@st.composite
def valid_streams(draw: st.DrawFn, role: Role) -> tuple[Stream, list[Event]]:
    """A stream of valid frames towards ``role`` and the events it must produce."""
    stream = Stream(role)
    expected: list[Event] = []
    for _ in range(draw(st.integers(1, 4))):
        seed = draw(st.integers(0, 2**32))
        size = draw(sizes)
        message: str | bytes
        if draw(st.booleans()):
            message = text_payload(seed, size)
            raw = message.encode()
        else:
            message = raw = binary_payload(seed, size)
        opcode = TEXT if isinstance(message, str) else BINARY
        cuts = draw(st.lists(st.integers(0, len(raw)), max_size=3))
        pieces = split(raw, cuts) or [b""]
        if draw(st.booleans()):
            pieces.append(b"")  # an empty final fragment
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            stream.add(opcode if i == 0 else CONT, piece, fin=last, mask=draw(masks))
            if not last:
                for kind, payload in draw(
                    st.lists(st.tuples(st.sampled_from([PING, PONG]), control_payloads), max_size=2)
                ):
                    stream.add(kind, payload, mask=draw(masks))
                    expected.append(Ping(payload) if kind == PING else Pong(payload))
        expected.append(message)
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = draw(st.text(ALPHABET, max_size=30))
        stream.add(CLOSE, code.to_bytes(2, "big") + reason.encode(), mask=draw(masks))
        expected.append(CloseReceived(Close(code, reason)))
        # Whatever follows the Close is dropped unparsed, another Close included.
        for _ in range(draw(st.integers(0, 2))):
            stream.add(BINARY, binary_payload(0, draw(sizes)), mask=draw(masks))
        if draw(st.booleans()):
            stream.add(CLOSE, b"\x0f\xa0late", mask=draw(masks))
    return stream, expected


@st.composite
def chunkings(draw: st.DrawFn, stream: Stream) -> list[bytes]:
    """Split ``stream`` at random points, some inside headers and mask keys, some inside
    the payloads of chosen frames (a random point rarely lands in a short control frame)."""
    data = stream.data
    cuts = draw(st.lists(st.integers(0, len(data)), min_size=1, max_size=12))
    last = len(stream.frames) - 1
    for index in draw(st.lists(st.integers(0, last), max_size=5)):
        start, header, _ = stream.frames[index]
        cuts.append(start + draw(st.integers(1, header - 1)))
    for index in draw(st.lists(st.integers(0, last), max_size=3)):
        start, header, length = stream.frames[index]
        if length > header:
            cuts.append(start + draw(st.integers(header, length - 1)))
    return split(data, cuts)


def check_same_outcome(
    make: Callable[[], Connection], stream: Stream, chunks: list[bytes]
) -> Outcome:
    assert b"".join(chunks) == stream.data
    reference = whole(make, stream.data)
    assert reused(make, chunks) == reference
    return reference


# ---------------------------------------------------------------------- valid streams


@SETTINGS
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_valid_stream_from_reused_buffer(data: st.DataObject, role: Role) -> None:
    stream, expected = data.draw(valid_streams(role))
    chunks = data.draw(chunkings(stream))
    reference = check_same_outcome(lambda: Connection(role), stream, chunks)
    assert reference.events == norm(expected)
    pings = [event.payload for event in expected if isinstance(event, Ping)]
    # Pongs answer pings with a copy of their payload.
    assert reference.replies == [(0x8A, payload) for payload in pings]
    closes = [event.close for event in expected if isinstance(event, CloseReceived)]
    assert reference.close_rcvd == (closes[0] if closes else None)


@SETTINGS
@given(
    messages=st.lists(
        st.tuples(st.booleans(), st.integers(0, 2**32), sizes, st.booleans()),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(0, 1 << 18), max_size=12),
    role=st.sampled_from(ROLES),
)
def test_compressed_stream_from_reused_buffer(
    messages: list[tuple[bool, int, int, bool]], cuts: list[int], role: Role
) -> None:
    """Compressed pieces go through the inflater, which must not hold on to them either."""
    sender = Connection(Role.CLIENT if role is Role.SERVER else Role.SERVER, extensions=[deflate()])
    expected: list[Event] = []
    for is_text, seed, size, compressible in messages:
        raw = b"compressible " * (size // 13) if compressible else binary_payload(seed, size)
        if is_text:
            text = text_payload(seed, size) if not compressible else raw.decode()
            sender.send_text(text)
            expected.append(text)
        else:
            sender.send_binary(raw)
            expected.append(raw)
    data = b"".join(sender.data_to_send())
    stream = Stream(role, parts=[data], size=len(data))
    cuts = [c % (len(data) + 1) for c in cuts]
    reference = check_same_outcome(
        lambda: Connection(role, extensions=[deflate()]), stream, split(data, cuts)
    )
    assert reference.events == norm(expected)


# ---------------------------------------------------------------------- drop mode


class Limits(NamedTuple):
    max_message_size: int | None
    max_frame_size: int | None


class Expected(NamedTuple):
    """What a violation stream must produce: the messages before the violation, and the
    violation's close code."""

    messages: list[bytes]
    code: int


# How the peer breaks the protocol; each builds the offending frame(s) and may set a limit.
VIOLATIONS = [
    "wrong masking",
    "reserved opcode",
    "reserved bit",
    "invalid utf-8",
    "orphan continuation",
    "long control frame",
    "fragmented control frame",
    "message too big",
    "frame too big",
    "invalid close",
]

# Close payloads that Close.parse() refuses, and the close code of the violation each is.
# The last one fails through a chained UnicodeDecodeError, whose traceback must not keep a
# view.
INVALID_CLOSES = {b"\x03": 1002, b"\x03\xed": 1002, b"\x00\x00": 1002, b"\x03\xe8\xff": 1007}


@st.composite
def violation_streams(draw: st.DrawFn, role: Role) -> tuple[Stream, Limits, Expected]:
    """Valid messages, a violation, frames that must be dropped, then the peer's Close.

    Also returns what the core must report: the messages before the violation, then the
    violation (with its close code), and nothing else: RFC 6455 7.1.7, nothing after a
    violation is processed, the peer's Close included.
    """
    stream = Stream(role)
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int | None = None
    messages: list[bytes] = []
    for _ in range(draw(st.integers(0, 2))):
        message = binary_payload(1, draw(st.integers(0, 3000)))
        messages.append(message)
        stream.add(BINARY, message, mask=draw(masks))
    kind = draw(st.sampled_from(VIOLATIONS))
    code = 1002
    size = draw(sizes)
    mask = draw(masks)
    if kind == "wrong masking":
        stream.add(BINARY, binary_payload(2, size), masked=role is Role.CLIENT)
    elif kind == "reserved opcode":
        stream.add(draw(st.sampled_from([3, 7, 0xB, 0xF])), binary_payload(3, size), mask=mask)
    elif kind == "reserved bit":
        rsv = draw(st.sampled_from([0x40, 0x20, 0x10]))
        stream.add(TEXT, b"x" * size, rsv=rsv, mask=mask)
    elif kind == "invalid utf-8":
        code = 1007
        raw = bytearray(text_payload(4, size).encode() or b"a")
        raw[draw(st.integers(0, len(raw) - 1))] = 0xFF
        if draw(st.booleans()):
            stream.add(TEXT, bytes(raw), mask=mask)
        else:
            half = len(raw) // 2
            stream.add(TEXT, bytes(raw[:half]), fin=False, mask=mask)
            stream.add(CONT, bytes(raw[half:]), mask=mask)
    elif kind == "orphan continuation":
        stream.add(CONT, binary_payload(5, size), mask=mask)
    elif kind == "long control frame":
        stream.add(draw(st.sampled_from([PING, PONG, CLOSE])), b"c" * max(size, 126), mask=mask)
    elif kind == "fragmented control frame":
        stream.add(PING, b"f" * min(size, 125), fin=False, mask=mask)
    elif kind == "message too big":
        code = 1009
        max_message_size = 5000  # the valid messages above stay below
        stream.add(BINARY, binary_payload(6, 3000), fin=False, mask=mask)
        stream.add(CONT, binary_payload(7, max(size, 2001)), mask=mask)
    elif kind == "frame too big":
        code = 1009
        max_frame_size = 4000
        stream.add(TEXT, b"t" * max(size, 4001), mask=mask)
    else:
        invalid = draw(st.sampled_from(sorted(INVALID_CLOSES)))
        stream.add(CLOSE, invalid, mask=mask)
        code = INVALID_CLOSES[invalid]
    # Frames to drop, of every length encoding, valid or not.
    for _ in range(draw(st.integers(0, 3))):
        opcode = draw(st.sampled_from([TEXT, BINARY, CONT, PING, PONG, 3, 0xB, CLOSE]))
        payload = binary_payload(8, draw(sizes))
        if opcode == CLOSE:
            payload = b"\x03\xe9" + b"r" * 124  # longer than a control frame may be
        stream.add(opcode, payload, mask=draw(masks), masked=draw(st.booleans()))
    # The peer's valid Close, then more: all dropped.
    close_code = draw(st.sampled_from([1000, 1001, 1008, 3000, 4999]))
    reason = draw(st.text(ALPHABET, max_size=20))
    stream.add(CLOSE, close_code.to_bytes(2, "big") + reason.encode(), mask=draw(masks))
    for _ in range(draw(st.integers(0, 2))):
        stream.add(BINARY, binary_payload(9, draw(sizes)), mask=draw(masks))
    return stream, Limits(max_message_size, max_frame_size), Expected(messages, code)


@SETTINGS
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_nothing_after_violation_from_reused_buffer(data: st.DataObject, role: Role) -> None:
    stream, limits, expected = data.draw(violation_streams(role))
    chunks = data.draw(chunkings(stream))
    reference = check_same_outcome(
        lambda: Connection(
            role,
            max_message_size=limits.max_message_size,
            max_frame_size=limits.max_frame_size,
        ),
        stream,
        chunks,
    )
    assert reference.failure is not None
    assert reference.failure[1] == expected.code
    last = reference.events[-1]
    assert isinstance(last, tuple) and last[0] == "violation", last
    # The messages before the violation, then the violation; nothing after it is
    # processed: no Pong, no message, not even the peer's Close.
    assert reference.events == [*expected.messages, last]
    assert reference.replies == []
    assert reference.close_rcvd is None
    assert reference.state is State.OPEN


# ---------------------------------------------------------------------- examples


def boundary_stream(role: Role) -> Stream:
    """One frame of each length encoding, masks included, then a ping and a Close."""
    stream = Stream(role)
    for i, size in enumerate([0, 1, 125, 126, 2048, 2049, 16384, 65535, 65536, 70001]):
        stream.add(BINARY if i % 2 else TEXT, b"\xc3\xa9" * (size // 2) + b"z" * (size % 2))
    stream.add(BINARY, b"frag" * 5000, fin=False)
    stream.add(PING, b"between")
    stream.add(CONT, b"ment" * 5000)
    stream.add(CLOSE, b"\x03\xe8bye")
    return stream


@pytest.mark.parametrize("role", ROLES)
def test_every_header_byte_split(role: Role) -> None:
    """Each header cut after each of its bytes (a mask key too), the rest in one chunk."""
    stream = boundary_stream(role)
    data = stream.data
    reference = whole(lambda: Connection(role), data)
    assert reference.close_rcvd == Close(1000, "bye")
    for start, header, _ in stream.frames:
        for k in range(1, header):
            chunks = split(data, [start + k])
            assert reused(lambda: Connection(role), chunks) == reference, (start, k)
            # A header spread over three reads.
            chunks = split(data, [start + k, start + header + 1])
            assert reused(lambda: Connection(role), chunks) == reference, (start, k)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("read_size", [1, 7, 2048, 4096, 4097, 65536, 256 * 1024])
def test_fixed_size_reads(role: Role, read_size: int) -> None:
    """Chunks as a socket returns them when the peer writes faster than we read."""
    stream = boundary_stream(role)
    data = stream.data
    if read_size == 1:
        data = b"".join(part for part in stream.parts if len(part) < 3000)
    reference = whole(lambda: Connection(role), data)
    chunks = [data[i : i + read_size] for i in range(0, len(data), read_size)]
    assert reused(lambda: Connection(role), chunks) == reference


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "wrap",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: memoryview(bytearray(b"\xaa" * 7 + b + b"\xaa"))[7:-1],
    ],
    ids=["bytes", "bytearray", "memoryview", "view-at-offset"],
)
def test_any_bytes_like_object(role: Role, wrap: Callable[[bytes], bytes]) -> None:
    stream = boundary_stream(role)
    reference = whole(lambda: Connection(role), stream.data)
    conn = Connection(role)
    for part in stream.parts:
        conn.receive_data(wrap(part))
    assert outcome(conn) == reference


def test_large_message_spanning_reads_survives_overwrites() -> None:
    """A masked 64-bit-length message in 4 reads, the buffer clobbered in between."""
    payload = binary_payload(42, 70000)
    stream = Stream(Role.SERVER)
    stream.add(BINARY, payload, mask=b"\x01\x02\x03\x04")
    data = stream.data
    chunks = split(data, [5, 14, 30000, 50001])  # inside the length, inside the mask, ...
    conn = Connection(Role.SERVER)
    buffer = ReusedBuffer()
    for chunk in chunks:
        buffer.feed(conn, chunk)
    assert conn.events_received() == [payload]


def test_buffered_control_frame_survives_overwrite() -> None:
    """An incomplete control frame is kept as a copy, not as a view of the buffer."""
    stream = Stream(Role.SERVER)
    stream.add(PING, b"p" * 125, mask=b"\x01\x02\x03\x04")
    stream.add(CLOSE, b"\x03\xe8" + b"r" * 100, mask=b"\x05\x06\x07\x08")
    data = stream.data
    conn = Connection(Role.SERVER)
    buffer = ReusedBuffer()
    for chunk in split(data, [60, 140, 200]):
        buffer.feed(conn, chunk)
    assert conn.events_received() == [Ping(b"p" * 125), CloseReceived(Close(1000, "r" * 100))]


def deflate_receiver() -> Connection:
    return Connection(Role.SERVER, extensions=[deflate()])


# The violations below are reported with an exception the core caught: its traceback, and
# the traceback of any exception chained to it, would hold the parser's frames, whose locals
# include the memoryview passed to receive_data(); the core drops them.


@pytest.mark.parametrize(
    ("make", "frame"),
    [
        pytest.param(
            lambda: Connection(Role.SERVER),
            serialize_frame(TEXT, b"\xff" * 3000, mask=MASK),
            id="invalid-utf-8",
        ),
        pytest.param(
            lambda: Connection(Role.SERVER),
            serialize_frame(BINARY, b"x" * 3000),
            id="unmasked",
        ),
        pytest.param(
            lambda: Connection(Role.SERVER),
            serialize_frame(CLOSE, b"\x03", mask=MASK),
            id="close-1-byte-payload",
        ),
        pytest.param(
            lambda: Connection(Role.SERVER),
            serialize_frame(CLOSE, b"\x03\xed", mask=MASK),
            id="close-code-1005",
        ),
        pytest.param(
            lambda: Connection(Role.SERVER),
            serialize_frame(CLOSE, b"\x03\xe8\xff", mask=MASK),
            id="close-reason-invalid-utf-8",
        ),
        pytest.param(
            deflate_receiver,
            serialize_frame(PING, b"x", rsv=0x40, mask=MASK),
            id="compressed-ping",
        ),
        pytest.param(
            deflate_receiver,
            serialize_frame(BINARY, b"\xff" * 12, rsv=0x40, mask=MASK),
            id="corrupt-deflate-data",
        ),
    ],
)
def test_violation_keeps_no_view(make: Callable[[], Connection], frame: bytes) -> None:
    conn = make()
    buffer = ReusedBuffer()
    buffer.feed(conn, frame + serialize_frame(CLOSE, b"\x03\xe8", mask=MASK))
    events = conn.events_received()
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)
    # The Close after the bad frame is dropped, not parsed.
    assert conn.close_rcvd is None
    # More input, from the same buffer, is dropped without keeping a view either.
    buffer.feed(conn, serialize_frame(TEXT, b"late" * 1000, mask=MASK))
    assert conn.events_received() == []


def test_huge_frame_header_reserves_nothing_up_front() -> None:
    """A header announcing 2**62 bytes (no limit set) is not allocated at once: the
    payload is received piece by piece like any other, and nothing raises."""
    conn = Connection(Role.SERVER, max_message_size=None)
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 62) + MASK
    conn.receive_data(header + b"x")
    assert conn.events_received() == []
    assert conn.receive_buffer() is None


def test_violation_leaves_the_callers_exception_alone() -> None:
    """A bad Close parsed while the caller handles its own exception: the caller's
    traceback is intact, and the ProtocolError carries no chain into the parser."""
    conn = Connection(Role.SERVER)
    bad_close = serialize_frame(CLOSE, struct.pack("!H", 999), mask=MASK)
    try:
        raise KeyError("the caller's own error")
    except KeyError as mine:
        conn.receive_data(bad_close)
        assert mine.__traceback__ is not None
    assert conn.failure is not None and conn.failure.close_code == 1002
    assert conn.failure.__traceback__ is None and conn.failure.__context__ is None
