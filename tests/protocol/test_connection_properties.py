"""Hypothesis properties and fuzzing of websock.protocol.connection.

Invariants:

- Chunking never matters: any split of a byte stream (down to single bytes) yields exactly
  the events and the replies that feeding it whole yields, with or without
  permessage-deflate, whatever the stream holds (valid or not). One known exception, not
  generated here: a compressed text message that is both invalid UTF-8 and over the size
  limit may fail with 1009 or 1007 depending on how its payload was split, since an
  extension that stops inflating at the limit returns no output to validate.
- A valid stream, built by a peer Connection's ``send_*`` methods, yields the messages and
  control frames that were sent, in order.
- Whatever the bytes, ``receive_data`` raises nothing; a terminal event (CloseReceived or
  ProtocolViolation) comes at most once and is the last event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import norm, wire_frames

from websock.protocol.close import Close
from websock.protocol.connection import (
    CloseReceived,
    Connection,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
)
from websock.protocol.extensions.permessage_deflate import PerMessageDeflate
from websock.protocol.frames import serialize_frame

MASK = b"\x37\xfa\x21\x3d"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def opposite(role: Role) -> Role:
    return Role.CLIENT if role is Role.SERVER else Role.SERVER


@dataclass(frozen=True)
class DeflateConfig:
    """Negotiated permessage-deflate parameters, as seen from the receiving side."""

    remote_nct: bool
    local_nct: bool
    remote_bits: int
    local_bits: int
    level: int

    def receiver(self) -> PerMessageDeflate:
        return PerMessageDeflate(
            remote_no_context_takeover=self.remote_nct,
            local_no_context_takeover=self.local_nct,
            remote_max_window_bits=self.remote_bits,
            local_max_window_bits=self.local_bits,
            compression_level=self.level,
        )

    def sender(self) -> PerMessageDeflate:
        return PerMessageDeflate(
            remote_no_context_takeover=self.local_nct,
            local_no_context_takeover=self.remote_nct,
            remote_max_window_bits=self.local_bits,
            local_max_window_bits=self.remote_bits,
            compression_level=self.level,
        )


deflate_configs = st.builds(
    DeflateConfig,
    remote_nct=st.booleans(),
    local_nct=st.booleans(),
    remote_bits=st.integers(8, 15),
    local_bits=st.integers(8, 15),
    level=st.sampled_from([0, 1, 6, 9]),
)


def replies(conn: Connection) -> list[tuple[int, bytes]]:
    out = conn.data_to_send()
    assert b"" not in out
    return [(f.first, f.payload) for f in wire_frames(b"".join(out))]


def run(conn: Connection, chunks: list[bytes]) -> tuple[list[object], list[tuple[int, bytes]]]:
    for chunk in chunks:
        conn.receive_data(chunk)
    return norm(conn.events_received()), replies(conn)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def check_invariants(events: list[Event]) -> None:
    for event in events:
        assert isinstance(event, str | bytes | Ping | Pong | CloseReceived | ProtocolViolation)
    terminal = [i for i, e in enumerate(events) if isinstance(e, CloseReceived | ProtocolViolation)]
    assert terminal in ([], [len(events) - 1]), events


# ---------------------------------------------------------------------- valid streams

controls = st.lists(
    st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125)), max_size=2
)


class MessagePlan(NamedTuple):
    payload: str | bytes  # what the receiver must deliver
    pieces: list[bytes]  # the payload of each frame
    gaps: list[list[tuple[str, bytes]]]  # control frames after each non-final frame
    compress: bool


@st.composite
def message_plans(draw: st.DrawFn, compressible: bool) -> MessagePlan:
    payload: bytes | str
    if draw(st.booleans()):
        payload = text = draw(st.text(max_size=200))
        raw = text.encode()
    else:
        payload = raw = draw(st.binary(max_size=300) | st.just(b"abc" * 100))
    cuts = draw(st.lists(st.integers(0, len(raw)), max_size=4))
    pieces = split(raw, cuts) if raw else [b""]
    if draw(st.booleans()):
        pieces.append(b"")  # an empty final fragment
    gaps = [draw(controls) for _ in pieces[:-1]]
    compress = draw(st.booleans()) if compressible else True
    return MessagePlan(payload, pieces, gaps, compress)


@st.composite
def valid_streams(
    draw: st.DrawFn, role: Role, config: DeflateConfig | None
) -> tuple[bytes, list[Event]]:
    sender = Connection(opposite(role), extensions=[config.sender()] if config else [])
    expected: list[Event] = []
    for _ in range(draw(st.integers(0, 4))):
        payload, pieces, gaps, compress = draw(message_plans(config is not None))
        text = isinstance(payload, str)
        if len(pieces) == 1 and draw(st.booleans()):
            if text:
                sender.send_text(pieces[0], compress=compress)
            else:
                sender.send_binary(pieces[0], compress=compress)
        else:
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                sender.send_fragment(piece, text=text, fin=last, compress=compress)
                if not last:
                    for kind, data in gaps[i]:
                        if kind == "ping":
                            sender.send_ping(data)
                            expected.append(Ping(data))
                        else:
                            sender.send_pong(data)
                            expected.append(Pong(data))
        expected.append(payload)
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = draw(st.text(max_size=20))
        sender.send_close(code, reason)
        expected.append(CloseReceived(Close(code, reason)))
    return b"".join(sender.data_to_send()), expected


def check_valid_stream(
    role: Role, config: DeflateConfig | None, stream: bytes, expected: list[Event], cuts: list[int]
) -> None:
    def fresh() -> Connection:
        return Connection(role, extensions=[config.receiver()] if config else [])

    whole = fresh()
    whole.receive_data(stream)
    events = whole.events_received()
    assert events == expected
    check_invariants(events)
    written = replies(whole)
    pings = [e.payload for e in expected if isinstance(e, Ping)]
    assert written == [(0x8A, payload) for payload in pings]

    reference = (norm(events), written)
    assert run(fresh(), split(stream, cuts)) == reference
    assert run(fresh(), byte_by_byte(stream)) == reference


@SETTINGS
@given(data=st.data(), role=st.sampled_from([Role.SERVER, Role.CLIENT]))
def test_valid_stream_any_chunking(data: st.DataObject, role: Role) -> None:
    stream, expected = data.draw(valid_streams(role, None))
    cuts = data.draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=10))
    check_valid_stream(role, None, stream, expected, cuts)


@SETTINGS
@given(data=st.data(), role=st.sampled_from([Role.SERVER, Role.CLIENT]), config=deflate_configs)
def test_valid_deflate_stream_any_chunking(
    data: st.DataObject, role: Role, config: DeflateConfig
) -> None:
    stream, expected = data.draw(valid_streams(role, config))
    cuts = data.draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=10))
    check_valid_stream(role, config, stream, expected, cuts)


# ---------------------------------------------------------------------- invalid streams

# Frames with any header bits, masked or not, with payloads that are often valid UTF-8.
raw_frames = st.builds(
    lambda fin, rsv, opcode, masked, payload: serialize_frame(
        opcode, payload, fin=fin, rsv=rsv << 4, mask=MASK if masked else None
    ),
    st.booleans(),
    st.sampled_from([0, 0, 0, 4, 2, 1]),
    st.sampled_from([0, 1, 2, 8, 9, 10, 0, 1, 2, 3, 0xB]),
    st.booleans(),
    st.one_of(
        st.text(max_size=40).map(str.encode),
        st.binary(max_size=40),
        st.sampled_from([b"\x03\xe8", b"\x03\xe8ok", b"\x03\xed", b"\x0b\xb8\xff"]),
        st.just(b"x" * 130),
    ),
)
garbage_streams = st.lists(raw_frames | st.binary(max_size=12), max_size=8).map(b"".join)


@SETTINGS
@given(
    stream=garbage_streams,
    cuts=st.lists(st.integers(0, 1000), max_size=10),
    role=st.sampled_from([Role.SERVER, Role.CLIENT]),
    with_deflate=st.booleans(),
    max_message_size=st.sampled_from([None, 0, 30, 1 << 20]),
    max_frame_size=st.sampled_from([None, 20]),
)
def test_any_stream_chunking_invariant(
    stream: bytes,
    cuts: list[int],
    role: Role,
    with_deflate: bool,
    max_message_size: int | None,
    max_frame_size: int | None,
) -> None:
    def fresh() -> Connection:
        config = DeflateConfig(False, False, 15, 15, 1)
        return Connection(
            role,
            extensions=[config.receiver()] if with_deflate else [],
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
        )

    whole = fresh()
    whole.receive_data(stream)
    events = whole.events_received()
    check_invariants(events)
    reference = (norm(events), replies(whole))
    assert run(fresh(), split(stream, cuts)) == reference
    assert run(fresh(), byte_by_byte(stream)) == reference


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=64), max_size=10),
    role=st.sampled_from([Role.SERVER, Role.CLIENT]),
    with_deflate=st.booleans(),
    eof=st.booleans(),
)
def test_fuzz_random_bytes_never_raise(
    chunks: list[bytes], role: Role, with_deflate: bool, eof: bool
) -> None:
    config = DeflateConfig(False, False, 15, 15, 1)
    conn = Connection(role, extensions=[config.receiver()] if with_deflate else [])
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events += conn.events_received()
    if eof:
        conn.receive_eof()
    check_invariants(events)
    conn.data_to_send()
    # Whatever happened, the connection can still be ended cleanly.
    terminal = events[-1] if events else None
    if isinstance(terminal, ProtocolViolation):
        conn.fail(terminal.error.close_code)
    elif isinstance(terminal, CloseReceived):
        conn.reply_to_close()
    conn.data_to_send()
