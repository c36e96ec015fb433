"""send(text=...), recv(decode=...) and latency: the frame types on the wire, both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rawpeer import LONG, TIMEOUT, RawClient

import websock
from websock.protocol.frames import Opcode


async def test_send_text_flag_picks_the_frame_type(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send(b'{"a": 1}', text=True)  # pre-encoded JSON as a text frame
        await ws.send("caf\xe9", text=False)  # str as a binary frame, UTF-8 encoded
        await ws.send(bytearray(b"raw"), text=False)
        await ws.send("plain", text=True)
        await ws.send([b"frag", "ment"], text=True)  # fragments: the message's type
        await ws.recv()

    async with start_server(handler) as running:
        peer = await RawClient.connect(running.port)
        frames = [await peer.read_frame() for _ in range(6)]
        assert [(f.opcode, f.payload, f.fin) for f in frames] == [
            (Opcode.TEXT, b'{"a": 1}', True),
            (Opcode.BINARY, "caf\xe9".encode(), True),
            (Opcode.BINARY, b"raw", True),
            (Opcode.TEXT, b"plain", True),
            (Opcode.TEXT, b"frag", False),
            (Opcode.CONT, b"ment", True),
        ]
        await peer.aclose()


async def test_recv_decode(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("text \xe9")
        await ws.send(b"binary \xc3\xa9")
        await ws.send("as is")
        await ws.send(b"\xff not utf-8")
        await ws.recv()

    async with start_server(handler) as running, running.connect() as ws:
        assert await ws.recv(decode=False) == "text \xe9".encode()
        assert await ws.recv(decode=True) == "binary \xe9"
        assert await ws.recv(decode=None) == "as is"
        with pytest.raises(UnicodeDecodeError):
            await ws.recv(decode=True)


async def test_latency_is_the_last_measured_round_trip(start_server: Any) -> None:
    async with start_server(websock_echo) as running:
        async with running.connect(ping_interval=None) as ws:
            assert ws.latency == 0.0
            rtt = await asyncio.wait_for(ws.ping(), TIMEOUT)
            assert ws.latency == rtt > 0
        # The keepalive Ping measures it too.
        pinged = asyncio.get_running_loop().create_future()
        async with running.connect(ping_interval=0.01, ping_timeout=LONG) as ws:
            original = ws._pong_received

            def spy(pong: Any) -> None:
                original(pong)
                if ws.latency > 0 and not pinged.done():
                    pinged.set_result(ws.latency)

            ws._pong_received = spy  # type: ignore[method-assign]
            assert await asyncio.wait_for(pinged, TIMEOUT) > 0


async def websock_echo(ws: websock.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)
