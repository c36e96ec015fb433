"""Concurrent use of one connection: recv from two tasks, cancellation, interleaved sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawServer, accept_handshake, echo, read_frame

import websock
from websock import ConcurrencyError
from websock.protocol.frames import Opcode


async def test_two_concurrent_recv_raise(start_server: Any) -> None:
    async with start_server(echo) as running:
        async with running.connect() as ws:
            first = asyncio.create_task(ws.recv())
            await asyncio.sleep(0)  # let it start waiting
            with pytest.raises(ConcurrencyError):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            await ws.send("x")
            assert await asyncio.wait_for(first, TIMEOUT) == "x"


async def test_cancelled_recv_loses_nothing(start_server: Any) -> None:
    count = 300
    go = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.recv()
        for i in range(count):
            await ws.send(str(i))
            if i % 7 == 0:
                await asyncio.sleep(0)
        await ws.recv()

    async with start_server(handler) as running:
        async with running.connect() as ws:
            await ws.send("start")
            go.set()
            received: list[str] = []
            cancelled = 0
            while len(received) < count:
                task = asyncio.create_task(ws.recv())
                await asyncio.sleep(0)
                task.cancel()
                try:
                    message = await task
                except asyncio.CancelledError:
                    cancelled += 1
                    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
                assert isinstance(message, str)
                received.append(message)
            assert received == [str(i) for i in range(count)]
            assert cancelled > 0
            await ws.send("end")


async def test_cancelled_recv_after_message_arrived(start_server: Any) -> None:
    """The waiter is woken, then the task is cancelled before it runs: the message stays."""
    async with start_server(echo) as running:
        async with running.connect() as ws:
            task = asyncio.create_task(ws.recv())
            await asyncio.sleep(0)
            assert ws._recv_waiter is not None
            # Cancel the task right when the echo wakes it, before it gets to run.
            wake = ws._wake_reader

            def wake_then_cancel() -> None:
                wake()
                task.cancel()

            ws._wake_reader = wake_then_cancel  # type: ignore[method-assign]
            await ws.send("kept")
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, TIMEOUT)
            ws._wake_reader = wake  # type: ignore[method-assign]
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "kept"


async def test_send_waits_for_fragmented_send(start_server: Any) -> None:
    frames: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        seen = []
        while True:
            frame = await read_frame(reader)
            seen.append(frame)
            if frame.opcode == Opcode.PING:
                writer.write(b"\x8a" + bytes([len(frame.payload)]) + frame.payload)
            if frame.opcode == Opcode.CLOSE:
                break
        writer.write(b"\x88\x02\x03\xe8")
        writer.close()
        frames.set_result(seen)

    gate = asyncio.Event()
    first_sent = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "a"
        yield "b"  # "a" goes out now that it is known not to be the last fragment
        first_sent.set()
        await gate.wait()
        yield "c"

    async with RawServer(script) as server:
        async with websock.connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
            streaming = asyncio.create_task(ws.send(fragments()))
            await asyncio.wait_for(first_sent.wait(), TIMEOUT)
            other = asyncio.create_task(ws.send("other"))
            another = asyncio.create_task(ws.send(["x", "y"]))
            # Control frames may go between fragments.
            await asyncio.wait_for(ws.ping(b"p"), TIMEOUT)
            assert not other.done() and not another.done()
            gate.set()
            await asyncio.wait_for(asyncio.gather(streaming, other, another), TIMEOUT)
        seen = await asyncio.wait_for(frames, TIMEOUT)
    summary = [(f.opcode, f.payload, f.fin) for f in seen]
    assert summary[:1] == [(Opcode.TEXT, b"a", False)]
    data = [s for s in summary if s[0] != Opcode.PING]
    assert data == [
        (Opcode.TEXT, b"a", False),
        (Opcode.CONT, b"b", False),
        (Opcode.CONT, b"c", True),
        (Opcode.TEXT, b"other", True),
        (Opcode.TEXT, b"x", False),
        (Opcode.CONT, b"y", True),
        (Opcode.CLOSE, b"\x03\xe8", True),
    ]
    # The ping went out while the fragmented message was in progress.
    assert summary.index((Opcode.PING, b"p", True)) == 1


async def test_close_during_fragmented_send(start_server: Any) -> None:
    """close() while a fragmented message is half sent: the stream stops, nothing hangs."""
    gate = asyncio.Event()
    first_sent = asyncio.Event()

    async def fragments() -> AsyncIterator[bytes]:
        yield b"a"
        first_sent.set()
        await gate.wait()
        yield b"b"

    async with start_server(echo, close_timeout=0.5) as running:
        ws = await running.connect(close_timeout=0.5)
        streaming = asyncio.create_task(ws.send(fragments()))
        await asyncio.wait_for(first_sent.wait(), TIMEOUT)
        closing = asyncio.create_task(ws.close())
        await asyncio.sleep(0)
        gate.set()
        with pytest.raises(websock.ConnectionClosed):
            await asyncio.wait_for(streaming, TIMEOUT)
        await asyncio.wait_for(closing, TIMEOUT)
        assert ws.close_code is not None
