"""``websock connect`` and ``websock serve`` run as subprocesses: exit statuses, one-line
errors, and how closes are reported."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawServer, accept_handshake, echo, read_frame

import websock
from websock.protocol.frames import Opcode, serialize_frame

LISTENING = re.compile(r"listening on (wss?)://([^/]+):(\d+)/")


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "websock",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def run(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stdin left open (so only the peer ends it); bounded."""
    proc = await spawn(*args)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def connect_until_closed(uri: str, *extra: str) -> tuple[int, str, str]:
    """``websock connect`` until the server ends the connection (stdin stays open)."""
    proc = await spawn("connect", uri, *extra)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        status = await asyncio.wait_for(proc.wait(), TIMEOUT * 2)
        return status, (await proc.stdout.read()).decode(), (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------- --cafile


def not_pem(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a certificate\n")
    return path


def bad_pem(tmp_path: Path) -> Path:
    path = tmp_path / "broken.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda tmp: tmp / "missing.pem", "no such file or directory"),
        (lambda tmp: tmp, "is a directory"),
        (not_pem, "no PEM CA certificate in it"),
        (bad_pem, "no PEM CA certificate in it"),
    ],
    ids=["missing", "directory", "not-pem", "broken-pem"],
)
async def test_unusable_cafile_is_a_one_line_usage_error(
    tmp_path: Path, make: Any, why: str
) -> None:
    cafile = str(make(tmp_path))
    # Nothing listens there: the option must be refused before any connection attempt.
    status, stdout, stderr = await run("connect", "wss://127.0.0.1:9/", "--cafile", cafile)
    assert status == 2
    assert stdout == ""
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"websock: error: --cafile {cafile}: ")
    assert why in stderr


# ---------------------------------------------------------------- how closes are reported


async def test_normal_close_by_the_server_exits_0(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("bye")  # then returning closes with 1000

    async with start_server(handler) as running:
        status, stdout, stderr = await connect_until_closed(running.uri())
    assert stdout == "< bye\n"
    assert stderr.count("connection closed") == 1, stderr
    assert "connection closed: 1000 (OK)\n" in stderr
    assert status == 0


async def test_going_away_exits_0(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.close(1001, "maintenance")

    async with start_server(handler) as running:
        status, _, stderr = await connect_until_closed(running.uri())
    assert stderr.count("connection closed") == 1, stderr
    assert "connection closed: 1001 (going away) maintenance\n" in stderr
    assert status == 0


async def test_application_close_code_exits_1(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.close(4000, "custom \x1b[31mreason")

    async with start_server(handler) as running:
        status, _, stderr = await connect_until_closed(running.uri())
    assert stderr.count("connection closed") == 1, stderr
    assert "connection closed: 4000 (private use) custom \\x1b[31mreason\n" in stderr
    assert status == 1


async def test_message_too_big_exits_1(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("x" * 100)
        async for _ in ws:
            pass

    async with start_server(handler) as running:
        status, stdout, stderr = await connect_until_closed(
            running.uri(), "--max-message-size", "10"
        )
    assert stdout == ""
    assert stderr.count("connection closed") == 1, stderr
    assert "connection closed: 1009 (message too big) message exceeds" in stderr
    assert "(sent by this client)\n" in stderr
    assert status == 1


async def test_invalid_utf8_from_the_server_exits_1() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        writer.write(serialize_frame(Opcode.TEXT, b"\xff\xfe"))
        close = await read_frame(reader)
        assert close.opcode == Opcode.CLOSE and close.close_code == 1007
        writer.write(serialize_frame(Opcode.CLOSE, close.payload))
        await writer.drain()
        writer.close()

    async with RawServer(script) as server:
        status, _, stderr = await connect_until_closed(f"ws://127.0.0.1:{server.port}/")
    assert stderr.count("connection closed") == 1, stderr
    assert "connection closed: 1007 (invalid data)" in stderr
    assert "(sent by this client)\n" in stderr
    assert status == 1


async def test_connection_dropped_without_close_exits_1() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        writer.write(serialize_frame(Opcode.TEXT, b"about to vanish"))
        await writer.drain()
        writer.transport.abort()

    async with RawServer(script) as server:
        status, stdout, stderr = await connect_until_closed(f"ws://127.0.0.1:{server.port}/")
    assert stdout == "< about to vanish\n"
    assert stderr.count("connection closed") == 1, stderr
    assert "connection closed: 1006 (abnormal closure)" in stderr
    assert status == 1


async def test_failed_connection_exits_1_with_a_short_line() -> None:
    reason = "Busy" + "\x85" * 3 + "z" * 5000

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 503 {reason}\r\nContent-Length: 0\r\n\r\n".encode("latin-1"))
        await writer.drain()
        writer.close()

    async with RawServer(script) as server:
        status, _, stderr = await connect_until_closed(f"ws://127.0.0.1:{server.port}/")
    assert status == 1
    assert "connection closed" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith("could not connect: server rejected WebSocket connection: HTTP 503 ")
    assert "\\x85\\x85\\x85" in line
    assert len(line) < 300


# ---------------------------------------------------------------- serve --max-connections


async def test_serve_max_connections_flag() -> None:
    proc = await spawn("serve", "--plain", "--port", "0", "--max-connections", "1")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT * 2)).decode()
        match = LISTENING.search(line)
        assert match, line
        uri = f"ws://127.0.0.1:{match.group(3)}/"
        async with websock.connect(uri) as ws:
            with pytest.raises(websock.InvalidStatus) as info:
                await websock.connect(uri)
            assert info.value.status == 503
            await ws.send("still served")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still served"
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("value", ["0", "-3", "lots"])
async def test_serve_rejects_a_bad_max_connections(value: str) -> None:
    status, _, stderr = await run("serve", "--plain", "--port", "0", "--max-connections", value)
    assert status == 2
    assert "--max-connections" in stderr and "Traceback" not in stderr


async def test_stdin_closed_ends_with_1000_and_exit_0(start_server: Any) -> None:
    # Ctrl-D (end of stdin): the client closes with 1000, reports it once and exits 0.
    async with start_server(echo) as running:
        proc = await spawn("connect", running.uri())
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"ping\n")
            proc.stdin.close()
            stdout, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert stdout.decode() == "< ping\n"
    assert stderr.decode().count("connection closed") == 1
    assert proc.returncode == 0
