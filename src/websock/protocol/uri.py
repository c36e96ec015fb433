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
from dataclasses import dataclass

from ..exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

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
