"""The opening handshake (RFC 6455 section 4), sans-I/O, for both roles.

Both objects have the shape of :class:`~websock.protocol.connection.Connection`:
``receive_data``, ``receive_eof``, ``events_received`` (the Request, or the Response),
``data_to_send`` (a list of chunks; ``b""`` means "close TCP now") and ``close_expected``.
An I/O layer drives them with the same loop it uses for the connection.

Server::

    hs = ServerHandshake(subprotocols=["chat"], extensions=[...])
    request = hs.receive_data(data)          # None until the head is complete
    try:
        hs.validate(request)                 # optional: accept() validates too
        response = hs.accept(request)
    except InvalidHandshake as exc:
        response = hs.response_for_error(exc)
    hs.send_response(response)               # a refusal is followed by b"" (close TCP)
    write(hs.data_to_send())                 # then hand hs.trailing to the connection

Client::

    hs = ClientHandshake(parse_uri("ws://example.org/chat"), subprotocols=["chat"])
    write(hs.data_to_send())
    response = hs.receive_data(data)         # None until the head is complete; raises
                                             # InvalidStatus / InvalidHandshake / NegotiationError

Both sides read at most one head, bounded by ``max_size`` and ``max_headers``; neither
reads a body. Bytes after the head are in ``trailing``.

Decisions where RFC 6455 leaves room:

* A method other than GET is answered 405 with ``Allow: GET`` (RFC 7231 section 6.5.5).
* A missing Upgrade header or one without ``websocket`` is answered 426 (Upgrade Required),
  like a Sec-WebSocket-Version other than 13; 426 responses carry ``Upgrade: websocket`` and
  ``Sec-WebSocket-Version: 13``. Other malformed requests are answered 400.
* The request target must be in origin-form (start with ``/``); HTTP/1.1 itself is
  enforced by the HTTP parser (505 for another version).
* The subprotocol is the first one in the *client's* list that the server supports: RFC
  6455 section 4.1 says the client lists them in order of preference. When none matches,
  the handshake succeeds without a subprotocol and the client decides.
* Origins are compared as exact strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import TypeAlias

from ..exceptions import InvalidHandshake, InvalidStatus, NegotiationError
from .extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from .http import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    Headers,
    HeadReader,
    Request,
    Response,
    excerpt,
    serialize_request,
    serialize_response,
)
from .uri import WebSocketURI

__all__ = [
    "GUID",
    "USER_AGENT",
    "HeadersLike",
    "accept_key",
    "generate_key",
    "parse_connection_tokens",
    "parse_upgrade_protocols",
    "parse_extension_header",
    "build_extension_header",
    "parse_subprotocol_header",
    "build_subprotocol_header",
    "ServerHandshake",
    "ClientHandshake",
    "MAX_ERROR_TEXT",
]

#: The magic string of RFC 6455 section 1.3.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Default User-Agent (client) and Server (server) header value.
USER_AGENT = "websock/0.1"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = re.compile(r"[ \t]*")
# quoted-string (RFC 7230 section 3.2.6): qdtext and quoted-pair.
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
# Upgrade protocol: protocol-name ["/" protocol-version] (RFC 7230 section 6.7).
_PROTOCOL = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?")

HeadersLike: TypeAlias = Headers | Mapping[str, str] | Iterable[tuple[str, str]]

# Longest error text sent in a response body: our own messages are shorter, and quote peer
# input through excerpt(); this also bounds messages raised by extension factories, which
# may quote an offer's parameters.
MAX_ERROR_TEXT = 256


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value answering the Sec-WebSocket-Key ``key``."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key(random_bytes: bytes | None = None) -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded.

    ``random_bytes`` (exactly 16 bytes) replaces the random source, for tests.
    """
    if random_bytes is None:
        random_bytes = secrets.token_bytes(16)
    elif len(random_bytes) != 16:
        raise ValueError(f"a Sec-WebSocket-Key is 16 bytes, got {len(random_bytes)}")
    return base64.b64encode(random_bytes).decode("ascii")


def _as_values(values: str | Iterable[str]) -> list[str]:
    return [values] if isinstance(values, str) else list(values)


def _parse_list(values: str | Iterable[str], item: re.Pattern[str], header: str) -> list[str]:
    # RFC 7230 section 7 "#rule": comma-separated, OWS around commas, empty elements ignored.
    result: list[str] = []
    for value in _as_values(values):
        for element in value.split(","):
            element = element.strip(" \t")
            if not element:
                continue
            if item.fullmatch(element) is None:
                raise InvalidHandshake(f"invalid {header} header", status=400)
            result.append(element)
    return result


def parse_connection_tokens(values: str | Iterable[str]) -> list[str]:
    """The lowercased tokens of one or several Connection header values.

    Raises :class:`~websock.exceptions.InvalidHandshake` (400) if an element is not a token.
    """
    return [t.lower() for t in _parse_list(values, _TOKEN, "Connection")]


def parse_upgrade_protocols(values: str | Iterable[str]) -> list[str]:
    """The lowercased protocols (``name`` or ``name/version``) of Upgrade header values.

    Raises :class:`~websock.exceptions.InvalidHandshake` (400) on malformed syntax.
    """
    return [t.lower() for t in _parse_list(values, _PROTOCOL, "Upgrade")]


def parse_subprotocol_header(values: str | Iterable[str]) -> list[str]:
    """The subprotocols listed in Sec-WebSocket-Protocol header values, in order.

    Raises :class:`~websock.exceptions.InvalidHandshake` (400) if one is not a token.
    """
    return _parse_list(values, _TOKEN, "Sec-WebSocket-Protocol")


def build_subprotocol_header(subprotocols: Sequence[str]) -> str:
    """A Sec-WebSocket-Protocol value; raises :class:`ValueError` for a non-token."""
    for subprotocol in subprotocols:
        if _TOKEN.fullmatch(subprotocol) is None:
            raise ValueError(f"invalid subprotocol {subprotocol!r}: must be an RFC 7230 token")
    return ", ".join(subprotocols)


class _Scanner:
    """Cursor over one Sec-WebSocket-Extensions value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> InvalidHandshake:
        return InvalidHandshake(
            f"invalid Sec-WebSocket-Extensions header: {what} at offset {self.pos}", status=400
        )

    def skip_ows(self) -> None:
        match = _OWS.match(self.text, self.pos)
        assert match is not None  # [ \t]* always matches
        self.pos = match.end()

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def token(self) -> str:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            raise self.error("expected a token")
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        if self.peek() != '"':
            return self.token()
        match = _QUOTED.match(self.text, self.pos)
        if match is None:
            raise self.error("invalid quoted string")
        self.pos = match.end()
        value = _QUOTED_PAIR.sub(r"\1", match.group(1))
        # RFC 6455 section 9.1: once unquoted, the value must still be a token.
        if _TOKEN.fullmatch(value) is None:
            raise self.error("quoted value is not a token")
        return value


def parse_extension_header(value: str) -> list[tuple[str, list[ExtensionParameter]]]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 section 9.1).

    Returns ``[(name, [(param, value or None), ...]), ...]`` in order; quoted parameter
    values are unquoted. Empty list elements are ignored (RFC 7230 section 7) but at least
    one extension is required. Raises :class:`~websock.exceptions.InvalidHandshake` (400)
    on malformed syntax.
    """
    scanner = _Scanner(value)
    result: list[tuple[str, list[ExtensionParameter]]] = []
    while True:
        scanner.skip_ows()
        if scanner.peek() == ",":
            scanner.pos += 1
            continue
        if not scanner.peek():
            break
        name = scanner.token()
        params: list[ExtensionParameter] = []
        scanner.skip_ows()
        while scanner.peek() == ";":
            scanner.pos += 1
            scanner.skip_ows()
            param = scanner.token()
            scanner.skip_ows()
            param_value: str | None = None
            if scanner.peek() == "=":
                scanner.pos += 1
                scanner.skip_ows()
                param_value = scanner.value()
                scanner.skip_ows()
            params.append((param, param_value))
        result.append((name, params))
        if scanner.peek() not in (",", ""):
            raise scanner.error("expected ',' or ';'")
    if not result:
        raise scanner.error("no extension")
    return result


def build_extension_header(extensions: Sequence[tuple[str, Sequence[ExtensionParameter]]]) -> str:
    """A Sec-WebSocket-Extensions value for ``[(name, [(param, value or None), ...]), ...]``.

    Raises :class:`ValueError` if a name, parameter or value is not a token (RFC 6455
    section 9.1 requires tokens, even for values sent quoted).
    """
    elements = []
    for name, params in extensions:
        parts = [name]
        for param, param_value in params:
            parts.append(param if param_value is None else f"{param}={param_value}")
        for part in [name, *(p for p, _ in params), *(v for _, v in params if v is not None)]:
            if _TOKEN.fullmatch(part) is None:
                raise ValueError(f"invalid extension header element {part!r}: must be a token")
        elements.append("; ".join(parts))
    return ", ".join(elements)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _merge(headers: Headers, extra: HeadersLike | None) -> None:
    """Add ``extra`` to ``headers``; a name in ``extra`` replaces fields of the same name."""
    if extra is None or isinstance(extra, Headers) and not extra._items:
        return
    extra = Headers(extra)
    for name in extra:
        if name in headers:
            del headers[name]
    for name, value in extra.items():
        headers.add(name, value)


def _single(headers: Headers, name: str, status: int = 400) -> str:
    values = headers.get_all(name)
    if not values:
        raise InvalidHandshake(f"missing {name} header", status=status)
    if len(values) > 1:
        raise InvalidHandshake(f"multiple {name} headers", status=400)
    return values[0]


class ServerHandshake:
    """Server side of the opening handshake.

    ``origins``: allowed Origin values, None to skip the check; put None in the list to
    allow requests without an Origin header (non-browser clients). ``subprotocols``: the
    subprotocols this server speaks. ``extensions``: factories tried for each extension the
    client offers. ``max_size``/``max_headers``: limits on the request head (see
    :class:`~websock.protocol.http.HeadReader`). ``server_header``: value of the Server
    header on every response, None to omit it.

    After :meth:`accept`, :attr:`subprotocol` and :attr:`extensions` hold the outcome of
    negotiation and :attr:`response` the 101 response.
    """

    def __init__(
        self,
        *,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ServerExtensionFactory] = (),
        server_header: str | None = USER_AGENT,
        # Limits
        max_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
    ) -> None:
        self.origins = None if origins is None else list(origins)
        self.subprotocols = list(subprotocols or ())
        self.extension_factories = list(extensions)
        if server_header is not None:
            Headers().add("Server", server_header)  # ValueError now, not per connection
        self.server_header = server_header
        self._reader = HeadReader(max_size=max_size, max_headers=max_headers, kind="request")
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        self._events: list[Request] = []
        self._out: list[bytes] = []
        self._eof = False
        self._refused = False

    def receive_eof(self) -> None:
        """The client closed its side: no request (or no more of it) will come."""
        self._eof = True

    def events_received(self) -> list[Request]:
        """Return (and forget) the request, once its head is complete."""
        events, self._events = self._events, []
        return events

    def send_response(self, response: Response) -> None:
        """Queue ``response`` for :meth:`data_to_send`; any status but 101 ends TCP after it.

        Raise ValueError or TypeError when HTTP cannot carry ``response`` (e.g. a header
        value with a line break, built by an application hook); nothing is queued then.
        """
        data = serialize_response(response)
        self.response = response
        self._out.append(data)
        if response.status != 101:
            self._refused = True
            self._out.append(b"")

    def data_to_send(self) -> list[bytes]:
        """Return (and forget) the bytes to write; ``b""`` means close the TCP connection."""
        out, self._out = self._out, []
        return out

    def close_expected(self) -> bool:
        """True once the handshake was refused (TCP ends after the response) or the client
        closed its side."""
        return self._refused or self._eof

    @property
    def trailing(self) -> bytes:
        """Bytes received after the request head (the first WebSocket frames, if any)."""
        return self._reader.trailing

    def receive_data(self, data: bytes) -> Request | None:
        """Feed received bytes; return the request once its head is complete, else None.

        Once complete, the same request is returned on later calls and their data is
        appended to :attr:`trailing`. Raises :class:`~websock.exceptions.InvalidHandshake`
        (400, 431 or 505) for a malformed or oversized head: answer it with
        :meth:`response_for_error` and close the connection.
        """
        if self.request is not None:
            self._reader.feed(data)
            return self.request
        if not self._reader.feed(data):
            return None
        self.request = self._reader.parse_request()
        self._events.append(self.request)
        return self.request

    def validate(self, request: Request) -> None:
        """Check ``request`` against RFC 6455 section 4.2.1 and the Origin allow-list.

        Raises :class:`~websock.exceptions.InvalidHandshake` whose ``status`` is the answer:
        405 (not GET), 426 (no ``Upgrade: websocket``, or version not 13), 403 (Origin not
        allowed), 400 (anything else).
        """
        if request.method != "GET":
            raise InvalidHandshake(
                f"unsupported method {excerpt(request.method)}: expected GET", 405
            )
        if not request.target.startswith("/"):
            raise InvalidHandshake("request target must be an absolute path", 400)
        headers = request.headers
        if not _single(headers, "Host").strip():
            raise InvalidHandshake("empty Host header", 400)

        upgrade = headers.get_all("Upgrade")
        if not upgrade:
            raise InvalidHandshake("missing Upgrade header", 426)
        if "websocket" not in parse_upgrade_protocols(upgrade):
            raise InvalidHandshake("Upgrade header does not include websocket", 426)
        connection = headers.get_all("Connection")
        if not connection:
            raise InvalidHandshake("missing Connection header", 400)
        if "upgrade" not in parse_connection_tokens(connection):
            raise InvalidHandshake("Connection header does not include upgrade", 400)

        version = _single(headers, "Sec-WebSocket-Version", status=426)
        if version.strip() != "13":
            raise InvalidHandshake("unsupported Sec-WebSocket-Version: expected 13", 426)

        key = _single(headers, "Sec-WebSocket-Key")
        try:
            raw_key = base64.b64decode(key.strip().encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise InvalidHandshake("invalid Sec-WebSocket-Key header: not base64", 400) from None
        if len(raw_key) != 16:
            raise InvalidHandshake("invalid Sec-WebSocket-Key header: not 16 bytes", 400)

        if self.origins is not None:
            origins = headers.get_all("Origin")
            if len(origins) > 1:
                raise InvalidHandshake("multiple Origin headers", 400)
            origin = origins[0] if origins else None
            if origin not in self.origins:
                if origin is None:
                    raise InvalidHandshake("missing Origin header", 403)
                raise InvalidHandshake("Origin not allowed", 403)

    def accept(
        self,
        request: Request,
        *,
        extra_headers: HeadersLike | None = None,
        select_subprotocol: Callable[[list[str]], str | None] | None = None,
    ) -> Response:
        """Validate ``request``, negotiate, and build the 101 Switching Protocols response.

        ``select_subprotocol(offered)``, if given, picks the subprotocol from the client's
        list (or None) instead of the first offered one in ``subprotocols``; it may raise
        :class:`~websock.exceptions.NegotiationError` to refuse (400). Returning one that
        was not offered raises ValueError: a bug in the hook.

        Raises :class:`~websock.exceptions.InvalidHandshake` as :meth:`validate` does, or
        for a malformed Sec-WebSocket-Protocol or Sec-WebSocket-Extensions header (400).
        ``extra_headers`` are added last; a name in them replaces the fields of that name
        set here.
        """
        self.validate(request)
        headers = request.headers
        key = headers["Sec-WebSocket-Key"].strip()

        offered = parse_subprotocol_header(headers.get_all("Sec-WebSocket-Protocol"))
        if select_subprotocol is not None:
            subprotocol = select_subprotocol(offered)
            if subprotocol is not None and subprotocol not in offered:
                raise ValueError(
                    f"select_subprotocol returned {subprotocol!r}, which the client did not "
                    f"offer ({', '.join(offered) or 'none'}): return one of them or None"
                )
        else:
            subprotocol = next((p for p in offered if p in self.subprotocols), None)

        accepted: list[Extension] = []
        response_params: list[tuple[str, list[ExtensionParameter]]] = []
        for value in headers.get_all("Sec-WebSocket-Extensions"):
            for name, params in parse_extension_header(value):
                if any(ext.name == name for ext in accepted):
                    continue
                for factory in self.extension_factories:
                    if factory.name != name:
                        continue
                    outcome = factory.process_offer(params, accepted)
                    if outcome is not None:
                        response_params.append((name, outcome[0]))
                        accepted.append(outcome[1])
                        break

        response_headers = Headers()
        # Constant or base64 values, and a Server value checked in __init__: no checks.
        response_headers._add_parsed("Upgrade", "websocket")
        response_headers._add_parsed("Connection", "Upgrade")
        response_headers._add_parsed("Sec-WebSocket-Accept", accept_key(key))
        if subprotocol is not None:
            response_headers.add("Sec-WebSocket-Protocol", subprotocol)
        if response_params:
            response_headers.add(
                "Sec-WebSocket-Extensions", build_extension_header(response_params)
            )
        if self.server_header is not None:
            response_headers._add_parsed("Server", self.server_header)
        _merge(response_headers, extra_headers)

        self.subprotocol = subprotocol
        self.extensions = accepted
        self.response = Response(101, _reason(101), response_headers)
        return self.response

    def reject(
        self,
        status: int,
        body: str | bytes = b"",
        headers: HeadersLike | None = None,
    ) -> Response:
        """A response refusing the handshake with ``status`` and a text/plain ``body``.

        A str body is encoded as UTF-8. The response carries Content-Type, Content-Length,
        ``Connection: close`` and Server; ``headers`` are added last, replacing fields of
        the same name.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        response_headers = Headers()
        response_headers.add("Content-Type", "text/plain; charset=utf-8")
        response_headers.add("Content-Length", str(len(body)))
        response_headers.add("Connection", "close")
        if self.server_header is not None:
            response_headers.add("Server", self.server_header)
        _merge(response_headers, headers)
        self.response = Response(status, _reason(status), response_headers, body)
        return self.response

    def response_for_error(self, exc: InvalidHandshake) -> Response:
        """The response answering a failed handshake: ``exc.status`` and ``str(exc)``.

        A 426 carries ``Upgrade: websocket`` and ``Sec-WebSocket-Version: 13``; a 405
        carries ``Allow: GET``. The text is cut at :data:`MAX_ERROR_TEXT` characters and its
        control characters escaped (see :func:`~websock.protocol.http.excerpt`).
        """
        extra = Headers()
        if exc.status == 426:
            extra.add("Upgrade", "websocket")
            extra.add("Sec-WebSocket-Version", "13")
        elif exc.status == 405:
            extra.add("Allow", "GET")
        return self.reject(exc.status, excerpt(str(exc), MAX_ERROR_TEXT) + "\n", extra)


class ClientHandshake:
    """Client side of the opening handshake for ``uri``.

    The request is built at once (``request``): GET of the resource name with Host,
    Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version, then Origin,
    Sec-WebSocket-Protocol, Sec-WebSocket-Extensions (each factory's offer, in order),
    Authorization (Basic, from the URI's user info) and User-Agent when they apply, then
    ``extra_headers`` (a name in them replaces the fields of that name set here).

    ``key`` fixes the Sec-WebSocket-Key, for tests. ``max_size``/``max_headers`` bound the
    response head.
    """

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ClientExtensionFactory] = (),
        extra_headers: HeadersLike | None = None,
        user_agent: str | None = USER_AGENT,
        key: str | None = None,
        # Limits
        max_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
    ) -> None:
        self.uri = uri
        self.key = generate_key() if key is None else key
        self.subprotocols = list(subprotocols or ())
        self.extension_factories = list(extensions)
        self._reader = HeadReader(max_size=max_size, max_headers=max_headers, kind="response")
        self._sent = False
        self._eof = False
        self._events: list[Response] = []
        self._error: InvalidHandshake | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []

        headers = Headers()
        headers.add("Host", uri.host_header)
        headers.add("Upgrade", "websocket")
        headers.add("Connection", "Upgrade")
        headers.add("Sec-WebSocket-Key", self.key)
        headers.add("Sec-WebSocket-Version", "13")
        if origin is not None:
            headers.add("Origin", origin)
        if self.subprotocols:
            headers.add("Sec-WebSocket-Protocol", build_subprotocol_header(self.subprotocols))
        if self.extension_factories:
            offers = [(f.name, f.offer()) for f in self.extension_factories]
            headers.add("Sec-WebSocket-Extensions", build_extension_header(offers))
        if uri.user_info is not None:
            credentials = ":".join(uri.user_info).encode("utf-8")
            headers.add("Authorization", "Basic " + base64.b64encode(credentials).decode())
        if user_agent is not None:
            headers.add("User-Agent", user_agent)
        _merge(headers, extra_headers)
        self.request = Request("GET", uri.resource_name, headers)

    @property
    def trailing(self) -> bytes:
        """Bytes received after the response head (the first WebSocket frames, if any)."""
        return self._reader.trailing

    def data_to_send(self) -> list[bytes]:
        """The serialized request on the first call; an empty list afterwards."""
        if self._sent:
            return []
        self._sent = True
        return [serialize_request(self.request)]

    def receive_eof(self) -> None:
        """The server closed its side: no response (or no more of it) will come."""
        self._eof = True

    def events_received(self) -> list[Response]:
        """Return (and forget) the response, once it arrived and was accepted."""
        events, self._events = self._events, []
        return events

    def close_expected(self) -> bool:
        """True once the handshake failed or the server closed its side."""
        return self._error is not None or self._eof

    def receive_data(self, data: bytes) -> Response | None:
        """Feed received bytes; return the response once its head is complete and valid.

        Returns None until the head is complete. Raises
        :class:`~websock.exceptions.InvalidStatus` when the status is not 101 (its body is
        not read; bytes of it received so far are in :attr:`trailing`),
        :class:`~websock.exceptions.NegotiationError` when the server picked a subprotocol
        or extension we did not offer or accept, and
        :class:`~websock.exceptions.InvalidHandshake` for anything else wrong. After
        success, later data is appended to :attr:`trailing` and the response returned
        again; after a failure, the same exception is raised again.
        """
        if self._error is not None:
            raise self._error
        if self.response is not None:
            self._reader.feed(data)
            return self.response
        try:
            if not self._reader.feed(data):
                return None
            response = self._reader.parse_response()
            self._process(response)
        except InvalidHandshake as exc:
            self._error = exc
            raise
        self.response = response
        self._events.append(response)
        return response

    def _process(self, response: Response) -> None:
        if response.status != 101:
            raise InvalidStatus(response)
        headers = response.headers

        upgrade = headers.get_all("Upgrade")
        if not upgrade:
            raise InvalidHandshake("missing Upgrade header")
        if parse_upgrade_protocols(upgrade) != ["websocket"]:
            raise InvalidHandshake("Upgrade header is not websocket")
        connection = headers.get_all("Connection")
        if not connection:
            raise InvalidHandshake("missing Connection header")
        if "upgrade" not in parse_connection_tokens(connection):
            raise InvalidHandshake("Connection header does not include upgrade")
        if _single(headers, "Sec-WebSocket-Accept").strip() != accept_key(self.key):
            raise InvalidHandshake("Sec-WebSocket-Accept mismatch")

        extensions: list[Extension] = []
        for value in headers.get_all("Sec-WebSocket-Extensions"):
            for name, params in parse_extension_header(value):
                if any(ext.name == name for ext in extensions):
                    raise NegotiationError(f"extension {excerpt(name)} accepted twice")
                extensions.append(self._accept_extension(name, params, extensions))

        subprotocol: str | None = None
        values = headers.get_all("Sec-WebSocket-Protocol")
        if values:
            protocols = parse_subprotocol_header(values)
            if len(protocols) != 1:
                raise NegotiationError("server chose more than one subprotocol")
            if protocols[0] not in self.subprotocols:
                raise NegotiationError(
                    f"server chose a subprotocol we did not offer: {excerpt(protocols[0])}"
                )
            subprotocol = protocols[0]

        self.subprotocol = subprotocol
        self.extensions = extensions

    def _accept_extension(
        self, name: str, params: list[ExtensionParameter], accepted: list[Extension]
    ) -> Extension:
        error: NegotiationError | None = None
        for factory in self.extension_factories:
            if factory.name != name:
                continue
            try:
                return factory.process_response(params, accepted)
            except NegotiationError as exc:
                error = exc
        if error is not None:
            raise error
        raise NegotiationError(f"server accepted an extension we did not offer: {excerpt(name)}")
