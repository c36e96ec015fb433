"""WebSocket URIs (RFC 6455 section 3): ``ws://host[:port]/path?query`` and ``wss://``.

Non-ASCII characters in the path and query are percent-encoded as UTF-8 (RFC 3987
section 3.1); characters that are already valid, ``%`` escapes included, are left alone. A
non-ASCII host name is converted with Python's ``idna`` codec (IDNA 2003). User info is
percent-decoded, ready for HTTP Basic authentication.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..exceptions import InvalidHandshake, InvalidStatus, InvalidURI

__all__ = [
    "CREDENTIAL_HEADERS",
    "REDIRECT_STATUSES",
    "Redirects",
    "WebSocketURI",
    "parse_uri",
    "redirect_target",
    "same_origin",
    "strip_credentials",
]

# RFC 3986 reg-name without percent-encoding (which has no place in a DNS name).
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
# Characters left as they are in a path or query: RFC 3986 reserved and unreserved
# characters plus "%" (existing escapes). ``quote`` always keeps letters, digits and "_.-~".
_SAFE = "!#$&'()*+,/:;=?@[]%"


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed ws:// or wss:// URI.

    ``host`` is lowercase, ASCII (IDNA-encoded), and has no brackets for an IPv6 address;
    ``resource_name`` is the path and query to put in the request line (``"/"`` at least);
    ``user_info`` is the percent-decoded ``(username, password)`` pair, the password being
    ``""`` when the URI has none.
    """

    secure: bool
    host: str
    port: int
    resource_name: str = "/"
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The Host header value: host (bracketed if IPv6) and port unless default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe=_SAFE)


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and normalise a WebSocket URI.

    Raises :class:`~websock.exceptions.InvalidURI` for another scheme, a fragment, a missing
    or invalid host, or an invalid port.
    """
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:  # an unbalanced "[" or an invalid IPv6 literal in the host
        raise InvalidURI(uri, "invalid host") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme must be ws or wss")
    if "#" in uri:
        raise InvalidURI(uri, "fragments are not allowed")
    secure = scheme == "wss"

    raw_host = parts.hostname
    if not raw_host:
        raise InvalidURI(uri, "missing host")
    host = _normalise_host(uri, raw_host)

    try:
        port = parts.port
    except ValueError:
        raise InvalidURI(uri, "invalid port") from None
    if port is None:
        port = 443 if secure else 80
    elif port == 0:
        raise InvalidURI(uri, "invalid port")

    # With an authority present, urlsplit returns a path that is empty or starts with "/".
    resource_name = _quote(parts.path) or "/"
    if parts.query:
        resource_name += "?" + _quote(parts.query)

    user_info = None
    if parts.username is not None:
        user_info = (
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )
    return WebSocketURI(secure, host, port, resource_name, user_info)


def _normalise_host(uri: str, host: str) -> str:
    if ":" in host:  # IPv6 literal; urlsplit already removed the brackets
        # urlsplit checks the literal itself from Python 3.11.4 on; older versions do not.
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidURI(uri, "invalid host") from None
        return host
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURI(uri, "invalid internationalized host name") from None
    if _REG_NAME.fullmatch(host) is None:
        raise InvalidURI(uri, "invalid host")
    return host.lower()


#: The HTTP statuses a client follows to another URI (RFC 9110 15.4).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Request headers that carry credentials: dropped when a redirect leaves the origin.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def same_origin(a: WebSocketURI, b: WebSocketURI) -> bool:
    """Same scheme, host and port (RFC 6454): credentials may follow a redirect."""
    return (a.secure, a.host, a.port) == (b.secure, b.host, b.port)


def redirect_target(current: WebSocketURI, location: str | None) -> WebSocketURI:
    """Where a redirect from ``current`` with this ``Location`` leads.

    ``location`` may be relative, or absolute with a ws, wss, http or https scheme (http
    stands for ws, https for wss). Leaving TLS (wss to ws) is refused. The URI's user info
    follows only to the same origin. Raise :class:`InvalidURI` for what cannot be followed.
    """
    base = ("wss" if current.secure else "ws") + "://" + current.host_header
    if location is None or not location.strip():
        raise InvalidURI(base + current.resource_name, "redirect without a Location header")
    # urljoin knows http's relative resolution, not ws's: resolve as http(s), then map.
    http_base = ("https" if current.secure else "http") + "://" + current.host_header
    joined = urllib.parse.urljoin(http_base + current.resource_name, location.strip())
    scheme, sep, rest = joined.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    target = parse_uri(scheme + sep + rest)
    if current.secure and not target.secure:
        raise InvalidURI(
            scheme + sep + rest, "redirect from wss:// to ws:// refused (it would drop TLS)"
        )
    if target.user_info is None and current.user_info is not None and same_origin(current, target):
        target = WebSocketURI(
            target.secure, target.host, target.port, target.resource_name, current.user_info
        )
    return target


def strip_credentials(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> list[tuple[str, str]] | None:
    """``additional_headers`` (a mapping, Headers or pairs) without the credential headers
    (:data:`CREDENTIAL_HEADERS`), as pairs; None stays None."""
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value) for name, value in items if name.lower() not in CREDENTIAL_HEADERS]


class Redirects:
    """Follows the redirects of one opening handshake: give :meth:`follow` each
    :class:`~websock.exceptions.InvalidStatus` and it moves ``uri`` to the next URI (and
    ``headers``, ``first_origin`` with it), or raises.

    ``headers`` are the request's additional headers: their credentials
    (:data:`CREDENTIAL_HEADERS`) are dropped once a redirect leaves the origin, and
    ``first_origin`` becomes False (connection overrides such as a host, port or socket
    given for the first URI no longer apply).

    It raises the InvalidStatus itself when its status is not a redirect or
    ``max_redirects`` is 0, :class:`InvalidHandshake` after more than ``max_redirects``
    redirects or when one leads back to a URI already visited (a loop), and
    :class:`InvalidURI` for a Location that cannot be followed (wss to ws, say).
    """

    def __init__(
        self,
        uri: WebSocketURI,
        max_redirects: int,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.uri = uri
        self.headers = headers
        self.first_origin = True
        self.max_redirects = max_redirects
        self.count = 0
        self._visited = {_where(uri)}

    def follow(self, exc: InvalidStatus) -> WebSocketURI:
        response = exc.response
        if response.status not in REDIRECT_STATUSES or self.max_redirects == 0:
            raise exc
        if self.count >= self.max_redirects:
            raise InvalidHandshake(
                f"too many redirects: more than {self.max_redirects} (max_redirects)"
            ) from exc
        try:
            target = redirect_target(self.uri, response.headers.get("Location"))
        except InvalidURI as error:
            raise error from exc
        where = _where(target)
        if where in self._visited:
            raise InvalidHandshake(f"redirect loop: {_display(target)} was visited before") from exc
        self._visited.add(where)
        self.count += 1
        if not same_origin(self.uri, target):
            self.headers = strip_credentials(self.headers)
            self.first_origin = False
        self.uri = target
        return target


def _where(uri: WebSocketURI) -> tuple[bool, str, int, str]:
    return (uri.secure, uri.host, uri.port, uri.resource_name)


def _display(uri: WebSocketURI) -> str:
    return ("wss://" if uri.secure else "ws://") + uri.host_header + uri.resource_name
