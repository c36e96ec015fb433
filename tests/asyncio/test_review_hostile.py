"""Regressions found in review of the hostile-peer changes (flow control, drop mode)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawClient, read_head

import websock
from websock.protocol.frames import Opcode, serialize_frame


async def until(condition: Any, what: str) -> None:
    """Wait (bounded) until ``condition()`` holds, yielding to the loop between checks."""
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_held_input_bounded_after_async_hook(start_server: Any) -> None:
    """An async process_request hook paused reading; the request's trailing frames fill
    the queue. Resuming after the hook must not leave reading on while input is held."""
    conns: list[websock.ServerConnection] = []
    hook_may_return = asyncio.Event()

    async def hook(conn: websock.ServerConnection, request: Any) -> None:
        conns.append(conn)
        await hook_may_return.wait()

    async def handler(ws: websock.ServerConnection) -> None:
        await asyncio.Event().wait()  # never reads

    async with start_server(handler, process_request=hook, compression=None) as running:
        client = await RawClient.open(running.port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        frames = b"".join(client.frame_bytes(Opcode.TEXT, b"x") for _ in range(40))
        client.send_raw(request + frames)
        await until(lambda: conns, "the hook")
        hook_may_return.set()
        await read_head(client.reader)
        chunk = b"".join(client.frame_bytes(Opcode.BINARY, bytes(1000)) for _ in range(1000))
        for _ in range(20):  # ~20 MB at most: until the server stops reading
            client.send_raw(chunk)
            try:
                await asyncio.wait_for(client.writer.drain(), 0.5)
            except asyncio.TimeoutError:
                break
        conn = conns[0]
        assert conn.protocol is not None
        assert len(conn.protocol._buf) <= 512 * 1024
        assert conn.transport is not None and not conn.transport.is_reading()
        client.writer.transport.abort()


@pytest.mark.parametrize("how", ["close", "return"])
async def test_violation_behind_message_then_close(start_server: Any, how: str) -> None:
    """A violation queued behind a message decides the close code when the handler closes
    or returns without reading again (not 1000), and TCP ends promptly."""
    queued = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        await until(
            lambda: ws.protocol is not None and ws.protocol.failure is not None, "the violation"
        )
        queued.set()
        if how == "close":
            await ws.close()

    async with start_server(handler, close_timeout=3) as running:
        client = await RawClient.connect(running.port)
        # A valid text message, then an unmasked frame (1002), in one write.
        client.send_raw(
            client.frame_bytes(Opcode.TEXT, b"hi") + serialize_frame(Opcode.TEXT, b"x", mask=None)
        )
        frame = await client.read_frame()
        assert frame.opcode == Opcode.CLOSE and frame.close_code == 1002
        start = time.monotonic()
        client.send_frame(Opcode.CLOSE, frame.payload[:2])
        await client.read_eof(timeout=TIMEOUT)
        assert time.monotonic() - start < 1.5  # the grace, not close_timeout


async def test_keepalive_while_reading_paused(start_server: Any, secure: bool) -> None:
    """A handler slower than ping_interval + ping_timeout with a full queue: we are the
    ones not reading, so the peer's unread Pong proves nothing: no 1011, nothing lost."""
    got: list[object] = []
    handler_may_read = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        await handler_may_read.wait()
        try:
            async for message in ws:
                got.append(message)
        except websock.ConnectionClosed as exc:
            got.append(exc)

    async with start_server(
        handler, secure=secure, ping_interval=0.2, ping_timeout=0.2, max_queue=2
    ) as running:
        async with running.connect() as ws:
            for i in range(10):
                await ws.send(f"m{i}")
            await asyncio.sleep(1.0)  # let several keepalive periods pass, queue full
            handler_may_read.set()
            await until(lambda: len(got) >= 10, "the messages")
            assert ws.close_code is None
    assert got[:10] == [f"m{i}" for i in range(10)]
