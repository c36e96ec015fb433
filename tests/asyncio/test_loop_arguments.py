"""Extra keyword arguments of serve()/connect() go to the event loop (as in websockets)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from rawpeer import TIMEOUT, echo

import websock


async def test_reuse_port_lets_two_servers_share_a_port() -> None:
    async with websock.serve(echo, "127.0.0.1", 0, reuse_port=True) as first:
        async with websock.serve(echo, "127.0.0.1", first.port, reuse_port=True, backlog=8):
            async with websock.connect(f"ws://127.0.0.1:{first.port}/") as ws:
                await ws.send("shared")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "shared"
        # Without reuse_port the port is taken.
        with pytest.raises(OSError):
            await websock.serve(echo, "127.0.0.1", first.port)


async def test_connect_passes_local_addr() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    local_port = probe.getsockname()[1]
    probe.close()
    async with websock.serve(echo, "127.0.0.1", 0) as server:
        async with websock.connect(
            f"ws://127.0.0.1:{server.port}/", local_addr=("127.0.0.1", local_port)
        ) as ws:
            assert ws.local_address == ("127.0.0.1", local_port)


def test_unknown_keywords_fail_at_the_call() -> None:
    with pytest.raises(TypeError, match="max_mesage_size"):
        websock.serve(echo, "127.0.0.1", 0, max_mesage_size=1)
    with pytest.raises(TypeError, match="reuse_prot"):
        websock.connect("ws://127.0.0.1:1/", reuse_prot=True)
