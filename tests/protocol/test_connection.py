"""Tests for websock.protocol.connection: receiving, violations, limits and closing.

Every test asserts what goes over the wire (bytes), what the core reports (events, close
codes) and the state it is in. Hypothesis properties and fuzzing live in
test_connection_properties.py; sending in test_connection_send.py.
"""

from __future__ import annotations

import time
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
from wire import deflate, wire_frames

from websock.exceptions import InvalidState, PayloadTooBig, ProtocolError
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
from websock.protocol.extensions.base import Extension
from websock.protocol.frames import Frame, Opcode, apply_mask, serialize_frame

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
MASK = b"\x37\xfa\x21\x3d"
ROLES = [Role.SERVER, Role.CLIENT]


# ---------------------------------------------------------------------- helpers


def frame_to(
    role: Role, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
) -> bytes:
    """A frame as the peer of ``role`` sends it (masked towards a server)."""
    mask = MASK if role is Role.SERVER else None
    return serialize_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)


def header_to(role: Role, opcode: int, length: int, *, fin: bool = True, rsv: int = 0) -> bytes:
    """Only the header of a frame as the peer of ``role`` sends it (for partial payloads)."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if role is Role.SERVER else 0
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 65536:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    return header + MASK if role is Role.SERVER else header


def masked_piece(role: Role, payload: bytes, offset: int = 0) -> bytes:
    """Payload bytes at ``offset`` of a frame built by ``header_to`` (masked if needed)."""
    if role is Role.CLIENT:
        return payload
    k = offset % 4
    return apply_mask(payload, MASK[k:] + MASK[:k])


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def feed(conn: Connection, *chunks: bytes) -> list[Event]:
    for chunk in chunks:
        conn.receive_data(chunk)
    return conn.events_received()


def violation(events: list[Event]) -> ProtocolError:
    """The ProtocolViolation that must end ``events``."""
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, ProtocolViolation), events
    assert not any(isinstance(e, ProtocolViolation | CloseReceived) for e in events[:-1])
    return last.error


def assert_violation(events: list[Event], code: int) -> ProtocolError:
    error = violation(events)
    assert error.close_code == code, (error, error.close_code)
    if code == 1009:
        assert isinstance(error, PayloadTooBig)
    return error


def parse_frames(data: bytes) -> list[tuple[int, int, bool, bytes | None, bytes]]:
    """Split bytes we sent into (first byte, opcode, masked, mask, unmasked payload)."""
    return [(f.first, f.opcode, f.masked, f.mask, f.payload) for f in wire_frames(data)]


def state(conn: Connection) -> State:
    # A call, not an attribute: mypy would keep the attribute narrowed across calls.
    return conn.state


# ---------------------------------------------------------------------- messages


@pytest.mark.parametrize("role", ROLES)
class TestMessages:
    def test_text_and_binary(self, role: Role) -> None:
        conn = Connection(role)
        data = frame_to(role, TEXT, "héllo €".encode()) + frame_to(role, BINARY, b"\x00\xff")
        assert feed(conn, data) == ["héllo €", b"\x00\xff"]
        assert conn.events_received() == []
        assert state(conn) is State.OPEN

    def test_empty_messages(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, TEXT) + frame_to(role, BINARY)) == ["", b""]

    @pytest.mark.parametrize("length", [125, 126, 65535, 65536, 70000])
    def test_length_encodings(self, role: Role, length: int) -> None:
        conn = Connection(role)
        payload = bytes(range(256)) * (length // 256 + 1)
        payload = payload[:length]
        assert feed(conn, frame_to(role, BINARY, payload)) == [payload]

    @pytest.mark.parametrize("length", [0, 5, 126, 70000])
    def test_byte_by_byte(self, role: Role, length: int) -> None:
        conn = Connection(role)
        payload = ("é" * length).encode()[:length] if length % 2 == 0 else b"x" * length
        data = frame_to(role, TEXT, payload) + frame_to(role, PING, b"p")
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
            if i < len(data) - len(frame_to(role, PING, b"p")) - 1:
                assert conn.events_received() == []
        assert conn.events_received() == [payload.decode(), Ping(b"p")]

    def test_fragmented_text_with_split_characters(self, role: Role) -> None:
        conn = Connection(role)
        text = "κόσμε€𝄞"
        raw = text.encode()
        frames = [
            frame_to(role, TEXT, raw[:1], fin=False),  # splits κ
            frame_to(role, PING, b"ping"),
            frame_to(role, CONT, raw[1:9], fin=False),
            frame_to(role, PONG, b"pong"),
            frame_to(role, CONT, b"", fin=False),
            frame_to(role, CONT, raw[9:-2], fin=False),  # splits 𝄞
            frame_to(role, CONT, raw[-2:], fin=True),
        ]
        events = feed(conn, b"".join(frames))
        assert events == [Ping(b"ping"), Pong(b"pong"), text]

    def test_fragmented_binary_delivered_once_complete(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, BINARY, b"ab", fin=False)) == []
        assert feed(conn, frame_to(role, CONT, b"cd", fin=False)) == []
        assert feed(conn, frame_to(role, CONT, b"ef")) == [b"abcdef"]
        # The next message starts afresh.
        assert feed(conn, frame_to(role, BINARY, b"gh")) == [b"gh"]

    def test_partial_payload_of_large_frame(self, role: Role) -> None:
        conn = Connection(role)
        payload = b"z" * 1000
        data = frame_to(role, BINARY, payload)
        assert feed(conn, data[:300]) == []
        assert feed(conn, data[300:999]) == []
        assert feed(conn, data[999:]) == [payload]

    def test_empty_receive_data(self, role: Role) -> None:
        conn = Connection(role)
        conn.receive_data(b"")
        assert conn.events_received() == []
        assert conn.data_to_send() == []

    def test_pong_event(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, PONG, b"x" * 125)) == [Pong(b"x" * 125)]
        assert conn.data_to_send() == []


# ---------------------------------------------------------------------- violations


@pytest.mark.parametrize("role", ROLES)
class TestViolations:
    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE])
    def test_rsv_without_extension(self, role: Role, rsv: int, opcode: int) -> None:
        conn = Connection(role)
        error = assert_violation(feed(conn, frame_to(role, opcode, b"x", rsv=rsv)), 1002)
        assert "reserved" in str(error)

    def test_rsv_on_continuation_without_extension(self, role: Role) -> None:
        conn = Connection(role)
        data = frame_to(role, TEXT, b"a", fin=False) + frame_to(role, CONT, b"b", rsv=0x40)
        assert_violation(feed(conn, data), 1002)

    def test_rsv2_with_deflate(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        assert_violation(feed(conn, frame_to(role, TEXT, b"x", rsv=0x20)), 1002)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_unknown_opcode(self, role: Role, opcode: int) -> None:
        conn = Connection(role)
        error = assert_violation(feed(conn, frame_to(role, opcode, b"abc")), 1002)
        assert "opcode" in str(error)

    def test_masking_rule(self, role: Role) -> None:
        conn = Connection(role)
        wrong_mask = None if role is Role.SERVER else MASK
        data = serialize_frame(TEXT, b"hello", mask=wrong_mask)
        error = assert_violation(feed(conn, data), 1002)
        assert "mask" in str(error)

    @pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
    def test_fragmented_control_frame(self, role: Role, opcode: int) -> None:
        conn = Connection(role)
        assert_violation(feed(conn, frame_to(role, opcode, b"", fin=False)), 1002)

    @pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
    def test_control_frame_too_long(self, role: Role, opcode: int) -> None:
        conn = Connection(role)
        # Detected from the header alone.
        assert_violation(feed(conn, header_to(role, opcode, 126)), 1002)
        conn = Connection(role)
        assert_violation(feed(conn, header_to(role, opcode, 70000)), 1002)

    def test_control_frame_of_125_bytes(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, PING, b"p" * 125)) == [Ping(b"p" * 125)]

    def test_continuation_without_start(self, role: Role) -> None:
        conn = Connection(role)
        assert_violation(feed(conn, frame_to(role, CONT, b"x")), 1002)
        conn = Connection(role)
        data = frame_to(role, TEXT, b"done") + frame_to(role, CONT, b"x", fin=False)
        events = feed(conn, data)
        assert events[0] == "done"
        assert_violation(events, 1002)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_new_data_frame_inside_fragmented_message(self, role: Role, opcode: int) -> None:
        conn = Connection(role)
        data = frame_to(role, BINARY, b"a", fin=False) + frame_to(role, opcode, b"b")
        assert_violation(feed(conn, data), 1002)

    def test_64_bit_length_with_msb_set(self, role: Role) -> None:
        conn = Connection(role, max_message_size=None)
        mask_bit = 0x80 if role is Role.SERVER else 0
        header = bytes([0x82, mask_bit | 127]) + (1 << 63).to_bytes(8, "big")
        if role is Role.SERVER:
            header += MASK
        assert_violation(feed(conn, header + b"data"), 1002)

    # -- close frames

    def test_close_with_one_byte(self, role: Role) -> None:
        # A Close with an invalid payload is a violation like any other, not a Close.
        conn = Connection(role)
        assert_violation(feed(conn, frame_to(role, CLOSE, b"\x03")), 1002)
        assert conn.close_rcvd is None
        assert conn.close_rcvd_then_sent is None
        assert state(conn) is State.OPEN

    @pytest.mark.parametrize(
        "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
    )
    def test_invalid_close_code(self, role: Role, code: int) -> None:
        conn = Connection(role)
        error = assert_violation(feed(conn, frame_to(role, CLOSE, close_payload(code))), 1002)
        assert str(code) in str(error)

    def test_close_reason_invalid_utf8(self, role: Role) -> None:
        conn = Connection(role)
        data = frame_to(role, CLOSE, close_payload(1000, b"bad \xff reason"))
        assert_violation(feed(conn, data), 1007)

    @pytest.mark.parametrize(
        ("payload", "code"),
        [(b"\x03", 1002), (close_payload(999), 1002), (close_payload(1000, b"\xff"), 1007)],
    )
    def test_invalid_close_is_a_violation_not_a_close(
        self, role: Role, payload: bytes, code: int
    ) -> None:
        # A bad Close is not a Close we may answer (RFC 6455 7.1.7): close_rcvd stays None
        # and fail() sends our Close. A server then ends TCP at once; a client waits for
        # the server to end it.
        conn = Connection(role)
        data = frame_to(role, TEXT, b"before") + frame_to(role, CLOSE, payload)
        events = feed(conn, data)
        assert events[0] == "before"
        assert_violation(events, code)
        assert len(events) == 2
        assert state(conn) is State.OPEN
        assert conn.close_rcvd is None
        assert conn.close_rcvd_then_sent is None
        conn.fail(code)
        out = conn.data_to_send()
        frames = parse_frames(b"".join(out))
        assert [(f[1], f[4]) for f in frames] == [(CLOSE, close_payload(code))]
        assert conn.close_rcvd_then_sent is False
        if role is Role.SERVER:
            assert out[-1] == b""
            assert b"" not in out[:-1]
            assert state(conn) is State.CLOSED
        else:
            assert b"" not in out
            assert state(conn) is State.CLOSING
            conn.receive_eof()
            assert state(conn) is State.CLOSED
            assert conn.data_to_send() == []
        assert conn.close_rcvd is None

    def test_invalid_close_after_ours(self, role: Role) -> None:
        # The peer answers our Close with a bad one: a violation, not the end of the
        # closing handshake. fail() sends no second Close; a server ends TCP.
        conn = Connection(role)
        conn.send_close(1000)
        conn.data_to_send()
        assert_violation(feed(conn, frame_to(role, CLOSE, close_payload(1004))), 1002)
        assert state(conn) is State.CLOSING
        assert conn.close_rcvd is None
        assert conn.close_rcvd_then_sent is False
        assert conn.data_to_send() == []
        conn.fail(1002)  # no second Close
        assert conn.data_to_send() == ([b""] if role is Role.SERVER else [])
        assert state(conn) is (State.CLOSED if role is Role.SERVER else State.CLOSING)
        assert conn.close_sent == Close(1000)

    # -- UTF-8

    @pytest.mark.parametrize(
        "payload", [b"\xff", b"a\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xce"]
    )
    def test_invalid_utf8_single_frame(self, role: Role, payload: bytes) -> None:
        conn = Connection(role)
        assert_violation(feed(conn, frame_to(role, TEXT, payload)), 1007)

    def test_text_ends_inside_a_sequence_fragmented(self, role: Role) -> None:
        conn = Connection(role)
        data = frame_to(role, TEXT, b"a\xe2\x82", fin=False) + frame_to(role, CONT, b"")
        error = assert_violation(feed(conn, data), 1007)
        assert "UTF-8" in str(error)

    def test_invalid_utf8_in_binary_is_fine(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, BINARY, b"\xff\xfe")) == [b"\xff\xfe"]

    def test_utf8_fails_fast_in_first_part_of_a_frame(self, role: Role) -> None:
        # Autobahn 6.4.3: one frame; the invalid bytes arrive before the rest of it.
        conn = Connection(role)
        part1 = bytes.fromhex("cebae1bdb9cf83cebcceb5")
        part2 = bytes.fromhex("f4908080")
        part3 = b"edited"
        length = len(part1 + part2 + part3)
        header = header_to(role, TEXT, length)
        assert feed(conn, header, masked_piece(role, part1)) == []
        events = feed(conn, masked_piece(role, part2, len(part1)))
        assert_violation(events, 1007)
        # The rest of the frame and anything after it is ignored.
        rest = masked_piece(role, part3, len(part1 + part2)) + frame_to(role, TEXT, b"x")
        assert feed(conn, rest) == []

    def test_utf8_fails_fast_on_first_invalid_byte(self, role: Role) -> None:
        # Autobahn 6.4.4: only the first byte of the invalid sequence has arrived... then
        # the second one makes it invalid, long before the frame is complete.
        conn = Connection(role)
        part1 = bytes.fromhex("cebae1bdb9cf83cebcceb5")
        header = header_to(role, TEXT, len(part1) + 10)
        assert feed(conn, header, masked_piece(role, part1 + b"\xf4", 0)) == []
        events = feed(conn, masked_piece(role, b"\x90", len(part1) + 1))
        assert_violation(events, 1007)

    def test_utf8_fails_fast_in_middle_fragment(self, role: Role) -> None:
        conn = Connection(role)
        first = frame_to(role, TEXT, "κόσμε".encode(), fin=False)
        middle_header = header_to(role, CONT, 20, fin=False)
        assert feed(conn, first, middle_header, masked_piece(role, b"ok")) == []
        events = feed(conn, masked_piece(role, b"\xed\xa0", 2))
        assert_violation(events, 1007)

    def test_utf8_invalid_sequence_split_across_fragments(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, TEXT, b"abc\xf0", fin=False)) == []
        events = feed(conn, frame_to(role, CONT, b"\x8f\x80\x80", fin=False))
        assert_violation(events, 1007)


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize("role", ROLES)
class TestLimits:
    def test_default_limit(self, role: Role) -> None:
        assert Connection(role).max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1 << 20
        assert Connection(role).max_frame_size is None

    def test_invalid_limits(self, role: Role) -> None:
        with pytest.raises(ValueError):
            Connection(role, max_message_size=-1)
        with pytest.raises(ValueError):
            Connection(role, max_frame_size=-1)

    def test_message_at_limit(self, role: Role) -> None:
        conn = Connection(role, max_message_size=1000)
        assert feed(conn, frame_to(role, BINARY, b"x" * 1000)) == [b"x" * 1000]

    @pytest.mark.parametrize("length", [1001, 65536, 1 << 40])
    def test_message_over_limit_detected_from_header(self, role: Role, length: int) -> None:
        conn = Connection(role, max_message_size=1000)
        error = assert_violation(feed(conn, header_to(role, BINARY, length)), 1009)
        assert "1000" in str(error)

    def test_text_over_limit_complete_in_buffer(self, role: Role) -> None:
        conn = Connection(role, max_message_size=10)
        assert_violation(feed(conn, frame_to(role, TEXT, b"x" * 11)), 1009)

    def test_fragmented_message_cumulative(self, role: Role) -> None:
        conn = Connection(role, max_message_size=1000)
        assert feed(conn, frame_to(role, BINARY, b"x" * 400, fin=False)) == []
        assert feed(conn, frame_to(role, CONT, b"x" * 400, fin=False)) == []
        # The third fragment's header is enough to know that the message is too big.
        assert_violation(feed(conn, header_to(role, CONT, 201)), 1009)

    def test_fragmented_message_at_limit(self, role: Role) -> None:
        conn = Connection(role, max_message_size=1000)
        data = frame_to(role, TEXT, b"x" * 500, fin=False) + frame_to(role, CONT, b"y" * 500)
        assert feed(conn, data) == ["x" * 500 + "y" * 500]
        # The budget is per message.
        assert feed(conn, frame_to(role, TEXT, b"z" * 1000)) == ["z" * 1000]

    def test_no_limit(self, role: Role) -> None:
        conn = Connection(role, max_message_size=None)
        payload = b"x" * (DEFAULT_MAX_MESSAGE_SIZE + 1)
        assert feed(conn, frame_to(role, BINARY, payload)) == [payload]

    def test_zero_limit(self, role: Role) -> None:
        conn = Connection(role, max_message_size=0)
        assert feed(conn, frame_to(role, TEXT)) == [""]
        assert_violation(feed(conn, frame_to(role, TEXT, b"x")), 1009)

    def test_max_frame_size(self, role: Role) -> None:
        conn = Connection(role, max_frame_size=100)
        data = frame_to(role, TEXT, b"x" * 100, fin=False) + frame_to(role, CONT, b"y" * 100)
        assert feed(conn, data) == ["x" * 100 + "y" * 100]
        error = assert_violation(feed(conn, header_to(role, BINARY, 101)), 1009)
        assert "100" in str(error)

    def test_max_frame_size_on_continuation(self, role: Role) -> None:
        conn = Connection(role, max_frame_size=100)
        data = frame_to(role, TEXT, b"x", fin=False) + header_to(role, CONT, 101)
        assert_violation(feed(conn, data), 1009)

    def test_compressed_message_over_limit(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()], max_message_size=1000)
        peer = Connection(opposite(role), extensions=[deflate()])
        peer.send_binary(b"a" * 1000)
        peer.send_binary(b"b" * 1001)
        events = feed(conn, *peer.data_to_send())
        assert events[0] == b"a" * 1000
        assert_violation(events, 1009)

    def test_fragmented_compressed_message_over_limit(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()], max_message_size=1000)
        peer = Connection(opposite(role), extensions=[deflate()])
        peer.send_fragment(b"a" * 600, text=True)
        assert feed(conn, *peer.data_to_send()) == []
        peer.send_fragment(b"a" * 401, fin=True)
        assert_violation(feed(conn, *peer.data_to_send()), 1009)

    def test_compressed_message_in_tiny_fragments_within_limit(self, role: Role) -> None:
        # Each sync-flushed fragment costs ~6 bytes of deflate overhead, so the wire size
        # (about 5x the limit here) must not count: only the inflated size does.
        conn = Connection(role, extensions=[deflate()], max_message_size=1000)
        peer = Connection(opposite(role), extensions=[deflate()])
        for i in range(500):
            peer.send_fragment(bytes([65 + i % 26]) * 2, fin=i == 499)
        wire = b"".join(peer.data_to_send())
        assert len(wire) > 4000
        expected = b"".join(bytes([65 + i % 26]) * 2 for i in range(500))
        assert feed(conn, wire) == [expected]

    def test_decompression_bomb(self, role: Role) -> None:
        # 1 GiB of zeros compresses to about 1 MiB: each full-flushed 1 MiB block of zeros
        # deflates to the same ~1 KiB, so repeating one block builds the stream cheaply.
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = compressor.compress(b"\0" * (1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
        assert len(block) < 1100
        limit = 1 << 20
        bomb = block * ((limit + (limit >> 10)) // len(block))  # about 1 GiB inflated
        conn = Connection(role, extensions=[deflate()], max_message_size=limit)
        data = frame_to(role, BINARY, bomb, rsv=0x40)
        tracemalloc.start()
        start = time.perf_counter()
        try:
            events = feed(conn, data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - start
        assert_violation(events, 1009)
        # Inflating stops after about max_message_size bytes of output.
        assert peak < 8 * limit + 4 * len(data), peak
        assert elapsed < 2.0, elapsed

    def test_decompression_bomb_in_small_frames(self, role: Role) -> None:
        # Every 1 KiB frame inflates to 1 MiB: the second one goes over a 1 MiB limit.
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = compressor.compress(b"\0" * (1 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        conn = Connection(role, extensions=[deflate()], max_message_size=1 << 20)
        first = frame_to(role, BINARY, block, fin=False, rsv=0x40)
        assert feed(conn, first) == []
        assert_violation(feed(conn, frame_to(role, CONT, block, fin=False)), 1009)


def opposite(role: Role) -> Role:
    return Role.CLIENT if role is Role.SERVER else Role.SERVER


# ---------------------------------------------------------------------- deflate


@pytest.mark.parametrize("role", ROLES)
class TestDeflateReceive:
    def test_compressed_messages(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        peer = Connection(opposite(role), extensions=[deflate()])
        peer.send_text("hello " * 100)
        peer.send_binary(b"\x00" * 3000)
        peer.send_text("")
        peer.send_text("uncompressed", compress=False)
        data = b"".join(peer.data_to_send())
        assert parse_frames(data)[0][0] & 0x40
        assert not parse_frames(data)[3][0] & 0x40
        assert feed(conn, data) == ["hello " * 100, b"\x00" * 3000, "", "uncompressed"]

    def test_compressed_fragmented_with_controls(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        peer = Connection(opposite(role), extensions=[deflate()])
        text = "€uro " * 50
        raw = text.encode()
        peer.send_fragment(raw[:101], text=True)
        peer.send_ping(b"1")
        peer.send_fragment(raw[101:])
        peer.send_pong(b"2")
        peer.send_fragment(b"", fin=True)
        data = b"".join(peer.data_to_send())
        frames = parse_frames(data)
        assert [f[0] & 0xF0 for f in frames] == [0x40, 0x80, 0x00, 0x80, 0x80]
        events = feed(conn, data)
        assert events == [Ping(b"1"), Pong(b"2"), text]

    def test_rsv1_on_continuation(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        peer = Connection(opposite(role), extensions=[deflate()])
        peer.send_fragment(b"abc", text=True)
        data = b"".join(peer.data_to_send()) + frame_to(role, CONT, b"\x00", rsv=0x40)
        assert_violation(feed(conn, data), 1002)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_rsv1_on_control_frame(self, role: Role, opcode: int) -> None:
        conn = Connection(role, extensions=[deflate()])
        assert_violation(feed(conn, frame_to(role, opcode, b"", rsv=0x40)), 1002)

    def test_corrupt_compressed_data(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        assert_violation(feed(conn, frame_to(role, BINARY, b"\xff\xff\xff", rsv=0x40)), 1007)

    def test_compressed_invalid_utf8_fails_fast(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
        bad = compressor.compress(b"ok\xed\xa0") + compressor.flush(zlib.Z_SYNC_FLUSH)
        header = header_to(role, TEXT, len(bad) + 50, rsv=0x40)
        assert_violation(feed(conn, header + masked_piece(role, bad)), 1007)


# ---------------------------------------------------------------------- ordering, drop mode


@pytest.mark.parametrize("role", ROLES)
class TestOrderingAndDropMode:
    def test_messages_before_violation_are_delivered(self, role: Role) -> None:
        conn = Connection(role)
        data = (
            frame_to(role, TEXT, b"one")
            + frame_to(role, PING, b"p")
            + frame_to(role, BINARY, b"two")
            + frame_to(role, 5, b"bad")
            + frame_to(role, TEXT, b"three")
            + frame_to(role, CLOSE, close_payload(1000))
        )
        events = feed(conn, data)
        assert events[:3] == ["one", Ping(b"p"), b"two"]
        assert_violation(events, 1002)
        assert len(events) == 4
        assert conn.failure is violation(events)
        # The Ping was answered before the violation; nothing after it.
        assert [f[1] for f in parse_frames(b"".join(conn.data_to_send()))] == [PONG]
        # Nothing after the bad frame is processed, not even the peer's Close.
        assert conn.close_rcvd is None
        assert state(conn) is State.OPEN

    def test_messages_before_close_are_delivered(self, role: Role) -> None:
        conn = Connection(role)
        data = (
            frame_to(role, TEXT, b"one")
            + frame_to(role, CLOSE, close_payload(1001, b"bye"))
            + frame_to(role, TEXT, b"after")
            + frame_to(role, PING, b"after")
        )
        assert feed(conn, data) == ["one", CloseReceived(Close(1001, "bye"))]
        assert conn.data_to_send() == []

    def test_nothing_after_violation_is_processed_not_even_peer_close(self, role: Role) -> None:
        conn = Connection(role)
        assert_violation(feed(conn, frame_to(role, TEXT, b"\xff")), 1007)
        junk = (
            frame_to(role, PING, b"x")
            + frame_to(role, TEXT, b"\xff" * 300)
            + frame_to(role, CONT, b"no start")
            + frame_to(role, 7, b"bad opcode")
        )
        assert feed(conn, junk) == []
        assert conn.data_to_send() == []  # no Pong
        assert conn.close_rcvd is None
        # The peer's Close before fail() is dropped too.
        assert feed(conn, frame_to(role, CLOSE, close_payload(1000))) == []
        assert conn.close_rcvd is None
        assert state(conn) is State.OPEN
        conn.fail(1007)
        out = conn.data_to_send()
        frames = parse_frames(b"".join(out))
        assert [(f[1], f[4]) for f in frames] == [(CLOSE, close_payload(1007))]
        # ... and after it: the Close answering ours is not processed either.
        assert feed(conn, frame_to(role, CLOSE, close_payload(1007))) == []
        assert conn.close_rcvd is None
        assert conn.close_rcvd_then_sent is False
        assert conn.failure is not None and conn.failure.close_code == 1007
        if role is Role.SERVER:
            assert out[-1] == b""
            assert state(conn) is State.CLOSED
        else:
            assert b"" not in out
            assert state(conn) is State.CLOSING
            conn.receive_eof()
            assert state(conn) is State.CLOSED
        assert conn.data_to_send() == []

    def test_peer_close_after_violation_is_ignored(self, role: Role) -> None:
        # The peer's Close right behind the bad frame (same chunk) is not processed: our
        # Close, sent by fail(), starts the closing handshake.
        conn = Connection(role)
        data = frame_to(role, 3, b"") + frame_to(role, CLOSE, close_payload(1002))
        assert_violation(feed(conn, data), 1002)
        assert conn.close_rcvd is None
        assert state(conn) is State.OPEN
        conn.fail(1002)
        out = conn.data_to_send()
        assert [f[1] for f in parse_frames(b"".join(out))] == [CLOSE]
        assert conn.close_rcvd_then_sent is False
        if role is Role.SERVER:
            assert out == [out[0], b""]
            assert state(conn) is State.CLOSED
        else:
            assert b"" not in out
            assert state(conn) is State.CLOSING

    def test_violation_mid_payload_drops_rest_of_frame_and_peer_close(self, role: Role) -> None:
        # The bad byte is early in a long frame; the rest of that frame holds bytes that
        # look like a Close frame: neither they nor the real Close after them are parsed.
        conn = Connection(role)
        fake_close = serialize_frame(CLOSE, close_payload(1000))
        payload = b"\xff" + fake_close * 10
        data = frame_to(role, TEXT, payload)
        header_len = len(data) - len(payload)
        assert_violation(feed(conn, data[: header_len + 3]), 1007)
        assert feed(conn, data[header_len + 3 :]) == []
        assert conn.close_rcvd is None
        assert feed(conn, frame_to(role, CLOSE, close_payload(3000, b"real"))) == []
        assert conn.close_rcvd is None
        assert state(conn) is State.OPEN
        assert conn.data_to_send() == []

    def test_nothing_after_bad_header_is_parsed(self, role: Role) -> None:
        conn = Connection(role)
        fake_close = serialize_frame(CLOSE, close_payload(1000))
        data = frame_to(role, BINARY, fake_close, rsv=0x20) + frame_to(
            role, CLOSE, close_payload(4000)
        )
        for i in range(len(data)):  # byte by byte: the bytes after the header are dropped
            conn.receive_data(data[i : i + 1])
        assert_violation(conn.events_received(), 1002)
        assert conn.close_rcvd is None
        assert state(conn) is State.OPEN

    @pytest.mark.parametrize("payload", [close_payload(999), close_payload(1000, b"\xc0")])
    def test_bad_close_after_violation_is_ignored(self, role: Role, payload: bytes) -> None:
        # Neither recorded nor reported as a second violation: the first failure stands.
        conn = Connection(role)
        error = assert_violation(feed(conn, frame_to(role, 3)), 1002)
        assert feed(conn, frame_to(role, CLOSE, payload)) == []
        assert conn.close_rcvd is None
        assert conn.failure is error

    def test_after_close_received_everything_is_ignored(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, CLOSE)) == [CloseReceived(Close(1005))]
        junk = frame_to(role, TEXT, b"x") + frame_to(role, CLOSE, close_payload(1000))
        assert feed(conn, junk + b"\xff" * 50) == []
        assert conn.close_rcvd == Close(1005)  # the first Close counts
        assert conn.data_to_send() == []

    def test_drop_mode_never_raises_on_garbage(self, role: Role) -> None:
        conn = Connection(role)
        assert_violation(
            feed(conn, b"\x8f\x00" if role is Role.CLIENT else b"\x8f\x80" + MASK), 1002
        )
        garbage = bytes(range(256)) * 20 + b"\xff" * 20
        for i in range(0, len(garbage), 7):
            conn.receive_data(garbage[i : i + 7])
        assert conn.events_received() == []
        assert conn.data_to_send() == []
        assert conn.close_rcvd is None

    def test_close_after_violation_at_64_bit_length(self, role: Role) -> None:
        conn = Connection(role, max_message_size=None)
        header = bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big")
        assert_violation(feed(conn, header), 1002)
        conn.fail(1002)
        assert conn.close_expected()


# ---------------------------------------------------------------------- closing


@pytest.mark.parametrize("role", ROLES)
class TestClosing:
    def test_we_close_first(self, role: Role) -> None:
        conn = Connection(role)
        assert not conn.close_expected()
        conn.send_close(1000, "bye")
        frames = parse_frames(b"".join(conn.data_to_send()))
        assert [(f[1], f[4]) for f in frames] == [(CLOSE, close_payload(1000, b"bye"))]
        assert state(conn) is State.CLOSING
        assert conn.close_sent == Close(1000, "bye")
        assert conn.close_rcvd_then_sent is False
        assert conn.close_expected()
        # Messages still arrive until the peer's Close.
        data = frame_to(role, TEXT, b"late") + frame_to(role, CLOSE, close_payload(1000))
        assert feed(conn, data) == ["late", CloseReceived(Close(1000))]
        assert state(conn) is State.CLOSED
        assert conn.data_to_send() == ([b""] if role is Role.SERVER else [])
        conn.reply_to_close()  # nothing left to do
        assert conn.data_to_send() == []
        assert conn.close_rcvd_then_sent is False

    def test_peer_closes_first(self, role: Role) -> None:
        conn = Connection(role)
        events = feed(conn, frame_to(role, CLOSE, close_payload(1001, b"away")))
        assert events == [CloseReceived(Close(1001, "away"))]
        assert state(conn) is State.CLOSING
        assert conn.close_rcvd_then_sent is True
        assert not conn.close_expected()
        assert conn.data_to_send() == []  # the core does not answer by itself
        conn.reply_to_close()
        out = conn.data_to_send()
        frames = parse_frames(b"".join(out))
        assert [(f[1], f[4]) for f in frames] == [(CLOSE, close_payload(1001))]
        assert state(conn) is State.CLOSED
        assert conn.close_sent == Close(1001)
        assert conn.close_expected()
        if role is Role.SERVER:
            assert out[-1] == b""
        else:
            assert b"" not in out
        conn.reply_to_close()
        assert conn.data_to_send() == []

    def test_reply_to_empty_close(self, role: Role) -> None:
        conn = Connection(role)
        assert feed(conn, frame_to(role, CLOSE)) == [CloseReceived(Close(1005))]
        conn.reply_to_close()
        frames = parse_frames(b"".join(conn.data_to_send()))
        assert [(f[1], f[4]) for f in frames] == [(CLOSE, close_payload(1000))]

    @pytest.mark.parametrize("code", [1000, 1003, 1011, 1014, 3000, 4999])
    def test_reply_echoes_code(self, role: Role, code: int) -> None:
        conn = Connection(role)
        feed(conn, frame_to(role, CLOSE, close_payload(code, b"why")))
        conn.reply_to_close()
        frames = parse_frames(b"".join(conn.data_to_send()))
        assert frames[0][4] == close_payload(code)

    def test_reply_to_close_without_close(self, role: Role) -> None:
        with pytest.raises(InvalidState):
            Connection(role).reply_to_close()

    def test_close_inside_fragmented_message(self, role: Role) -> None:
        # Autobahn 7.1.5 expects a normal close here.
        conn = Connection(role)
        data = frame_to(role, TEXT, b"frag", fin=False) + frame_to(role, CLOSE, close_payload(1000))
        assert feed(conn, data) == [CloseReceived(Close(1000))]

    def test_send_after_close_raises(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_close()
        calls: list[Callable[[], None]] = [
            lambda: conn.send_text("x"),
            lambda: conn.send_binary(b"x"),
            lambda: conn.send_fragment(b"x"),
            lambda: conn.send_ping(),
            lambda: conn.send_pong(),
            lambda: conn.send_close(),
        ]
        for call in calls:
            with pytest.raises(InvalidState):
                call()
        assert len(conn.data_to_send()) == 1

    @pytest.mark.parametrize("code", [1005, 1006, 999, 1004, 1015, 0, 5000, 2999])
    def test_send_close_invalid_code(self, role: Role, code: int) -> None:
        conn = Connection(role)
        with pytest.raises(ValueError):
            conn.send_close(code)
        assert conn.data_to_send() == []
        assert state(conn) is State.OPEN and conn.close_sent is None
        conn.send_close(1000)  # still possible

    def test_send_close_reason_too_long(self, role: Role) -> None:
        conn = Connection(role)
        with pytest.raises(ValueError):
            conn.send_close(1000, "x" * 124)
        assert conn.data_to_send() == []
        assert state(conn) is State.OPEN
        conn.send_close(1000, "x" * 123)
        frames = parse_frames(b"".join(conn.data_to_send()))
        assert len(frames[0][4]) == 125

    def test_fail_sends_close_once(self, role: Role) -> None:
        conn = Connection(role)
        conn.fail(1011, "oops")
        conn.fail(1002, "again")
        out = conn.data_to_send()
        frames = parse_frames(b"".join(out))
        assert [(f[1], f[4]) for f in frames] == [(CLOSE, close_payload(1011, b"oops"))]
        assert conn.close_expected()
        # A server ends TCP right after its Close, once; a client waits for the server.
        if role is Role.SERVER:
            assert out == [out[0], b""]
            assert state(conn) is State.CLOSED
        else:
            assert b"" not in out
            assert state(conn) is State.CLOSING
        # Incoming data is dropped, the peer's Close included.
        data = frame_to(role, TEXT, b"x") + frame_to(role, CLOSE, close_payload(1011))
        assert feed(conn, data) == []
        assert conn.close_rcvd is None
        assert conn.data_to_send() == []
        assert state(conn) is (State.CLOSED if role is Role.SERVER else State.CLOSING)
        conn.receive_eof()
        assert state(conn) is State.CLOSED
        assert conn.data_to_send() == []

    def test_fail_in_the_middle_of_a_frame(self, role: Role) -> None:
        conn = Connection(role)
        payload = b"x" * 50 + serialize_frame(CLOSE, close_payload(1000)) + b"y" * 50
        data = frame_to(role, TEXT, payload, fin=False)
        assert feed(conn, data[:30]) == []
        conn.fail(1011)
        out = conn.data_to_send()
        assert [(f[1], f[4]) for f in parse_frames(b"".join(out))] == [(CLOSE, close_payload(1011))]
        assert (out[-1] == b"") == (role is Role.SERVER)
        assert feed(conn, data[30:] + frame_to(role, CONT, b"end")) == []
        assert conn.close_rcvd is None
        assert feed(conn, frame_to(role, CLOSE, close_payload(1011))) == []
        assert conn.close_rcvd is None
        assert conn.data_to_send() == []
        assert state(conn) is (State.CLOSED if role is Role.SERVER else State.CLOSING)

    def test_fail_truncates_long_reason(self, role: Role) -> None:
        conn = Connection(role)
        conn.fail(1002, "é" * 100)
        frames = parse_frames(b"".join(conn.data_to_send()))
        payload = frames[0][4]
        assert len(payload) <= 125
        assert payload[2:].decode() == "é" * 61

    def test_fail_after_close_sent(self, role: Role) -> None:
        # No second Close; a server still ends TCP (once) after the Close it sent.
        conn = Connection(role)
        conn.send_close(1001)
        conn.fail(1002)
        conn.fail(1002)
        out = conn.data_to_send()
        assert [(f[1], f[4]) for f in parse_frames(b"".join(out))] == [(CLOSE, close_payload(1001))]
        assert conn.close_sent == Close(1001)
        if role is Role.SERVER:
            assert out == [out[0], b""]
            assert state(conn) is State.CLOSED
        else:
            assert len(out) == 1
            assert state(conn) is State.CLOSING

    def test_fail_after_close_received(self, role: Role) -> None:
        conn = Connection(role)
        feed(conn, frame_to(role, CLOSE, close_payload(1000)))
        conn.fail(1011)
        out = conn.data_to_send()
        assert parse_frames(b"".join(out))[0][4] == close_payload(1011)
        assert state(conn) is State.CLOSED
        assert (out[-1] == b"") == (role is Role.SERVER)

    def test_close_in_pieces(self, role: Role) -> None:
        conn = Connection(role)
        data = frame_to(role, CLOSE, close_payload(1000, b"reason"))
        for i in range(len(data) - 1):
            conn.receive_data(data[i : i + 1])
            assert conn.events_received() == []
        assert feed(conn, data[-1:]) == [CloseReceived(Close(1000, "reason"))]


# ---------------------------------------------------------------------- EOF


@pytest.mark.parametrize("role", ROLES)
class TestEOF:
    def test_abnormal_eof(self, role: Role) -> None:
        conn = Connection(role)
        feed(conn, frame_to(role, TEXT, b"partial", fin=False))
        conn.receive_eof()
        assert state(conn) is State.CLOSED
        assert conn.close_rcvd is None and conn.close_sent is None
        assert conn.close_expected()
        assert conn.events_received() == []
        assert conn.data_to_send() == []
        with pytest.raises(InvalidState):
            conn.receive_data(b"x")
        with pytest.raises(InvalidState):
            conn.send_text("x")
        conn.fail(1002)  # nothing to send to a peer that is gone
        assert conn.data_to_send() == []
        conn.receive_eof()  # idempotent
        assert state(conn) is State.CLOSED

    def test_eof_after_handshake(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_close()
        feed(conn, frame_to(role, CLOSE, close_payload(1000)))
        assert state(conn) is State.CLOSED
        conn.data_to_send()
        conn.receive_eof()
        assert state(conn) is State.CLOSED
        assert conn.close_rcvd == Close(1000) and conn.close_sent == Close(1000)
        assert conn.data_to_send() == []

    def test_eof_after_close_received(self, role: Role) -> None:
        conn = Connection(role)
        feed(conn, frame_to(role, CLOSE, close_payload(1000)))
        conn.receive_eof()
        assert state(conn) is State.CLOSED
        conn.reply_to_close()  # the peer is gone: nothing to send
        assert conn.data_to_send() == []
        assert conn.close_sent is None

    def test_eof_after_close_sent(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_close()
        conn.data_to_send()
        conn.receive_eof()
        assert state(conn) is State.CLOSED
        assert conn.close_rcvd is None
        assert conn.data_to_send() == []


# ---------------------------------------------------------------------- more drop-mode paths


def assert_failed_alone(conn: Connection, role: Role, code: int) -> None:
    """The peer's Close was not processed; fail() sends ours (a server then ends TCP)."""
    assert conn.close_rcvd is None
    assert state(conn) is State.OPEN
    conn.fail(code)
    out = conn.data_to_send()
    close = serialize_frame(CLOSE, close_payload(code))
    if role is Role.SERVER:
        assert out == [close, b""]
        assert state(conn) is State.CLOSED
    else:
        assert [(f[1], f[4]) for f in parse_frames(b"".join(out))] == [(CLOSE, close_payload(code))]
        assert state(conn) is State.CLOSING
    assert conn.close_rcvd is None


@pytest.mark.parametrize("role", ROLES)
class TestViolationThenClose:
    """A violation followed, in the same chunk, by the peer's Close: nothing after the
    violation is parsed, the Close included (RFC 6455 7.1.7)."""

    def test_violation_in_rest_of_frame(self, role: Role) -> None:
        conn = Connection(role)
        payload = b"abc\xff" + b"x" * 20
        data = frame_to(role, TEXT, payload)
        split_at = len(data) - len(payload) + 2
        assert feed(conn, data[:split_at]) == []
        events = feed(conn, data[split_at:] + frame_to(role, CLOSE, close_payload(1007)))
        assert_violation(events, 1007)
        assert len(events) == 1
        assert_failed_alone(conn, role, 1007)

    def test_violation_in_empty_final_fragment(self, role: Role) -> None:
        conn = Connection(role)
        data = (
            frame_to(role, TEXT, b"a\xe2", fin=False)
            + frame_to(role, CONT, b"")
            + frame_to(role, CLOSE, close_payload(1007))
        )
        assert_violation(feed(conn, data), 1007)
        assert_failed_alone(conn, role, 1007)

    def test_violation_in_complete_fragment(self, role: Role) -> None:
        conn = Connection(role)
        data = frame_to(role, TEXT, b"\xc0\xaf", fin=False) + frame_to(
            role, CLOSE, close_payload(1007)
        )
        assert_violation(feed(conn, data), 1007)
        assert_failed_alone(conn, role, 1007)

    def test_violation_in_compressed_frame(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        data = frame_to(role, BINARY, b"\xff\xff", rsv=0x40) + frame_to(role, CLOSE)
        assert_violation(feed(conn, data), 1007)
        assert_failed_alone(conn, role, 1007)


# ---------------------------------------------------------------------- extension pipeline


class Recording(Extension):
    """XORs data payloads with a key (per byte, so any split works) and logs its calls."""

    rsv_mask = 0x20

    def __init__(self, name: str, key: int, log: list[str]) -> None:
        self.tag = name
        self.key = key
        self.log = log

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        self.log.append(f"decode {self.tag}")
        if frame.opcode >= 8:
            return frame
        payload = bytes(b ^ self.key for b in frame.payload)
        return Frame(frame.opcode, payload, frame.fin, frame.rsv1, False, frame.rsv3)

    def encode(self, frame: Frame) -> Frame:
        self.log.append(f"encode {self.tag}")
        if frame.opcode >= 8:
            return frame
        payload = bytes(b ^ self.key for b in frame.payload)
        return Frame(frame.opcode, payload, frame.fin, frame.rsv1, True, frame.rsv3)


class Inflating(Extension):
    """Doubles every byte and ignores ``max_size``: the connection must still stop it."""

    rsv_mask = 0x10

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        if frame.opcode >= 8:
            return frame
        return Frame(frame.opcode, bytes(b for b in frame.payload for _ in range(2)), frame.fin)

    def encode(self, frame: Frame) -> Frame:
        return frame


class PassThrough(Extension):
    """Claims RSV2 but never clears it (a broken extension)."""

    rsv_mask = 0x20

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame


@pytest.mark.parametrize("role", ROLES)
class TestExtensionPipeline:
    def test_order_and_round_trip(self, role: Role) -> None:
        log: list[str] = []
        sender = Connection(
            opposite(role), extensions=[Recording("a", 0x0F, log), Recording("b", 0xF0, log)]
        )
        sender.send_text("héllo")
        assert log == ["encode a", "encode b"]
        data = b"".join(sender.data_to_send())
        assert parse_frames(data)[0][0] == 0x81 | 0x20
        assert parse_frames(data)[0][4] == bytes(b ^ 0xFF for b in "héllo".encode())
        log.clear()
        conn = Connection(role, extensions=[Recording("a", 0x0F, log), Recording("b", 0xF0, log)])
        assert feed(conn, data) == ["héllo"]
        assert log == ["decode b", "decode a"]

    def test_pieces_go_through_decoders(self, role: Role) -> None:
        log: list[str] = []
        conn = Connection(role, extensions=[Recording("a", 0x55, log)])
        payload = bytes(b ^ 0x55 for b in "κόσμε".encode())
        data = frame_to(role, TEXT, payload, rsv=0x20)
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
        assert conn.events_received() == ["κόσμε"]

    def test_expanding_extension_bounded_by_connection(self, role: Role) -> None:
        conn = Connection(role, extensions=[Inflating()], max_message_size=100)
        assert feed(conn, frame_to(role, BINARY, b"x" * 50, rsv=0x10)) == [b"x" * 100]
        assert_violation(feed(conn, frame_to(role, BINARY, b"x" * 51, rsv=0x10)), 1009)

    def test_control_frame_rsv_left_set(self, role: Role) -> None:
        conn = Connection(role, extensions=[PassThrough()])
        error = assert_violation(feed(conn, frame_to(role, PING, b"", rsv=0x20)), 1002)
        assert "reserved" in str(error)
        assert conn.data_to_send() == []
