"""unix_serve / unix_connect in both I/O layers: echo over a Unix socket."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from rawpeer import TIMEOUT, echo

import websock
import websock.sync


async def test_asyncio_unix_echo(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    async with websock.unix_serve(echo, path):
        async with websock.unix_connect(path, "ws://localhost/chat?x=1") as ws:
            await ws.send("over a unix socket")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "over a unix socket"
            assert ws.request.path == "/chat?x=1"
    # Restarting on the same path works: the stale socket file is replaced.
    async with websock.unix_serve(echo, path):
        async with websock.unix_connect(path) as ws:
            await ws.send("again")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "again"


def _sync_echo(ws: websock.sync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_sync_unix_echo(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    for _ in range(2):  # the second run replaces the stale socket file
        server = websock.sync.unix_serve(_sync_echo, path)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with websock.sync.unix_connect(path, "ws://localhost/x") as ws:
                ws.send(b"bytes")
                assert ws.recv(timeout=TIMEOUT) == b"bytes"
        finally:
            server.shutdown()
            thread.join(TIMEOUT)
