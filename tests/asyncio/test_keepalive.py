"""Keepalive pings: a silent peer is closed with 1011; a live one stays connected."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawClient, RawServer, accept_handshake, close_payload, echo, read_frame

import websock
from websock import ConnectionClosedError
from websock.protocol.connection import State
from websock.protocol.frames import Opcode


async def test_server_closes_peer_that_ignores_pings(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure, ping_interval=0.2, ping_timeout=0.2) as running:
        client = await RawClient.connect(running.port, ssl_context=running.client_ssl)
        start = time.monotonic()
        ping = await client.read_frame()
        assert (ping.opcode, ping.masked, len(ping.payload)) == (Opcode.PING, False, 4)
        assert 0.1 < time.monotonic() - start < 2.0
        # Do not answer.
        frame = await client.read_frame()
        assert frame.opcode == Opcode.CLOSE
        assert (frame.close_code, frame.close_reason) == (1011, "keepalive ping timeout")
        assert 0.3 < time.monotonic() - start < 3.0
        client.send_frame(Opcode.CLOSE, close_payload(1011))
        await client.read_eof(2.0)
        await client.aclose()


async def test_handler_sees_keepalive_failure(start_server: Any) -> None:
    seen: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        try:
            await ws.recv()
        except BaseException as exc:
            seen.set_result(exc)

    async with start_server(
        handler, ping_interval=0.1, ping_timeout=0.1, close_timeout=0.2
    ) as running:
        client = await RawClient.connect(running.port)
        exc = await asyncio.wait_for(seen, TIMEOUT)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.sent is not None and exc.sent.code == 1011
        await client.aclose()


async def test_live_peer_stays_connected(start_server: Any, secure: bool) -> None:
    conns: asyncio.Future[websock.ServerConnection] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        conns.set_result(ws)
        await echo(ws)

    async with start_server(handler, secure=secure, ping_interval=0.1, ping_timeout=0.1) as running:
        async with running.connect(ping_interval=0.1, ping_timeout=0.1) as ws:
            server_ws = await asyncio.wait_for(conns, TIMEOUT)
            # Several intervals, with neither side's application reading.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 0.7)
            assert ws.state is State.OPEN and server_ws.state is State.OPEN
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still here"


async def test_live_raw_peer_gets_repeated_pings(start_server: Any) -> None:
    async with start_server(echo, ping_interval=0.1, ping_timeout=0.3) as running:
        client = await RawClient.connect(running.port)
        for _ in range(4):
            ping = await client.read_frame()
            assert ping.opcode == Opcode.PING
            client.send_frame(Opcode.PONG, ping.payload)
        client.send_frame(Opcode.TEXT, b"alive")
        frame = await client.read_frame()
        while frame.opcode == Opcode.PING:
            client.send_frame(Opcode.PONG, frame.payload)
            frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"alive")
        await client.aclose()


async def test_client_closes_server_that_ignores_pings(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    close: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        frame = await read_frame(reader)
        assert frame.opcode == Opcode.PING and frame.masked
        frame = await read_frame(reader)  # not answered: the client gives up
        close.set_result(frame)
        writer.write(b"\x88\x02\x03\xf3")
        writer.close()

    async with RawServer(script) as server:
        ws = await websock.connect(
            f"ws://127.0.0.1:{server.port}/", ping_interval=0.1, ping_timeout=0.1
        )
        frame = await asyncio.wait_for(close, TIMEOUT)
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1011)
        assert frame.close_reason == "keepalive ping timeout"
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.sent is not None and info.value.sent.code == 1011
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
