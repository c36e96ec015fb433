"""The receive paths of websock.protocol.connection agree with each other.

The core takes a whole, unfragmented, uncompressed data frame that is already in the input
by a fast path, which checks its header with a few comparisons of its own. Any other frame
goes the long way: its header is validated, then its payload is consumed piece by piece (or,
for a large message, straight into the message's own buffer). Feeding a frame whole lets the
fast path take it; feeding its header first, the payload in a later call, sends it the long
way. The tests here compare both for every first header byte, both mask bits and both roles,
with and without permessage-deflate, under several limits; and pin down the edge cases of
the header decoder and of UTF-8 validation at the end of a message, whatever the chunking.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
from wire import deflate, norm, wire_frames

from websock.exceptions import PayloadTooBig
from websock.protocol.connection import (
    _DIRECT_AVAILABLE,
    Connection,
    Event,
    ProtocolViolation,
    Role,
)
from websock.protocol.frames import Opcode, apply_mask, serialize_frame

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
MASK = b"\x37\xfa\x21\x3d"
ROLES = [Role.SERVER, Role.CLIENT]

# Valid UTF-8, an invalid byte, and a sequence cut short at the end of the payload.
PAYLOADS = [b"h\xc3\xa9llo", b"\xff", b"ok\xc3"]

Outcome = tuple[list[object], list[tuple[int, bytes]], int | None]


def frame_to(role: Role, opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A valid frame as the peer of ``role`` sends it (masked towards a server)."""
    return serialize_frame(opcode, payload, fin=fin, mask=MASK if role is Role.SERVER else None)


def raw_frame(first: int, masked: bool, payload: bytes) -> bytes:
    """A frame with any first byte (FIN, RSV, opcode) and either mask bit: maybe invalid."""
    header = bytes([first, (0x80 if masked else 0) | len(payload)])
    return header + MASK + apply_mask(payload, MASK) if masked else header + payload


def compress(payload: bytes) -> bytes:
    """``payload`` as permessage-deflate sends it, from a fresh compressor."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def outcome(make: Callable[[], Connection], chunks: list[bytes]) -> Outcome:
    """Events, replies (first byte and payload: client masks are random) and close code."""
    conn = make()
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events += conn.events_received()
    replies = [(f.first, f.payload) for f in wire_frames(b"".join(conn.data_to_send()))]
    failure = conn.failure
    normed = norm(events)
    if failure is not None and "after decompression" in str(failure):
        # The inflater's message says how much room was left, which depends on how the
        # payload was split: only its type and close code are compared.
        normed[-1] = type(failure).__name__
    return normed, replies, None if failure is None else failure.close_code


def cut(data: bytes, *points: int) -> list[bytes]:
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("with_deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize(
    "limits",
    [(None, None), (4, None), (None, 4), (1 << 20, 1)],
    ids=["no-limit", "message-4", "frame-4", "frame-1"],
)
def test_fast_path_agrees_with_the_long_way(
    role: Role, with_deflate: bool, limits: tuple[int | None, int | None]
) -> None:
    """Every first byte and mask bit, followed by frames whose fate depends on what it left
    behind: the stream whole, split after the frame's header or one byte later, and byte
    by byte (no frame complete in one call) gives the same events, replies and close code."""
    max_message_size, max_frame_size = limits

    def make() -> Connection:
        return Connection(
            role,
            extensions=[deflate()] if with_deflate else [],
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
        )

    # What follows depends on whether the frame left a message open: a continuation, or
    # a new message, in both orders.
    afters = [
        frame_to(role, CONT, b"c") + frame_to(role, BINARY, b"d"),
        frame_to(role, BINARY, b"d") + frame_to(role, CONT, b"c"),
    ]
    for first in range(256):
        for masked in (False, True):
            for index, payload in enumerate(PAYLOADS):
                after = afters[index % 2]
                if with_deflate and first & 0x40:
                    payload = compress(payload)
                frame = raw_frame(first, masked, payload)
                header = 6 if masked else 2
                data = frame + after
                expected = outcome(make, [data])
                context = (hex(first), masked, payload)
                assert outcome(make, cut(data, header)) == expected, context
                assert outcome(make, cut(data, header + 1)) == expected, context
                pieces = [data[i : i + 1] for i in range(len(data))]
                assert outcome(make, pieces) == expected, context


@pytest.mark.parametrize("role", ROLES)
def test_fast_path_takes_consecutive_messages_around_a_fragmented_one(role: Role) -> None:
    data = (
        frame_to(role, TEXT, b"one")
        + frame_to(role, TEXT, b"t", fin=False)
        + frame_to(role, CONT, b"w", fin=False)
        + frame_to(role, CONT, b"o")
        + frame_to(role, BINARY, b"three")
    )
    for point in range(len(data) + 1):
        events, _, failure = outcome(lambda: Connection(role), cut(data, point))
        assert events == ["one", "two", b"three"] and failure is None, point


@pytest.mark.parametrize("role", ROLES)
def test_length_with_msb_set_is_reported_before_the_mask(role: Role) -> None:
    # A masked header with a 64-bit length whose top bit is set: invalid whatever follows,
    # so reported as soon as the length is read, without waiting for the 4 mask bytes.
    header = bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big")
    conn = Connection(role, max_message_size=None)
    for byte in header[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.events_received() == []
    conn.receive_data(header[-1:])
    (event,) = conn.events_received()
    assert isinstance(event, ProtocolViolation)
    assert event.error.close_code == 1002
    assert "most significant bit" in str(event.error)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("attribute", ["max_message_size", "max_frame_size"])
def test_fast_path_reads_limits_changed_after_construction(role: Role, attribute: str) -> None:
    conn = Connection(role)
    conn.receive_data(frame_to(role, BINARY, b"12345"))
    assert conn.events_received() == [b"12345"]
    setattr(conn, attribute, 4)
    conn.receive_data(frame_to(role, BINARY, b"1234") + frame_to(role, BINARY, b"12345"))
    events = conn.events_received()
    assert events[0] == b"1234"
    assert isinstance(events[1], ProtocolViolation)
    assert isinstance(events[1].error, PayloadTooBig)


# ---------------------------------------------------------------------- end of a message


def read_into(conn: Connection, data: bytes, read_size: int) -> bool:
    """Feed ``data`` as an I/O layer with ``recv_into`` does: into receive_buffer() when
    the core offers one (a large message, with the C accelerator), else receive_data().
    True if a buffer was offered."""
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


LARGE = 70000  # past the threshold of the direct receive path


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("tail", "valid"),
    [(b"\xe2\x82\xac", True), (b"\xe2\x82", False), (b"\xff", False), (b"\xed\xa0\x80", False)],
    ids=["euro", "cut-short", "invalid-byte", "surrogate"],
)
@pytest.mark.parametrize("last_read", [1, 2, 3, 4, 5000])
def test_large_text_message_ending(role: Role, tail: bytes, valid: bool, last_read: int) -> None:
    """The last bytes of a large text message (the direct path with the C accelerator) are
    validated whichever read brings them, through receive_buffer() or receive_data()."""
    payload = b"a" * (LARGE - len(tail)) + tail
    data = frame_to(role, TEXT, payload) + frame_to(role, BINARY, b"next")
    split = len(data) - len(frame_to(role, BINARY, b"next")) - last_read
    for via_buffer in (True, False):
        conn = Connection(role)
        if via_buffer:
            assert read_into(conn, data[:split], 16384) is _DIRECT_AVAILABLE
            read_into(conn, data[split:], 1 << 20)
        else:
            conn.receive_data(data[:split])
            conn.receive_data(data[split:])
        events = conn.events_received()
        if valid:
            assert events == [payload.decode(), b"next"], via_buffer
        else:
            assert len(events) == 1 and isinstance(events[0], ProtocolViolation), via_buffer
            assert events[0].error.close_code == 1007


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("with_deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize(
    ("pieces", "valid"),
    [
        ([b"a\xe2", b"\x82", b"\xac"], True),  # a character across all three fragments
        ([b"ab", b"c", b"d\xe2\x82"], False),  # cut short in the last fragment
        ([b"a\xe2", b"\x82", b""], False),  # cut short, then an empty last fragment
        ([b"ab", b"c", b"\xff"], False),  # an invalid byte in the last fragment
    ],
    ids=["spanning", "cut-short", "empty-last", "invalid-last"],
)
def test_fragmented_text_message_ending(
    role: Role, with_deflate: bool, pieces: list[bytes], valid: bool
) -> None:
    """UTF-8 at the end of a fragmented message, validated whatever the chunking."""
    sender = Connection(
        Role.CLIENT if role is Role.SERVER else Role.SERVER,
        extensions=[deflate()] if with_deflate else [],
    )
    for i, piece in enumerate(pieces):
        sender.send_fragment(piece, text=True, fin=i == len(pieces) - 1)
    sender.send_binary(b"next")
    data = b"".join(sender.data_to_send())

    def make() -> Connection:
        return Connection(role, extensions=[deflate()] if with_deflate else [])

    expected = outcome(make, [data])
    if valid:
        assert expected[0] == [b"".join(pieces).decode(), b"next"]
    else:
        assert expected[2] == 1007 and len(expected[0]) == 1
    assert outcome(make, [data[i : i + 1] for i in range(len(data))]) == expected
    for point in range(len(data) + 1):
        assert outcome(make, cut(data, point)) == expected, point
