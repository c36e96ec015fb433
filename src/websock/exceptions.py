"""The exceptions websock raises, all under one root.

::

    WebSocketError
    ├── InvalidURI                   (also a ValueError)
    ├── InvalidProxy                 a proxy URL that cannot be used (also a ValueError)
    ├── InvalidHandshake             opening handshake failed; ``status`` is the HTTP answer
    │   ├── InvalidStatus            client side: the server did not answer 101
    │   ├── NegotiationError         subprotocol or extension negotiation failed
    │   └── ProxyError               the proxy did not open a tunnel to the server
    │       ├── InvalidProxyStatus   it answered CONNECT with a status other than 2xx
    │       └── InvalidProxyMessage  its answer was not valid HTTP (or SOCKS)
    ├── ProtocolError                the peer broke RFC 6455/7692; ``close_code`` to send
    │   └── PayloadTooBig            a size limit was exceeded (close code 1009)
    ├── InvalidState                 the API was used in a state that forbids it
    ├── ConcurrencyError             two coroutines read (or wrote) at once
    └── ConnectionClosed             the connection is closed; carries both Close frames
        ├── ConnectionClosedOK       closed with 1000 or 1001 on both sides
        └── ConnectionClosedError    anything else (protocol error, abnormal closure)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .protocol.close import Close
    from .protocol.http import Response

__all__ = [
    "WebSocketError",
    "InvalidURI",
    "InvalidProxy",
    "InvalidHandshake",
    "InvalidStatus",
    "NegotiationError",
    "ProxyError",
    "InvalidProxyStatus",
    "InvalidProxyMessage",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidState",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
]


class WebSocketError(Exception):
    """Root of every exception websock raises on purpose."""


class InvalidURI(WebSocketError, ValueError):
    """A URI given to :func:`websock.connect` is not a ws:// or wss:// URI."""

    def __init__(self, uri: str, why: str) -> None:
        super().__init__(f"{uri!r} is not a valid WebSocket URI: {why}")
        self.uri = uri
        self.why = why


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    On the server, ``status`` is the HTTP status to answer with (400, 403, 426, 431 ...)
    and ``str(exc)`` is the short text sent as the response body.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with a status other than 101."""

    def __init__(self, response: Response) -> None:
        # The reason phrase is the server's text: quoted escaped and cut (a local import:
        # protocol.http imports this module).
        from .protocol.http import excerpt

        reason = excerpt(response.reason)
        message = f"server rejected WebSocket connection: HTTP {response.status} {reason}"
        super().__init__(message.rstrip(), status=response.status)
        self.response = response


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class InvalidProxy(WebSocketError, ValueError):
    """A proxy URL (``proxy=`` or from the environment) that websock cannot use."""

    def __init__(self, proxy: str, why: str) -> None:
        super().__init__(f"{proxy!r} is not a valid proxy URL: {why}")
        self.proxy = proxy
        self.why = why


class ProxyError(InvalidHandshake):
    """Connecting through the proxy failed: it refused, or did not answer as a proxy.

    ``transient`` is True when the proxy reported a condition that may pass (the server
    unreachable or refusing for now: a 5xx or 429 status, a SOCKS network, host or
    connection error): the reconnect loop retries those.
    """

    def __init__(self, message: str, *, status: int = 502, transient: bool = False) -> None:
        super().__init__(message, status=status)
        self.transient = transient


class InvalidProxyStatus(ProxyError):
    """An HTTP proxy answered CONNECT with a status other than 2xx (407: credentials
    missing or wrong; 403: destination not allowed; 502/503/504: server unreachable)."""

    def __init__(self, response: Response) -> None:
        from .protocol.http import excerpt

        reason = excerpt(response.reason)
        status = response.status
        message = f"proxy rejected the tunnel: HTTP {status} {reason}".rstrip()
        if status == 407:
            message += " (proxy authentication required: put user:password in the proxy URL)"
        elif status == 401:  # tinyproxy's answer to wrong credentials
            message += " (the proxy refused the user:password in the proxy URL)"
        super().__init__(message, status=status, transient=status >= 500 or status == 429)
        self.response = response


class InvalidProxyMessage(ProxyError):
    """The proxy's answer was malformed, or it closed the connection without one."""


class ProtocolError(WebSocketError):
    """The peer violated the protocol; ``close_code`` is what we send it."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class PayloadTooBig(ProtocolError):
    """A message, frame or decompressed payload exceeded a size limit (close code 1009)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, close_code=1009)


class InvalidState(WebSocketError, RuntimeError):
    """An operation is not allowed in the connection's current state."""


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two coroutines tried to receive (or stream a message) on one connection at once."""


class ConnectionClosed(WebSocketError):
    """The connection is closed.

    ``rcvd`` is the Close frame received (None if none arrived), ``sent`` the one we sent
    (None if none was sent); ``rcvd_then_sent`` tells who started the closing handshake
    when both exist.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        # The message is built when shown, not here: every connection's end raises one,
        # and most are caught without being looked at. The arguments also make it pickle.
        super().__init__(rcvd, sent, rcvd_then_sent)

    def __str__(self) -> str:
        return self._describe()

    def _describe(self) -> str:
        if self.rcvd is None and self.sent is None:
            return "connection closed abnormally (1006): no close frame received or sent"
        if self.rcvd is None:
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code received, else the one sent, else 1006 (abnormal closure)."""
        if self.rcvd is not None:
            return self.rcvd.code
        if self.sent is not None:
            return self.sent.code
        return 1006

    @property
    def reason(self) -> str:
        """The close reason matching :attr:`code`."""
        if self.rcvd is not None:
            return self.rcvd.reason
        if self.sent is not None:
            return self.sent.reason
        return ""


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000 or 1001 on both sides)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error or abnormally."""
