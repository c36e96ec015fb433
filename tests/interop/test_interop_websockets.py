"""Interop with the websockets library: our client against its server, its client against ours."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
import websockets.asyncio.client
import websockets.asyncio.server
from interop_common import TIMEOUT, MiB

import websock
from websock import ConnectionClosedError, ConnectionClosedOK

pytestmark = pytest.mark.interop

LARGE = (bytes(range(256)) * (MiB // 256))[:-1]  # 1 MiB - 1 byte
LARGE_TEXT = "websock interop " * (MiB // 32)


async def peer_echo(ws: websockets.asyncio.server.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def peer_server(
    handler: Any, *, ssl_context: ssl.SSLContext | None, deflate: bool
) -> AsyncIterator[int]:
    async with websockets.asyncio.server.serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ssl_context,
        compression="deflate" if deflate else None,
        max_size=4 * MiB,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield port
        server.close()


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


def uri(secure: bool, port: int) -> str:
    return f"{'wss' if secure else 'ws'}://localhost:{port}/path?q=1"


async def exchange(ws: Any, recv: Any) -> None:
    """Send each kind of message through ``ws`` and check its echo."""
    await ws.send("héllo")
    assert await asyncio.wait_for(recv(), TIMEOUT) == "héllo"
    await ws.send(b"\x00\x01\xfe\xff")
    assert await asyncio.wait_for(recv(), TIMEOUT) == b"\x00\x01\xfe\xff"
    await ws.send("")
    assert await asyncio.wait_for(recv(), TIMEOUT) == ""
    await ws.send(LARGE)
    assert await asyncio.wait_for(recv(), TIMEOUT) == LARGE
    await ws.send(LARGE_TEXT)
    assert await asyncio.wait_for(recv(), TIMEOUT) == LARGE_TEXT
    await ws.send(["frag", "mented ", "text"])
    assert await asyncio.wait_for(recv(), TIMEOUT) == "fragmented text"
    await ws.send([b"frag", b"mented"])
    assert await asyncio.wait_for(recv(), TIMEOUT) == b"fragmented"


# ---------------------------------------------------------------- our client, their server


async def test_our_client_their_server(
    secure: bool, deflate: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with peer_server(
        peer_echo, ssl_context=server_ssl if secure else None, deflate=deflate
    ) as port:
        async with websock.connect(
            uri(secure, port),
            host="127.0.0.1",
            ssl=client_ssl if secure else None,
            compression="deflate" if deflate else None,
            max_message_size=4 * MiB,
        ) as ws:
            assert ws.response is not None
            header = ws.response.headers.get("Sec-WebSocket-Extensions")
            if deflate:
                assert header is not None and header.startswith("permessage-deflate")
                assert [e.name for e in ws.extensions] == ["permessage-deflate"]
            else:
                assert header is None and ws.extensions == []
            await exchange(ws, ws.recv)
            assert await asyncio.wait_for(ws.ping(), TIMEOUT) >= 0
        assert ws.close_code == 1000


async def test_our_client_fragments_from_async_generator(server_ssl: ssl.SSLContext) -> None:
    async def fragments() -> AsyncIterator[bytes]:
        for i in range(20):
            yield bytes([i]) * 5000

    async with peer_server(peer_echo, ssl_context=None, deflate=True) as port:
        async with websock.connect(uri(False, port)) as ws:
            await ws.send(fragments())
            expected = b"".join(bytes([i]) * 5000 for i in range(20))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == expected


async def test_their_server_closes_with_code(
    secure: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def handler(ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.send("before close")
        await ws.close(4000, "their reason")

    async with peer_server(
        handler, ssl_context=server_ssl if secure else None, deflate=True
    ) as port:
        ws = await websock.connect(
            uri(secure, port), host="127.0.0.1", ssl=client_ssl if secure else None
        )
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "before close"
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (info.value.code, info.value.reason) == (4000, "their reason")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)

        async def going_away(ws: websockets.asyncio.server.ServerConnection) -> None:
            await ws.close(1001)

    async with peer_server(going_away, ssl_context=None, deflate=False) as port:
        async with websock.connect(uri(False, port)) as ws:
            with pytest.raises(ConnectionClosedOK) as ok:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert ok.value.code == 1001


async def test_our_client_closes_with_code(
    secure: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(ws: websockets.asyncio.server.ServerConnection) -> None:
        try:
            await ws.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            seen.set_result(exc)

    async with peer_server(
        handler, ssl_context=server_ssl if secure else None, deflate=True
    ) as port:
        ws = await websock.connect(
            uri(secure, port), host="127.0.0.1", ssl=client_ssl if secure else None
        )
        await asyncio.wait_for(ws.close(4321, "our reason"), TIMEOUT)
        exc = await asyncio.wait_for(seen, TIMEOUT)
        assert exc.rcvd is not None
        assert (exc.rcvd.code, exc.rcvd.reason) == (4321, "our reason")
        assert ws.close_code == 4321


# ---------------------------------------------------------------- their client, our server


async def our_echo(ws: websock.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_their_client_our_server(
    secure: bool, deflate: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    conns: list[websock.ServerConnection] = []

    async def handler(ws: websock.ServerConnection) -> None:
        conns.append(ws)
        assert ws.request is not None and ws.request.path == "/path?q=1"
        assert ws.request.path_without_query == "/path" and ws.request.query == {"q": ["1"]}
        await our_echo(ws)

    async with our_server(
        handler, ssl_context=server_ssl if secure else None, deflate=deflate
    ) as server:
        async with websockets.asyncio.client.connect(
            uri(secure, server.port),
            ssl=client_ssl if secure else None,
            compression="deflate" if deflate else None,
            max_size=4 * MiB,
        ) as ws:
            assert ws.response is not None
            header = ws.response.headers.get("Sec-WebSocket-Extensions")
            if deflate:
                assert header is not None and header.startswith("permessage-deflate")
                assert [e.name for e in conns[0].extensions] == ["permessage-deflate"]
            else:
                assert header is None and conns[0].extensions == []
            await exchange(ws, ws.recv)
            pong = await ws.ping()
            await asyncio.wait_for(pong, TIMEOUT)
        assert ws.close_code == 1000


async def test_their_client_closes_with_code(
    secure: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        try:
            await ws.recv()
        except websock.ConnectionClosed as exc:
            seen.set_result(exc)

    async with our_server(
        handler, ssl_context=server_ssl if secure else None, deflate=True
    ) as server:
        ws = await websockets.asyncio.client.connect(
            uri(secure, server.port), ssl=client_ssl if secure else None
        )
        await asyncio.wait_for(ws.close(4002, "their reason"), TIMEOUT)
        exc = await asyncio.wait_for(seen, TIMEOUT)
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason) == (4002, "their reason")
        # websockets waits for our server to close TCP: it did, with no timeout involved.
        assert ws.close_code == 4002
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4002


async def test_our_server_closes_with_code(
    secure: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("bye")
        await ws.close(4003, "our reason")

    async with our_server(
        handler, ssl_context=server_ssl if secure else None, deflate=True
    ) as server:
        async with websockets.asyncio.client.connect(
            uri(secure, server.port), ssl=client_ssl if secure else None
        ) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "bye"
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4003, "our reason")


async def test_our_server_shutdown_1001_to_their_client() -> None:
    async with our_server(our_echo, ssl_context=None, deflate=True) as server:
        ws = await websockets.asyncio.client.connect(uri(False, server.port))
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "x"
        server.close()
        with pytest.raises(websockets.exceptions.ConnectionClosedOK) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)


async def test_their_oversize_message_gets_1009() -> None:
    """Our Close 1009 reaches their client, then our FIN, while its send is in flight.

    Not ``async with``: websockets 17.4's close() then calls abort() on the transport that
    our FIN already closed, which raises AttributeError inside asyncio (their bug, seen
    whenever a server ends TCP during a client's send).
    """
    async with our_server(our_echo, ssl_context=None, deflate=False) as server:
        ws = await websockets.asyncio.client.connect(uri(False, server.port), compression=None)
        try:
            await ws.send(b"x" * (4 * MiB + 1))
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        finally:
            if not ws.transport.is_closing():
                await ws.close()
