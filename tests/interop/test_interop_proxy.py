"""websock's client through a real HTTP proxy (tinyproxy) to peer libraries' servers:
websockets and aiohttp, over ws and wss, with and without compression."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
import test_interop_aiohttp as aiohttp_peer
import test_interop_websockets as websockets_peer

import websock
from proxyservers import ProxyServer

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("no_proxy_environment")]

MiB = 1 << 20
LARGE = (bytes(range(256)) * (MiB // 256))[:-1]
TIMEOUT = aiohttp_peer.TIMEOUT


@pytest.mark.parametrize("peer", ["websockets", "aiohttp"])
async def test_our_client_through_tinyproxy(
    peer: str,
    secure: bool,
    deflate: bool,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    tinyproxy: ProxyServer,
) -> None:
    context = server_ssl if secure else None
    server: Any
    if peer == "websockets":
        server = websockets_peer.peer_server(
            websockets_peer.peer_echo, ssl_context=context, deflate=deflate
        )
    else:
        server = aiohttp_peer.aiohttp_server(
            aiohttp_peer.make_echo(deflate, []), ssl_context=context
        )
    async with server as port:
        async with websock.connect(
            f"{'wss' if secure else 'ws'}://127.0.0.1:{port}/ws",
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
