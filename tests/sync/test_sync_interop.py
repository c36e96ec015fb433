"""websock.sync with the other layer and with a peer library, both directions."""

from __future__ import annotations

import asyncio
import threading

import pytest
from syncpeer import TIMEOUT, running_server

import websock
from websock.sync import ServerConnection, connect


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_asyncio_client_against_sync_server() -> None:
    async def main(port: int) -> list[websock.asyncio.Data]:
        async with websock.connect(f"ws://127.0.0.1:{port}/") as ws:
            out = []
            for message in ("text", b"bytes", "x" * 100_000):
                await ws.send(message)
                out.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            return out

    with running_server(echo) as server:
        assert asyncio.run(main(server.port)) == ["text", b"bytes", "x" * 100_000]


def test_sync_client_against_asyncio_server() -> None:
    ready = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Event] = []

    async def handler(ws: websock.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def serve() -> None:
        stop.append(asyncio.Event())
        async with websock.serve(handler, "127.0.0.1", 0) as server:
            port.append(server.port)
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(TIMEOUT)
        with connect(f"ws://127.0.0.1:{port[0]}/") as ws:
            for message in ("text", b"bytes", b"y" * 300_000):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
        assert ws.close_code == 1000
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(TIMEOUT)
        loop.close()


def test_websockets_sync_client_against_sync_server() -> None:
    sync_client = pytest.importorskip("websockets.sync.client")
    with running_server(echo) as server:
        with sync_client.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            for message in ("text", b"bytes", "z" * 200_000):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
        assert ws.close_code == 1000
