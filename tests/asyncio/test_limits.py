"""Size limits, the receive queue and write backpressure."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawClient, close_payload, echo

import websock
from websock import ConnectionClosedError
from websock.protocol.frames import Opcode

MiB = 1 << 20


async def raw_client(running: Any) -> RawClient:
    return await RawClient.connect(running.port, ssl_context=running.client_ssl)


async def expect_close(client: RawClient, code: int) -> None:
    frame = await client.read_frame()
    assert (frame.opcode, frame.close_code, frame.masked) == (Opcode.CLOSE, code, False)
    client.send_frame(Opcode.CLOSE, close_payload(code))
    await client.read_eof(2.0)
    await client.aclose()


async def test_message_over_default_limit_closes_1009(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure, compression=None) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.BINARY, b"\x00" * (MiB - 1))
        frame = await client.read_frame()
        assert (frame.opcode, len(frame.payload)) == (Opcode.BINARY, MiB - 1)
        client.send_frame(Opcode.BINARY, b"\x00" * (MiB + 1))
        await expect_close(client, 1009)


async def test_fragmented_message_over_limit_closes_1009(start_server: Any) -> None:
    async with start_server(echo, max_message_size=1000, compression=None) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.TEXT, b"a" * 600, fin=False)
        client.send_frame(Opcode.CONT, b"a" * 400, fin=True)  # exactly 1000: fine
        frame = await client.read_frame()
        assert frame.payload == b"a" * 1000
        client.send_frame(Opcode.TEXT, b"a" * 600, fin=False)
        client.send_frame(Opcode.CONT, b"a" * 401, fin=True)
        await expect_close(client, 1009)


async def test_max_frame_size(start_server: Any) -> None:
    async with start_server(echo, max_frame_size=100, compression=None) as running:
        client = await raw_client(running)
        # Many frames of at most 100 bytes make a larger message.
        client.send_frame(Opcode.BINARY, b"x" * 100, fin=False)
        client.send_frame(Opcode.CONT, b"y" * 100, fin=True)
        frame = await client.read_frame()
        assert frame.payload == b"x" * 100 + b"y" * 100
        client.send_frame(Opcode.BINARY, b"z" * 101)
        await expect_close(client, 1009)


async def test_compressed_message_over_limit_closes_1009(start_server: Any) -> None:
    """The limit applies after decompression: a small bomb is stopped."""
    async with start_server(echo, max_message_size=10_000) as running:
        async with running.connect(max_message_size=None) as ws:
            assert ws.extensions
            await ws.send("a" * 10_000)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "a" * 10_000
            await ws.send("a" * 10_001)  # compresses to a few dozen bytes
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.code == 1009


async def test_client_limit(start_server: Any, secure: bool) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send(b"x" * 2000)
        await ws.recv()

    async with start_server(handler, secure=secure) as running:
        async with running.connect(max_message_size=1000) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.sent is not None and info.value.sent.code == 1009
            # Having failed the connection, the client processes nothing more (RFC 6455
            # 7.1.7), not even the server's Close: it waits for the server to end TCP.
            assert info.value.rcvd is None


@pytest.mark.skipif(
    os.environ.get("WEBSOCK_TEST_LOOP") == "uvloop",
    reason="spies on transport.pause_reading, which is read-only on uvloop's transports",
)
async def test_max_queue_pauses_reading(start_server: Any, secure: bool) -> None:
    """A handler that does not read makes the server stop reading: memory stays bounded."""
    paused = asyncio.Event()
    start_reading = asyncio.Event()
    conn: asyncio.Future[websock.ServerConnection] = asyncio.get_running_loop().create_future()
    received: list[bytes] = []
    done = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        assert ws.transport is not None
        pause = ws.transport.pause_reading

        def spy() -> None:
            paused.set()
            pause()

        ws.transport.pause_reading = spy  # type: ignore[method-assign]
        conn.set_result(ws)
        await start_reading.wait()
        async for message in ws:
            assert isinstance(message, bytes)
            received.append(message)
            if len(message) == 0:
                done.set()
                break

    size = 64 * 1024
    max_queue = 4
    async with start_server(
        handler, secure=secure, max_queue=max_queue, compression=None
    ) as running:
        async with running.connect(compression=None) as client:
            server_ws = await asyncio.wait_for(conn, TIMEOUT)
            sent = 0
            blocked = False
            # Send until our own send() blocks: the server stopped reading, the kernel
            # buffers filled up, and our write buffer went over its high-water mark.
            for i in range(2000):
                try:
                    await asyncio.wait_for(client.send(bytes([i % 256]) * size), 0.5)
                except asyncio.TimeoutError:
                    blocked = True  # the message was written; only the wait was cut short
                    sent += 1
                    break
                sent += 1
            assert paused.is_set()
            assert blocked, "send() never blocked although the server stopped reading"
            # Only a bounded number of messages is buffered by the server.
            assert len(server_ws._messages) <= max_queue + 8
            start_reading.set()
            await asyncio.wait_for(client.send(b""), TIMEOUT)
            await asyncio.wait_for(done.wait(), TIMEOUT * 2)
            assert len(received) == sent + 1
            assert [m[:1] for m in received[:-1]] == [bytes([i % 256]) for i in range(sent)]
            assert all(len(m) == size for m in received[:-1])


async def test_write_backpressure(start_server: Any, secure: bool) -> None:
    """A peer that never reads: send() blocks above the high-water mark."""
    write_limit = 65536
    chunk = 16384
    result: asyncio.Future[tuple[int, int, int]] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        assert ws.transport is not None
        largest = 0
        for i in range(100_000):
            try:
                await asyncio.wait_for(ws.send(b"x" * chunk), 0.5)
            except asyncio.TimeoutError:
                result.set_result((i, largest, ws.transport.get_write_buffer_size()))
                return
            largest = max(largest, ws.transport.get_write_buffer_size())
        result.set_exception(AssertionError("send() never blocked"))

    async with start_server(
        handler, secure=secure, write_limit=write_limit, compression=None, close_timeout=0.2
    ) as running:
        client = await raw_client(running)  # never reads
        sent, largest, stuck_at = await asyncio.wait_for(result, TIMEOUT * 4)
        assert sent > 0
        # After each send() returned, the buffer was at most the high-water mark plus the
        # message just written (and its frame header).
        assert largest <= write_limit + chunk + 64, (largest, sent)
        # Blocked means above the high-water mark, and still bounded.
        assert write_limit < stuck_at <= write_limit + 2 * chunk + 64, stuck_at
        client.writer.transport.abort()


async def test_write_backpressure_with_unread_messages(start_server: Any) -> None:
    """send() blocks above the high-water mark even while received messages wait unread."""
    chunk = 65536
    count = 400  # 25 MiB: far more than the kernel buffers hold
    all_sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    progress = 0

    async def handler(ws: websock.ServerConnection) -> None:
        nonlocal progress
        await ws.recv()  # "a"; "b" stays in the queue, unread
        for _ in range(count):
            await ws.send(b"x" * chunk)
            progress += 1
        all_sent.set_result(None)

    async with start_server(handler, compression=None, close_timeout=0.2) as running:
        client = await raw_client(running)  # never reads
        client.send_raw(
            client.frame_bytes(Opcode.TEXT, b"a") + client.frame_bytes(Opcode.TEXT, b"b")
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(all_sent), 1.0)
        assert 0 < progress < count
        client.writer.transport.abort()


async def test_close_with_full_queue_is_clean(start_server: Any) -> None:
    # The queue is full, so reading is paused; close() must still read the peer's Close
    # and finish with a clean handshake (1000 both ways), not a timeout and 1006.
    full = asyncio.Event()
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def stalled(ws: websock.ServerConnection) -> None:
        await full.wait()
        await ws.close()
        closed.set_result(ws.close_code)

    async with start_server(stalled, max_queue=2, compression=None, close_timeout=5) as running:
        client = await raw_client(running)
        for _ in range(8):
            client.send_frame(Opcode.TEXT, b"m")
        full.set()
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        await client.read_eof(2.0)
        assert await asyncio.wait_for(closed, 2.0) == 1000
        await client.aclose()
