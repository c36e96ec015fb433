"""The chat demo (websock.chat), as ``python -m websock chat`` in a subprocess.

The server runs with ``--port 0`` and its port is read from the listening line; clients are
websock's own. With ``--workers 2 --redis URL`` (a real redis-server: tests/redisserver.py),
clients connect until two of them are served by different workers (the first message names
the worker), then a message crosses from one worker to the other through Redis.

:func:`chat_server` and :func:`join` are also used by test_chat_browser.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import websock
from redisserver import RedisServer
from websock import ClientConnection, ConnectionClosed
from websock.chat import ChatApp, broadcast_limit
from websock.options import DEFAULT_BROADCAST_LIMIT

pytest_plugins = ["redisserver"]

FACTOR = float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
#: Bound on one step (a reply, a message, a process exit).
TIMEOUT = 10.0 * FACTOR
#: Bound on the server's start (Python start-up, forking workers, connecting to Redis).
STARTUP_TIMEOUT = 30.0 * FACTOR
#: Connections tried before giving up on seeing a second worker: each lands on one of two
#: workers (SO_REUSEPORT hashes the source port), so 40 misses happen with odds of 2^-39.
MAX_ATTEMPTS = 40

LISTENING = re.compile(r"chat listening on (wss?)://127\.0\.0\.1:(\d+)/")


@dataclass
class ChatServer:
    """A running ``websock chat``: its process, its port and everything it printed."""

    process: asyncio.subprocess.Process
    scheme: str = "ws"
    port: int = 0
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)

    @property
    def ws_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def stop(self) -> int:
        """SIGTERM, then its exit status (SIGKILL to its group if it does not exit)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), TIMEOUT * 3)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            raise


async def _drain(server: ChatServer) -> None:
    assert server.process.stdout is not None
    while line := await server.process.stdout.readline():
        server.output.append(line.decode(errors="replace"))


@contextlib.asynccontextmanager
async def chat_server(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[ChatServer]:
    """``python -m websock chat --port 0 *args``, once it listens; stopped on exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "websock",
        "chat",
        "--port",
        "0",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its workers too can be killed as a group
    )
    server = ChatServer(process)
    assert process.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        while not server.port:
            line = await asyncio.wait_for(process.stdout.readline(), deadline - loop.time())
            if not line:
                await asyncio.wait_for(process.wait(), TIMEOUT)
                pytest.fail(f"websock chat exited ({process.returncode}):\n{server.text()}")
            server.output.append(line.decode(errors="replace"))
            if match := LISTENING.search(server.output[-1]):
                server.scheme, server.port = match.group(1), int(match.group(2))
        drain = asyncio.ensure_future(_drain(server))
        yield server
    finally:
        await server.stop()
        if drain is not None:
            await asyncio.wait_for(drain, TIMEOUT)


async def join(server: ChatServer, room: str, **kwargs: Any) -> tuple[ClientConnection, Any]:
    """A client in ``room``, and the server's first message (JSON: room, worker)."""
    ws = await websock.connect(f"{server.ws_url}/room/{room}", proxy=None, **kwargs)
    first = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(first, str)
    return ws, json.loads(first)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def http_get(port: int, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET (no proxy, no upgrade): status, headers (lowercase), body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}"
            "Connection: close\r\n\r\n".encode()
        )
        data = await asyncio.wait_for(reader.read(), TIMEOUT)  # until the server closes
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), fields, body


# --- one process --------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[ChatServer]:
    async with chat_server("--plain") as server:
        yield server


async def test_page(server: ChatServer) -> None:
    status, headers, body = await http_get(server.port, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    assert "script-src 'sha256-" in headers["content-security-policy"]
    page = body.decode()
    assert page.startswith("<!doctype html>")
    assert "new WebSocket(" in page
    assert "innerHTML" not in page  # messages are shown with textContent


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/room/", 400),
        ("/room/a%20b", 400),
        ("/room/a/b", 400),
        ("/room/<script>", 400),
        ("/room/" + "a" * 65, 400),
        ("/nowhere", 404),
        ("/favicon.ico", 404),
        ("/roomy", 404),
    ],
)
async def test_bad_paths(server: ChatServer, path: str, status: int) -> None:
    assert (await http_get(server.port, path))[0] == status


async def test_bad_room_refuses_websocket(server: ChatServer) -> None:
    with pytest.raises(websock.InvalidStatus) as info:
        await websock.connect(f"{server.ws_url}/room/no!", proxy=None)
    assert info.value.response.status == 400


async def test_room_fan_out_sender_included_and_rooms_isolated(server: ChatServer) -> None:
    alice, welcome = await join(server, "lobby")
    assert welcome["type"] == "joined" and welcome["room"] == "lobby"
    assert isinstance(welcome["worker"], int)
    bob, _ = await join(server, "lobby")
    eve, _ = await join(server, "other-room_2")
    try:
        await alice.send("hello from alice")
        assert await recv(alice) == "hello from alice"
        assert await recv(bob) == "hello from alice"
        await bob.send('{"nick": "bob", "text": "<b>hi</b>"}')
        assert await recv(alice) == '{"nick": "bob", "text": "<b>hi</b>"}'
        assert await recv(bob) == '{"nick": "bob", "text": "<b>hi</b>"}'
        # Eve's room only has what is sent in it: the first message she gets is her own.
        await eve.send("eve here")
        assert await recv(eve) == "eve here"
        await alice.send("after eve")
        assert await recv(bob) == "after eve"  # and nothing of Eve's in between
    finally:
        for ws in (alice, bob, eve):
            await ws.close()


async def test_oversized_message_closes_1009(server: ChatServer) -> None:
    big, _ = await join(server, "lobby", max_message_size=None)
    other, _ = await join(server, "lobby")
    try:
        await big.send("x" * 4096)  # the limit itself is fine
        assert await recv(other) == "x" * 4096
        await big.send("x" * 4097)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv(big)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        await other.send("still here")
        assert await recv(other) == "still here"
    finally:
        await big.close()
        await other.close()


async def test_binary_message_closes_1003(server: ChatServer) -> None:
    ws, _ = await join(server, "lobby")
    await ws.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as info:
        await recv(ws)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1003


async def test_cross_origin_websocket_refused(server: ChatServer) -> None:
    with pytest.raises(websock.InvalidStatus) as info:
        await websock.connect(
            f"{server.ws_url}/room/lobby", proxy=None, origin="https://evil.example"
        )
    assert info.value.response.status == 403
    ws, _ = await join(server, "lobby", origin=f"http://127.0.0.1:{server.port}")
    await ws.close()


async def test_max_message_size_option() -> None:
    async with chat_server("--plain", "--max-message-size", "16") as server:
        ws, _ = await join(server, "lobby")
        await ws.send("y" * 17)
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_sigterm_closes_with_1001() -> None:
    async with chat_server("--plain") as server:
        ws, _ = await join(server, "lobby")
        assert await server.stop() == 0
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert "Traceback" not in server.text()


async def test_wss_by_default_with_the_development_certificate(tmp_path: Path) -> None:
    async with chat_server(env={"XDG_CACHE_HOME": str(tmp_path)}) as server:
        assert server.scheme == "wss"
        match = re.search(r"CA file for clients: (\S+)", server.text())
        assert match, server.text()
        context = ssl.create_default_context(cafile=match.group(1))
        alice, welcome = await join(server, "lobby", ssl=context)
        bob, _ = await join(server, "lobby", ssl=context)
        assert welcome["room"] == "lobby"
        await alice.send("over TLS")
        assert await recv(bob) == "over TLS"
        await alice.close()
        await bob.close()


async def test_workers_without_redis_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "websock",
        "chat",
        "--plain",
        "--workers",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT * 3)
    assert process.returncode == 2
    assert b"--workers 2 needs --redis URL" in stderr
    assert stdout == b""


# --- two workers, one Redis ---------------------------------------------------------------


async def clients_on_two_workers(
    server: ChatServer, room: str
) -> tuple[dict[int, ClientConnection], list[ClientConnection]]:
    """Join ``room`` until two workers serve a client: {pid: client}, and every client."""
    by_worker: dict[int, ClientConnection] = {}
    clients: list[ClientConnection] = []
    for _ in range(MAX_ATTEMPTS):
        ws, welcome = await join(server, room)
        clients.append(ws)
        by_worker.setdefault(welcome["worker"], ws)
        if len(by_worker) == 2:
            return by_worker, clients
    pytest.fail(f"{MAX_ATTEMPTS} connections, all served by worker {list(by_worker)}")


async def test_two_workers_share_rooms_through_redis(redis_server: RedisServer) -> None:
    async with chat_server("--plain", "--workers", "2", "--redis", redis_server.url) as server:
        assert "(2 workers)" in server.text()
        by_worker, clients = await clients_on_two_workers(server, "lobby")
        try:
            (pid_a, a), (pid_b, b) = by_worker.items()
            assert pid_a != pid_b
            await a.send(f"from worker {pid_a}")
            for ws in clients:  # every client of the room, on both workers, sender included
                assert await recv(ws) == f"from worker {pid_a}"
            await b.send(f"from worker {pid_b}")
            for ws in clients:
                assert await recv(ws) == f"from worker {pid_b}"
            # Another room on the other worker stays out of it.
            outsider, _ = await join(server, "elsewhere")
            await a.send("lobby only")
            await outsider.send("elsewhere only")
            assert await recv(outsider) == "elsewhere only"
            assert await recv(b) == "lobby only"
            await outsider.close()
        finally:
            for ws in clients:
                await ws.close()
    assert "Traceback" not in server.text()


# --- in this process: the app's settings and hooks ----------------------------------------


def test_broadcast_limit() -> None:
    assert broadcast_limit(4096) == 64 * 4096
    assert broadcast_limit(16) == 64 * 1024  # at least 64 KiB
    assert broadcast_limit(None) == DEFAULT_BROADCAST_LIMIT  # not None: that is no limit


async def test_app_in_process() -> None:
    app = ChatApp(max_message_size=1000)
    with pytest.raises(RuntimeError, match="lifespan"):
        app.hub  # noqa: B018
    async with app.lifespan() as hub:
        assert app.hub is hub
        async with websock.serve(app.handler, "127.0.0.1", 0, **app.serve_options()) as server:
            assert server.options.slow_consumer == "close"
            assert server.options.broadcast_limit == 64 * 1024
            assert server.options.max_message_size == 1000
            uri = f"ws://127.0.0.1:{server.port}/room/r"
            ws = await websock.connect(uri, proxy=None, origin=f"http://127.0.0.1:{server.port}")
            welcome = json.loads(await recv(ws))
            assert welcome == {"type": "joined", "room": "r", "worker": os.getpid()}
            assert hub.subscribers("chat:r") != []
            await ws.send("x")
            assert await recv(ws) == "x"
            await ws.close()
            for origin in ("null", "http://127.0.0.1:1", "http://[::1"):
                with pytest.raises(websock.InvalidStatus) as info:
                    await websock.connect(uri, proxy=None, origin=origin)
                assert info.value.response.status == 403
    with pytest.raises(RuntimeError):
        app.hub  # noqa: B018
