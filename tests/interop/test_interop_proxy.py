"""websock's client through a real HTTP proxy (tinyproxy) to peer libraries' servers:
websockets and aiohttp, over ws and wss, with and without compression."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import websockets.asyncio.server
from aiohttp import WSMsgType, web

import websock
from conftest import TIMEOUT, MiB
from proxyservers import ProxyServer

pytestmark = pytest.mark.interop

LARGE = (bytes(range(256)) * (MiB // 256))[:-1]


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@asynccontextmanager
async def websockets_server(context: ssl.SSLContext | None, deflate: bool) -> AsyncIterator[int]:
    async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.asyncio.server.serve(
        echo,
        "127.0.0.1",
        0,
        ssl=context,
        compression="deflate" if deflate else None,
        max_size=4 * MiB,
    ) as server:
        yield server.sockets[0].getsockname()[1]


@asynccontextmanager
async def aiohttp_server(context: ssl.SSLContext | None, deflate: bool) -> AsyncIterator[int]:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=4 * MiB)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        server = site._server
        assert server is not None
        yield server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await asyncio.wait_for(runner.cleanup(), TIMEOUT * 2)


@pytest.mark.parametrize("peer", ["websockets", "aiohttp"])
async def test_our_client_through_tinyproxy(
    peer: str,
    secure: bool,
    deflate: bool,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    tinyproxy: ProxyServer,
) -> None:
    start = websockets_server if peer == "websockets" else aiohttp_server
    async with start(server_ssl if secure else None, deflate) as port:
        async with websock.connect(
            f"{'wss' if secure else 'ws'}://127.0.0.1:{port}/",
            proxy=tinyproxy.url,
            ssl=client_ssl if secure else None,
            compression="deflate" if deflate else None,
            max_message_size=4 * MiB,
            open_timeout=TIMEOUT,
        ) as ws:
            assert (ws.extensions != []) is deflate
            await ws.send("through tinyproxy")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "through tinyproxy"
            await ws.send(LARGE)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == LARGE
        assert ws.close_code == 1000
        assert tinyproxy.connects() == [f"127.0.0.1:{port}"]
