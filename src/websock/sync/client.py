"""The threading WebSocket client: :func:`connect` and :class:`ClientConnection`."""

from __future__ import annotations

import logging
import os
import socket
import ssl as ssl_module
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from ..connection_logger import ConnectionLogger, LoggerLike, resolve_logger
from ..exceptions import InvalidStatus
from ..options import (
    ABSENT,
    DEFAULT_CLOSE_TIMEOUT,
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
from ..protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.extensions.base import ClientExtensionFactory
from ..protocol.handshake import USER_AGENT, HeadersLike
from ..protocol.http import MAX_HEAD_SIZE, MAX_HEADERS, Request, Response
from ..protocol.proxy import Proxy, select_proxy
from ..protocol.uri import Redirects, WebSocketURI, parse_uri
from ..reconnect import DEFAULT_BACKOFF, Backoff, ProcessException, Reconnecting
from ..socks import proxy_arguments, socks_error, socks_errors
from . import timers
from .connection import Connection, read_head
from .tls_tunnel import TLSTunnelSocket

__all__ = ["connect", "reconnecting", "unix_connect", "ClientConnection"]

client_logger = logging.getLogger("websock.client")


class ClientConnection(Connection):
    """A client connection: ``request`` is our opening request, ``response`` the server's
    101 response."""

    def __init__(self, sock: socket.socket, options: Options, request: Request) -> None:
        #: A random id, in each line this connection logs (its first 8 hex digits).
        self.id = uuid.uuid4()
        base = resolve_logger(options.logger, "websock.client")
        super().__init__(sock, options, ConnectionLogger(base, self))
        self.request = request
        self.response: Response | None = None


def connect(
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
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` (ws:// or wss://) and return it, blocking.

    Use ``with connect(uri) as ws: ...`` (closed on exit). The keyword arguments mean what
    they mean for :func:`websock.asyncio.client.connect`: ``ssl`` (default for wss://: the
    system's trusted CAs with hostname verification), ``server_hostname``,
    ``host``/``port``/``sock``, ``proxy`` and ``proxy_ssl``, ``origin``, ``subprotocols``,
    ``additional_headers``, ``user_agent`` (or ``user_agent_header``), ``logger``,
    ``compression``, the limits and the timeouts;
    ``open_timeout`` bounds TCP, the proxy, TLS and the HTTP upgrade together
    (:class:`TimeoutError`). ``write_limit`` has no effect: a blocking ``send`` waits for
    the kernel's socket buffer. wss:// through an ``https://`` proxy runs TLS inside TLS
    (:class:`~websock.sync.tls_tunnel.TLSTunnelSocket`).
    """
    parsed = parse_uri(uri)
    user_agent = user_agent_alias(user_agent, user_agent_header)
    if ssl is not None and not parsed.secure:
        raise ValueError("ssl was given for a ws:// URI: use wss:// for TLS")
    options = Options.from_arguments(locals())
    deadline = None if open_timeout is None else timers.clock() + open_timeout
    # A socket given by the caller serves one attempt: no redirect can be followed.
    redirects = Redirects(
        parsed, 0 if sock is not None else options.max_redirects, additional_headers
    )
    while True:
        parsed = redirects.uri
        first = redirects.first_origin  # host, port, sock and server_hostname: first only
        try:
            return _connect_once(
                parsed,
                options,
                redirects.headers,
                deadline,
                ssl=ssl,
                server_hostname=server_hostname if first else None,
                host=host if first else None,
                port=port if first else None,
                sock=sock if first else None,
                proxy=None if sock is not None else select_proxy(proxy, parsed, os.environ),
                proxy_ssl=proxy_ssl,
            )
        except InvalidStatus as exc:
            redirects.follow(exc)  # or raises: not a redirect to follow
        client_logger.info(
            "redirected from %s to %s", parsed.host_header, redirects.uri.host_header
        )


def _connect_once(
    parsed: WebSocketURI,
    options: Options,
    headers: HeadersLike | None,
    deadline: float | None,
    *,
    ssl: ssl_module.SSLContext | None,
    server_hostname: str | None,
    host: str | None,
    port: int | None,
    sock: socket.socket | None,
    proxy: Proxy | None,
    proxy_ssl: ssl_module.SSLContext | None,
) -> ClientConnection:
    """One attempt: TCP, the proxy's tunnel, TLS and the upgrade, all done by ``deadline``."""
    handshake = options.client_handshake(parsed, headers)
    target = f"{parsed.host}:{parsed.port}"
    timed_out = f"opening handshake with {target} did not complete within {options.open_timeout}s"

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - timers.clock()
        if left <= 0:
            raise TimeoutError(timed_out)
        return left

    try:
        if proxy is not None:
            sock = _open_tunnel(
                proxy, host or parsed.host, port or parsed.port, options, proxy_ssl, deadline
            )
        elif sock is None:
            sock = socket.create_connection((host or parsed.host, port or parsed.port), remaining())
        else:
            sock.settimeout(remaining())
    except TimeoutError:
        raise TimeoutError(timed_out) from None
    try:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket)
        if parsed.secure:
            context = ssl if ssl is not None else ssl_module.create_default_context()
            sock.settimeout(remaining())
            hostname = server_hostname or parsed.host
            if isinstance(sock, ssl_module.SSLSocket):  # an https:// proxy: TLS inside TLS
                tunnel = TLSTunnelSocket(sock, context, hostname)
                tunnel.do_handshake()
                sock = tunnel  # type: ignore[assignment]  # the socket methods we use
            else:
                sock = context.wrap_socket(sock, server_hostname=hostname)
        connection = ClientConnection(sock, options, handshake.request)
        for chunk in handshake.data_to_send():
            sock.settimeout(remaining())
            sock.sendall(chunk)
        response = read_head(sock, handshake.receive_data, deadline)
        if response is None:
            handshake.receive_eof()
            raise ConnectionError("connection closed during the opening handshake")
    except TimeoutError:
        sock.close()
        raise TimeoutError(timed_out) from None
    except BaseException:
        sock.close()
        raise
    connection.response = response
    sock.settimeout(None)  # from here on the socket blocks as long as it must
    connection._open(
        core.Role.CLIENT, handshake.subprotocol, handshake.extensions, handshake.trailing
    )
    return connection


def _open_tunnel(
    proxy: Proxy,
    host: str,
    port: int,
    options: Options,
    proxy_ssl: ssl_module.SSLContext | None,
    deadline: float | None,
) -> socket.socket:
    """A socket connected to ``host``:``port`` through ``proxy`` (an :class:`ssl.SSLSocket`
    to an https:// proxy), by ``deadline`` (else TimeoutError)."""

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - timers.clock()
        if left <= 0:
            raise TimeoutError
        return left

    if proxy.is_socks:
        arguments = proxy_arguments(proxy)  # first: an ImportError naming the extra
        from python_socks.sync import Proxy as SocksProxy

        try:
            sock: socket.socket = SocksProxy(**arguments).connect(host, port, timeout=remaining())
        except socks_errors() as exc:
            raise socks_error(exc, proxy) from exc
        return sock
    try:
        sock = socket.create_connection((proxy.host, proxy.port), remaining())
    except TimeoutError:
        raise
    except OSError as exc:
        raise type(exc)(exc.errno, f"could not connect to proxy {proxy}: {exc.strerror}") from exc
    try:
        if proxy.scheme == "https":
            context = proxy_ssl if proxy_ssl is not None else ssl_module.create_default_context()
            sock.settimeout(remaining())
            sock = context.wrap_socket(sock, server_hostname=proxy.host)
        exchange = options.proxy_connect(proxy, host, port)
        sock.settimeout(remaining())
        sock.sendall(exchange.data_to_send())
        if read_head(sock, exchange.receive_data, deadline) is None:
            exchange.receive_eof()  # raises
    except BaseException:
        sock.close()
        raise
    return sock


# How the reconnect loop waits (tests replace it to record the delays without waiting).
_sleep = time.sleep


def reconnecting(
    uri: str,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    process_exception: ProcessException | None = None,
    **connect_kwargs: Any,
) -> Iterator[ClientConnection]:
    """``for ws in reconnecting(uri, **knobs)``: a fresh connection each time the previous
    one is over, retrying failures with backoff; the threading twin of
    ``async for ws in websock.connect(uri)`` (same policy: :mod:`websock.reconnect`).

    A failed attempt is retried after the next ``backoff`` delay (at least what a
    ``Retry-After`` asked for) when ``process_exception`` (default: the transient failures
    of :func:`websock.reconnect.is_transient`) returns None, and raised otherwise. When the
    loop body moves on, the connection is closed (if it was not) and the next one opened: at
    once after a normal close, after the next delay after an abnormal one (1006, 1011,
    1012, 1013). Other keyword arguments are :func:`connect`'s (validated at the first
    attempt). Break out of the loop to stop.
    """
    if not isinstance(backoff, Backoff):
        raise TypeError(f"backoff must be a websock.Backoff, got {backoff!r}")
    policy = Reconnecting(backoff, process_exception)
    target = parse_uri(uri).host
    while True:
        try:
            connection = connect(uri, **connect_kwargs)
        except (TypeError, ValueError):
            raise  # a mistake in the call, not a failure to connect
        except Exception as exc:
            delay = policy.failed(exc)  # or raises: not worth retrying
            client_logger.info(
                "connecting to %s failed (%s: %s); retrying in %.1f s",
                target,
                type(exc).__name__,
                exc,
                delay,
            )
            _sleep(delay)
            continue
        policy.opened()
        try:
            yield connection
        finally:
            connection.close()
        next_delay = policy.ended(connection.close_code)
        if next_delay is not None:
            client_logger.info(
                "connection to %s ended with %s; reconnecting in %.1f s",
                target,
                connection.close_code,
                next_delay,
            )
            _sleep(next_delay)


def unix_connect(
    path: str,
    uri: str = "ws://localhost/",
    *,
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    **kwargs: Any,
) -> ClientConnection:
    """:func:`connect` over a Unix socket at ``path``: ``uri`` (default ``ws://localhost/``)
    gives the Host header, the request path and the scheme (wss:// for TLS over the
    socket). The other arguments are connect()'s. Redirects are not followed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(open_timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return connect(uri, sock=sock, open_timeout=open_timeout, **kwargs)
