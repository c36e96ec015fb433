"""Connection.recv_streaming() in the asyncio layer: a message in pieces, as they arrive.

The 100 MiB tests run the receiving side in a subprocess, so that its RSS (``VmRSS`` from
/proc/self/status, sampled at every piece) counts none of the sender's buffers: the growth
while a 100 MiB message streams through must stay under 8 MiB, in both roles, compressed
(a highly compressible text: inflation is bounded too) and not.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import zlib
from typing import Any

import pytest
from rawpeer import TIMEOUT

import websock
from websock import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK
from websock.asyncio.connection import Connection
from websock.protocol import connection as core

MiB = 1 << 20

#: The receiving process: ``python -c RECEIVER (server|client) (deflate|none) [uri]``. It
#: switches streaming on and sends "go", takes a warm-up message in pieces, measures its
#: RSS, sends "ready", streams the next message (sampling its RSS at every piece), and
#: prints one JSON line with the result.
RECEIVER = r"""
import asyncio, json, sys, zlib
import websock

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")

async def receive(ws):
    pieces = ws.recv_streaming()  # streaming on before the peer sends
    await ws.send("go")
    async for _ in pieces:  # warm-up: the code paths, the buffers
        pass
    base = peak = rss()
    await ws.send("ready")
    size = crc = pieces = 0
    async for piece in ws.recv_streaming():
        data = piece.encode() if isinstance(piece, str) else piece
        size += len(data)
        crc = zlib.crc32(data, crc)
        pieces += 1
        peak = max(peak, rss())
    print(json.dumps({"size": size, "crc": crc, "pieces": pieces, "base": base, "peak": peak}),
          flush=True)

async def main():
    role, compression = sys.argv[1], sys.argv[2]
    compression = None if compression == "none" else compression
    if role == "server":
        done = asyncio.Event()
        async def handler(ws):
            try:
                await receive(ws)
            finally:
                done.set()
        async with websock.serve(handler, "127.0.0.1", 0, compression=compression) as server:
            print(server.port, flush=True)
            await done.wait()
    else:
        async with websock.connect(sys.argv[3], compression=compression) as ws:
            await receive(ws)

asyncio.run(main())
"""

BIG = 100 * MiB


def big_message(compression: str | None) -> str | bytes:
    if compression is None:
        return bytes(range(256)) * (BIG // 256)  # incompressible enough, and binary
    return "websock streams " * (BIG // 16)  # text, highly compressible


async def start_receiver(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RECEIVER,
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def result(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT * 6)
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    return json.loads(line)  # type: ignore[no-any-return]


def check(report: dict[str, Any], message: str | bytes, label: str) -> None:
    data = message.encode() if isinstance(message, str) else message
    assert report["size"] == len(data)
    assert report["crc"] == zlib.crc32(data)
    growth = report["peak"] - report["base"]
    print(f"{label}: RSS growth {growth / MiB:.2f} MiB over {report['pieces']} pieces")
    assert growth < 8 * MiB, f"{label}: RSS grew by {growth / MiB:.1f} MiB"


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_100_mib_server_receives(compression: str | None) -> None:
    message = big_message(compression)
    process = await start_receiver("server", compression or "none")
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), TIMEOUT * 3))
        async with websock.connect(
            f"ws://127.0.0.1:{port}", compression=compression, max_message_size=None
        ) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT * 3) == "go"
            await ws.send(b"w" * (2 * MiB))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ready"
            await ws.send(message)
            report = await result(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    check(report, message, f"asyncio server, {compression}")


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_100_mib_client_receives(compression: str | None) -> None:
    message = big_message(compression)
    sent = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        assert await ws.recv() == "go"
        await ws.send(b"w" * (2 * MiB))
        assert await ws.recv() == "ready"
        await ws.send(message)
        sent.set()
        await ws.wait_closed()

    async with websock.serve(handler, "127.0.0.1", 0, compression=compression) as server:
        process = await start_receiver(
            "client", compression or "none", f"ws://127.0.0.1:{server.port}"
        )
        try:
            report = await result(process)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert sent.is_set()
    check(report, message, f"asyncio client, {compression}")


# ---------------------------------------------------------------------------- semantics


async def collect(ws: Any, **kwargs: Any) -> list[Any]:
    return [piece async for piece in ws.recv_streaming(**kwargs)]


async def test_pieces_of_a_large_message_then_recv(start_server: Any) -> None:
    payload = os.urandom(3 * MiB)
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        results.append(await collect(ws))
        results.append(await ws.recv())  # a small message after: whole
        results.append(await collect(ws))  # streaming again
        await ws.send("done")

    async with start_server(handler, max_message_size=1000) as running:
        async with running.connect() as ws:
            await ws.send(payload)
            await ws.send("small")
            await ws.send("é" * 5000)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    pieces, small, text = results
    assert len(pieces) > 1 and all(type(p) is bytes for p in pieces)
    assert b"".join(pieces) == payload
    assert small == "small"
    assert all(type(p) is str and p for p in text) and "".join(text) == "é" * 5000


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_fragmented_text_with_split_characters(start_server: Any, compression: Any) -> None:
    text = "aé€𝄞" * 50_000
    encoded = text.encode()
    chunks = [encoded[i : i + 7777] for i in range(0, len(encoded), 7777)]
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        results.append(await collect(ws))
        await ws.send("done")

    async with start_server(handler, compression=compression) as running:
        async with running.connect(compression=compression) as ws:
            # Fragments cut in the middle of characters, sent as text frames.
            await ws.send(iter(chunks), text=True)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    [pieces] = results
    assert all(type(p) is str for p in pieces)
    assert "".join(pieces) == text


async def test_decode(start_server: Any) -> None:
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        results.append(await collect(ws, decode=True))
        results.append(await collect(ws, decode=False))
        await ws.send("done")

    async with start_server(handler) as running:
        async with running.connect() as ws:
            await ws.send(iter([b"caf\xc3", b"\xa9"]))  # binary, a character split
            await ws.send("text")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    decoded, encoded = results
    assert "".join(decoded) == "café" and all(type(p) is str for p in decoded)
    assert b"".join(encoded) == b"text" and all(type(p) is bytes for p in encoded)


async def test_empty_message_yields_one_empty_piece(start_server: Any) -> None:
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        results.append(await collect(ws))
        results.append(await collect(ws))
        await ws.send("done")

    async with start_server(handler) as running:
        async with running.connect() as ws:
            await ws.send("")
            await ws.send(iter([b"", b""]))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    assert results == [[""], [b""]]


async def test_recv_joins_streamed_messages_within_max_message_size(start_server: Any) -> None:
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        results.append(await collect(ws))
        results.append(await ws.recv())  # arrives in pieces: joined
        try:
            await ws.recv()  # over max_message_size: 1009, as without streaming
        except ConnectionClosedError as exc:
            results.append(exc)

    async with start_server(handler, max_message_size=100_000) as running:
        async with running.connect() as ws:
            await ws.send(b"a" * 200_000)
            await ws.send(iter([b"b" * 50_000, b"c" * 40_000]))
            await ws.send(iter([b"d" * 60_000, b"e" * 60_000]))
            with pytest.raises(ConnectionClosedError) as raised:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert results[1] == b"b" * 50_000 + b"c" * 40_000
    assert results[2].sent.code == 1009
    assert raised.value.rcvd is not None and raised.value.rcvd.code == 1009


async def test_abandoned_iteration_drops_the_rest(start_server: Any) -> None:
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        async for piece in ws.recv_streaming():
            results.append(len(piece))
            break  # the rest of this message is dropped by the next read
        results.append(await ws.recv())
        iterator = ws.recv_streaming()
        results.append(len(await iterator.__anext__()))
        await iterator.aclose()  # closed: dropped too
        results.append(await collect(ws))
        await ws.send("done")

    async with start_server(handler) as running:
        async with running.connect() as ws:
            await ws.send(iter([b"x" * 1000, b"y" * 5 * MiB]))
            await ws.send("next")
            await ws.send(iter([b"z" * 1000, b"z" * 3 * MiB]))
            await ws.send("last")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    assert results[1] == "next"
    assert results[3] == ["last"]


async def test_concurrent_readers_raise(start_server: Any) -> None:
    results: list[Any] = []

    async def handler(ws: websock.ServerConnection) -> None:
        iterator = ws.recv_streaming()
        first = await iterator.__anext__()  # in the middle of a message

        async def other(read: Any) -> None:
            try:
                await read()
            except ConcurrencyError as exc:
                results.append(exc)

        await asyncio.create_task(other(ws.recv))
        await asyncio.create_task(other(lambda: collect(ws)))
        rest = [piece async for piece in iterator]  # this task goes on undisturbed
        results.append(len(first) + sum(map(len, rest)))
        await ws.send("done")

    async with start_server(handler) as running:
        async with running.connect() as ws:
            await ws.send(iter([b"x" * 1000, b"y" * MiB]))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    assert [type(r) for r in results[:2]] == [ConcurrencyError, ConcurrencyError]
    assert results[2] == 1000 + MiB


async def test_closed_raises(start_server: Any) -> None:
    results: list[Any] = []
    finished = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        try:
            results.append(await collect(ws))
            await collect(ws)
        except ConnectionClosedOK as exc:
            results.append(exc)
        finally:
            finished.set()

    async with start_server(handler) as running:
        async with running.connect() as ws:
            await ws.send("one")
        await asyncio.wait_for(finished.wait(), TIMEOUT)
    assert results[0] == ["one"]
    assert isinstance(results[1], ConnectionClosedOK)


async def test_connection_lost_in_the_middle_raises(start_server: Any) -> None:
    results: list[Any] = []
    got_first = asyncio.Event()
    finished = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        try:
            async for _ in ws.recv_streaming():
                got_first.set()
        except ConnectionClosedError as exc:
            results.append(exc)
        finally:
            finished.set()

    async with start_server(handler) as running:
        async with running.connect() as ws:

            async def fragments() -> Any:
                yield b"x" * 1000
                yield b"y" * 1000  # send() writes a fragment once it knows the next one
                await got_first.wait()
                assert ws.transport is not None
                ws.transport.abort()
                yield b"never"

            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(ws.send(fragments()), TIMEOUT)
        await asyncio.wait_for(finished.wait(), TIMEOUT)
    assert isinstance(results[0], ConnectionClosedError)


async def test_backpressure_pauses_reading(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces fill the receive queue: the core holds input and reading pauses; consuming
    resumes it. The queue never holds more than its bound plus one read."""
    paused = asyncio.Event()
    apply_reading = Connection._apply_reading

    def spy(self: Connection) -> None:
        apply_reading(self)
        if self._reading_paused and self._role is core.Role.SERVER:
            paused.set()

    monkeypatch.setattr(Connection, "_apply_reading", spy)
    peaks: list[int] = []

    async def handler(ws: websock.ServerConnection) -> None:
        iterator = ws.recv_streaming()
        total = len(await iterator.__anext__())
        await paused.wait()  # the queue is full: reading paused, input held
        peaks.append(ws._queued_bytes)
        async for piece in iterator:
            total += len(piece)
            peaks.append(ws._queued_bytes)
        peaks.append(total)
        await ws.send("done")

    async with start_server(handler, max_queue=(16, 256 * 1024)) as running:
        async with running.connect() as ws:
            await asyncio.wait_for(ws.send(b"p" * 8 * MiB), TIMEOUT)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "done"
    total = peaks.pop()
    assert total == 8 * MiB
    # The queue's bound, plus the piece that crossed it (at most one read).
    assert max(peaks) <= 256 * 1024 + 256 * 1024


@pytest.mark.parametrize("streaming", [True, False])
async def test_streaming_option_takes_a_large_first_message(
    start_server: Any, streaming: bool
) -> None:
    """A server that sends a large message at once: with ``streaming=True`` the client
    streams it whatever the time its first recv_streaming() call comes; without, it is
    over max_message_size (1009)."""
    payload = os.urandom(3 * MiB)

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send(payload)
        await ws.wait_closed()

    async with start_server(handler) as running:
        async with running.connect(streaming=streaming) as ws:
            assert ws.options.max_message_size == MiB  # the default
            if streaming:
                assert b"".join(await collect(ws)) == payload
            else:  # recv(), which any message reaches before the application asks
                with pytest.raises(ConnectionClosedError) as failed:
                    await ws.recv()
                assert failed.value.sent is not None and failed.value.sent.code == 1009
