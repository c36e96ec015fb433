"""websock.asyncio.connection reading into one buffer per event loop.

Every connection on a loop, client or server, reads into the same buffer
(``_receive_buffer(loop)``), and reads larger than ``_COPY_READS_UP_TO`` are parsed from it
in place. Whatever a connection keeps of a read must therefore be a copy: the next read, of
any connection on the loop, overwrites the buffer. These tests run connections side by side
so that their reads interleave, and check every payload. The core's side of the contract
(``receive_data`` keeps no reference) is tested in tests/protocol/test_receive_buffer.py.

A spy on the core's ``receive_data`` checks that the in-place path was taken (it was given
a view of the shared buffer), and one on ``buffer_updated`` lets a test wait until a read
has happened without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import random
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from rawpeer import (
    TIMEOUT,
    RawClient,
    RawServer,
    accept_handshake,
    echo,
    parse_head,
    read_frame,
    read_head,
)

import websock
from websock.asyncio.connection import (
    _COPY_READS_UP_TO,
    RECEIVE_BUFFER_SIZE,
    Connection,
    _receive_buffer,
)
from websock.protocol import connection as core
from websock.protocol.frames import Opcode, serialize_frame
from websock.protocol.handshake import accept_key

Data = str | bytes


class Reads:
    """Records the reads of every Connection: their sizes, and how many of them its core
    parsed in place (keyed by the core, ``Connection.protocol``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.nbytes: dict[Connection, int] = {}
        self.in_place: dict[core.Connection, int] = {}
        self.changed = asyncio.Event()
        buffer_updated = Connection.buffer_updated
        receive_data = core.Connection.receive_data
        shared = _receive_buffer(asyncio.get_running_loop()).obj

        def spy_buffer_updated(conn: Connection, nbytes: int) -> None:
            self.nbytes[conn] = self.nbytes.get(conn, 0) + nbytes
            self.changed.set()
            buffer_updated(conn, nbytes)

        def spy_receive_data(conn: core.Connection, data: bytes | bytearray | memoryview) -> None:
            if isinstance(data, memoryview) and data.obj is shared:
                self.in_place[conn] = self.in_place.get(conn, 0) + 1
            receive_data(conn, data)

        monkeypatch.setattr(Connection, "buffer_updated", spy_buffer_updated)
        monkeypatch.setattr(core.Connection, "receive_data", spy_receive_data)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait for reads until ``condition`` holds (each wait bounded by TIMEOUT)."""
        for _ in range(10_000):
            if condition():
                return
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), TIMEOUT)
        raise AssertionError("condition never met")

    def total(self) -> int:
        return sum(self.nbytes.values())

    def parsed_in_place(self, conn: Connection) -> int:
        assert conn.protocol is not None
        return self.in_place.get(conn.protocol, 0)


@pytest.fixture
async def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)  # on the test's loop


def payload(seed: int, size: int) -> bytes:
    """Incompressible, and different for every seed."""
    return random.Random(seed).randbytes(size)


# ---------------------------------------------------------------------- the buffer


async def test_one_buffer_per_loop() -> None:
    loop = asyncio.get_running_loop()
    buffer = _receive_buffer(loop)
    assert _receive_buffer(loop) is buffer
    assert len(buffer) == RECEIVE_BUFFER_SIZE and not buffer.readonly

    other = asyncio.new_event_loop()
    try:
        assert _receive_buffer(other) is _receive_buffer(other)
        assert _receive_buffer(other) is not buffer
        assert _receive_buffer(other).obj is not buffer.obj
    finally:
        other.close()
    # The buffer does not keep its loop alive.
    ref = weakref.ref(other)
    del other
    gc.collect()
    assert ref() is None


async def test_connections_read_into_the_loop_buffer(start_server: Any, secure: bool) -> None:
    loop = asyncio.get_running_loop()
    buffers: list[memoryview] = []

    async def handler(ws: websock.ServerConnection) -> None:
        buffers.append(ws.get_buffer(-1))
        await echo(ws)

    async with start_server(handler, secure=secure) as running:
        async with running.connect() as one, running.connect() as two:
            for ws in (one, two):
                await ws.send("x")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "x"
            buffers += [one.get_buffer(-1), two.get_buffer(-1)]
    assert len(buffers) == 4
    assert all(buffer is _receive_buffer(loop) for buffer in buffers)


# ---------------------------------------------------------------------- interleaved reads


async def test_two_clients_interleaving_large_and_small_messages(
    start_server: Any, secure: bool, reads: Reads
) -> None:
    """Two clients pipeline 100 KB, 30 KB and 10-byte messages through an echo server, all
    on one loop: four connections whose reads share one buffer."""
    sizes = [100_000, 10, 30_000, 10, 100_000, 10]
    assert 30_000 > _COPY_READS_UP_TO >= 10

    async def talk(ws: websock.ClientConnection, client: int) -> list[Data]:
        sent: list[Data] = []
        for i, size in enumerate(sizes):
            data = payload(client * 100 + i, size)
            sent.append(data if size > 10 else data.hex())  # small ones as text
        # Send everything first: messages of both clients are in flight together.
        for message in sent:
            await ws.send(message)
        received = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in sent]
        assert received == sent
        return received

    async with start_server(echo, secure=secure, compression=None) as running:
        async with (
            running.connect(compression=None) as one,
            running.connect(compression=None) as two,
        ):
            first, second = await asyncio.gather(talk(one, 1), talk(two, 2))
    assert not set(first) & set(second)
    # Reads were parsed straight from the shared buffer, on both sides.
    assert sum(reads.in_place.values()) >= 2
    assert reads.parsed_in_place(one) + reads.parsed_in_place(two) >= 1
    # The server's connections read in place too.
    assert set(reads.in_place) - {one.protocol, two.protocol}


async def test_server_message_split_around_another_connections_read(
    start_server: Any, reads: Reads
) -> None:
    """A masked frame arrives in two reads; in between, another connection's read
    overwrites the buffer. The first part must have been copied out of it."""
    first, second = payload(1, 50_000), payload(2, 50_000)

    async with start_server(echo, compression=None) as running:
        a = await RawClient.connect(running.port)
        b = await RawClient.connect(running.port)
        try:
            frame = a.frame_bytes(Opcode.BINARY, first)
            cut = 40_000
            assert cut > _COPY_READS_UP_TO
            before, in_place = reads.total(), sum(reads.in_place.values())
            a.send_raw(frame[:cut])
            await reads.wait_until(lambda: reads.total() >= before + cut)
            # Parsed from the shared buffer, not from a copy of the read.
            assert sum(reads.in_place.values()) > in_place
            # Another connection's large read, into the same buffer, then small ones.
            b.send_raw(b.frame_bytes(Opcode.BINARY, second) + b.frame_bytes(Opcode.TEXT, b"hi"))
            assert (await b.read_frame()).payload == second
            assert (await b.read_frame()).payload == b"hi"
            a.send_raw(frame[cut:])
            echoed = await a.read_frame()
            assert (echoed.opcode, echoed.payload) == (Opcode.BINARY, first)
        finally:
            await a.aclose()
            await b.aclose()
    assert sum(reads.in_place.values()) >= 2


async def test_client_message_split_around_another_connections_read(reads: Reads) -> None:
    """The same from the client side: unmasked frames from a scripted server."""
    first, second = payload(3, 50_000), payload(4, 50_000)
    queues: list[asyncio.Queue[bytes | None]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        queues.append(queue)
        await accept_handshake(reader, writer)
        for _ in range(10):
            data = await queue.get()
            if data is None:
                break
            writer.write(data)
        # The client closes: answer its Close and end TCP.
        frame = await read_frame(reader)
        assert frame.opcode == Opcode.CLOSE
        writer.write(serialize_frame(Opcode.CLOSE, frame.payload))
        writer.close()

    async with RawServer(script) as server:
        uri = f"ws://localhost:{server.port}/"
        async with websock.connect(uri, host="127.0.0.1", compression=None) as a:
            async with websock.connect(uri, host="127.0.0.1", compression=None) as b:
                queue_a, queue_b = queues
                try:
                    frame = serialize_frame(Opcode.BINARY, first)
                    cut = 40_000
                    assert cut > _COPY_READS_UP_TO
                    before, in_place = reads.nbytes.get(a, 0), reads.parsed_in_place(a)
                    queue_a.put_nowait(frame[:cut])
                    await reads.wait_until(lambda: reads.nbytes.get(a, 0) >= before + cut)
                    assert reads.parsed_in_place(a) > in_place
                    queue_b.put_nowait(
                        serialize_frame(Opcode.BINARY, second) + serialize_frame(Opcode.TEXT, b"hi")
                    )
                    assert await asyncio.wait_for(b.recv(), TIMEOUT) == second
                    assert await asyncio.wait_for(b.recv(), TIMEOUT) == "hi"
                    queue_a.put_nowait(frame[cut:])
                    assert await asyncio.wait_for(a.recv(), TIMEOUT) == first
                finally:
                    # Let the scripts go on to the closing handshake, whatever happened.
                    queue_a.put_nowait(None)
                    queue_b.put_nowait(None)
    assert reads.parsed_in_place(b) >= 1


# ---------------------------------------------------------------------- the opening handshake


def upgrade_request(key: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def test_frames_in_the_same_read_as_the_request(start_server: Any) -> None:
    """Reads before the upgrade are always copied: the handshake keeps what it reads. A
    request followed by a large frame in one write is answered, then echoed."""
    message = payload(5, 20_000)
    key = base64.b64encode(os.urandom(16)).decode()
    async with start_server(echo, compression=None) as running:
        client = await RawClient.open(running.port)
        try:
            client.send_raw(upgrade_request(key) + client.frame_bytes(Opcode.BINARY, message))
            status, headers = parse_head(await read_head(client.reader))
            assert status.startswith("HTTP/1.1 101 ")
            assert headers["sec-websocket-accept"] == accept_key(key)
            echoed = await client.read_frame()
            assert (echoed.opcode, echoed.payload) == (Opcode.BINARY, message)
        finally:
            await client.aclose()


async def test_frames_in_the_same_read_as_the_response() -> None:
    """The client side: a 101 response followed by a large frame in one write."""
    message = payload(6, 20_000)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers = parse_head(await read_head(reader))
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n"
        ).encode()
        writer.write(response + serialize_frame(Opcode.BINARY, message))
        frame = await read_frame(reader)
        assert frame.opcode == Opcode.CLOSE
        writer.write(serialize_frame(Opcode.CLOSE, frame.payload))
        writer.close()

    async with RawServer(script) as server:
        uri = f"ws://localhost:{server.port}/"
        async with websock.connect(uri, host="127.0.0.1", compression=None) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
