"""websock.broadcast(): encode once (the same bytes object on every transport), the
slow-consumer policy (drop or close) with memory bounded, and connections that cannot take
a shared frame or the message at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawClient

import websock
from websock import ServerPerMessageDeflateFactory
from websock.asyncio.broadcast import SLOW_CONSUMER_REASON

KiB = 1024


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class RecordingTransport:
    """Wraps a transport; records every object written (to compare identities)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        chunks = list(chunks)
        self.written.extend(chunks)
        self._transport.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Subscribers:
    """A server whose handler keeps its connections in ``connected``."""

    def __init__(self) -> None:
        self.connected: list[websock.ServerConnection] = []
        self.count_reached = asyncio.Event()
        self.expected = 0

    async def handler(self, ws: websock.ServerConnection) -> None:
        self.connected.append(ws)
        if len(self.connected) >= self.expected:
            self.count_reached.set()
        await ws.wait_closed()

    async def wait_for(self, n: int) -> None:
        self.expected = n
        if len(self.connected) >= n:
            return
        self.count_reached.clear()
        await asyncio.wait_for(self.count_reached.wait(), TIMEOUT)


@pytest.mark.parametrize("shared_compression", [False, True])
async def test_the_same_bytes_reach_every_connection(
    start_server: Any, shared_compression: bool
) -> None:
    subscribers = Subscribers()
    compression: Any = (
        [ServerPerMessageDeflateFactory(server_no_context_takeover=True)]
        if shared_compression
        else "deflate"  # context takeover: the uncompressed frame is shared
    )
    async with start_server(subscribers.handler, compression=compression) as running:
        clients = [await running.connect() for _ in range(8)]
        await subscribers.wait_for(8)
        recorders = []
        for ws in subscribers.connected:
            recorder = RecordingTransport(ws.transport)
            ws.transport = recorder  # type: ignore[assignment]
            recorders.append(recorder)
        message = "price update " * 200
        result = websock.broadcast(subscribers.connected, message)
        assert (result.sent, result.dropped, result.closed, result.skipped) == (8, 0, 0, 0)
        assert result.compressions == (1 if shared_compression else 0)
        for client in clients:
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == message
        frames = [r.written for r in recorders]
        assert all(len(written) == 1 for written in frames)
        first = frames[0][0]
        assert all(written[0] is first for written in frames)  # one object, eight writes
        assert first[0] == (0xC1 if shared_compression else 0x81)
        for client in clients:
            await client.close()


async def test_clients_and_closed_connections(start_server: Any) -> None:
    """Client connections mask each frame: broadcast sends to each its own way. Closed ones
    are counted as skipped."""

    async def echo(ws: websock.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with start_server(echo) as running:
        clients = [await running.connect() for _ in range(3)]
        await clients[2].close()
        result = websock.broadcast(clients, b"\x00binary\xff")
        assert (result.sent, result.skipped) == (2, 1)
        for client in clients[:2]:
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"\x00binary\xff"
            await client.close()


async def test_fragmented_send_in_progress_is_skipped(start_server: Any) -> None:
    subscribers = Subscribers()
    release = asyncio.Event()

    async def fragments() -> Any:
        yield "first fragment "
        await release.wait()
        yield "last fragment"

    async with start_server(subscribers.handler) as running:
        client = await running.connect()
        await subscribers.wait_for(1)
        (ws,) = subscribers.connected
        sending = asyncio.ensure_future(ws.send(fragments()))
        while ws._send_in_progress is None:  # bounded: the first fragment goes out at once
            await asyncio.wait_for(asyncio.sleep(0), TIMEOUT)
        assert websock.broadcast([ws], "interruption").skipped == 1
        release.set()
        await asyncio.wait_for(sending, TIMEOUT)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "first fragment last fragment"
        assert websock.broadcast([ws], "after").sent == 1
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "after"
        await client.close()


MESSAGES = 600
SIZE = 32 * KiB
WINDOW = 8  # messages a reader may lag behind before the publisher waits for it


@pytest.mark.parametrize("policy", ["drop", "close", "no limit"])
async def test_slow_consumer(start_server: Any, policy: str) -> None:
    """One stalled subscriber and 100 reading ones: the readers get every message, in
    order; the stalled one is dropped (or closed, 1013) once its unsent output passes the
    limit, so that what the server holds for it stays within the limit plus one message.
    With no limit ("no limit"), the same run makes the server hold megabytes for it.

    The process's RSS is checked too, loosely: it includes the 100 readers' own queues."""
    subscribers = Subscribers()
    limit = 256 * KiB
    async with start_server(
        subscribers.handler,
        compression=None,
        broadcast_limit=None if policy == "no limit" else limit,
        slow_consumer="close" if policy == "close" else "drop",
        close_timeout=TIMEOUT / 5,
    ) as running:
        stalled = await RawClient.connect(running.port)  # never reads: the kernel fills up
        await subscribers.wait_for(1)
        stalled_server = subscribers.connected[0]
        readers = [
            await running.connect(max_message_size=SIZE, max_queue=WINDOW) for _ in range(100)
        ]
        await subscribers.wait_for(101)
        received = [0] * len(readers)
        progressed = asyncio.Condition()

        async def read(i: int, ws: websock.ClientConnection) -> None:
            for n in range(MESSAGES):
                message = await ws.recv()
                assert message[:8] == n.to_bytes(8, "big")
                async with progressed:
                    received[i] = n + 1
                    progressed.notify_all()

        tasks = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(readers)]
        slow: list[websock.ServerConnection] = []
        totals = websock.BroadcastResult()
        held = 0  # the most output the server held for the stalled subscriber
        before = rss_bytes()
        for n in range(MESSAGES):
            if n >= WINDOW:
                async with progressed:
                    await asyncio.wait_for(
                        progressed.wait_for(lambda n=n: min(received) >= n - WINDOW), TIMEOUT
                    )
            payload = n.to_bytes(8, "big") + bytes(SIZE - 8)
            result = websock.broadcast(subscribers.connected, payload, on_slow_consumer=slow.append)
            held = max(held, stalled_server._unsent_bytes())
            totals.sent += result.sent
            totals.dropped += result.dropped
            totals.closed += result.closed
            totals.skipped += result.skipped
        growth = rss_bytes() - before
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT * 4)
        assert received == [MESSAGES] * len(readers)
        if policy == "no limit":
            # 600 x 32 KiB = 19 MiB for it; what the kernel's socket buffers did not take
            # stays in the server.
            assert slow == [] and totals.dropped == totals.closed == 0
            assert held > 8 * 1024 * KiB, held
            stalled.writer.close()
            for ws in readers:
                await ws.close()
            return
        assert held <= limit + SIZE + 16, held
        assert growth < 48 * 1024 * KiB, growth
        assert set(slow) == {stalled_server}
        if policy == "drop":
            assert totals.dropped == len(slow) > MESSAGES // 2
            assert totals.closed == 0
        else:
            assert totals.closed == 1 and totals.dropped == 0
            assert totals.skipped > MESSAGES // 2  # closing: no more messages for it
            await asyncio.wait_for(stalled_server.wait_closed(), TIMEOUT)
            assert stalled_server.protocol is not None
            sent = stalled_server.protocol.close_sent
            assert sent is not None and (sent.code, sent.reason) == (1013, SLOW_CONSUMER_REASON)
        for ws in readers:
            await ws.close()
        stalled.writer.close()
