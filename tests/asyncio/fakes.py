"""A fake transport for driving :class:`websock.asyncio.connection.Connection` by hand.

It records what is written and how reading and writing were paused, and behaves as a real
transport where the connection depends on it (``abort()`` calls ``connection_lost()`` at the
next loop iteration). Tests feed reads through :func:`read`, as a transport does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websock.asyncio.connection import Connection
from websock.options import Options
from websock.protocol import connection as core
from websock.protocol.extensions.base import Extension

__all__ = ["FakeTransport", "open_connection", "read"]


class FakeTransport(asyncio.Transport):
    """Records writes; never reads by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.aborted = False
        self.closing = False
        self.eof_written = False
        self.reading = True
        self.pauses = 0  # pause_reading() calls
        self.protocol: Connection | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: Any) -> None:
        assert not self.eof_written, "write after write_eof()"
        self.out.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        # As a real transport does: connection_lost() at the next loop iteration.
        self.aborted = self.closing = True
        if self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
            self.protocol = None

    def get_write_buffer_size(self) -> int:
        return 0


def open_connection(
    role: core.Role = core.Role.SERVER,
    extensions: list[Extension] | None = None,
    **overrides: Any,
) -> tuple[Connection, FakeTransport]:
    """An open connection (handshake done) on a fake transport; options as serve()'s."""
    settings: dict[str, Any] = dict(
        max_message_size=None,
        max_frame_size=None,
        max_queue=16,
        write_limit=65536,
        close_timeout=1.0,
        ping_interval=None,
        ping_timeout=None,
    )
    settings.update(overrides)
    conn = Connection(role, Options(**settings), logging.getLogger("test"))
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)
    conn._open(extensions or [], b"")
    return conn, transport


def read(conn: Connection, data: bytes) -> None:
    """What a transport does: ask for a buffer, fill it, report (in as many reads as needed)."""
    view = memoryview(data)
    while view:
        buffer = conn.get_buffer(-1)
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        conn.buffer_updated(n)
        view = view[n:]
