"""Regressions found in review of the buffered/inline receive path."""

from __future__ import annotations

import asyncio
import os

from fakes import open_connection, read

from websock.exceptions import ConnectionClosedError
from websock.protocol.frames import Opcode, serialize_frame


async def test_empty_read_after_direct_buffer_then_fail_closes_cleanly() -> None:
    """A transport asks for the direct buffer and reads nothing (a partial TLS record,
    EAGAIN); the connection then fails: the next read goes to the shared buffer and is
    dropped, our Close is the only thing written, then our FIN; nothing more is processed
    (RFC 6455 7.1.7), not even the peer's Close."""
    conn, transport = open_connection()
    frame = serialize_frame(Opcode.BINARY, os.urandom(100_000), mask=os.urandom(4))
    read(conn, frame[:1000])
    assert conn.protocol is not None and conn.protocol.receive_buffer() is not None
    conn.get_buffer(-1)  # nothing read into it
    conn.protocol.fail(1011)
    conn._flush()
    read(conn, frame[1000:2000])  # must not raise
    read(conn, frame[2000:] + serialize_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"abcd"))
    assert transport.out == [b"\x88\x02\x03\xf3"]  # Close 1011, nothing else
    assert transport.eof_written and transport.reading  # FIN, and draining
    assert conn.protocol.close_rcvd is None
    assert not transport.aborted
    conn.connection_lost(None)


async def test_bytes_read_into_a_dropped_direct_buffer_are_discarded() -> None:
    """The connection fails between get_buffer() and buffer_updated() (the direct buffer is
    dropped): the bytes are dropped, and so is everything after them."""
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
    assert conn.protocol.close_rcvd is None
    assert transport.out == [b"\x88\x02\x03\xf3"] and transport.eof_written
    conn.connection_lost(None)


async def test_recv_raises_at_once_without_close_timeout() -> None:
    """With close_timeout=None nothing bounds the wait for TCP to end, except that a
    keepalive timeout means the peer is dead: TCP is dropped after CLOSE_GRACE, and recv()
    raises then instead of waiting forever."""
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
