"""Keepalive pings: a silent peer is closed with 1011; a live one stays connected."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from typing import Any

import pytest
from rawpeer import (
    LONG,
    TIMEOUT,
    RawClient,
    RawServer,
    accept_handshake,
    close_payload,
    echo,
    read_frame,
)

import websock
from websock import ConnectionClosedError
from websock.protocol import connection as core
from websock.protocol.connection import State
from websock.protocol.frames import Opcode


async def test_server_closes_peer_that_ignores_pings(start_server: Any, secure: bool) -> None:
    # Not before ping_timeout: with a long one, a peer that leaves the ping unanswered is
    # still served after it (a server that gave up on sending the ping, or soon after,
    # would send Close 1011 instead of the echo), and its Close gets a plain 1000 reply.
    async with start_server(
        echo, secure=secure, ping_interval=0.1, ping_timeout=LONG, close_timeout=LONG
    ) as running:
        client = await RawClient.connect(running.port, ssl_context=running.client_ssl)
        ping = await client.read_frame()
        assert (ping.opcode, ping.masked, len(ping.payload)) == (Opcode.PING, False, 4)
        # Do not answer.
        client.send_frame(Opcode.TEXT, b"still open")
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"still open")
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        await client.read_eof()
        await client.aclose()

    # Once ping_timeout runs out: Close 1011 after the unanswered ping, then the end of TCP,
    # which close_timeout (LONG) cannot have brought within TIMEOUT.
    async with start_server(
        echo, secure=secure, ping_interval=0.1, ping_timeout=0.2, close_timeout=LONG
    ) as running:
        client = await RawClient.connect(running.port, ssl_context=running.client_ssl)
        ping = await client.read_frame()
        assert (ping.opcode, ping.masked, len(ping.payload)) == (Opcode.PING, False, 4)
        # Do not answer.
        frame = await client.read_frame()
        assert frame.opcode == Opcode.CLOSE
        assert (frame.close_code, frame.close_reason) == (1011, "keepalive ping timeout")
        client.send_frame(Opcode.CLOSE, close_payload(1011))
        await client.read_eof()
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


async def test_live_peer_stays_connected(
    start_server: Any, secure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    conns: asyncio.Future[websock.ServerConnection] = asyncio.get_running_loop().create_future()
    # Count the keepalive Pings each side sends (the application sends none). The next one
    # is scheduled only when the Pong to the last one arrives, or after ping_timeout (LONG):
    # three from each side within TIMEOUT prove that two rounds completed on both.
    rounds = 3
    pings: Counter[core.Role] = Counter()
    done = {core.Role.CLIENT: asyncio.Event(), core.Role.SERVER: asyncio.Event()}
    send_ping = core.Connection.send_ping

    def counting_send_ping(self: core.Connection, payload: bytes = b"") -> None:
        send_ping(self, payload)
        pings[self.role] += 1
        if pings[self.role] >= rounds:
            done[self.role].set()

    monkeypatch.setattr(core.Connection, "send_ping", counting_send_ping)

    async def handler(ws: websock.ServerConnection) -> None:
        conns.set_result(ws)
        await echo(ws)

    async with start_server(
        handler, secure=secure, ping_interval=0.05, ping_timeout=LONG
    ) as running:
        async with running.connect(ping_interval=0.05, ping_timeout=LONG) as ws:
            server_ws = await asyncio.wait_for(conns, TIMEOUT)
            # Several rounds, with the client's application not reading.
            for event in done.values():
                await asyncio.wait_for(event.wait(), TIMEOUT)
            assert ws.state is State.OPEN and server_ws.state is State.OPEN
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still here"


async def test_live_raw_peer_gets_repeated_pings(start_server: Any) -> None:
    # ping_timeout=LONG: the next Ping comes within TIMEOUT only because the Pong to the
    # last one was recognised (it is scheduled then), not because a timer ran out.
    async with start_server(echo, ping_interval=0.1, ping_timeout=LONG) as running:
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
