"""websock.pubsub.Hub without Redis: topics over real servers and clients on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import websock
from websock.pubsub import Hub, HubStats

TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)


@dataclass
class Running:
    """A server whose handler subscribes each connection to the topic named by its path."""

    server: Any
    hub: Hub
    #: Server-side connections, in the order they subscribed.
    connections: list[Any] = field(default_factory=list)
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def client(self, topic: str, **kwargs: Any) -> Any:
        """A client subscribed to ``topic`` (``""``: to none), once the server did it."""
        ws = await self.stack.enter_async_context(
            websock.connect(f"ws://127.0.0.1:{self.server.port}/{topic}", **kwargs)
        )
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ready"
        return ws


@contextlib.asynccontextmanager
async def hub_server(hub: Hub, **kwargs: Any) -> AsyncIterator[Running]:
    running: Running

    async def handler(ws: websock.ServerConnection) -> None:
        assert ws.request is not None
        topic = ws.request.path.lstrip("/")
        if topic:
            assert hub.subscribe(ws, topic)
        running.connections.append(ws)
        await ws.send("ready")
        async for _ in ws:
            pass

    async with websock.serve(handler, "127.0.0.1", 0, **kwargs) as server:
        running = Running(server, hub)
        async with running.stack:
            yield running


async def recv(ws: Any) -> Any:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def lost(ws: Any) -> None:
    """Wait until ``ws``'s TCP connection is closed (and the hub's callback has run: it
    was registered first, and callbacks run in order)."""
    await asyncio.wait_for(asyncio.shield(ws.connection_lost_waiter), TIMEOUT)


async def test_publish_reaches_the_topic_subscribers_only() -> None:
    hub = Hub()
    async with hub_server(hub) as running:
        a = await running.client("news")
        b = await running.client("news")
        c = await running.client("sport")
        assert sorted(hub.topics()) == ["news", "sport"]
        assert hub.subscribers("news") == running.connections[:2]
        assert hub.subscribers("weather") == []

        result = hub.publish("news", "héllo")
        assert (result.sent, result.dropped, result.closed, result.skipped) == (2, 0, 0, 0)
        assert await recv(a) == "héllo"
        assert await recv(b) == "héllo"

        assert hub.publish("sport", b"\x00\xff").sent == 1
        assert await recv(c) == b"\x00\xff"  # and not news' message before it

        assert hub.publish("news", "as bytes", text=False).sent == 2
        assert await recv(a) == b"as bytes"
        assert hub.publish("news", bytearray(b"as text"), text=True).sent == 2
        assert await recv(a) == "as text"
        assert await recv(b) == b"as bytes"
        assert await recv(b) == "as text"

        assert hub.publish("nobody", "lost").sent == 0
        assert hub.stats == HubStats(published=5, delivered=7)


async def test_unsubscribe_one_topic_or_all() -> None:
    hub = Hub()
    async with hub_server(hub) as running:
        a = await running.client("news")
        b = await running.client("news")
        server_a, server_b = running.connections
        assert hub.subscribe(server_a, "sport")
        assert not hub.subscribe(server_a, "sport")  # already
        assert hub.subscriptions(server_a) == {"news", "sport"}

        assert hub.unsubscribe(server_a, "news") == 1
        assert hub.unsubscribe(server_a, "news") == 0
        assert hub.subscribers("news") == [server_b]
        assert hub.publish("news", "one").sent == 1
        assert await recv(b) == "one"
        assert hub.publish("sport", "two").sent == 1
        assert await recv(a) == "two"  # not "one"

        assert hub.subscribe(server_a, "weather")
        assert hub.unsubscribe(server_a) == 2  # sport and weather
        assert hub.unsubscribe(server_a) == 0
        assert hub.subscriptions(server_a) == set()
        assert hub.topics() == ["news"]  # topics without subscribers are gone
        assert hub.unsubscribe(server_b, "news") == 1
        assert hub.topics() == []
        assert hub._connections == {}  # no memory held for them
        assert hub.publish("news", "nobody").sent == 0


async def test_closed_connections_leave_their_topics() -> None:
    hub = Hub()
    async with hub_server(hub) as running:
        a = await running.client("news")
        b = await running.client("news")
        server_a, server_b = running.connections
        hub.subscribe(server_a, "sport")

        await a.close()
        await lost(server_a)
        assert hub.subscribers("news") == [server_b]
        assert hub.topics() == ["news"]  # "sport" had only a
        assert hub.subscriptions(server_a) == set()
        assert not hub.subscribe(server_a, "news")  # closed: not subscribed again
        assert hub.topics() == ["news"]

        assert hub.publish("news", "still here").sent == 1
        assert await recv(b) == "still here"

        await b.close()
        await lost(server_b)
        assert hub.topics() == []
        assert hub._connections == {}


async def test_server_close_empties_the_hub() -> None:
    hub = Hub()
    async with hub_server(hub) as running:
        for topic in ("a", "b", "c", "a"):
            await running.client(topic)
        assert sorted(hub.topics()) == ["a", "b", "c"]
        server_connections = list(running.connections)
    for ws in server_connections:
        await lost(ws)
    assert hub.topics() == []


async def test_a_message_is_encoded_once_for_all_subscribers() -> None:
    hub = Hub()
    factory = websock.ServerPerMessageDeflateFactory(server_no_context_takeover=True)
    async with hub_server(hub, compression=[factory]) as running:
        clients = [await running.client("news") for _ in range(4)]
        assert all(ws.extensions for ws in running.connections)
        message = "compress me, " * 200
        result = hub.publish("news", message)
        assert result.sent == 4
        assert result.compressions == 1
        for ws in clients:
            assert await recv(ws) == message


async def test_slow_consumer_policy_is_counted() -> None:
    # limit=0: every connection with anything unsent is a slow consumer; a connection
    # whose buffer is empty is not. Publishing twice in a row (no await in between)
    # leaves the first message unsent when the second comes.
    hub = Hub(limit=0)
    async with hub_server(hub) as running:
        ws = await running.client("news", compression=None, max_message_size=None)
        big = "x" * (32 << 20)  # more than the kernel takes at once on loopback
        first = hub.publish("news", big)
        second = hub.publish("news", "dropped")
        assert (first.sent, second.dropped) == (1, 1)
        assert hub.stats.dropped == 1
        assert await recv(ws) == big


async def test_misuse() -> None:
    hub = Hub()
    with pytest.raises(TypeError, match="a topic is a str"):
        hub.publish(b"news", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot publish int"):
        hub.publish("news", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pending"):
        Hub(max_pending=0)
    # Without Redis, the lifecycle does nothing.
    async with hub:
        await hub.sync()
        assert not hub.connected


def test_redis_extra_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'pywebsock\[redis\]'"):
        Hub("redis://127.0.0.1:6379/0")
