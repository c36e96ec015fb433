"""The slice of HTTP/1.1 (RFC 7230) the WebSocket opening handshake needs.

This module reads and writes one request head or one response head; it knows nothing of
WebSocket rules (those live in :mod:`websock.protocol.handshake`) and performs no I/O.

Decisions worth knowing:

* Lines must end with CRLF. A bare LF or a bare CR anywhere in a head is rejected (400),
  rather than tolerated as RFC 7230 section 3.5 allows: a WebSocket client has no excuse
  and leniency here is where request smuggling starts.
* Obsolete line folding (a header line starting with a space or tab) is rejected (400), as
  RFC 7230 section 3.2.4 permits for a server.
* Header names are RFC 7230 tokens (ASCII). Header values are decoded as ISO-8859-1
  (latin-1), so every byte of ``obs-text`` survives a parse/serialize round trip unchanged;
  control characters other than horizontal tab are rejected (400).
* Only HTTP/1.1 is spoken: a well-formed request for another version is answered 505, a
  malformed version 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ..exceptions import InvalidHandshake, InvalidState

__all__ = [
    "Headers",
    "Request",
    "Response",
    "serialize_request",
    "serialize_response",
    "HeadReader",
    "MAX_HEAD_SIZE",
    "MAX_HEADERS",
    "EXCERPT_LENGTH",
    "excerpt",
]

# Total size of a head, start line and final blank line included. h11 uses the same 16 KiB
# default for its incomplete-event buffer; a real handshake is well under 1 KiB.
MAX_HEAD_SIZE = 16384

# Number of header lines. websockets uses the same default; browsers send about 15.
MAX_HEADERS = 128

_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_BYTES = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Characters that would let a local header value inject lines or truncate the head.
_INJECTION = re.compile(r"[\r\n\x00]")
# Bytes not allowed in a received field value or reason phrase: controls other than HTAB.
_BAD_VALUE_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# request-target: visible ASCII only (origin-form, absolute-form ...; the handshake narrows it).
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_STATUS_CODE = re.compile(rb"[0-9]{3}")

# Header names that nearly every handshake repeats, shared by all parsed requests: a server
# keeps each connection's request for the connection's lifetime, so an idle connection holds
# references to these constants rather than its own copies. Not sys.intern(): names come
# from the peer, and interned strings are immortal from Python 3.12 on, so interning them
# let any client grow the server's memory for good (10,000 rejected requests with unique
# names: +396 MB that was never freed). A name outside this table stays an ordinary string,
# freed with its request.
_COMMON_NAMES = (
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Accept",
    "Origin",
    "User-Agent",
    "Cookie",
    "Authorization",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Cache-Control",
    "Pragma",
    "Referer",
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Real-IP",
    "X-Request-ID",
    "Via",
    "DNT",
    "Sec-Fetch-Dest",
    "Sec-Fetch-Mode",
    "Sec-Fetch-Site",
    "Sec-CH-UA",
    "Sec-CH-UA-Mobile",
    "Sec-CH-UA-Platform",
    "Server",
    "Date",
    "Set-Cookie",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    "WWW-Authenticate",
    "Location",
    "Retry-After",
    "Allow",
)
# Each name as the RFCs spell it, lowercase (HTTP/2 gateways, the lookup keys) and
# capitalized per word (Go's net/http spelling: "Sec-Websocket-Key"), mapped to itself.
_SHARED_NAMES: dict[str, str] = {
    spelling: spelling
    for name in _COMMON_NAMES
    for spelling in (
        name,
        name.lower(),
        "-".join(part.capitalize() for part in name.split("-")),
    )
}


def _shared(name: str) -> str:
    """``name``, or the equal constant from the table of common names."""
    return _SHARED_NAMES.get(name, name)


# Peer input quoted in an error message (response body, log line, exception) is cut to this
# many characters: enough to recognise it, too little to let a peer make every rejection
# cost a copy of its request (a 405 used to repeat an 8 KiB method verbatim).
EXCERPT_LENGTH = 64


def excerpt(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """``text`` made safe to quote in an error message or a log line.

    Characters that are not printable (C0 and C1 controls, DEL, line and paragraph
    separators ...) are written as Python escapes (``\\x1b``), so peer data cannot forge
    log lines or drive a terminal; the result is cut after ``limit`` characters of
    ``text``, with ``...`` appended when something was cut.
    """
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + "..." if cut else text


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"header names are str, got {type(name).__name__}")
    if _TOKEN_STR.fullmatch(name) is None:
        raise ValueError(f"invalid header name {name!r}: must be an RFC 7230 token")


def _check_value(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"value for header {name} must be str, got {type(value).__name__}")
    if _INJECTION.search(value) is not None:
        raise ValueError(f"invalid value for header {name}: contains CR, LF or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            f"invalid value for header {name}: not ISO-8859-1; percent-encode or "
            "RFC 8187-encode non-Latin-1 text"
        ) from None


class Headers(MutableMapping[str, str]):
    """Case-insensitive, order-preserving multimap of HTTP header names to values.

    Names keep the spelling they were added with; lookups ignore case. A header may appear
    several times:

    * ``headers[name]`` returns its values joined with ``", "`` (RFC 7230 section 3.2.2),
      and raises :class:`KeyError` if it is absent;
    * :meth:`get_all` returns the values as a list;
    * :meth:`items` returns every ``(name, value)`` field in order;
    * iterating yields each distinct name once (spelled as first added) and ``len()``
      counts distinct names.

    It is a :class:`~collections.abc.MutableMapping` of names to joined values, so
    ``dict(headers)``, ``keys()``, ``values()`` and ``update()`` work as for a dict, with
    one difference kept for HTTP: :meth:`items` lists every field, duplicates included.

    Adding a name that is not an RFC 7230 token, or a value containing CR, LF or NUL or
    not encodable as ISO-8859-1, raises :class:`ValueError` (no header injection); a name
    or value that is not a str raises :class:`TypeError`.
    """

    # _keys[i] is _items[i]'s name lowercased: lookups compare without calling lower()
    # on every field (a handshake does a dozen lookups).
    __slots__ = ("_items", "_keys")

    def __init__(
        self,
        source: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self._items: list[tuple[str, str]] = []
        self._keys: list[str] = []
        if source is None:
            return
        if isinstance(source, Headers):
            self._items = list(source._items)
            self._keys = list(source._keys)
            return
        pairs: Iterable[tuple[str, str]]
        if isinstance(source, Mapping):
            pairs = source.items()
        else:
            pairs = source
        for name, value in pairs:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append one field, keeping any existing fields of the same name."""
        _check_name(name)
        _check_value(name, value)
        self._items.append((name, value))
        self._keys.append(_shared(name.lower()))

    def _add_parsed(self, name: str, value: str) -> None:
        """Append a field the parser has already validated."""
        # Common names are replaced by shared constants (see _SHARED_NAMES); never
        # interned, since they come from the peer.
        self._items.append((_shared(name), value))
        self._keys.append(_shared(name.lower()))

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; an empty list when it is absent."""
        key = name.lower()
        keys = self._keys
        count = keys.count(key)
        if count == 0:
            return []
        if count == 1:  # the usual case: two scans in C, no Python loop
            return [self._items[keys.index(key)][1]]
        return [item[1] for k, item in zip(keys, self._items, strict=True) if k == key]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """``headers[name]`` (values joined with ``", "``), or ``default`` when absent."""
        values = self.get_all(name)
        if not values:
            return default
        return ", ".join(values)

    # Every field, not a view of distinct names: HTTP headers repeat (see the class doc).
    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every ``(name, value)`` field, in order, duplicates included."""
        return list(self._items)

    def copy(self) -> Headers:
        """A shallow copy."""
        return Headers(self)

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field of ``name`` with one field, where the first one was."""
        _check_name(name)
        _check_value(name, value)
        key = name.lower()
        position = len(self._items)
        kept: list[tuple[str, str]] = []
        for k, item in zip(self._keys, self._items, strict=True):
            if k == key:
                position = min(position, len(kept))
            else:
                kept.append(item)
        kept.insert(position, (name, value))
        self._items = kept
        self._keys = [_shared(n.lower()) for n, _ in kept]

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        if key not in self._keys:
            raise KeyError(name)
        kept = [item for k, item in zip(self._keys, self._items, strict=True) if k != key]
        self._items = kept
        self._keys = [_shared(n.lower()) for n, _ in kept]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name.lower() in self._keys

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for n, _ in self._items:
            key = n.lower()
            if key not in seen:
                seen.add(key)
                yield n

    def __len__(self) -> int:
        return len({n.lower() for n, _ in self._items})

    def __eq__(self, other: object) -> bool:
        """Equal when both hold the same fields in the same order, names compared without case."""
        if not isinstance(other, Headers):
            return NotImplemented
        mine = [(k, v) for k, (_, v) in zip(self._keys, self._items, strict=True)]
        theirs = [(k, v) for k, (_, v) in zip(other._keys, other._items, strict=True)]
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class Request:
    """An HTTP/1.1 request head (the version is always 1.1, so it is not stored)."""

    method: str
    target: str
    headers: Headers = field(default_factory=Headers)

    @property
    def path(self) -> str:
        """The request target as sent, query string included (``/chat?room=1``), as in
        websockets: a token in the query is not lost on the way to a hook."""
        return self.target

    @property
    def path_without_query(self) -> str:
        """The request target without its query string (``/chat``), for routing."""
        return self.target.partition("?")[0]

    @property
    def query_string(self) -> str:
        """The query string as sent, without the ``?``; ``""`` when there is none."""
        return self.target.partition("?")[2]

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string parsed: each name with its values in order, percent-decoded,
        blank values kept (``?token=abc&room=1&room=2`` gives ``{"token": ["abc"], "room":
        ["1", "2"]}``). A new dict on each access."""
        return parse_qs(self.query_string, keep_blank_values=True)


@dataclass
class Response:
    """An HTTP/1.1 response: status line, headers and (when we send one) a body."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""


def _serialize_headers(headers: Headers) -> bytes:
    # Values were checked for CR/LF/NUL and latin-1 when added.
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


def serialize_request(request: Request) -> bytes:
    """The bytes of ``request``'s head: request line, headers, blank line.

    Raises :class:`ValueError` when the method is not a token or the target contains
    anything but visible ASCII.
    """
    if _TOKEN_STR.fullmatch(request.method) is None:
        raise ValueError(f"invalid HTTP method {request.method!r}")
    if not request.target.isascii() or _TARGET.fullmatch(request.target.encode()) is None:
        raise ValueError(f"invalid request target {request.target!r}: percent-encode it")
    start = f"{request.method} {request.target} HTTP/1.1\r\n".encode("ascii")
    return start + _serialize_headers(request.headers) + b"\r\n"


def serialize_response(response: Response) -> bytes:
    """The bytes of ``response``: status line, headers, blank line and body.

    Adds ``Content-Length`` when the body is not empty and the header is not already set.
    Raises :class:`ValueError` for a status outside 100-599 or a reason with CR, LF or NUL.
    """
    if not 100 <= response.status <= 599:
        raise ValueError(f"invalid HTTP status {response.status}: must be in 100-599")
    _check_value("reason phrase", response.reason)
    headers = response.headers
    if response.body and "Content-Length" not in headers:
        headers = headers.copy()
        headers.add("Content-Length", str(len(response.body)))
    start = f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")
    return start + _serialize_headers(headers) + b"\r\n" + response.body


def _bad(message: str) -> InvalidHandshake:
    return InvalidHandshake(message, status=400)


class HeadReader:
    """Incremental reader of one HTTP/1.1 head (request or response).

    Feed it bytes as they arrive with :meth:`feed` until it returns True, then call
    :meth:`parse_request` or :meth:`parse_response`. Bytes after the head (the first
    WebSocket frames, or a response body) are kept in :attr:`trailing`; the reader never
    consumes a body.

    Limits (None disables one): ``max_size`` bounds the whole head including the request or
    status line and the blank line; ``max_headers`` bounds the number of header lines. Both
    raise :class:`~websock.exceptions.InvalidHandshake` with status 431. Every malformation
    raises it with status 400 and a short lowercase message. ``kind`` (``"request"`` or
    ``"response"``) only names the head in those messages.

    Each byte is scanned a bounded number of times however the data is chunked.
    """

    def __init__(
        self,
        *,
        max_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
        kind: str = "request",
    ) -> None:
        self.kind = kind
        self.max_size = max_size
        self.max_headers = max_headers
        self._buf = bytearray()
        self._end: int | None = None  # offset just after the blank line, once seen

    @property
    def complete(self) -> bool:
        """True once the blank line ending the head has arrived."""
        return self._end is not None

    @property
    def trailing(self) -> bytes:
        """Bytes received after the head (empty until the head is complete)."""
        if self._end is None:
            return b""
        return bytes(self._buf[self._end :])

    def feed(self, data: bytes) -> bool:
        """Add received bytes; return True once the head is complete.

        Data fed after the head is complete is appended to :attr:`trailing`.
        """
        buf = self._buf
        if self._end is not None:
            buf += data
            return True
        start = len(buf)
        buf += data
        # The terminator may straddle the previous chunk: back up at most 3 bytes.
        end = buf.find(b"\r\n\r\n", max(start - 3, 0))
        limit = len(buf) if end < 0 else end + 4
        # Every LF in the head must follow a CR; check only the bytes new to this call.
        pos = buf.find(b"\n", start, limit)
        while pos >= 0:
            if pos == 0 or buf[pos - 1] != 0x0D:
                raise _bad("bare LF in HTTP head: lines must end with CRLF")
            pos = buf.find(b"\n", pos + 1, limit)
        if end < 0:
            if self.max_size is not None and len(buf) >= self.max_size:
                raise self._too_large()
            return False
        if self.max_size is not None and end + 4 > self.max_size:
            raise self._too_large()
        self._end = end + 4
        return True

    def _too_large(self) -> InvalidHandshake:
        return InvalidHandshake(f"{self.kind} head larger than {self.max_size} bytes", status=431)

    def _lines(self) -> tuple[bytes, list[bytes]]:
        if self._end is None:
            raise InvalidState("the HTTP head is not complete yet: feed() more data first")
        lines = bytes(self._buf[: self._end - 4]).split(b"\r\n")
        for line in lines:
            if b"\r" in line:
                raise _bad("bare CR in HTTP head")
        start_line, header_lines = lines[0], lines[1:]
        if self.max_headers is not None and len(header_lines) > self.max_headers:
            raise InvalidHandshake(f"too many headers: more than {self.max_headers}", status=431)
        return start_line, header_lines

    @staticmethod
    def _parse_headers(lines: list[bytes]) -> Headers:
        headers = Headers()
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                raise _bad("obsolete line folding in header")
            name, colon, value = line.partition(b":")
            if not colon:
                raise _bad("invalid header line: missing colon")
            if _TOKEN_BYTES.fullmatch(name) is None:
                raise _bad("invalid header name")
            value = value.strip(b" \t")
            if _BAD_VALUE_BYTES.search(value) is not None:
                raise _bad("invalid character in header value")
            headers._add_parsed(name.decode("ascii"), value.decode("latin-1"))
        return headers

    def parse_request(self) -> Request:
        """Parse the complete head as a request (``METHOD SP target SP HTTP/1.1``)."""
        start_line, header_lines = self._lines()
        if not start_line:
            raise _bad("empty request line")
        parts = start_line.split(b" ")
        if len(parts) != 3:
            raise _bad("invalid request line")
        method, target, version = parts
        if _TOKEN_BYTES.fullmatch(method) is None:
            raise _bad("invalid request method")
        if _TARGET.fullmatch(target) is None:
            raise _bad("invalid request target")
        if _VERSION.fullmatch(version) is None:
            raise _bad("invalid HTTP version")
        if version != b"HTTP/1.1":
            raise InvalidHandshake(f"unsupported HTTP version {version.decode()}", status=505)
        return Request(
            method.decode("ascii"), target.decode("ascii"), self._parse_headers(header_lines)
        )

    def parse_response(self, *, http10: bool = False) -> Response:
        """Parse the complete head as a response (``HTTP/1.1 SP 3DIGIT SP reason``).

        The body is not read: :attr:`Response.body` is empty and any body bytes received
        so far are in :attr:`trailing`. A missing reason phrase is accepted with or without
        the space before it. ``http10`` accepts ``HTTP/1.0`` too: proxies answer CONNECT
        with it (tinyproxy, squid in some set-ups); a WebSocket server must not.
        """
        start_line, header_lines = self._lines()
        parts = start_line.split(b" ", 2)
        if len(parts) < 2:
            raise _bad("invalid status line")
        version, code = parts[0], parts[1]
        reason = parts[2] if len(parts) == 3 else b""
        if version != b"HTTP/1.1" and not (http10 and version == b"HTTP/1.0"):
            raise _bad("invalid status line: expected HTTP/1.1")
        if _STATUS_CODE.fullmatch(code) is None or not 100 <= int(code) <= 599:
            raise _bad("invalid status code")
        if _BAD_VALUE_BYTES.search(reason) is not None:
            raise _bad("invalid character in reason phrase")
        return Response(int(code), reason.decode("latin-1"), self._parse_headers(header_lines))
