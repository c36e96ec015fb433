"""Regressions found in review of the buffered/inline receive path."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from websock.asyncio.connection import Connection
from websock.exceptions import ConnectionClosedError
from websock.protocol import connection as core
from websock.protocol.frames import Opcode, serialize_frame


class FakeTransport(asyncio.Transport):
    """Records writes; never reads by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.out.extend(bytes(c) for c in chunks)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


def open_connection(**overrides: Any) -> tuple[Connection, FakeTransport]:
    options: dict[str, Any] = dict(
        max_message_size=None,
        max_frame_size=None,
        max_queue=16,
        write_limit=65536,
        close_timeout=1.0,
        ping_interval=None,
        ping_timeout=None,
        logger=logging.getLogger("test"),
    )
    options.update(overrides)
    conn = Connection(core.Role.SERVER, **options)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn._open([], b"")
    return conn, transport


def read(conn: Connection, data: bytes) -> None:
    """What a transport does: ask for a buffer, fill it, report."""
    buffer = conn.get_buffer(-1)
    assert len(buffer) >= len(data)
    buffer[: len(data)] = data
    conn.buffer_updated(len(data))


async def test_empty_read_after_direct_buffer_then_fail_closes_cleanly() -> None:
    """A transport asks for the direct buffer and reads nothing (a partial TLS record,
    EAGAIN); the connection then fails: the next read goes to the shared buffer and is
    discarded, and our Close is the only thing written."""
    conn, transport = open_connection()
    frame = serialize_frame(Opcode.BINARY, os.urandom(100_000), mask=os.urandom(4))
    read(conn, frame[:1000])
    assert conn.protocol is not None and conn.protocol.receive_buffer() is not None
    conn.get_buffer(-1)  # nothing read into it
    conn.protocol.fail(1011)
    conn._flush()
    read(conn, frame[1000:2000])  # must not raise
    read(conn, frame[2000:] + serialize_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"abcd"))
    assert transport.out[0] == b"\x88\x02\x03\xf3"  # Close 1011, nothing else before it
    assert conn.protocol.close_rcvd is not None and conn.protocol.close_rcvd.code == 1000
    assert not transport.aborted
    conn.connection_lost(None)


async def test_bytes_read_into_a_dropped_direct_buffer_are_discarded() -> None:
    """The connection fails between get_buffer() and buffer_updated() (the direct buffer is
    dropped): the bytes count as the rest of the discarded frame, then a Close is seen."""
    conn, transport = open_connection()
    frame = serialize_frame(Opcode.BINARY, os.urandom(100_000), mask=os.urandom(4))
    read(conn, frame[:1000])
    assert conn.protocol is not None
    buffer = conn.get_buffer(-1)
    conn.protocol.fail(1011)
    rest = frame[1000:]
    buffer[: len(rest)] = rest
    conn.buffer_updated(len(rest))
    read(conn, serialize_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"abcd"))
    assert conn.protocol.close_rcvd is not None and conn.protocol.close_rcvd.code == 1000
    conn.connection_lost(None)


async def test_recv_raises_at_once_without_close_timeout() -> None:
    """With close_timeout=None nothing bounds the wait for TCP to end: recv() raises as
    soon as the connection fails (here: keepalive timeout) instead of waiting forever."""
    conn, transport = open_connection(close_timeout=None, ping_interval=0.01, ping_timeout=0.01)
    try:
        recv = asyncio.ensure_future(conn.recv())
        done, _ = await asyncio.wait([recv], timeout=5)
        assert done, "recv() still waiting after the keepalive timeout"
        exc = recv.exception()
        assert isinstance(exc, ConnectionClosedError)
        assert exc.sent is not None and exc.sent.code == 1011
    finally:
        conn.connection_lost(None)
