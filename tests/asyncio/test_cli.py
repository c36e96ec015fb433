"""The command line, run as a subprocess: ``websock serve`` and ``websock connect``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
from rawpeer import TIMEOUT, echo

import websock
from websock import ConnectionClosedOK

LISTENING = re.compile(r"listening on (wss?)://([^/]+):(\d+)/")


async def spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "websock",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), TIMEOUT * 2)
    assert line, "the process ended its output"
    return line.decode()


async def finish(proc: asyncio.subprocess.Process) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise


async def test_serve_plain_echo_and_sigint() -> None:
    proc = await spawn("serve", "--plain", "--port", "0")
    try:
        line = await read_line(proc.stdout)
        match = LISTENING.search(line)
        assert match, line
        assert match.group(1) == "ws" and match.group(2) == "127.0.0.1"
        port = int(match.group(3))
        clients = [await websock.connect(f"ws://127.0.0.1:{port}/") for _ in range(2)]
        for i, ws in enumerate(clients):
            await ws.send(f"hello {i}")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"hello {i}"
        proc.send_signal(signal.SIGINT)
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.code == 1001
        assert await finish(proc) == 0
        assert proc.stderr is not None
        stderr = await proc.stderr.read()
        assert b"Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_sigterm_exits_cleanly() -> None:
    proc = await spawn("serve", "--plain", "--port", "0")
    try:
        assert LISTENING.search(await read_line(proc.stdout))
        proc.send_signal(signal.SIGTERM)
        assert await finish(proc) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_wss_with_dev_certificate(tmp_path: Path) -> None:
    proc = await spawn("serve", "--port", "0", env={"XDG_CACHE_HOME": str(tmp_path)})
    try:
        line = await read_line(proc.stdout)
        assert "CA file for clients" in line, line
        ca_path = Path(line.rsplit(": ", 1)[1].strip())
        assert ca_path.is_file() and tmp_path in ca_path.parents
        line = await read_line(proc.stdout)
        match = LISTENING.search(line)
        assert match and match.group(1) == "wss", line
        port = int(match.group(3))
        context = ssl.create_default_context(cafile=str(ca_path))
        async with websock.connect(f"wss://localhost:{port}/", ssl=context) as ws:
            await ws.send("secure")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "secure"
        async with websock.connect(f"wss://127.0.0.1:{port}/", ssl=context) as ws:
            await ws.send(b"by address")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"by address"
        # Without the CA, verification fails.
        with pytest.raises(ssl.SSLCertVerificationError):
            await websock.connect(f"wss://localhost:{port}/", ssl=ssl.create_default_context())
        proc.send_signal(signal.SIGINT)
        assert await finish(proc) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_connect_cli_echo(start_server: Any, secure: bool, ca: Any, tmp_path: Path) -> None:
    async with start_server(echo, secure=secure) as running:
        args = ["connect", running.uri()]
        if secure:
            ca_file = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            args += ["--cafile", str(ca_file)]
        proc = await spawn(*args)
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"first line\nsecond \x1b[31mline\n")
            await proc.stdin.drain()
            assert await read_line(proc.stdout) == "< first line\n"
            # Control characters from the peer are escaped.
            assert await read_line(proc.stdout) == "< second \\x1b[31mline\n"
            proc.stdin.close()
            assert await finish(proc) == 0
            assert proc.stderr is not None
            stderr = (await proc.stderr.read()).decode()
            assert "connection closed: 1000" in stderr
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_connect_cli_untrusted_certificate(start_server: Any) -> None:
    async with start_server(echo, secure=True) as running:
        proc = await spawn("connect", running.uri())
        try:
            assert await finish(proc) == 1
            assert proc.stderr is not None
            stderr = (await proc.stderr.read()).decode()
            assert "certificate verification failed" in stderr
            assert "--cafile" in stderr
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_connect_cli_server_closes(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("bye now")
        await ws.close(1001, "going away")

    async with start_server(handler) as running:
        proc = await spawn("connect", running.uri())
        try:
            assert await read_line(proc.stdout) == "< bye now\n"
            # The server closed while stdin is still open: the client must exit anyway.
            assert await finish(proc) == 0
            assert proc.stderr is not None
            stderr = (await proc.stderr.read()).decode()
            assert "1001" in stderr
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_version_says_whether_the_accelerator_is_on() -> None:
    import os
    import subprocess
    import sys

    from websock.protocol.frames import ACCELERATED

    out = subprocess.run(
        [sys.executable, "-m", "websock", "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    assert out.startswith("websock ") and "distribution pywebsock" in out
    assert ("C accelerator: on" in out) is (
        ACCELERATED and not os.environ.get("WEBSOCK_PURE_PYTHON")
    )
    forced = subprocess.run(
        [sys.executable, "-m", "websock", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBSOCK_PURE_PYTHON": "1"},
    ).stdout
    assert "C accelerator: off (WEBSOCK_PURE_PYTHON is set)" in forced
