"""Tests for websock.protocol.connection: what the core writes (framing, masking, RSV bits,
fragmentation, Pong replies)."""

from __future__ import annotations

import pytest
from wire import WireFrame, deflate, wire_frames

from websock.exceptions import InvalidState
from websock.protocol.connection import Connection, Ping, Role, State
from websock.protocol.frames import Opcode, serialize_frame

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
MASK = b"\x37\xfa\x21\x3d"
ROLES = [Role.SERVER, Role.CLIENT]


def frame_to(role: Role, opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return serialize_frame(opcode, payload, fin=fin, mask=MASK if role is Role.SERVER else None)


def sent_frames(conn: Connection) -> list[WireFrame]:
    out = conn.data_to_send()
    assert b"" not in out[:-1]
    return wire_frames(b"".join(out))


@pytest.mark.parametrize("role", ROLES)
def test_masking_rule_on_every_frame(role: Role) -> None:
    conn = Connection(role)
    conn.send_text("héllo")
    conn.send_binary(b"\x00" * 200)
    conn.send_fragment(b"a", text=True)
    conn.send_ping(b"ping")
    conn.send_fragment(b"b", fin=True)
    conn.send_pong(b"pong")
    conn.send_binary(bytearray(b"x" * 70000))
    conn.send_close(1000, "bye")
    frames = sent_frames(conn)
    assert [f.opcode for f in frames] == [TEXT, BINARY, TEXT, PING, CONT, PONG, BINARY, CLOSE]
    assert [f.payload for f in frames] == [
        "héllo".encode(),
        b"\x00" * 200,
        b"a",
        b"ping",
        b"b",
        b"pong",
        b"x" * 70000,
        b"\x03\xe8bye",
    ]
    assert all(f.masked == (role is Role.CLIENT) for f in frames)
    # No RSV bit without an extension (CONFORMANCE.md blind spot #4).
    assert all(f.rsv == 0 for f in frames)
    if role is Role.CLIENT:
        # Fresh keys: not all the same, and not the payload in clear.
        assert len({f.mask for f in frames}) > 1


def test_server_frames_exact_bytes() -> None:
    conn = Connection(Role.SERVER)
    conn.send_text("Hello")
    conn.send_binary(b"\x01\x02")
    conn.send_ping(b"")
    conn.send_close(1001)
    assert conn.data_to_send() == [
        b"\x81\x05Hello",
        b"\x82\x02\x01\x02",
        b"\x89\x00",
        b"\x88\x02\x03\xe9",
    ]


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_client_masked_lengths(length: int) -> None:
    conn = Connection(Role.CLIENT)
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    conn.send_binary(payload)
    (data,) = conn.data_to_send()
    assert data[1] & 0x80
    frames = wire_frames(data)
    assert frames[0].payload == payload


def test_client_masks_come_from_pool_and_refill() -> None:
    conn = Connection(Role.CLIENT)
    for _ in range(1500):  # more than one pool of 1,024 keys
        conn.send_binary(b"abcd")
    frames = wire_frames(b"".join(conn.data_to_send()))
    assert len(frames) == 1500
    assert all(f.payload == b"abcd" and f.masked for f in frames)
    assert len({f.mask for f in frames}) > 1400


@pytest.mark.parametrize("role", ROLES)
def test_text_bytes_sent_as_is(role: Role) -> None:
    conn = Connection(role)
    conn.send_text("€".encode())
    (frame,) = sent_frames(conn)
    assert (frame.opcode, frame.payload) == (TEXT, b"\xe2\x82\xac")


@pytest.mark.parametrize("role", ROLES)
class TestFragments:
    def test_fragments(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_fragment(b"ab", text=True)
        conn.send_ping(b"between")
        conn.send_fragment(b"cd", text=False)  # ``text`` only matters on the first call
        conn.send_pong(b"")
        conn.send_fragment(b"ef", fin=True)
        frames = sent_frames(conn)
        assert [(f.opcode, f.fin, f.payload) for f in frames] == [
            (TEXT, False, b"ab"),
            (PING, True, b"between"),
            (CONT, False, b"cd"),
            (PONG, True, b""),
            (CONT, True, b"ef"),
        ]
        # A new message may start now.
        conn.send_fragment(b"gh", fin=True)
        (frame,) = sent_frames(conn)
        assert (frame.opcode, frame.fin) == (BINARY, True)

    def test_no_message_while_fragmented(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_fragment(b"ab")
        with pytest.raises(InvalidState):
            conn.send_text("x")
        with pytest.raises(InvalidState):
            conn.send_binary(b"x")
        assert len(sent_frames(conn)) == 1

    def test_close_between_fragments(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_fragment(b"ab")
        conn.send_close(1001)
        assert [f.opcode for f in sent_frames(conn)] == [BINARY, CLOSE]
        with pytest.raises(InvalidState):
            conn.send_fragment(b"cd", fin=True)

    def test_round_trip_through_peer(self, role: Role) -> None:
        conn = Connection(role)
        peer = Connection(Role.CLIENT if role is Role.SERVER else Role.SERVER)
        text = "κόσμε"
        raw = text.encode()
        conn.send_fragment(raw[:3], text=True)
        conn.send_ping(b"p")
        conn.send_fragment(raw[3:], fin=True)
        for data in conn.data_to_send():
            peer.receive_data(data)
        assert peer.events_received() == [Ping(b"p"), text]


@pytest.mark.parametrize("role", ROLES)
class TestDeflateSend:
    def test_rsv1_only_on_first_compressed_frame(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        conn.send_text("hello hello hello")
        conn.send_fragment(b"abc" * 50, text=False)
        conn.send_ping(b"ping")
        conn.send_fragment(b"def" * 50, fin=True)
        conn.send_pong(b"pong")
        conn.send_close(1000)
        frames = sent_frames(conn)
        assert [(f.opcode, f.rsv) for f in frames] == [
            (TEXT, 0x40),
            (BINARY, 0x40),
            (PING, 0),
            (CONT, 0),
            (PONG, 0),
            (CLOSE, 0),
        ]
        assert all(f.masked == (role is Role.CLIENT) for f in frames)

    def test_compress_false(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        peer_role = Role.CLIENT if role is Role.SERVER else Role.SERVER
        peer = Connection(peer_role, extensions=[deflate()])
        conn.send_text("plain text", compress=False)
        conn.send_binary(b"plain binary", compress=False)
        conn.send_fragment(b"frag", compress=False)
        conn.send_fragment(b"ment", compress=True, fin=True)  # the first call decides
        conn.send_text("compressed")
        out = conn.data_to_send()
        frames = wire_frames(b"".join(out))
        assert [(f.rsv, f.payload) for f in frames[:4]] == [
            (0, b"plain text"),
            (0, b"plain binary"),
            (0, b"frag"),
            (0, b"ment"),
        ]
        assert frames[4].rsv == 0x40
        for data in out:
            peer.receive_data(data)
        assert peer.events_received() == [
            "plain text",
            b"plain binary",
            b"fragment",
            "compressed",
        ]

    def test_compressed_fragments_decode_at_peer(self, role: Role) -> None:
        conn = Connection(role, extensions=[deflate()])
        peer_role = Role.CLIENT if role is Role.SERVER else Role.SERVER
        peer = Connection(peer_role, extensions=[deflate()])
        for i in range(3):
            conn.send_fragment(f"part{i} ".encode() * 30, text=True)
        conn.send_fragment(b"", fin=True)
        conn.send_text("again " * 30)
        for data in conn.data_to_send():
            peer.receive_data(data)
        expected = "".join(f"part{i} " * 30 for i in range(3))
        assert peer.events_received() == [expected, "again " * 30]


@pytest.mark.parametrize("role", ROLES)
class TestPingPong:
    def test_ping_answered_with_same_payload(self, role: Role) -> None:
        conn = Connection(role)
        conn.receive_data(frame_to(role, PING, b"\x00payload\xff"))
        assert conn.events_received() == [Ping(b"\x00payload\xff")]
        (frame,) = sent_frames(conn)
        assert (frame.opcode, frame.fin, frame.payload) == (PONG, True, b"\x00payload\xff")
        assert frame.masked == (role is Role.CLIENT)

    def test_pong_in_order_with_queued_data(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_text("first")
        conn.receive_data(frame_to(role, PING, b"1") + frame_to(role, PING, b"2"))
        conn.send_text("last")
        frames = sent_frames(conn)
        assert [(f.opcode, f.payload) for f in frames] == [
            (TEXT, b"first"),
            (PONG, b"1"),
            (PONG, b"2"),
            (TEXT, b"last"),
        ]

    def test_ping_between_fragments_answered(self, role: Role) -> None:
        conn = Connection(role)
        data = (
            frame_to(role, TEXT, b"a", fin=False)
            + frame_to(role, PING, b"mid")
            + frame_to(role, CONT, b"b")
        )
        conn.receive_data(data)
        assert conn.events_received() == [Ping(b"mid"), "ab"]
        assert [(f.opcode, f.payload) for f in sent_frames(conn)] == [(PONG, b"mid")]

    def test_no_pong_after_close_sent(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_close(1000)
        conn.receive_data(frame_to(role, PING, b"late"))
        assert conn.events_received() == [Ping(b"late")]
        assert [f.opcode for f in sent_frames(conn)] == [CLOSE]

    def test_control_payload_limit(self, role: Role) -> None:
        conn = Connection(role)
        conn.send_ping(b"x" * 125)
        conn.send_pong(b"y" * 125)
        with pytest.raises(ValueError):
            conn.send_ping(b"x" * 126)
        with pytest.raises(ValueError):
            conn.send_pong(b"x" * 126)
        assert [len(f.payload) for f in sent_frames(conn)] == [125, 125]
        assert conn.state is State.OPEN


@pytest.mark.parametrize("role", ROLES)
def test_data_to_send_empty_and_forgets(role: Role) -> None:
    conn = Connection(role)
    assert conn.data_to_send() == []
    conn.send_binary(b"x")
    assert len(conn.data_to_send()) == 1
    assert conn.data_to_send() == []


@pytest.mark.parametrize("role", ROLES)
def test_send_while_closing_after_close_received(role: Role) -> None:
    # After the peer's Close and before our reply, data may still be sent (RFC 6455 5.5.1
    # only forbids data after *our* Close).
    conn = Connection(role)
    conn.receive_data(frame_to(role, CLOSE, b"\x03\xe8"))
    conn.send_text("last words")
    conn.reply_to_close()
    out = conn.data_to_send()
    frames = wire_frames(b"".join(out))
    assert [f.opcode for f in frames] == [TEXT, CLOSE]
    assert (out[-1] == b"") == (role is Role.SERVER)
