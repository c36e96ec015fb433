"""Flow control and hostile-peer handling in the asyncio layer, driven through a fake transport.

Each test reproduces a way a peer could make the connection buffer without bound, or end
uncleanly, and asserts on what was written and how reading was paused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import zlib
from typing import Any

import pytest
from fakes import open_connection, read
from rawpeer import TIMEOUT, RawClient

import websock
from websock.exceptions import ConnectionClosed, ConnectionClosedError
from websock.protocol import connection as core
from websock.protocol.extensions.permessage_deflate import PerMessageDeflate
from websock.protocol.frames import Opcode, serialize_frame

MASK = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    return serialize_frame(opcode, payload, fin=fin, rsv=rsv, mask=os.urandom(4))


def compressed(payload: bytes) -> bytes:
    """A masked, compressed binary message (no context takeover: each stands alone)."""
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return client_frame(Opcode.BINARY, data[:-4], rsv=0x40)


def deflate() -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=True,
        local_no_context_takeover=True,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )


def pongs(out: list[bytes]) -> list[bytes]:
    """The payloads of the (unmasked, small) Pong frames in what the server wrote."""
    found = []
    data = b"".join(out)
    pos = 0
    while pos < len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        assert length < 126
        if opcode == Opcode.PONG:
            found.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return found


# ---------------------------------------------------------------------- ping flood


async def test_ping_flood_while_write_buffer_full_costs_one_pong() -> None:
    """A peer that sends Pings and never reads: the Pongs owed are coalesced into one."""
    conn, transport = open_connection()
    conn.pause_writing()  # what the transport calls when its buffer is above the mark
    before = len(transport.out)
    pings = b"".join(client_frame(Opcode.PING, f"{i:08d}".encode()) for i in range(10_000))
    read(conn, pings)  # what was in flight when reading paused
    assert transport.out[before:] == []  # no Pong queued while the buffer is full
    conn.resume_writing()
    assert pongs(transport.out[before:]) == [b"00009999"]  # the latest Ping only
    conn.connection_lost(None)


async def test_write_pressure_does_not_pause_reading() -> None:
    """A full write buffer alone does not stop reading: a peer that writes a whole message
    before reading ours would deadlock with us (Autobahn 12.2.15 in the client role)."""
    conn, transport = open_connection()
    conn.pause_writing()
    assert transport.reading
    send = asyncio.ensure_future(conn.send(b"x" * 100))
    await asyncio.sleep(0)  # let send() reach its wait for the buffer to drain
    assert not send.done()
    assert transport.reading
    read(conn, client_frame(Opcode.PING, b"p1") + client_frame(Opcode.PING, b"p2"))
    before = len(transport.out)
    conn.resume_writing()
    await asyncio.wait_for(send, 5)
    assert pongs(transport.out[before:]) == [b"p2"]
    conn.connection_lost(None)


async def test_held_pong_goes_before_our_close() -> None:
    conn, transport = open_connection()
    conn.pause_writing()
    read(conn, client_frame(Opcode.PING, b"last"))
    assert conn.protocol is not None
    conn.protocol.send_close(1000)
    conn._flush_now()
    assert b"".join(transport.out).endswith(b"\x8a\x04last\x88\x02\x03\xe8")
    conn.connection_lost(None)


# ---------------------------------------------------------------------- receive queue


async def test_compressed_messages_in_one_read_are_inflated_as_consumed() -> None:
    """~260 compressed 1 MB messages fit in one 256 KiB read: they must not all be inflated
    at once. The queue holds at most max_queue messages; the rest waits, compressed."""
    conn, transport = open_connection(
        extensions=[deflate()], max_message_size=1 << 20, max_queue=(4, None)
    )
    frames = b"".join(compressed(bytes([i]) * 1_000_000) for i in range(200))
    assert len(frames) < 256 * 1024
    read(conn, frames)
    assert conn._messages is not None and len(conn._messages) == 4
    assert conn.protocol is not None and conn.protocol.receiving_held
    assert not transport.reading
    for i in range(200):
        message = await asyncio.wait_for(conn.recv(), 5)
        assert message == bytes([i]) * 1_000_000
        assert len(conn._messages) <= 4
    assert transport.reading and not conn.protocol.receiving_held
    conn.connection_lost(None)


async def test_queue_bounded_in_bytes() -> None:
    conn, transport = open_connection(max_queue=(100, 1_000_000))
    data = b"".join(client_frame(Opcode.BINARY, os.urandom(300_000)) for _ in range(10))
    read(conn, data)
    assert conn._messages is not None
    # 1,000,000 bytes of room: the fourth message crosses it, and parsing stops there.
    assert len(conn._messages) == 4 and conn._queued_bytes == 1_200_000
    assert not transport.reading
    received = [await asyncio.wait_for(conn.recv(), 5) for _ in range(10)]
    assert [len(m) for m in received] == [300_000] * 10
    assert conn._queued_bytes == 0 and transport.reading
    conn.connection_lost(None)


async def test_max_queue_int_keeps_the_default_byte_bound() -> None:
    conn, _ = open_connection(max_queue=1000)
    assert conn.options.queue_bounds == (1000, 1 << 20)
    assert conn._queue_max == 1000 and conn._queue_max_bytes == 1 << 20
    conn.connection_lost(None)
    conn, _ = open_connection(max_queue=None)
    assert conn.options.queue_bounds == (None, None)
    assert conn._queue_max is None and conn._queue_max_bytes is None
    conn.connection_lost(None)
    with pytest.raises(ValueError):
        open_connection(max_queue=(16, 0))


async def test_close_reads_past_a_full_queue_to_find_the_peers_close() -> None:
    """close() with a full queue: what does not fit is dropped, the peer's Close is found."""
    conn, transport = open_connection(max_queue=(2, None))
    data = b"".join(client_frame(Opcode.TEXT, f"m{i}".encode()) for i in range(50))
    read(conn, data + client_frame(Opcode.CLOSE, b"\x03\xe8"))
    assert conn._messages is not None and len(conn._messages) == 2
    close = asyncio.ensure_future(conn.close())
    for _ in range(100):  # a queue's worth of held input per loop iteration
        if transport.closing:
            break
        await asyncio.sleep(0)
    assert conn.protocol is not None and conn.protocol.close_rcvd is not None
    # The closing handshake is complete: TCP is closed at once (nothing more will come).
    assert transport.out[-1] == b"\x88\x02\x03\xe8" and transport.closing
    assert list(conn._messages) == ["m0", "m1"]  # what was queued is kept
    conn.connection_lost(None)
    await asyncio.wait_for(close, 5)


async def test_eof_while_input_is_held_loses_no_message() -> None:
    conn, transport = open_connection(max_queue=(2, None))
    read(conn, b"".join(client_frame(Opcode.TEXT, f"m{i}".encode()) for i in range(6)))
    conn.eof_received()
    conn.connection_lost(None)
    received = [await asyncio.wait_for(conn.recv(), 5) for _ in range(6)]
    assert received == [f"m{i}" for i in range(6)]
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(conn.recv(), 5)


# ---------------------------------------------------------------------- failing


async def test_violation_mid_frame_then_peer_close_gives_close_then_fin() -> None:
    """Invalid UTF-8 at byte 3 of a 1,000-byte frame, then the peer's Close: our Close 1007
    and our FIN at once (not after close_timeout), and the rest is drained unparsed."""
    conn, transport = open_connection(close_timeout=10.0)
    payload = b"ab\xff" + b"c" * 997
    read(conn, client_frame(Opcode.TEXT, payload) + client_frame(Opcode.CLOSE, b"\x03\xe8"))
    assert transport.out[0][2:4] == b"\x03\xef"  # Close 1007
    assert len(transport.out) == 1 and transport.eof_written
    assert transport.reading  # draining until the peer's EOF
    read(conn, b"anything the peer still sends")
    assert len(transport.out) == 1
    assert conn.eof_received() is None  # the peer's EOF: close the transport
    conn.connection_lost(None)


async def test_invalid_close_frame_gives_close_then_fin() -> None:
    conn, transport = open_connection(close_timeout=10.0)
    read(conn, client_frame(Opcode.CLOSE, b"\x03"))  # a 1-byte Close payload
    assert transport.out[0][2:4] == b"\x03\xea"  # Close 1002
    assert transport.eof_written
    assert conn.protocol is not None and conn.protocol.close_rcvd is None
    conn.connection_lost(None)


async def test_internal_error_closes_1011_without_details(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, transport = open_connection()

    def broken(self: core.Connection, data: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(core.Connection, "receive_data", broken)
    with caplog.at_level(logging.ERROR):
        read(conn, client_frame(Opcode.TEXT, b"x"))
    assert transport.out == [b"\x88\x02\x03\xf3"]  # Close 1011, no reason
    assert transport.eof_written
    assert "internal error" in caplog.text and "secret internal detail" in caplog.text
    conn.connection_lost(None)


# ---------------------------------------------------------------------- keepalive


async def test_keepalive_counts_any_received_byte_as_alive() -> None:
    """A peer busy sending a large frame cannot answer our Ping in time: not dead."""
    conn, transport = open_connection(ping_interval=1000.0, ping_timeout=1000.0)
    conn._keepalive_ping()
    read(conn, client_frame(Opcode.BINARY, b"x" * 200_000)[:50_000])
    conn._keepalive_expired()
    assert conn.protocol is not None and conn.protocol.close_sent is None
    assert conn._keepalive_payload is None  # the next ping is scheduled as after a Pong
    conn.connection_lost(None)


async def test_pong_to_a_later_ping_answers_the_keepalive_ping_too() -> None:
    """RFC 6455 5.5.3: a Pong answers its Ping and every earlier one (Pong.acknowledged)."""
    conn, transport = open_connection(ping_interval=1000.0, ping_timeout=1000.0)
    conn._keepalive_ping()
    keepalive = conn._keepalive_payload
    assert keepalive is not None
    first = asyncio.ensure_future(conn.ping(b"first"))
    second = asyncio.ensure_future(conn.ping(b"second"))
    await asyncio.sleep(0)
    read(conn, client_frame(Opcode.PONG, b"first"))
    assert conn._keepalive_payload is None  # answered: the next ping is scheduled
    assert await asyncio.wait_for(first, 1) >= 0
    read(conn, client_frame(Opcode.PONG, b"unsolicited"))
    await asyncio.sleep(0.01)
    assert not second.done()
    read(conn, client_frame(Opcode.PONG, b"second"))
    assert await asyncio.wait_for(second, 1) >= 0
    assert conn._pings == {}
    conn.connection_lost(None)


async def test_ping_payload_of_a_waiting_keepalive_ping_is_refused() -> None:
    conn, transport = open_connection(ping_interval=1000.0, ping_timeout=1000.0)
    conn._keepalive_ping()
    keepalive = conn._keepalive_payload
    assert keepalive is not None
    with pytest.raises(websock.InvalidState, match="same payload"):
        await conn.ping(keepalive)
    pending = asyncio.ensure_future(conn.ping(b"mine"))
    await asyncio.sleep(0)
    with pytest.raises(websock.InvalidState, match="same payload"):
        await conn.ping(b"mine")
    conn.connection_lost(None)
    with pytest.raises(ConnectionClosedError):
        await pending


async def test_violation_behind_messages_is_answered_when_they_are_consumed() -> None:
    """The core fails the connection (messages_consumed) once recv() empties the queue."""
    conn, transport = open_connection()
    bad = serialize_frame(Opcode.TEXT, b"x", mask=None)  # unmasked from a client: 1002
    read(conn, client_frame(Opcode.TEXT, b"one") + client_frame(Opcode.TEXT, b"two") + bad)
    assert conn.protocol is not None and conn.protocol.terminal_pending
    assert conn._terminal_timer is not None
    assert await conn.recv() == "one" and await conn.recv() == "two"
    assert conn.protocol.close_sent is None  # nothing consumed the end of the queue yet
    with pytest.raises(ConnectionClosedError) as raised:
        await asyncio.wait_for(conn.recv(), 5)
    assert raised.value.sent is not None and raised.value.sent.code == 1002
    assert isinstance(raised.value.__cause__, websock.ProtocolError)
    assert not conn.protocol.terminal_pending and conn._terminal_timer is None
    assert transport.out[-1] == b"\x88" + bytes([len(raised.value.sent.serialize())]) + (
        raised.value.sent.serialize()
    )


async def test_terminal_timer_answers_a_close_the_application_never_reaches() -> None:
    conn, transport = open_connection(close_timeout=0.05)
    read(conn, client_frame(Opcode.TEXT, b"unread") + client_frame(Opcode.CLOSE, b"\x03\xe8"))
    assert conn.protocol is not None and conn.protocol.terminal_pending
    await asyncio.sleep(0.2)
    assert not conn.protocol.terminal_pending
    assert conn.protocol.close_sent is not None and conn.protocol.close_sent.code == 1000
    assert await conn.recv() == "unread"  # still delivered
    conn.connection_lost(None)
    with pytest.raises(websock.ConnectionClosedOK):
        await conn.recv()


async def test_keepalive_timeout_ends_tcp_without_close_timeout() -> None:
    conn, transport = open_connection(
        ping_interval=1000.0, ping_timeout=1000.0, close_timeout=100.0
    )
    conn._keepalive_ping()
    conn._keepalive_expired()
    assert conn.protocol is not None and conn.protocol.close_sent is not None
    assert conn.protocol.close_sent.code == 1011
    assert transport.eof_written
    # The close timer is the short grace, not close_timeout.
    assert conn._close_timer is not None
    assert conn._close_timer.when() - conn.loop.time() <= 2.0
    conn.connection_lost(None)


# ---------------------------------------------------------------------- misuse


@pytest.mark.parametrize("message", [{"type": "x"}, {"a", "b"}, 5, None, 1.5, object()])
async def test_send_refuses_non_messages(message: object) -> None:
    conn, transport = open_connection()
    before = list(transport.out)
    with pytest.raises(TypeError, match="cannot send"):
        await conn.send(message)  # type: ignore[arg-type]
    assert transport.out == before
    conn.connection_lost(None)


async def test_send_after_reset_raises_and_writes_nothing() -> None:
    conn, transport = open_connection()
    transport.closing = True  # asyncio closed it after a failed write; connection_lost pending
    with pytest.raises(ConnectionClosed):
        await conn.send("x")
    assert transport.out == []
    conn.connection_lost(ConnectionResetError())


async def test_role_client_fail_waits_for_server_fin() -> None:
    conn, transport = open_connection(role=core.Role.CLIENT)
    read(conn, serialize_frame(Opcode.TEXT, b"\xff"))
    assert transport.out and transport.out[0][0] == 0x88  # our (masked) Close
    assert not transport.eof_written  # the server ends TCP first (RFC 6455 7.1.1)
    conn.connection_lost(None)


# ---------------------------------------------------------------------- over loopback


async def test_writes_after_peer_reset_are_quiet(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that keeps sending to a peer that reset the connection gets
    ConnectionClosed, and asyncio logs no "socket.send() raised exception"."""
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    connected = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        connected.set()
        try:
            for _ in range(100_000):  # bounded: ends at the first error
                await ws.send(b"x" * 1000)
                await asyncio.sleep(0)
        except BaseException as exc:
            outcome.set_result(exc)
            raise
        outcome.set_result(None)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        async with start_server(handler, compression=None) as running:
            client = await RawClient.connect(running.port)
            await asyncio.wait_for(connected.wait(), TIMEOUT)
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.writer.transport.abort()  # RST
            exc = await asyncio.wait_for(outcome, TIMEOUT)
    assert isinstance(exc, ConnectionClosed)
    assert "socket.send() raised exception" not in caplog.text
