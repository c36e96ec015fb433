"""``python -m websock asgi module:app``: uvicorn with websock's backend, from the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import websock

TIMEOUT = 10.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)

APP = """
from fastapi import FastAPI, WebSocket

app = FastAPI()


@app.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def connect_when_up(uri: str, process: subprocess.Popen[bytes]) -> websock.ClientConnection:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return await websock.connect(uri, proxy=None, open_timeout=TIMEOUT)
        except OSError:
            assert process.poll() is None, process.communicate()[0].decode()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # polling with a deadline: uvicorn prints no port


async def test_asgi_command_serves_the_app_with_websock(tmp_path: Path) -> None:
    (tmp_path / "chatapp.py").write_text(APP)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "websock", "asgi", "chatapp:app", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    try:
        ws = await connect_when_up(f"ws://127.0.0.1:{port}/echo", process)
        await ws.send("through uvicorn")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "through uvicorn"
        assert ws.response is not None
        process.send_signal(signal.SIGINT)
        with pytest.raises(websock.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1012  # uvicorn's shutdown, as its own backends say it
        output = process.communicate(timeout=TIMEOUT)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    assert process.returncode == 0, output
    assert '"WebSocket /echo" 101' in output  # uvicorn's access log, through our backend


def test_asgi_command_usage_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "websock", "asgi", "x:app", "--ssl-certfile", "c.pem"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "--ssl-certfile and --ssl-keyfile go together" in result.stderr
