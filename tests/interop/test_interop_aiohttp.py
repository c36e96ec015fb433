"""Interop with aiohttp: our client against its server, its client against ours."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from interop_common import TIMEOUT, MiB

import websock
from websock import ConnectionClosedError

pytestmark = pytest.mark.interop

LARGE = (bytes(range(256)) * (MiB // 256))[:-1]
LARGE_TEXT = "aiohttp interop " * (MiB // 32)


@asynccontextmanager
async def aiohttp_server(handler: Any, *, ssl_context: ssl.SSLContext | None) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        server = site._server
        assert server is not None
        yield server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await asyncio.wait_for(runner.cleanup(), TIMEOUT * 2)


def make_echo(deflate: bool, seen: list[web.WebSocketResponse]) -> Any:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=4 * MiB)
        await ws.prepare(request)
        seen.append(ws)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    return handler


@asynccontextmanager
async def our_server(
    handler: Any, *, ssl_context: ssl.SSLContext | None, deflate: bool
) -> AsyncIterator[websock.Server]:
    server = await websock.serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ssl_context,
        compression="deflate" if deflate else None,
        max_message_size=4 * MiB,
    )
    try:
        yield server
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT * 2)


async def our_echo(ws: websock.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def uri(secure: bool, port: int) -> str:
    return f"{'wss' if secure else 'ws'}://localhost:{port}/ws"


# ---------------------------------------------------------------- our client, aiohttp server


async def test_our_client_aiohttp_server(
    secure: bool, deflate: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: list[web.WebSocketResponse] = []
    async with aiohttp_server(
        make_echo(deflate, seen), ssl_context=server_ssl if secure else None
    ) as port:
        async with websock.connect(
            uri(secure, port),
            host="127.0.0.1",
            ssl=client_ssl if secure else None,
            max_message_size=4 * MiB,
        ) as ws:
            assert ws.response is not None
            header = ws.response.headers.get("Sec-WebSocket-Extensions")
            if deflate:
                assert header is not None and header.startswith("permessage-deflate")
                assert [e.name for e in ws.extensions] == ["permessage-deflate"]
            else:
                assert header is None and ws.extensions == []
            for message in ["héllo", b"\x00\xff", "", LARGE, LARGE_TEXT]:
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
            await ws.send(["frag", "mented"])
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "fragmented"
            assert await asyncio.wait_for(ws.ping(), TIMEOUT) >= 0
        assert ws.close_code == 1000


async def test_aiohttp_server_closes_with_code() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("bye")
        await ws.close(code=4005, message=b"aiohttp reason")
        return ws

    async with aiohttp_server(handler, ssl_context=None) as port:
        ws = await websock.connect(uri(False, port))
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "bye"
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (info.value.code, info.value.reason) == (4005, "aiohttp reason")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_our_client_closes_aiohttp_server() -> None:
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        closed.set_result(ws.close_code)
        return ws

    async with aiohttp_server(handler, ssl_context=None) as port:
        ws = await websock.connect(uri(False, port), close_timeout=2)
        await asyncio.wait_for(ws.close(4006, "ours"), TIMEOUT)
        assert await asyncio.wait_for(closed, TIMEOUT) == 4006


# ---------------------------------------------------------------- aiohttp client, our server


async def test_aiohttp_client_our_server(
    secure: bool, deflate: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    conns: list[websock.ServerConnection] = []

    async def handler(ws: websock.ServerConnection) -> None:
        conns.append(ws)
        await our_echo(ws)

    async with our_server(
        handler, ssl_context=server_ssl if secure else None, deflate=True
    ) as server:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                uri(secure, server.port),
                ssl=client_ssl if secure else False,
                compress=15 if deflate else 0,
                max_msg_size=4 * MiB,
                autoping=True,
            ) as ws:
                if deflate:
                    assert ws.compress == 15
                    assert [e.name for e in conns[0].extensions] == ["permessage-deflate"]
                else:
                    assert not ws.compress
                    assert conns[0].extensions == []
                for text in ["héllo", "", LARGE_TEXT]:
                    await ws.send_str(text)
                    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                    assert (msg.type, msg.data) == (WSMsgType.TEXT, text)
                for data in [b"\x00\xff", LARGE]:
                    await ws.send_bytes(data)
                    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                    assert (msg.type, msg.data) == (WSMsgType.BINARY, data)
                await ws.close(code=4007, message=b"client done")
            assert ws.close_code == 4007


async def test_our_server_closes_aiohttp_client() -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("bye")
        await ws.close(4008, "server done")

    async with our_server(handler, ssl_context=None, deflate=True) as server:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(uri(False, server.port)) as ws:
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                assert (msg.type, msg.data) == (WSMsgType.TEXT, "bye")
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                assert msg.type == WSMsgType.CLOSE
                assert (msg.data, msg.extra) == (4008, "server done")
