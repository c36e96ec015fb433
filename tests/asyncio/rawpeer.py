"""Scripted peers over raw asyncio streams, to check the exact bytes on the wire.

:class:`RawClient` does the opening handshake by hand and then sends and reads frames one
at a time; :class:`RawServer` accepts TCP connections and hands each one's streams to a
script. Neither implements the protocol beyond what a test asks for.

Every wait is bounded by :data:`TIMEOUT`, scaled by ``WEBSOCK_TEST_TIMEOUT_FACTOR`` on slow
machines: a stuck test fails instead of hanging; no test measures a duration. A test that
checks that something happens promptly sets the library's own timeout to :data:`LONG`, so
that an event seen within TIMEOUT cannot have come from that timer.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import websock
from websock.protocol.frames import Opcode, apply_mask, serialize_frame
from websock.protocol.handshake import accept_key

__all__ = [
    "RawFrame",
    "RawClient",
    "RawServer",
    "read_frame",
    "read_head",
    "close_payload",
    "TIMEOUT",
    "LONG",
    "echo",
]

#: Bound on every wait in the tests: generous on a loaded machine, short when stuck.
TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
#: A library timeout (close_timeout, open_timeout, ping_timeout) far longer than TIMEOUT.
LONG = max(60.0, 4 * TIMEOUT)


@dataclass
class RawFrame:
    opcode: int
    payload: bytes
    fin: bool
    rsv: int
    masked: bool

    @property
    def close_code(self) -> int | None:
        assert self.opcode == Opcode.CLOSE
        if len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> str:
        assert self.opcode == Opcode.CLOSE
        return self.payload[2:].decode()


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


async def read_frame(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> RawFrame:
    """Read one frame; unmask it if it is masked (the ``masked`` flag records it)."""

    async def read() -> RawFrame:
        b0, b1 = await reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if b1 & 0x80 else None
        payload = await reader.readexactly(length)
        if mask is not None:
            payload = apply_mask(payload, mask)
        return RawFrame(b0 & 0x0F, payload, bool(b0 & 0x80), b0 & 0x70, mask is not None)

    return await asyncio.wait_for(read(), timeout)


async def read_head(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> bytes:
    """Read an HTTP head up to and including the blank line."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """Return the start line and the headers (lowercase names; last value wins)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class RawClient:
    """A hand-driven WebSocket client over a raw (optionally TLS) stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, *, ssl_context: ssl.SSLContext | None = None, limit: int = 1 << 16
    ) -> RawClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=ssl_context,
                server_hostname="localhost" if ssl_context else None,
                limit=limit,
            ),
            TIMEOUT,
        )
        return cls(reader, writer)

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        path: str = "/",
        extra: str = "",
        limit: int = 1 << 16,
    ) -> RawClient:
        """Open TCP (and TLS) and do the opening handshake; assert it got 101."""
        client = await cls.open(port, ssl_context=ssl_context, limit=limit)
        await client.handshake(path=path, extra=extra)
        return client

    async def handshake(self, *, path: str = "/", extra: str = "") -> None:
        """Send an opening request and check the 101 response."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.send_raw(
            (
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        status, headers = parse_head(await read_head(self.reader))
        assert status.startswith("HTTP/1.1 101 "), status
        assert headers["sec-websocket-accept"] == accept_key(key)
        self.response_headers = headers

    response_headers: dict[str, str]

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def frame_bytes(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
    ) -> bytes:
        return serialize_frame(
            opcode, payload, fin=fin, rsv=rsv, mask=os.urandom(4) if mask else None
        )

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
    ) -> None:
        self.send_raw(self.frame_bytes(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    async def read_frame(self, timeout: float = TIMEOUT) -> RawFrame:
        return await read_frame(self.reader, timeout)

    async def read_eof(self, timeout: float = TIMEOUT) -> None:
        """Assert that the peer closes the connection (without sending more) within ``timeout``."""
        data = await asyncio.wait_for(self.reader.read(1), timeout)
        assert data == b"", f"expected EOF, got {data!r}"

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except (ConnectionError, ssl.SSLError):
            pass


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Accept TCP on 127.0.0.1:0 (optionally TLS) and run ``script(reader, writer)`` per client."""

    def __init__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.ssl_context = ssl_context
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.errors = []

    async def __aenter__(self) -> RawServer:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await self.script(reader, writer)
            except Exception as exc:
                # Reported by __aexit__, unless it is fallout from the teardown's abort.
                if not self.closing:
                    self.errors.append(exc)
            finally:
                self.tasks.discard(task)

        self.server = await asyncio.start_server(run, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    closing = False
    errors: list[Exception]

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.closing = True
        self.server.close()
        # Abort rather than cancel: the scripts see EOF and end by themselves.
        for writer in self.writers:
            writer.transport.abort()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=TIMEOUT)
            for task in pending:
                task.cancel()
        await asyncio.wait_for(self.server.wait_closed(), TIMEOUT)
        if self.errors and exc[0] is None:
            raise self.errors[0]


async def accept_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    accept: str | None = None,
    extra: str = "",
) -> dict[str, str]:
    """Server side of a hand-made handshake: read the request, answer 101."""
    _, headers = parse_head(await read_head(reader))
    if accept is None:
        accept = accept_key(headers["sec-websocket-key"])
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        ).encode()
    )
    return headers


async def echo(ws: websock.ServerConnection) -> None:
    """The handler most tests use: send every message back."""
    async for message in ws:
        await ws.send(message)


class BioTlsClient(RawClient):
    """A raw client whose TLS runs in memory BIOs over a plain TCP stream.

    Unlike asyncio's TLS transport, it never answers the server's close_notify, as a peer
    that simply stops after the closing handshake would. ``reader`` yields the decrypted
    bytes and ends at close_notify; :attr:`tcp_eof` is done when TCP itself ends.
    """

    def __init__(
        self,
        tcp_reader: asyncio.StreamReader,
        tcp_writer: asyncio.StreamWriter,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        super().__init__(asyncio.StreamReader(limit=1 << 22), tcp_writer)
        self.tcp_reader = tcp_reader
        self.sslobj = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self.close_notify = asyncio.get_running_loop().create_future()
        self.tcp_eof = asyncio.get_running_loop().create_future()
        #: Clear it to stop reading from TCP (a slow reader); set it to resume.
        self.reading = asyncio.Event()
        self.reading.set()
        self._pump = asyncio.create_task(self._run())

    @classmethod
    async def open(  # type: ignore[override]
        cls,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 1 << 16,
        rcvbuf: int | None = None,
    ) -> BioTlsClient:
        """``rcvbuf`` fixes the socket's receive buffer (no autotuning): a small window."""
        assert ssl_context is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT
        )
        tcp_reader, tcp_writer = await asyncio.open_connection(sock=sock)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = ssl_context.wrap_bio(incoming, outgoing, server_hostname="localhost")

        async def handshake() -> None:
            while True:
                try:
                    sslobj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    tcp_writer.write(outgoing.read())
                    data = await tcp_reader.read(65536)
                    if not data:
                        raise ConnectionError("EOF during the TLS handshake") from None
                    incoming.write(data)
            tcp_writer.write(outgoing.read())

        await asyncio.wait_for(handshake(), TIMEOUT)
        return cls(tcp_reader, tcp_writer, sslobj, incoming, outgoing)

    async def _run(self) -> None:
        try:
            while True:
                await self.reading.wait()
                data = await self.tcp_reader.read(65536)
                if not data:
                    break
                self.incoming.write(data)
                while not self.close_notify.done():
                    try:
                        plain = self.sslobj.read(65536)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:
                        plain = b""
                    if not plain:
                        if not self.close_notify.done():
                            self.close_notify.set_result(None)
                        self.reader.feed_eof()
                        break
                    self.reader.feed_data(plain)
        except ConnectionError:
            pass
        if not self.reader.at_eof():
            self.reader.feed_eof()
        if not self.tcp_eof.done():
            self.tcp_eof.set_result(None)

    def send_raw(self, data: bytes) -> None:
        self.sslobj.write(data)
        self.writer.write(self.outgoing.read())

    async def aclose(self) -> None:
        self.writer.transport.abort()
        self.reading.set()
        await asyncio.wait_for(self._pump, TIMEOUT)
