"""websock.pubsub.Hub across processes through a real Redis (tests/redisserver.py).

In-process tests join two hubs of this process (the envelope, the subscriptions, the
outage); the multi-process tests run each hub in a process of its own
(tests/pubsubnode.py) with clients on each, and kill Redis under them.

Synchronisation: a hub's ``sync()`` (``sync`` for a node) returns once Redis holds its
subscriptions; every other wait is for a message or a log line, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import websock
from redisserver import RedisServer
from websock.pubsub import ENVELOPE_MAGIC, Hub

redis_asyncio = pytest.importorskip("redis.asyncio", reason="pip install 'pywebsock[redis]'")

pytest_plugins = ["redisserver"]

FACTOR = float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
TIMEOUT = 10.0 * FACTOR
#: How long a probe waits for its message to cross before the next one is published.
PROBE_WAIT = 0.5 * FACTOR
NODE = Path(__file__).with_name("pubsubnode.py")
WARNING_LINE = re.compile(r"^WARNING websock\.pubsub Redis backplane .* unreachable", re.M)
BACK_LINE = re.compile(r"^INFO websock\.pubsub Redis backplane .* is back after", re.M)


async def recv(ws: Any, timeout: float = TIMEOUT) -> Any:
    return await asyncio.wait_for(ws.recv(), timeout)


async def until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until ``condition()`` holds: for states with no event to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


# In-process: two hubs of this process, each with a server and clients.


@contextlib.asynccontextmanager
async def subscriber_server(hub: Hub) -> AsyncIterator[Callable[[str], Any]]:
    """A server subscribing each connection to its path's topic; yields ``client(topic)``
    returning a client connection subscribed once Redis has the subscription."""

    async def handler(ws: websock.ServerConnection) -> None:
        assert ws.request is not None
        hub.subscribe(ws, ws.request.path.lstrip("/"))
        await asyncio.wait_for(hub.sync(), TIMEOUT)
        await ws.send("ready")
        async for _ in ws:
            pass

    async with (
        websock.serve(handler, "127.0.0.1", 0) as server,
        contextlib.AsyncExitStack() as stack,
    ):

        async def client(topic: str) -> Any:
            ws = await stack.enter_async_context(
                websock.connect(f"ws://127.0.0.1:{server.port}/{topic}")
            )
            assert await recv(ws) == "ready"
            return ws

        yield client


def fast_hub(redis_server: RedisServer, **kwargs: Any) -> Hub:
    return Hub(redis_server.url, timeout=2.0 * FACTOR, ping_interval=2.0 * FACTOR, **kwargs)


async def test_two_hubs_deliver_everywhere_once(redis_server: RedisServer) -> None:
    async with fast_hub(redis_server) as hub1, fast_hub(redis_server) as hub2:
        assert hub1.connected and hub2.connected
        async with subscriber_server(hub1) as client1, subscriber_server(hub2) as client2:
            a1, a2 = await client1("news"), await client1("news")
            b1 = await client2("news")
            other = await client2("sport")
            everyone = [a1, a2, b1]
            # Each message is received everywhere before the next is published, so a
            # duplicate (a hub delivering the echo of its own publish) would show up as
            # the next message received.
            for hub, message in [
                (hub1, "from 1"),
                (hub2, "from 2"),
                (hub1, b"\x00binary"),
                (hub2, "héllo"),
                (hub1, "last"),
            ]:
                hub.publish("news", message)
                for ws in everyone:
                    assert await recv(ws) == message
            hub2.publish("sport", "sport only")
            assert await recv(other) == "sport only"  # not the news before it
            hub1.publish("sport", "sport from 1")
            assert await recv(other) == "sport from 1"
            assert hub1.stats.forwarded == 4  # 3 news and 1 sport
            assert hub1.stats.received == 2  # from 2, héllo; not its own, not sport
            assert hub2.stats.received == 4  # 3 news and 1 sport
            assert hub1.stats.malformed == hub2.stats.malformed == 0
            assert hub1.stats.backplane_dropped == hub2.stats.backplane_dropped == 0


async def test_redis_subscriptions_follow_local_subscribers(redis_server: RedisServer) -> None:
    redis = redis_asyncio.Redis.from_url(redis_server.url)
    try:

        async def channels() -> dict[bytes, int]:
            names = await redis.pubsub_channels()
            return dict(await redis.pubsub_numsub(*names)) if names else {}

        async with (
            fast_hub(redis_server, prefix="app:") as hub1,
            fast_hub(redis_server, prefix="app:") as hub2,
        ):
            assert await channels() == {}  # subscribed to nothing it does not serve
            async with subscriber_server(hub1) as client1, subscriber_server(hub2) as client2:
                a = await client1("news")
                await client2("news")
                await client1("sport")
                assert await channels() == {b"app:news": 2, b"app:sport": 1}
                await a.close()
                await until(lambda: hub1.subscribers("news") == [], "hub1 left news")
                await asyncio.wait_for(hub1.sync(), TIMEOUT)
                assert await channels() == {b"app:news": 1, b"app:sport": 1}
            await until(lambda: not hub1.topics() and not hub2.topics(), "hubs emptied")
            await asyncio.wait_for(hub1.sync(), TIMEOUT)
            await asyncio.wait_for(hub2.sync(), TIMEOUT)
            assert await channels() == {}
    finally:
        await redis.aclose()


async def test_foreign_and_malformed_envelopes_are_ignored(redis_server: RedisServer) -> None:
    redis = redis_asyncio.Redis.from_url(redis_server.url)
    try:
        async with fast_hub(redis_server) as hub1, fast_hub(redis_server) as hub2:
            async with subscriber_server(hub1) as client1:
                ws = await client1("news")
                await redis.publish("websock:news", b"not an envelope")
                await redis.publish("websock:news", ENVELOPE_MAGIC + bytes(16) + b"x" + b"?")
                await redis.publish("websock:news", ENVELOPE_MAGIC + bytes(16) + b"t\xff\xfe")
                await redis.publish("websock:news", ENVELOPE_MAGIC + hub1.id.bytes + b"techo")
                hub2.publish("news", "valid")  # through its own connection: after those
                assert await recv(ws) == "valid"
                assert hub1.stats.malformed == 3
                assert hub1.stats.received == 1
    finally:
        await redis.aclose()


async def test_outage_in_process(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="websock.pubsub")
    async with fast_hub(redis_server) as hub1, fast_hub(redis_server) as hub2:
        async with subscriber_server(hub1) as client1, subscriber_server(hub2) as client2:
            a, b = await client1("news"), await client2("news")
            hub1.publish("news", "before")
            assert await recv(a) == "before"
            assert await recv(b) == "before"

            redis_server.kill()
            await until(lambda: not hub1.connected and not hub2.connected, "outage seen")
            for i in range(20):  # local delivery goes on; nothing is queued
                hub1.publish("news", f"during {i}")
                assert await recv(a) == f"during {i}"
            assert hub1.stats.backplane_dropped == 20
            assert hub1.stats.outages == hub2.stats.outages == 1

            redis_server.start()
            await asyncio.wait_for(hub1.sync(), TIMEOUT)
            await asyncio.wait_for(hub2.sync(), TIMEOUT)
            assert hub1.connected and hub2.connected
            hub1.publish("news", "after")
            assert await recv(a) == "after"
            assert await recv(b) == "after"  # not one of "during"
            hub2.publish("news", "after 2")
            assert await recv(a) == "after 2"
            assert await recv(b) == "after 2"

    records = [r for r in caplog.records if r.name == "websock.pubsub"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    backs = [r for r in records if r.levelno == logging.INFO and "is back" in r.getMessage()]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # one per hub
    assert len(backs) == 2, [r.getMessage() for r in backs]
    assert "20 messages not forwarded" in " ".join(r.getMessage() for r in backs)


async def test_start_while_redis_is_down(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="websock.pubsub")
    redis_server.stop()
    async with fast_hub(redis_server) as hub:
        assert not hub.connected  # start() returned after the first attempt
        assert hub.publish("news", "x").sent == 0
        assert hub.stats.backplane_dropped == 1
        redis_server.start()
        await asyncio.wait_for(hub.sync(), TIMEOUT)
        assert hub.connected
    records = [r for r in caplog.records if r.name == "websock.pubsub"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO], records
    assert "unreachable" in records[0].getMessage()
    assert "is back after" in records[1].getMessage()


# Multi-process: each hub in a node process of its own.


class Node:
    """A pubsubnode.py process: its port and its stderr (the hub's log)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def start_nodes(redis_url: str, directory: Path, names: str) -> AsyncIterator[list[Node]]:
    """One node per letter of ``names``, started together; stopped with SIGTERM, each
    expected to exit cleanly (status 0)."""
    processes: list[tuple[asyncio.subprocess.Process, Path]] = []
    try:
        for name in names:
            log_path = directory / f"{name}.log"
            with log_path.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(NODE),
                    redis_url,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                )
            processes.append((process, log_path))
        nodes = []
        for process, log_path in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
            assert line.startswith(b"READY "), (line, log_path.read_text())
            nodes.append(Node(process, int(line.split()[1]), log_path))
        yield nodes
        for process, _ in processes:
            process.send_signal(signal.SIGTERM)
        for process, log_path in processes:
            status = await asyncio.wait_for(process.wait(), TIMEOUT)
            assert status == 0, log_path.read_text()
    finally:
        for process, _ in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def subscribe(stack: contextlib.AsyncExitStack, node: Node, topic: str) -> Any:
    ws = await stack.enter_async_context(websock.connect(f"ws://127.0.0.1:{node.port}/"))
    await ws.send(f"sub:{topic}")
    assert await recv(ws, 2 * TIMEOUT) == f"ok:sub:{topic}"
    return ws


async def control(stack: contextlib.AsyncExitStack, node: Node) -> Any:
    return await stack.enter_async_context(websock.connect(f"ws://127.0.0.1:{node.port}/"))


async def publish(ws: Any, topic: str, text: str) -> int:
    await ws.send(f"pub:{topic}:{text}")
    reply = await recv(ws)
    assert reply.startswith("ok:pub:"), reply
    return int(reply.removeprefix("ok:pub:"))


async def sync(ws: Any) -> None:
    await ws.send("sync")
    assert await recv(ws, 2 * TIMEOUT) == "ok:sync"


async def stats(ws: Any) -> dict[str, int]:
    import json

    await ws.send("stats")
    result: dict[str, int] = json.loads(await recv(ws))
    return result


async def test_processes_deliver_everywhere_once(redis_server: RedisServer, tmp_path: Path) -> None:
    async with start_nodes(redis_server.url, tmp_path, "abc") as nodes:
        async with contextlib.AsyncExitStack() as clients:
            # Two subscribers on a and b each; c publishes without serving the topic.
            subscribers = [
                await subscribe(clients, node, "news") for node in nodes[:2] for _ in "12"
            ]
            controls = [await control(clients, node) for node in nodes]
            for round_ in range(3):
                for i, ws in enumerate(controls):
                    message = f"round {round_} from {'abc'[i]}"
                    sent = await publish(ws, "news", message)
                    assert sent == (2 if i < 2 else 0)  # local deliveries
                    for subscriber in subscribers:
                        assert await recv(subscriber) == message
            counters = [await stats(ws) for ws in controls]
            assert [c["forwarded"] for c in counters] == [3, 3, 3]
            assert [c["received"] for c in counters] == [6, 6, 0]
            assert all(c["backplane_dropped"] == 0 for c in counters)
    for node in nodes:
        assert "WARNING" not in node.log(), node.log()


async def test_processes_survive_a_redis_outage(redis_server: RedisServer, tmp_path: Path) -> None:
    async with start_nodes(redis_server.url, tmp_path, "ab") as (a, b):
        async with contextlib.AsyncExitStack() as clients:
            sub_a, sub_b = await subscribe(clients, a, "news"), await subscribe(clients, b, "news")
            ctl_a, ctl_b = await control(clients, a), await control(clients, b)
            await publish(ctl_a, "news", "before")
            assert await recv(sub_a) == "before"
            assert await recv(sub_b) == "before"

            redis_server.kill()
            # Local delivery goes on, at once, before and after the hub notices.
            assert await publish(ctl_a, "news", "local a 0") == 1
            assert await recv(sub_a) == "local a 0"
            for node in (a, b):
                await until(
                    lambda node=node: WARNING_LINE.search(node.log()) is not None,
                    f"outage logged by {node.log_path.name}",
                )
            for i in range(1, 6):
                assert await publish(ctl_a, "news", f"local a {i}") == 1
                assert await recv(sub_a) == f"local a {i}"
                assert await publish(ctl_b, "news", f"local b {i}") == 1
                assert await recv(sub_b) == f"local b {i}"

            redis_server.start()
            # Bounded: publish until one message crosses from a to b.
            received_b: list[str] = []
            crossed = False
            for i in range(int(2 * TIMEOUT / PROBE_WAIT)):
                await publish(ctl_a, "news", f"probe {i}")
                assert await recv(sub_a) == f"probe {i}"
                with contextlib.suppress(asyncio.TimeoutError):
                    received_b.append(await recv(sub_b, PROBE_WAIT))
                    crossed = True
                    break
            assert crossed, f"nothing crossed after the restart; log of b:\n{b.log()}"
            await sync(ctl_b)  # b's subscription is back (it is, since a probe crossed)
            # From now on, every message crosses, in order, both ways.
            for i in range(10):
                await publish(ctl_a, "news", f"after a {i}")
                assert await recv(sub_a) == f"after a {i}"
                message = await recv(sub_b)
                while message.startswith("probe "):  # probes still on their way
                    received_b.append(message)
                    message = await recv(sub_b)
                assert message == f"after a {i}"
                await publish(ctl_b, "news", f"after b {i}")
                assert await recv(sub_b) == f"after b {i}"
                assert await recv(sub_a) == f"after b {i}"
            # At most once: nothing published during the outage came through later.
            assert all(m.startswith("probe ") for m in received_b), received_b
            counters_a = await stats(ctl_a)
            assert counters_a["outages"] == 1
            assert counters_a["backplane_dropped"] >= 6  # "local a 0..5"

    for node in (a, b):
        log = node.log()
        assert len(WARNING_LINE.findall(log)) == 1, log  # once per outage, not per message
        assert len(BACK_LINE.findall(log)) == 1, log


async def test_outgoing_queue_bound(redis_server: RedisServer) -> None:
    """publish() never waits for Redis: a burst beyond max_pending envelopes (published
    before the sending task can run) keeps the first ones, drops the rest, counts them."""
    async with fast_hub(redis_server, max_pending=3) as hub:
        await hub.sync()
        assert hub.connected
        for n in range(10):
            hub.publish("burst", f"message {n}")
        assert hub.stats.backplane_dropped == 7
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while hub.stats.forwarded < 3:  # Redis acknowledges the three kept
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert hub.stats.forwarded == 3 and hub.stats.backplane_dropped == 7
