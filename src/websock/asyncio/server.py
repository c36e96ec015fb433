"""The asyncio WebSocket server: :func:`serve`, :class:`Server`, :class:`ServerConnection`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidState
from ..protocol import connection as core
from ..protocol.connection import DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.extensions.base import ServerExtensionFactory
from ..protocol.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from ..protocol.handshake import USER_AGENT, ServerHandshake
from ..protocol.http import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    Headers,
    Request,
    Response,
    serialize_response,
)
from . import transports
from .connection import Connection

__all__ = ["serve", "Server", "ServerConnection", "Handler", "ProcessRequest"]

logger = logging.getLogger("websock.server")

Handler = Callable[["ServerConnection"], Awaitable[None]]
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | None | Awaitable[Response | None]"
]

# Defaults, each with its reason:
# 16 messages: enough to absorb a burst while the handler works, small enough that a
# stalled handler holds at most 16 x max_message_size before reading pauses (websockets' value).
DEFAULT_MAX_QUEUE = 16
# 64 KiB high-water mark: a few TCP windows; send() waits beyond it, so a slow reader cannot
# make us buffer without bound (asyncio's default is the same).
DEFAULT_WRITE_LIMIT = 65536
# 10 s for the opening handshake and for the closing handshake: long enough for a slow
# mobile link, short enough to free resources held by a dead or hostile peer.
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
# Keepalive: a ping every 20 s keeps NAT and proxy mappings alive (most drop idle TCP after
# 30-60 s); a peer that does not answer within 20 s is considered dead.
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0


def _compression_factories(
    compression: Literal["deflate"] | None | Sequence[ServerExtensionFactory],
) -> list[ServerExtensionFactory]:
    if compression is None:
        return []
    if compression == "deflate":
        return [ServerPerMessageDeflateFactory()]
    if isinstance(compression, str):
        raise ValueError(f"unsupported compression {compression!r}: use 'deflate' or None")
    return list(compression)


class ServerConnection(Connection):
    """A connection accepted by the server; the handler receives it.

    ``request`` is the client's opening request (``path``, ``query``, ``headers``) and
    ``response_headers`` the headers to add to our 101 response: a ``process_request`` hook
    may add to them (for example a cookie).
    """

    __slots__ = (
        "_handler_task",
        "_handshake",
        "_open_timer",
        "request",
        "response",
        "response_headers",
        "server",
    )

    def __init__(self, server: Server) -> None:
        opts = server._options
        super().__init__(
            core.Role.SERVER,
            max_message_size=opts["max_message_size"],
            max_frame_size=opts["max_frame_size"],
            max_queue=opts["max_queue"],
            write_limit=opts["write_limit"],
            close_timeout=opts["close_timeout"],
            ping_interval=opts["ping_interval"],
            ping_timeout=opts["ping_timeout"],
            logger=logger,
        )
        self.server = server
        self.request: Request | None = None
        self.response: Response | None = None
        self.response_headers = Headers()
        self._handshake = ServerHandshake(
            origins=opts["origins"],
            subprotocols=opts["subprotocols"],
            extensions=opts["extensions"],
            max_size=opts["max_handshake_size"],
            max_headers=opts["max_headers"],
            server_header=opts["server_header"],
        )
        self._open_timer: asyncio.TimerHandle | None = None
        self._handler_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._connections.add(self)
        timeout = self.server._options["open_timeout"]
        if timeout is not None:
            self._open_timer = self.loop.call_later(timeout, self._open_timed_out)

    def _open_timed_out(self) -> None:
        if self.protocol is None and not self._lost and self.transport is not None:
            logger.info("opening handshake timed out: closing TCP connection")
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
        super().connection_lost(exc)
        if self._handler_task is None or self._handler_task.done():
            self.server._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.protocol is not None:
            self._receive(data)
            return
        if self.request is not None:
            # An async process_request hook is running and reading is paused; keep any
            # bytes that still arrive with the first frames (the handshake's trailing data).
            self._handshake.receive_data(data)
            return
        try:
            request = self._handshake.receive_data(data)
            if request is None:
                return
            self.request = request
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        hook = self.server._options["process_request"]
        if hook is None:
            self._accept()
            return
        # The hook runs before the upgrade is validated, so that it can answer plain HTTP
        # requests (a health check); _accept() validates when the hook returns None.
        try:
            result = hook(self, request)
        except Exception:
            logger.exception("process_request hook raised")
            self._send_response(self._handshake.reject(500, "internal server error\n"))
            return
        if inspect.isawaitable(result):
            assert self.transport is not None
            self.transport.pause_reading()
            self._handler_task = self.loop.create_task(self._await_hook(result))
        else:
            self._after_hook(result)

    async def _await_hook(self, result: Awaitable[Response | None]) -> None:
        try:
            response = await result
        except Exception:
            logger.exception("process_request hook raised")
            self._send_response(self._handshake.reject(500, "internal server error\n"))
            return
        except asyncio.CancelledError:
            # Server shutdown gave up on the hook: drop the connection.
            self._abort_transport()
            raise
        finally:
            self._handler_task = None
            if self._lost:
                # connection_lost() left the bookkeeping to us while the hook ran.
                self.server._connections.discard(self)
        if self._lost:
            return
        self._after_hook(response)
        if self.protocol is not None and not self._lost:
            # Resume only now: bytes read from here on reach the open connection.
            assert self.transport is not None
            self.transport.resume_reading()

    def _after_hook(self, response: Response | None) -> None:
        if response is not None:
            self._send_response(response)
        else:
            self._accept()

    def respond(
        self, status: int, text: str = "", headers: Mapping[str, str] | None = None
    ) -> Response:
        """Build an HTTP response for ``process_request`` to return instead of upgrading."""
        if self.protocol is not None:
            raise InvalidState("respond() is for process_request, before the upgrade")
        return self._handshake.reject(status, text, headers)

    def _reject(self, exc: InvalidHandshake) -> None:
        logger.info(
            "rejected opening handshake from %s: %d %s", self.remote_address, exc.status, exc
        )
        self._send_response(self._handshake.response_for_error(exc))

    def _send_response(self, response: Response) -> None:
        self.response = response
        if self.transport is not None and not self._lost:
            self.transport.write(serialize_response(response))
            self._close_tcp()

    def _accept(self) -> None:
        assert self.request is not None and self.transport is not None
        try:
            response = self._handshake.accept(self.request, extra_headers=self.response_headers)
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        if self._open_timer is not None:
            self._open_timer.cancel()
        self.response = response
        handshake = self._handshake
        # The handshake state (head buffer, parser) is no longer needed: free it.
        del self._handshake
        self.subprotocol = handshake.subprotocol
        self.transport.write(serialize_response(response))
        if self.server._closing:
            # The server started shutting down during the handshake.
            self._open(handshake.extensions, b"")
            assert self.protocol is not None
            self.protocol.send_close(1001, "server shutting down")
            self._flush()
            self._start_close_timer()
            return
        self._open(handshake.extensions, handshake.trailing)
        coro = self.server._handler(self)
        task: asyncio.Task[None] = self.loop.create_task(coro)  # type: ignore[arg-type]
        task.add_done_callback(self._handler_done)
        self._handler_task = task

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        """Close the connection once the handler returned (1000) or failed (1011).

        A done-callback rather than a wrapper coroutine: one coroutine frame less per
        connection for its whole life.
        """
        error = None if task.cancelled() else task.exception()
        protocol = self.protocol
        if error is not None and not isinstance(error, ConnectionClosed):
            logger.error("connection handler failed", exc_info=error)
            if not self._lost and protocol is not None and protocol.close_sent is None:
                protocol.fail(1011)  # no internal details on the wire
                self._flush()
                self._start_close_timer()
        elif not self._lost and protocol is not None:
            if protocol.close_sent is None and protocol.state is core.State.OPEN:
                protocol.send_close(1000)
                self._flush()
            elif self._terminal is not None and not self._terminal_done:
                self._act_on_terminal()
            self._start_close_timer()
        if self._lost:
            self.server._connections.discard(self)


class Server:
    """A listening WebSocket server. Created by :func:`serve`."""

    def __init__(self, handler: Handler, options: dict[str, Any]) -> None:
        self._handler = handler
        self._options = options
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._closed = asyncio.get_running_loop().create_future()

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections currently open (or opening)."""
        return set(self._connections)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket (handy with ``port=0``)."""
        return int(self.sockets[0].getsockname()[1])

    async def _start(
        self, host: str | Sequence[str] | None, port: int | None, kwargs: dict[str, Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._options["open_timeout"]
        if kwargs.get("ssl") is not None and timeout is not None:
            # connection_made() comes after the TLS handshake, so the open timer starts
            # only then: bound the TLS handshake by open_timeout too (asyncio's default
            # is 60 s, during which a silent client holds a socket).
            kwargs = {"ssl_handshake_timeout": timeout, **kwargs}
        self._server = await transports.create_server(
            loop, lambda: ServerConnection(self), host, port, **kwargs
        )

    def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, send Close ``code`` to every connection, and finish in the background.

        Await :meth:`wait_closed` for the end: it comes when every closing handshake is done
        or its close_timeout ran out, and every handler has returned.
        """
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        asyncio.get_running_loop().create_task(self._close_connections(code, reason))

    async def _close_connections(self, code: int, reason: str) -> None:
        conns = list(self._connections)
        for conn in conns:
            if conn.protocol is None:
                if conn.transport is not None and conn.request is None:
                    conn.transport.close()
        await asyncio.gather(
            *(conn.close(code, reason) for conn in conns if conn.protocol is not None),
            return_exceptions=True,
        )
        tasks = [c._handler_task for c in conns if c._handler_task is not None]
        if tasks:
            timeout = self._options["close_timeout"]
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._server is not None:
            await self._server.wait_closed()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until cancelled (e.g. by Ctrl-C), then close gracefully with 1001."""
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class serve:  # noqa: N801 - used like a function: `async with serve(...)` / `await serve(...)`
    """Start a WebSocket server calling ``handler(connection)`` for each connection.

    Use ``async with serve(handler, host, port) as server: await server.serve_forever()``,
    or ``server = await serve(...)`` and later ``server.close(); await server.wait_closed()``.

    Arguments beyond ``host`` and ``port`` are keyword-only:

    - ``ssl``: an :class:`ssl.SSLContext` to serve wss://.
    - ``sock``: an already bound listening socket instead of host/port.
    - ``origins``: allowed Origin values (None in the list allows no Origin); others get 403.
    - ``subprotocols``: subprotocols we speak, picked in the client's order of preference.
    - ``process_request``: ``hook(connection, request)``, sync or async, called before the
      upgrade, and before the request is validated as one, so that it can answer plain
      HTTP requests (a health check); return a :class:`Response`
      (``connection.respond(401, "...")``) to answer instead of upgrading, or None to
      continue; it may add to ``connection.response_headers``.
    - ``compression``: ``"deflate"`` (default: permessage-deflate when the client offers
      it), None to turn it off, or a list of extension factories
      (e.g. ``[ServerPerMessageDeflateFactory(compression_level=1)]``).
    - Limits: ``max_message_size`` (default 1 MiB after decompression; None = unlimited;
      exceeding it closes with 1009), ``max_frame_size`` (None: bounded by the message
      size), ``max_queue`` (received messages buffered before reading pauses, 16),
      ``write_limit`` (write buffer high-water mark in bytes, or ``(high, low)``; 64 KiB),
      ``max_handshake_size`` (request head bytes, 16 KiB; beyond it: 431),
      ``max_headers`` (128).
    - Timeouts (seconds, None to disable): ``open_timeout`` (10), ``close_timeout`` (10),
      ``ping_interval`` (20) and ``ping_timeout`` (20): a peer that leaves a keepalive
      ping unanswered is closed with 1011.
    - ``server_header``: the Server header value, None to omit it.
    - Anything else in ``create_server_kwargs`` goes to :meth:`loop.create_server`.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        process_request: ProcessRequest | None = None,
        compression: Literal["deflate"] | None | Sequence[ServerExtensionFactory] = "deflate",
        # Limits
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int | None] = DEFAULT_WRITE_LIMIT,
        max_handshake_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
        # Timeouts
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        server_header: str | None = USER_AGENT,
        create_server_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._kwargs: dict[str, Any] = dict(create_server_kwargs or {})
        if ssl is not None:
            self._kwargs["ssl"] = ssl
        if sock is not None:
            self._kwargs["sock"] = sock
        self._options: dict[str, Any] = {
            "origins": origins,
            "subprotocols": subprotocols,
            "process_request": process_request,
            "extensions": _compression_factories(compression),
            "max_message_size": max_message_size,
            "max_frame_size": max_frame_size,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "max_handshake_size": max_handshake_size,
            "max_headers": max_headers,
            "open_timeout": open_timeout,
            "close_timeout": close_timeout,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "server_header": server_header,
        }
        self._server: Server | None = None

    async def _create(self) -> Server:
        server = Server(self._handler, self._options)
        await server._start(self._host, self._port, self._kwargs)
        self._server = server
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._create().__await__()

    async def __aenter__(self) -> Server:
        return await self._create()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
