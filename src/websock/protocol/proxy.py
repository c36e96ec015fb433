"""Proxies, without I/O: which proxy a client uses, and the HTTP CONNECT exchange.

- :func:`parse_proxy` reads a proxy URL: ``http://``, ``https://`` (TLS to the proxy),
  ``socks5://``, ``socks5h://``, ``socks4://`` and ``socks4a://``, with ``user:password@``
  when the proxy wants credentials.
- :func:`proxy_from_environment` picks the proxy for a WebSocket URI from environment
  variables as curl, urllib and websockets do: ``https_proxy`` for wss://, ``http_proxy``
  for ws://, then ``all_proxy``, each in lower case first and then upper case, unless
  ``no_proxy`` lists the host.
- :class:`ProxyConnect` is the CONNECT request and the parsing of its answer: bytes out,
  bytes in, the proxy's response or an exception.

SOCKS is spoken by python-socks (the ``pywebsock[socks]`` extra) in the I/O layers: a
well-kept implementation of four protocol variants is worth more than our own copy.
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from ..exceptions import InvalidHandshake, InvalidProxy, InvalidProxyMessage, InvalidProxyStatus
from .http import MAX_HEAD_SIZE, MAX_HEADERS, HeadReader, Response
from .uri import WebSocketURI

__all__ = [
    "PROXY_SCHEMES",
    "Proxy",
    "ProxyConnect",
    "bypass_proxy",
    "parse_proxy",
    "proxy_from_environment",
    "select_proxy",
]

#: Supported proxy schemes and their default ports. 1080 is SOCKS's registered port; an
#: HTTP proxy without a port is on HTTP's own (as urllib, requests and websockets assume).
PROXY_SCHEMES = {
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
}


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy URL. ``host`` has no brackets for IPv6; ``username`` and
    ``password`` are percent-decoded (None when the URL has none)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def is_socks(self) -> bool:
        """A SOCKS proxy (spoken by python-socks), rather than HTTP CONNECT."""
        return self.scheme.startswith("socks")

    @property
    def remote_dns(self) -> bool:
        """``socks5h`` and ``socks4a``: the proxy resolves the server's name, not us."""
        return self.scheme in ("socks5h", "socks4a")

    def __str__(self) -> str:
        """The URL without the password, for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL; raise :class:`~websock.exceptions.InvalidProxy` if it cannot be
    used (another scheme, no host, a bad port, a path other than ``/``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port or IPv6 literal
        raise InvalidProxy(url, str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        schemes = ", ".join(PROXY_SCHEMES)
        raise InvalidProxy(url, f"scheme must be one of {schemes}")
    if not parts.hostname:
        raise InvalidProxy(url, "no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxy(url, "a proxy URL has no path, query or fragment")
    username = password = None
    if parts.username is not None:
        username = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
    return Proxy(scheme, parts.hostname, port or PROXY_SCHEMES[scheme], username, password)


def select_proxy(
    proxy: str | bool | None, uri: WebSocketURI, environ: Mapping[str, str]
) -> Proxy | None:
    """The proxy to reach ``uri`` through, given a client's ``proxy`` argument: a URL;
    True for the environment's choice (:func:`proxy_from_environment`); None or False for
    none. Raise :class:`~websock.exceptions.InvalidProxy` for a URL that cannot be used."""
    if proxy is None or proxy is False:
        return None
    if proxy is True:
        url = proxy_from_environment(uri, environ)
        if url is None:
            return None
    elif isinstance(proxy, str):
        url = proxy
    else:
        raise TypeError(f"proxy must be a URL, True or None, got {proxy!r}")
    return parse_proxy(url)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _environ_get(environ: Mapping[str, str], name: str) -> str | None:
    """``name`` in lower case, else upper case; an empty value counts as unset."""
    for key in (name, name.upper()):
        value = environ.get(key)
        if value and value.strip():
            return value.strip()
    return None


def proxy_from_environment(uri: WebSocketURI, environ: Mapping[str, str]) -> str | None:
    """The proxy URL the environment sets for ``uri``, or None (connect directly).

    ``https_proxy`` for wss://, ``http_proxy`` for ws://, else ``all_proxy``; lower case
    first, then upper case. ``HTTP_PROXY`` in upper case is ignored when ``REQUEST_METHOD``
    is set: in a CGI script, it comes from the request's ``Proxy:`` header ("httpoxy").
    ``no_proxy`` (see :func:`bypass_proxy`) turns the proxy off for the hosts it lists.
    """
    no_proxy = _environ_get(environ, "no_proxy")
    if no_proxy is not None and bypass_proxy(uri.host, uri.port, no_proxy):
        return None
    if uri.secure:
        proxy = _environ_get(environ, "https_proxy")
    else:
        proxy = environ.get("http_proxy") or None
        if proxy is None and "REQUEST_METHOD" not in environ:
            proxy = environ.get("HTTP_PROXY") or None
        proxy = proxy.strip() or None if proxy is not None else None
    return proxy if proxy is not None else _environ_get(environ, "all_proxy")


def bypass_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` exempts ``host`` (without brackets) and ``port`` from the proxy.

    ``no_proxy`` is a list separated by commas or spaces, as curl reads it: ``*`` matches
    every host; a name matches itself and its subdomains (``example.org`` and
    ``.example.org`` both match ``example.org`` and ``ws.example.org``); an IP address
    matches itself and a CIDR range (``10.0.0.0/8``, ``::1/128``) the addresses in it; an
    entry with ``:port`` matches that port only. Names compare without case.
    """
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower()
        if entry == "*":
            return True
        entry_port = None
        if entry.startswith("["):  # [v6]:port or [v6]
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:  # name:port or v4:port (a v6 address has several)
            name, _, number = entry.partition(":")
            if number.isdigit():
                entry, entry_port = name, int(number)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass  # a name: an address does not match it
            continue
        name = entry.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


class ProxyConnect:
    """The HTTP CONNECT exchange that opens a tunnel through an HTTP(S) proxy (RFC 9110
    section 9.3.6), without I/O.

    Send :meth:`data_to_send`, then feed what the proxy answers to :meth:`receive_data`
    until it returns the proxy's 2xx response: from then on the connection is a tunnel to
    ``host``:``port``. It raises :class:`~websock.exceptions.InvalidProxyStatus` for any
    other status (407 when the proxy wants credentials), and
    :class:`~websock.exceptions.InvalidProxyMessage` for an answer that is not HTTP, too
    large, or followed by bytes (the server cannot have spoken yet: it waits for our
    opening handshake). :meth:`receive_eof` raises it too: the proxy closed without
    answering.
    """

    def __init__(
        self,
        proxy: Proxy,
        host: str,
        port: int,
        *,
        user_agent: str | None = None,
        max_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
    ) -> None:
        self.proxy = proxy
        target = _host_port(host, port)
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if proxy.username is not None:
            credentials = f"{proxy.username}:{proxy.password or ''}".encode()
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}")
        if user_agent is not None:
            lines.append(f"User-Agent: {user_agent}")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._reader = HeadReader(max_size=max_size, max_headers=max_headers, kind="proxy response")

    def data_to_send(self) -> bytes:
        """The CONNECT request."""
        return self._request

    def receive_data(self, data: bytes) -> Response | None:
        """Feed bytes from the proxy; the 2xx response once it is complete, else None."""
        try:
            if not self._reader.feed(data):
                return None
            response = self._reader.parse_response(http10=True)
        except InvalidHandshake as exc:
            raise InvalidProxyMessage(f"invalid answer from proxy {self.proxy}: {exc}") from None
        if not 200 <= response.status < 300:
            raise InvalidProxyStatus(response)
        if self._reader.trailing:
            raise InvalidProxyMessage(
                f"proxy {self.proxy} sent data after its {response.status} response, "
                "before the server could have spoken"
            )
        return response

    def receive_eof(self) -> None:
        """The proxy closed the connection: always an error before the response."""
        raise InvalidProxyMessage(
            f"proxy {self.proxy} closed the connection without answering CONNECT"
        )
