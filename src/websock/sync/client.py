"""The threading WebSocket client: :func:`connect` and :class:`ClientConnection`."""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
from collections.abc import Sequence
from typing import Literal

from ..exceptions import InvalidHandshake
from ..options import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Options,
)
from ..protocol import connection as core
from ..protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.extensions.base import ClientExtensionFactory
from ..protocol.handshake import USER_AGENT, ClientHandshake, HeadersLike
from ..protocol.http import MAX_HEAD_SIZE, MAX_HEADERS, Request, Response
from ..protocol.uri import parse_uri
from . import timers
from .connection import Connection, read_head

__all__ = ["connect", "ClientConnection"]

logger = logging.getLogger("websock.client")


class ClientConnection(Connection):
    """A client connection: ``request`` is our opening request, ``response`` the server's
    101 response."""

    def __init__(self, sock: socket.socket, options: Options, request: Request) -> None:
        super().__init__(sock, options, logger)
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
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    user_agent: str | None = USER_AGENT,
    compression: Literal["deflate"] | None | Sequence[ClientExtensionFactory] = "deflate",
    # Limits
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    max_frame_size: int | None = None,
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
    max_queue: int | tuple[int | None, int | None] | None = DEFAULT_MAX_QUEUE,
    write_limit: int | tuple[int, int | None] = DEFAULT_WRITE_LIMIT,
    max_handshake_size: int | None = MAX_HEAD_SIZE,
    max_headers: int | None = MAX_HEADERS,
    # Timeouts
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` (ws:// or wss://) and return it, blocking.

    Use ``with connect(uri) as ws: ...`` (closed on exit). The keyword arguments mean what
    they mean for :func:`websock.asyncio.client.connect`: ``ssl`` (default for wss://: the
    system's trusted CAs with hostname verification), ``server_hostname``,
    ``host``/``port``/``sock``, ``origin``, ``subprotocols``, ``additional_headers``,
    ``user_agent``, ``compression``, the limits and the timeouts; ``open_timeout`` bounds
    TCP, TLS and the HTTP upgrade together (:class:`TimeoutError`). ``write_limit`` has no
    effect: a blocking ``send`` waits for the kernel's socket buffer.
    """
    parsed = parse_uri(uri)
    if ssl is not None and not parsed.secure:
        raise ValueError("ssl was given for a ws:// URI: use wss:// for TLS")
    options = Options.from_arguments(locals())
    handshake = ClientHandshake(
        parsed,
        origin=origin,
        subprotocols=subprotocols,
        extensions=options.client_extensions(),
        extra_headers=additional_headers,
        user_agent=user_agent,
        max_size=max_handshake_size,
        max_headers=max_headers,
    )
    deadline = None if open_timeout is None else timers.clock() + open_timeout
    target = f"{parsed.host}:{parsed.port}"

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - timers.clock()
        if left <= 0:
            raise TimeoutError(
                f"opening handshake with {target} did not complete within {open_timeout}s"
            )
        return left

    try:
        if sock is None:
            sock = socket.create_connection((host or parsed.host, port or parsed.port), remaining())
        else:
            sock.settimeout(remaining())
    except TimeoutError:
        raise TimeoutError(
            f"opening handshake with {target} did not complete within {open_timeout}s"
        ) from None
    try:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket)
        if parsed.secure:
            context = ssl if ssl is not None else ssl_module.create_default_context()
            sock.settimeout(remaining())
            sock = context.wrap_socket(sock, server_hostname=server_hostname or parsed.host)
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
        raise TimeoutError(
            f"opening handshake with {target} did not complete within {open_timeout}s"
        ) from None
    except (OSError, InvalidHandshake):
        sock.close()
        raise
    except BaseException:
        sock.close()
        raise
    connection.response = response
    sock.settimeout(None)  # from here on the reader thread blocks as long as it must
    connection._open(
        core.Role.CLIENT, handshake.subprotocol, handshake.extensions, handshake.trailing
    )
    return connection
