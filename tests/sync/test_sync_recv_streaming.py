"""Connection.recv_streaming() in websock.sync: a message in pieces, as they arrive.

The 100 MiB tests run the receiving side in a subprocess, so that its RSS (``VmRSS`` from
/proc/self/status, sampled at every piece) counts none of the sender's buffers: the growth
while a 100 MiB message streams through must stay under 8 MiB, in both roles, compressed
(a highly compressible text: inflation is bounded too) and not.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import zlib
from typing import Any

import pytest
from syncpeer import TIMEOUT, running_server

from websock import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK
from websock.sync import ServerConnection, connect

MiB = 1 << 20
BIG = 100 * MiB

#: The receiving process: ``python -c RECEIVER (server|client) (deflate|none) [uri]``. It
#: switches streaming on and sends "go", takes a warm-up message in pieces, measures its
#: RSS, sends "ready", streams the next message (sampling its RSS at every piece), and
#: prints one JSON line with the result.
RECEIVER = r"""
import json, sys, threading, zlib
from websock.sync import connect, serve

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")

def receive(ws):
    pieces = ws.recv_streaming(timeout=60)  # streaming on before the peer sends
    ws.send("go")
    for _ in pieces:  # warm-up: the code paths, the buffers
        pass
    base = peak = rss()
    ws.send("ready")
    size = crc = count = 0
    for piece in ws.recv_streaming(timeout=60):
        data = piece.encode() if isinstance(piece, str) else piece
        size += len(data)
        crc = zlib.crc32(data, crc)
        count += 1
        peak = max(peak, rss())
    print(json.dumps({"size": size, "crc": crc, "pieces": count, "base": base, "peak": peak}),
          flush=True)

role, compression = sys.argv[1], sys.argv[2]
compression = None if compression == "none" else compression
if role == "server":
    done = threading.Event()
    def handler(ws):
        try:
            receive(ws)
        finally:
            done.set()
    server = serve(handler, "127.0.0.1", 0, compression=compression)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.port, flush=True)
    done.wait(120)
    server.shutdown()
else:
    with connect(sys.argv[3], compression=compression) as ws:
        receive(ws)
"""


def big_message(compression: str | None) -> str | bytes:
    if compression is None:
        return bytes(range(256)) * (BIG // 256)
    return "websock streams " * (BIG // 16)  # text, highly compressible


def start_receiver(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RECEIVER, *args],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def read_line(process: subprocess.Popen[bytes]) -> bytes:
    """One line of the receiver's output, within a bounded time."""
    lines: queue.Queue[bytes] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    return lines.get(timeout=TIMEOUT * 6)


def check(report: dict[str, Any], message: str | bytes, label: str) -> None:
    data = message.encode() if isinstance(message, str) else message
    assert report["size"] == len(data)
    assert report["crc"] == zlib.crc32(data)
    growth = report["peak"] - report["base"]
    print(f"{label}: RSS growth {growth / MiB:.2f} MiB over {report['pieces']} pieces")
    assert growth < 8 * MiB, f"{label}: RSS grew by {growth / MiB:.1f} MiB"


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_100_mib_server_receives(compression: str | None) -> None:
    message = big_message(compression)
    process = start_receiver("server", compression or "none")
    try:
        port = int(read_line(process))
        with connect(
            f"ws://127.0.0.1:{port}", compression=compression, max_message_size=None
        ) as ws:
            assert ws.recv(timeout=TIMEOUT * 3) == "go"
            ws.send(b"w" * (2 * MiB))
            assert ws.recv(timeout=TIMEOUT) == "ready"
            ws.send(message)
            report = json.loads(read_line(process))
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    check(report, message, f"sync server, {compression}")


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_100_mib_client_receives(compression: str | None) -> None:
    message = big_message(compression)
    sent = threading.Event()

    def handler(ws: ServerConnection) -> None:
        assert ws.recv(timeout=TIMEOUT * 3) == "go"
        ws.send(b"w" * (2 * MiB))
        assert ws.recv(timeout=TIMEOUT) == "ready"
        ws.send(message)
        sent.set()
        for _ in ws:
            pass

    with running_server(handler, compression=compression) as server:
        process = start_receiver("client", compression or "none", f"ws://127.0.0.1:{server.port}")
        try:
            report = json.loads(read_line(process))
            assert process.wait(TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert sent.is_set()
    check(report, message, f"sync client, {compression}")


# ---------------------------------------------------------------------------- semantics


class Results:
    """What a server handler saw, handed to the test thread (bounded waits only)."""

    def __init__(self) -> None:
        self.items: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any) -> None:
        self.items.put(item)

    def get(self) -> Any:
        return self.items.get(timeout=TIMEOUT)


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_pieces_then_recv_then_pieces(compression: str | None) -> None:
    payload = os.urandom(3 * MiB)
    text = "aé€𝄞" * 50_000
    results = Results()

    def handler(ws: ServerConnection) -> None:
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        results.put(ws.recv(timeout=TIMEOUT))
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        results.put(list(ws.recv_streaming(decode=False, timeout=TIMEOUT)))
        for _ in ws:
            pass

    with (
        running_server(handler, max_message_size=1000, compression=compression) as server,
        connect(f"ws://127.0.0.1:{server.port}/", compression=compression) as ws,
    ):
        ws.send(payload)
        ws.send("small")
        encoded = text.encode()
        ws.send([encoded[i : i + 7777] for i in range(0, len(encoded), 7777)], text=True)
        ws.send("é")
        pieces = results.get()
        assert all(type(p) is bytes for p in pieces) and b"".join(pieces) == payload
        assert results.get() == "small"
        pieces = results.get()
        assert all(type(p) is str and p for p in pieces) and "".join(pieces) == text
        assert results.get() == ["é".encode()]


def test_recv_joins_within_max_message_size() -> None:
    results = Results()

    def handler(ws: ServerConnection) -> None:
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        results.put(ws.recv(timeout=TIMEOUT))  # in pieces: joined
        try:
            ws.recv(timeout=TIMEOUT)  # beyond max_message_size: 1009
        except ConnectionClosedError as exc:
            results.put(exc)

    with (
        running_server(handler, max_message_size=100_000) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ws.send(b"a" * 200_000)
        ws.send([b"b" * 50_000, b"c" * 40_000])
        ws.send([b"d" * 60_000, b"e" * 60_000])
        with pytest.raises(ConnectionClosedError) as raised:
            ws.recv(timeout=TIMEOUT)
        assert b"".join(results.get()) == b"a" * 200_000
        assert results.get() == b"b" * 50_000 + b"c" * 40_000
        assert results.get().sent.code == 1009
    assert raised.value.rcvd is not None and raised.value.rcvd.code == 1009


def test_abandoned_iteration_drops_the_rest() -> None:
    results = Results()

    def handler(ws: ServerConnection) -> None:
        for piece in ws.recv_streaming(timeout=TIMEOUT):
            results.put(len(piece))
            break
        results.put(ws.recv(timeout=TIMEOUT))
        iterator = ws.recv_streaming(timeout=TIMEOUT)
        results.put(len(next(iterator)))
        iterator.close()  # type: ignore[attr-defined]
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        for _ in ws:
            pass

    with (
        running_server(handler) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ws.send([b"x" * 1000, b"y" * 5 * MiB])
        ws.send("next")
        ws.send([b"z" * 1000, b"z" * 3 * MiB])
        ws.send("last")
        assert results.get() > 0
        assert results.get() == "next"
        assert results.get() > 0
        assert results.get() == ["last"]


def test_concurrent_reader_raises() -> None:
    results = Results()

    def handler(ws: ServerConnection) -> None:
        iterator = ws.recv_streaming(timeout=TIMEOUT)
        total = len(next(iterator))  # in the middle of a message

        def other() -> None:
            try:
                ws.recv(timeout=TIMEOUT)
            except ConcurrencyError as exc:
                results.put(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(TIMEOUT)
        total += sum(len(piece) for piece in iterator)
        results.put(total)
        for _ in ws:
            pass

    with (
        running_server(handler) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ws.send([b"x" * 1000, b"y" * MiB])
        assert isinstance(results.get(), ConcurrencyError)
        assert results.get() == 1000 + MiB


def test_timeout_loses_nothing() -> None:
    results = Results()
    release = threading.Event()

    def handler(ws: ServerConnection) -> None:
        iterator = ws.recv_streaming(timeout=0)
        try:
            next(iterator)
        except TimeoutError:
            results.put("timeout")
        release.wait(TIMEOUT)
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        for _ in ws:
            pass

    with (
        running_server(handler) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        assert results.get() == "timeout"
        ws.send("hello")
        release.set()
        assert results.get() == ["hello"]


def test_closed_raises() -> None:
    results = Results()

    def handler(ws: ServerConnection) -> None:
        try:
            results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
            list(ws.recv_streaming(timeout=TIMEOUT))
        except ConnectionClosedOK as exc:
            results.put(exc)

    with running_server(handler) as server:
        with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("one")
        assert results.get() == ["one"]
        assert isinstance(results.get(), ConnectionClosedOK)


def test_empty_message() -> None:
    results = Results()

    def handler(ws: ServerConnection) -> None:
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        results.put(list(ws.recv_streaming(timeout=TIMEOUT)))
        for _ in ws:
            pass

    with (
        running_server(handler) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ws.send("")
        ws.send([b"", b""])
        assert results.get() == [""]
        assert results.get() == [b""]


@pytest.mark.parametrize("streaming", [True, False])
def test_streaming_option_takes_a_large_first_message(streaming: bool) -> None:
    payload = os.urandom(3 * MiB)

    def handler(ws: ServerConnection) -> None:
        ws.send(payload)
        for _ in ws:
            pass

    with (
        running_server(handler) as server,
        connect(f"ws://127.0.0.1:{server.port}/", streaming=streaming) as ws,
    ):
        if streaming:
            assert b"".join(ws.recv_streaming(timeout=TIMEOUT)) == payload  # type: ignore[arg-type]
        else:
            with pytest.raises(ConnectionClosedError) as failed:
                ws.recv(timeout=TIMEOUT)
            assert failed.value.sent is not None and failed.value.sent.code == 1009
