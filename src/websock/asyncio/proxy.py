"""Tunnels through proxies for the asyncio client.

- HTTP proxy (``http://``): a TCP socket to the proxy, CONNECT on it
  (:class:`~websock.protocol.proxy.ProxyConnect`), and the socket, now a tunnel to the
  server, is handed to ``loop.create_connection(sock=...)``, TLS to the server included
  for wss://. The tunnel is plain TCP to the event loop: its fastest transports apply.
- SOCKS proxy: python-socks opens the tunnel and hands back the socket, used as above.
- HTTPS proxy (``https://``): TLS to the proxy comes first, so the tunnel is a TLS
  transport, not a socket: CONNECT is spoken through it, then the WebSocket connection
  takes the transport over, through ``loop.start_tls()`` for wss:// (TLS inside TLS).
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import TypeVar

from ..options import Options
from ..protocol.proxy import Proxy, ProxyConnect
from ..socks import proxy_arguments, socks_error, socks_errors

__all__ = ["open_tunnel", "connect_through_https_proxy"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

# Enough for any proxy's answer to CONNECT (its head is bounded by ProxyConnect anyway).
_READ_SIZE = 4096


async def open_tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: Proxy,
    host: str,
    port: int,
    *,
    options: Options,
    timeout: float | None,
    local_addr: tuple[str, int] | None = None,
) -> socket.socket:
    """A non-blocking socket connected to ``host``:``port`` through an HTTP or SOCKS proxy.

    ``timeout`` is python-socks' own bound on a SOCKS exchange (the caller bounds the whole
    opening handshake anyway).
    """
    if proxy.is_socks:
        arguments = proxy_arguments(proxy)  # first: an ImportError naming the extra
        from python_socks.async_.asyncio import Proxy as SocksProxy

        socks = SocksProxy(**arguments, loop=loop)
        try:
            sock: socket.socket = await socks.connect(
                host, port, timeout=timeout, local_addr=local_addr
            )
        except socks_errors() as exc:
            raise socks_error(exc, proxy) from exc
        return sock
    sock = await _connect_tcp(loop, proxy, local_addr)
    try:
        exchange = options.proxy_connect(proxy, host, port)
        await loop.sock_sendall(sock, exchange.data_to_send())
        while True:
            data = await loop.sock_recv(sock, _READ_SIZE)
            if not data:
                exchange.receive_eof()  # raises
            if exchange.receive_data(data) is not None:
                return sock
    except BaseException:
        sock.close()
        raise


async def _connect_tcp(
    loop: asyncio.AbstractEventLoop, proxy: Proxy, local_addr: tuple[str, int] | None
) -> socket.socket:
    """A TCP connection to the proxy: each of its addresses in turn, the first that
    answers wins; the last error (naming the proxy) if none does."""
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if local_addr is not None:
                sock.bind(local_addr)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            error = type(exc)(exc.errno, f"could not connect to proxy {proxy}: {exc.strerror}")
        except BaseException:
            sock.close()
            raise
    assert error is not None  # getaddrinfo returns at least one address or raises
    raise error


class _TunnelProtocol(asyncio.Protocol):
    """Speaks CONNECT through the TLS transport to an HTTPS proxy."""

    def __init__(self, exchange: ProxyConnect, loop: asyncio.AbstractEventLoop) -> None:
        self.exchange = exchange
        self.open: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.exchange.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.open.done():
            return
        try:
            if self.exchange.receive_data(data) is not None:
                self.open.set_result(None)
        except Exception as exc:
            self.open.set_exception(exc)

    def eof_received(self) -> bool | None:
        self.connection_lost(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            try:
                self.exchange.receive_eof()  # raises
            except Exception as error:
                self.open.set_exception(exc or error)


async def connect_through_https_proxy(
    loop: asyncio.AbstractEventLoop,
    proxy: Proxy,
    host: str,
    port: int,
    factory: Callable[[], _P],
    *,
    proxy_ssl: ssl_module.SSLContext | None,
    ssl: ssl_module.SSLContext | None,
    server_hostname: str | None,
    options: Options,
    local_addr: tuple[str, int] | None = None,
) -> _P:
    """Open a tunnel to ``host``:``port`` through an HTTPS proxy and connect the protocol
    ``factory`` makes to it: over TLS with ``ssl`` (for wss://) or in clear (ws://).

    ``proxy_ssl`` verifies the proxy (default: the system's trusted CAs). TLS inside TLS
    needs ``loop.start_tls()`` on a TLS transport: Python 3.11's asyncio has it.
    """
    tunnel = _TunnelProtocol(options.proxy_connect(proxy, host, port), loop)
    context = proxy_ssl if proxy_ssl is not None else ssl_module.create_default_context()
    transport, _ = await loop.create_connection(
        lambda: tunnel,
        proxy.host,
        proxy.port,
        ssl=context,
        server_hostname=proxy.host,
        local_addr=local_addr,
    )
    try:
        await tunnel.open
        protocol = factory()
        if ssl is None:
            transport.set_protocol(protocol)
        else:
            try:
                upgraded = await loop.start_tls(
                    transport, protocol, ssl, server_hostname=server_hostname or host
                )
            except TypeError as exc:  # this loop's TLS transports cannot carry TLS
                raise RuntimeError(
                    "wss:// through an https:// proxy needs TLS inside TLS, which this "
                    f"event loop cannot do ({exc}): use Python 3.11 or later with asyncio's "
                    "own loop, or an http:// proxy (the server's TLS runs end to end "
                    "through the tunnel either way)"
                ) from exc
            if upgraded is None:  # the connection was lost during the TLS handshake
                raise ConnectionError("connection closed during the TLS handshake")
            transport = upgraded
    except BaseException:
        transport.abort()
        raise
    protocol.connection_made(transport)
    return protocol
