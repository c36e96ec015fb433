"""The asyncio WebSocket client: :func:`connect` and :class:`ClientConnection`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
import uuid
from collections.abc import AsyncIterator, Generator, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal

from ..connection_logger import ConnectionLogger, LoggerLike, resolve_logger
from ..exceptions import InvalidHandshake, InvalidStatus
from ..options import (
    ABSENT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_STREAMING_SIZE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Options,
    _Absent,
    user_agent_alias,
)
from ..protocol import connection as core
from ..protocol.extensions.base import ClientExtensionFactory
from ..protocol.handshake import USER_AGENT, ClientHandshake, HeadersLike
from ..protocol.http import MAX_HEAD_SIZE, MAX_HEADERS, Response
from ..protocol.proxy import Proxy, select_proxy
from ..protocol.uri import Redirects, WebSocketURI, parse_uri
from ..reconnect import DEFAULT_BACKOFF, Backoff, ProcessException, Reconnecting
from . import proxy as proxies
from . import transports
from .connection import Connection

__all__ = ["connect", "unix_connect", "ClientConnection"]

logger = logging.getLogger("websock.client")

# How the reconnect loop waits (tests replace it to record the delays without waiting).
_sleep = asyncio.sleep


class ClientConnection(Connection):
    """A client connection. ``response`` is the server's 101 response."""

    __slots__ = (
        "_handshake",
        "id",
        "opened",
        "request",
        "response",
    )

    def __init__(self, handshake: ClientHandshake, options: Options) -> None:
        #: A random id, in each line this connection logs (its first 8 hex digits).
        self.id = uuid.uuid4()
        base = resolve_logger(options.logger, "websock.client")
        super().__init__(core.Role.CLIENT, options, ConnectionLogger(base, self))
        self._handshake = handshake
        self.request = handshake.request
        self.response: Response | None = None
        #: Done when the opening handshake succeeded; holds its error otherwise.
        self.opened: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.writelines(self._handshake.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.protocol is not None:
            self._receive(data)
            return
        if self.opened.done():
            return
        try:
            response = self._handshake.receive_data(data)
        except InvalidHandshake as exc:
            self.opened.set_exception(exc)
            assert self.transport is not None
            self.transport.close()
            return
        if response is None:
            return
        self.response = response
        self.subprotocol = self._handshake.subprotocol
        self._open(self._handshake.extensions, b"")
        self.opened.set_result(None)
        trailing = self._handshake.trailing
        if trailing:
            self._receive(trailing)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError("connection closed during the opening handshake")
                if exc is None
                else exc
            )
            self.opened.exception()  # retrieved by connect(); don't warn if it was cancelled


class connect:  # noqa: N801 - used like a function: `async with connect(...)` / `await connect(...)`
    """Open a WebSocket connection to ``uri`` (ws:// or wss://).

    Use ``async with connect(uri) as ws: ...`` (closed on exit) or ``ws = await connect(uri)``.

    Keyword-only arguments:

    - ``ssl``: an :class:`ssl.SSLContext` for wss:// (default: the system's trusted CAs
      with hostname verification). A certificate that fails verification raises
      :class:`ssl.SSLCertVerificationError`.
    - ``server_hostname``: the name to verify the certificate against (default: the URI's host).
    - ``host``/``port``/``sock``: connect there instead of the URI's host and port.
    - ``proxy``: the proxy to connect through: a URL (``http://``, ``https://``,
      ``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://``, with
      ``user:password@`` if it wants credentials; SOCKS needs the ``pywebsock[socks]``
      extra), True (default) for the one the environment sets (``https_proxy`` for wss://,
      ``http_proxy`` for ws://, ``all_proxy``, in lower or upper case, unless ``no_proxy``
      lists the host: see :mod:`websock.protocol.proxy`), None for none. Ignored with
      ``sock``. ``proxy_ssl``: the :class:`ssl.SSLContext` that verifies an ``https://``
      proxy (default: the system's trusted CAs).
    - ``origin``, ``subprotocols``, ``additional_headers``, ``user_agent`` (None to omit;
      ``user_agent_header``, websockets' name, is accepted too).
    - ``max_streaming_size`` (1 GiB) bounds a message read with ``recv_streaming()``;
      ``streaming=True`` receives in pieces from the first message on, for a server that
      sends a large message as soon as the connection opens.
    - ``logger``: where the connection logs (a logger, an adapter or a name; default
      ``websock.client``), each line prefixed with the connection's ``id`` and peer.
    - ``compression``: ``"deflate"`` (default: offer permessage-deflate), None, or a list of
      extension factories.
    - Limits: ``max_message_size`` (1 MiB; None = unlimited), ``max_frame_size``,
      ``max_fragments`` (262,144 frames per message), ``max_queue`` (``(messages, bytes)``,
      default ``(16, 1 MiB)``; an int sets the count), ``write_limit`` (64 KiB or
      ``(high, low)``),
      ``max_handshake_size`` (16 KiB), ``max_headers`` (128).
    - Timeouts (seconds, None to disable): ``open_timeout`` (10: TCP, TLS and HTTP upgrade
      together), ``close_timeout`` (10), ``ping_interval`` (20), ``ping_timeout`` (20).

    Any other keyword argument goes to :meth:`loop.create_connection` (``local_addr``,
    ``family``, ``happy_eyeballs_delay``, ``ssl_handshake_timeout``...), as in websockets;
    a name that is neither raises :class:`TypeError` at the call.

    The settings are validated when ``connect()`` is called (a bad value raises
    :class:`ValueError` there) and kept, as an :class:`~websock.options.Options`, in the
    connection's ``options``.
    """

    def __init__(
        self,
        uri: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        proxy: str | Literal[True] | None = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent: str | None = USER_AGENT,
        user_agent_header: str | None | _Absent = ABSENT,
        compression: Literal["deflate"] | None | Sequence[ClientExtensionFactory] = "deflate",
        # Limits
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        max_streaming_size: int | None = DEFAULT_MAX_STREAMING_SIZE,
        streaming: bool = False,
        max_queue: int | tuple[int | None, int | None] | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int | None] = DEFAULT_WRITE_LIMIT,
        max_handshake_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
        # Timeouts
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        logger: LoggerLike = None,
        # Reconnecting (async for)
        backoff: Backoff = DEFAULT_BACKOFF,
        process_exception: ProcessException | None = None,
        **create_connection_kwargs: Any,
    ) -> None:
        self.uri = parse_uri(uri)
        user_agent = user_agent_alias(user_agent, user_agent_header)
        transports.check_loop_kwargs("connect", create_connection_kwargs, _CREATE_CONNECTION_ARGS)
        self._loop_kwargs: dict[str, Any] = dict(create_connection_kwargs)
        self._unix_path: str | None = None
        if ssl is not None and not self.uri.secure:
            raise ValueError("ssl was given for a ws:// URI: use wss:// for TLS")
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._host = host
        self._port = port
        self._sock = sock
        self._proxy = proxy
        self._proxy_ssl = proxy_ssl
        # Every protocol setting in one validated object (a bad value raises ValueError
        # here). ssl, server_hostname, host, port, sock and the proxy are not part of it:
        # they say where and how to connect (I/O resources), not how to speak WebSocket.
        self._options = Options.from_arguments(locals())
        self._connection: ClientConnection | None = None

    async def _connect(self) -> ClientConnection:
        """Open the connection, following redirects (at most ``max_redirects``)."""
        # A socket given by the caller serves one attempt: no redirect can be followed.
        fixed_socket = self._sock is not None or self._unix_path is not None
        options = self._options
        redirects = Redirects(
            self.uri, 0 if fixed_socket else options.max_redirects, options.additional_headers
        )
        while True:
            uri = redirects.uri
            try:
                # host, port, sock and server_hostname apply to the first origin only.
                return await self._connect_once(uri, redirects.headers, redirects.first_origin)
            except InvalidStatus as exc:
                redirects.follow(exc)  # or raises: not a redirect to follow
            logger.info("redirected from %s to %s", uri.host_header, redirects.uri.host_header)

    async def _connect_once(
        self, uri: WebSocketURI, headers: HeadersLike | None, first: bool
    ) -> ClientConnection:
        loop = asyncio.get_running_loop()
        options = self._options
        handshake = options.client_handshake(uri, headers)
        kwargs: dict[str, Any] = dict(self._loop_kwargs)
        if uri.secure:
            kwargs["ssl"] = (
                self._ssl if self._ssl is not None else ssl_module.create_default_context()
            )
            kwargs["server_hostname"] = (first and self._server_hostname) or uri.host
        if self._unix_path is not None:
            factory = partial(ClientConnection, handshake, options)
            _, connection = await loop.create_unix_connection(factory, self._unix_path, **kwargs)
            return await self._opened(connection)
        if first and self._sock is not None:
            kwargs["sock"] = self._sock
        elif (proxy := select_proxy(self._proxy, uri, os.environ)) is not None:
            host = (first and self._host) or uri.host
            port = (first and self._port) or uri.port
            return await self._connect_through(proxy, host, port, handshake, kwargs)
        else:
            kwargs["host"] = (first and self._host) or uri.host
            kwargs["port"] = (first and self._port) or uri.port
        _, connection = await transports.create_connection(
            loop, lambda: ClientConnection(handshake, options), **kwargs
        )
        return await self._opened(connection)

    async def _connect_through(
        self,
        proxy: Proxy,
        host: str,
        port: int,
        handshake: ClientHandshake,
        kwargs: dict[str, Any],
    ) -> ClientConnection:
        """One attempt through ``proxy`` (``kwargs``: create_connection's, TLS included)."""
        loop = asyncio.get_running_loop()
        options = self._options
        factory = partial(ClientConnection, handshake, options)
        local_addr = kwargs.pop("local_addr", None)
        if proxy.scheme == "https":
            connection = await proxies.connect_through_https_proxy(
                loop,
                proxy,
                host,
                port,
                factory,
                proxy_ssl=self._proxy_ssl,
                ssl=kwargs.get("ssl"),
                server_hostname=kwargs.get("server_hostname"),
                options=options,
                local_addr=local_addr,
            )
            return await self._opened(connection)
        sock = await proxies.open_tunnel(
            loop,
            proxy,
            host,
            port,
            options=options,
            timeout=options.open_timeout,
            local_addr=local_addr,
        )
        # The socket is connected: where to (family, address) is settled.
        for name in ("family", "proto", "flags", "happy_eyeballs_delay", "interleave"):
            kwargs.pop(name, None)
        kwargs.pop("all_errors", None)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _, connection = await transports.create_connection(loop, factory, sock=sock, **kwargs)
        except BaseException:
            sock.close()
            raise
        return await self._opened(connection)

    @staticmethod
    async def _opened(connection: ClientConnection) -> ClientConnection:
        """Wait for the opening handshake; drop TCP if it fails (or is cancelled)."""
        try:
            await connection.opened
        except BaseException:
            if connection.transport is not None:
                connection.transport.abort()
            raise
        return connection

    async def _connect_with_timeout(self) -> ClientConnection:
        open_timeout = self._options.open_timeout
        if open_timeout is None:
            return await self._connect()
        try:
            return await asyncio.wait_for(self._connect(), open_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"opening handshake with {self.uri.host}:{self.uri.port} "
                f"did not complete within {open_timeout}s"
            ) from None

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        """``async for ws in connect(uri)``: a fresh connection each time the previous one
        is over, retrying failures with backoff (websock.reconnect has the policy).

        A failed attempt is retried after the next ``backoff`` delay (at least what a
        ``Retry-After`` asked for) when ``process_exception`` (default: the transient
        failures of :func:`websock.reconnect.is_transient`) returns None, and raised
        otherwise. When the loop body moves on, the connection is closed (if it was not)
        and the next one opened: at once after a normal close, after the next delay after
        an abnormal one (1006, 1011, 1012, 1013), so that a server dropping every connection
        is not hammered. The delays start over after a normal close, or after a connection
        that lasted ``backoff.maximum`` seconds. Break out of the loop to stop.
        """
        options = self._options
        policy = Reconnecting(options.backoff, options.process_exception)
        while True:
            try:
                connection = await self._connect_with_timeout()
            except Exception as exc:
                delay = policy.failed(exc)  # or raises: not worth retrying
                logger.info(
                    "connecting to %s failed (%s: %s); retrying in %.1f s",
                    self.uri.host,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await _sleep(delay)
                continue
            policy.opened()
            self._connection = connection
            try:
                yield connection
            finally:
                await connection.close()
            next_delay = policy.ended(connection.close_code)
            if next_delay is not None:
                logger.info(
                    "connection to %s ended with %s; reconnecting in %.1f s",
                    self.uri.host,
                    connection.close_code,
                    next_delay,
                )
                await _sleep(next_delay)

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._connect_with_timeout().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._connection = await self._connect_with_timeout()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        await self._connection.close()


# The keyword arguments of loop.create_connection that connect() passes through: the others
# are connect()'s own (host, port, ssl, sock, server_hostname) or fixed by it.
_CREATE_CONNECTION_ARGS = frozenset(
    {
        "family",
        "proto",
        "flags",
        "local_addr",
        "ssl_handshake_timeout",
        "ssl_shutdown_timeout",
        "happy_eyeballs_delay",
        "interleave",
        "all_errors",
    }
)


class unix_connect(connect):
    """:func:`connect` over a Unix socket at ``path``: ``uri`` (default
    ``ws://localhost/``) gives the Host header, the request path and the scheme (wss:// for
    TLS over the socket). The other arguments are connect()'s. Redirects are not followed:
    the socket leads to one server."""

    def __init__(self, path: str, uri: str = "ws://localhost/", **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._unix_path = path
