from __future__ import annotations

import ast
import pathlib
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock.exceptions import InvalidHandshake, InvalidState
from websock.protocol import http as http_module
from websock.protocol.http import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    Headers,
    HeadReader,
    Request,
    Response,
    serialize_request,
    serialize_response,
)

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def read_request(data: bytes, **kwargs: int | None) -> Request:
    reader = HeadReader(**kwargs)  # type: ignore[arg-type]
    assert reader.feed(data)
    return reader.parse_request()


def read_response(data: bytes) -> Response:
    reader = HeadReader(kind="response")
    assert reader.feed(data)
    return reader.parse_response()


def assert_bad(data: bytes, message: str, status: int = 400) -> None:
    with pytest.raises(InvalidHandshake) as info:
        read_request(data)
    assert str(info.value) == message
    assert info.value.status == status


# Layer boundary


@pytest.mark.parametrize("module", ["http", "uri", "handshake"])
def test_no_io_imports(module: str) -> None:
    source = pathlib.Path(http_module.__file__).with_name(f"{module}.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "ssl", "time", "selectors"}


# Headers


def test_headers_case_insensitive_lookup() -> None:
    headers = Headers([("Content-Type", "text/plain")])
    assert headers["content-type"] == "text/plain"
    assert headers.get("CONTENT-TYPE") == "text/plain"
    assert "content-TYPE" in headers
    assert "Other" not in headers
    assert 42 not in headers


def test_headers_repeated_values_joined() -> None:
    headers = Headers()
    headers.add("Connection", "keep-alive")
    headers.add("X-Other", "1")
    headers.add("connection", "Upgrade")
    assert headers["Connection"] == "keep-alive, Upgrade"
    assert headers.get_all("CONNECTION") == ["keep-alive", "Upgrade"]
    assert headers.items() == [
        ("Connection", "keep-alive"),
        ("X-Other", "1"),
        ("connection", "Upgrade"),
    ]
    assert list(headers) == ["Connection", "X-Other"]
    assert len(headers) == 2


def test_headers_is_a_mapping() -> None:
    headers = Headers([("Host", "a"), ("X-Many", "1"), ("x-many", "2")])
    # dict() and the Mapping methods see distinct names with joined values (a hook doing
    # dict(request.headers) used to raise and become a 500).
    assert dict(headers) == {"Host": "a", "X-Many": "1, 2"}
    assert list(headers.keys()) == ["Host", "X-Many"]
    assert list(headers.values()) == ["a", "1, 2"]
    assert isinstance(headers, Mapping)
    # items() keeps every field: HTTP headers repeat.
    assert headers.items() == [("Host", "a"), ("X-Many", "1"), ("x-many", "2")]
    headers.update({"X-New": "n"})
    assert headers.get_all("x-new") == ["n"]
    assert headers.pop("host") == "a" and "Host" not in headers


def test_headers_missing() -> None:
    headers = Headers()
    with pytest.raises(KeyError):
        headers["Host"]
    with pytest.raises(KeyError):
        del headers["Host"]
    assert headers.get("Host") is None
    assert headers.get("Host", "x") == "x"
    assert headers.get_all("Host") == []
    assert len(headers) == 0


def test_headers_setitem_replaces_all_at_first_position() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
    headers["A"] = "5"
    assert headers.items() == [("A", "5"), ("B", "2"), ("C", "4")]
    headers["D"] = "6"
    assert headers.items() == [("A", "5"), ("B", "2"), ("C", "4"), ("D", "6")]


def test_headers_delitem_removes_all() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    del headers["A"]
    assert headers.items() == [("B", "2")]


def test_headers_constructors_copy_and_equality() -> None:
    from_mapping = Headers({"Host": "example.com", "Origin": "https://example.com"})
    from_pairs = Headers([("host", "example.com"), ("ORIGIN", "https://example.com")])
    assert from_mapping == from_pairs
    copy = from_mapping.copy()
    copy.add("X", "y")
    assert copy != from_mapping
    assert "X" not in from_mapping
    assert Headers(from_pairs) == from_pairs
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])
    assert from_mapping != {"Host": "example.com"}
    assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


@pytest.mark.parametrize("name", ["", "Bad Name", "Bad:Name", "Naïve", "X\r\nY"])
def test_headers_reject_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Headers().add(name, "value")
    with pytest.raises(ValueError, match="invalid header name"):
        Headers()[name] = "value"


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b", "snowman \u2603"])
def test_headers_reject_injection(value: str) -> None:
    with pytest.raises(ValueError, match="invalid value for header X"):
        Headers().add("X", value)
    with pytest.raises(ValueError, match="invalid value for header X"):
        Headers({"X": value})


def test_headers_reject_non_str() -> None:
    with pytest.raises(TypeError, match="must be str, got bytes"):
        Headers().add("X", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="header names are str, got bytes"):
        Headers().add(b"X", "x")  # type: ignore[arg-type]


def test_headers_accept_latin1_value() -> None:
    assert Headers({"X": "caf\xe9"})["X"] == "caf\xe9"


# Request / Response values


def test_request_path_and_query() -> None:
    request = Request("GET", "/chat?room=1&x=2&room=a%20b&blank=")
    # path is the whole target (websockets' meaning): a token in the query reaches hooks.
    assert request.path == request.target == "/chat?room=1&x=2&room=a%20b&blank="
    assert request.path_without_query == "/chat"
    assert request.query_string == "room=1&x=2&room=a%20b&blank="
    assert request.query == {"room": ["1", "a b"], "x": ["2"], "blank": [""]}
    assert Request("GET", "/chat").query_string == "" and Request("GET", "/chat").query == {}
    assert Request("GET", "/chat?").query_string == ""
    assert Request("GET", "/chat").path == Request("GET", "/chat").path_without_query


def test_serialize_request() -> None:
    request = Request("GET", "/chat", Headers([("Host", "example.com"), ("X", "caf\xe9")]))
    assert serialize_request(request) == (
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nX: caf\xe9\r\n\r\n"
    )


@pytest.mark.parametrize(("method", "target"), [("G ET", "/"), ("GET", "/a b"), ("GET", "/\xe9")])
def test_serialize_request_rejects_injection(method: str, target: str) -> None:
    with pytest.raises(ValueError):
        serialize_request(Request(method, target))


def test_serialize_response_adds_content_length() -> None:
    response = Response(403, "Forbidden", Headers({"Content-Type": "text/plain"}), b"no\n")
    assert serialize_response(response) == (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nno\n"
    )
    assert "Content-Length" not in response.headers  # the response is not modified


def test_serialize_response_keeps_content_length() -> None:
    response = Response(200, "OK", Headers({"content-length": "2"}), b"ok")
    assert serialize_response(response) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_serialize_response_without_body() -> None:
    assert serialize_response(Response(101, "Switching Protocols")) == (
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    )


def test_serialize_response_rejects_invalid() -> None:
    with pytest.raises(ValueError, match="invalid HTTP status"):
        serialize_response(Response(1000, "x"))
    with pytest.raises(ValueError):
        serialize_response(Response(200, "OK\r\nX: y"))


def test_request_round_trip() -> None:
    request = read_request(REQUEST)
    assert serialize_request(request) == REQUEST


# HeadReader: framing


def test_defaults() -> None:
    assert MAX_HEAD_SIZE == 16384
    assert MAX_HEADERS == 128
    reader = HeadReader()
    assert reader.max_size == 16384
    assert reader.max_headers == 128


def test_parse_request_whole() -> None:
    request = read_request(REQUEST)
    assert request.method == "GET"
    assert request.target == "/chat?room=1"
    assert request.path == "/chat?room=1"
    assert request.path_without_query == "/chat"
    assert request.query == {"room": ["1"]}
    assert request.headers["host"] == "server.example.com"
    assert request.headers.get_all("Sec-WebSocket-Version") == ["13"]
    assert len(request.headers.items()) == 5


def test_parse_request_byte_by_byte() -> None:
    reader = HeadReader()
    for i in range(len(REQUEST) - 1):
        assert not reader.feed(REQUEST[i : i + 1])
        assert not reader.complete
        assert reader.trailing == b""
    assert reader.feed(REQUEST[-1:])
    assert reader.complete
    assert reader.parse_request() == read_request(REQUEST)
    assert reader.trailing == b""


@given(st.lists(st.integers(min_value=0, max_value=len(REQUEST) + 6), max_size=12))
def test_any_chunking_gives_same_request(cuts: list[int]) -> None:
    data = REQUEST + b"\x81\x85tail!"
    points = sorted({0, len(data), *cuts})
    reader = HeadReader()
    done = False
    for start, end in zip(points, points[1:], strict=False):
        done = reader.feed(data[start:end])
    assert done
    assert reader.parse_request() == read_request(REQUEST)
    assert reader.trailing == b"\x81\x85tail!"


def test_terminator_split_across_chunks() -> None:
    reader = HeadReader()
    assert not reader.feed(REQUEST[:-3])
    assert not reader.feed(b"\n")
    assert not reader.feed(b"\r")
    assert reader.feed(b"\nrest")
    assert reader.trailing == b"rest"


def test_trailing_and_feed_after_complete() -> None:
    reader = HeadReader()
    assert reader.feed(REQUEST + b"\x81")
    assert reader.trailing == b"\x81"
    assert reader.feed(b"\x00")
    assert reader.trailing == b"\x81\x00"
    assert reader.parse_request().target == "/chat?room=1"


def test_parse_before_complete() -> None:
    reader = HeadReader()
    reader.feed(REQUEST[:10])
    with pytest.raises(InvalidState, match="not complete"):
        reader.parse_request()
    with pytest.raises(InvalidState):
        reader.parse_response()


# HeadReader: limits


def test_head_of_exactly_max_size_is_accepted() -> None:
    assert read_request(REQUEST, max_size=len(REQUEST)).method == "GET"


def test_head_one_byte_over_max_size_is_rejected() -> None:
    reader = HeadReader(max_size=len(REQUEST) - 1)
    with pytest.raises(InvalidHandshake) as info:
        reader.feed(REQUEST)
    assert info.value.status == 431
    assert str(info.value) == f"request head larger than {len(REQUEST) - 1} bytes"


def test_oversize_detected_before_end_of_head() -> None:
    reader = HeadReader()
    reader.feed(b"GET / HTTP/1.1\r\n")
    line = b"X-Filler: " + b"a" * 100 + b"\r\n"
    with pytest.raises(InvalidHandshake) as info:
        for _ in range(1000):
            reader.feed(line)
    assert info.value.status == 431
    assert str(info.value) == "request head larger than 16384 bytes"


def test_oversize_response_message() -> None:
    reader = HeadReader(max_size=10, kind="response")
    with pytest.raises(InvalidHandshake, match="^response head larger than 10 bytes$"):
        reader.feed(RESPONSE)


def test_no_size_limit() -> None:
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert read_request(head, max_size=None).headers["X"] == "a" * 20000


def test_too_many_headers() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 3 + b"\r\n"
    assert len(read_request(head, max_headers=3).headers.items()) == 3
    with pytest.raises(InvalidHandshake) as info:
        read_request(head, max_headers=2)
    assert info.value.status == 431
    assert str(info.value) == "too many headers: more than 2"


def test_default_max_headers() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 129 + b"\r\n"
    with pytest.raises(InvalidHandshake, match="more than 128") as info:
        read_request(head)
    assert info.value.status == 431


# HeadReader: malformed heads


def test_bare_lf_rejected_early() -> None:
    reader = HeadReader()
    with pytest.raises(InvalidHandshake) as info:
        reader.feed(b"GET / HTTP/1.1\nHost: x\n")
    assert info.value.status == 400
    assert str(info.value) == "bare LF in HTTP head: lines must end with CRLF"


def test_bare_lf_split_from_cr_is_fine() -> None:
    reader = HeadReader()
    assert not reader.feed(b"GET / HTTP/1.1\r")
    assert reader.feed(b"\nHost: x\r\n\r\n")


def test_bare_lf_at_start() -> None:
    with pytest.raises(InvalidHandshake, match="bare LF"):
        HeadReader().feed(b"\n")


def test_bare_lf_in_trailing_is_not_checked() -> None:
    reader = HeadReader()
    assert reader.feed(REQUEST + b"\n\n")
    assert reader.trailing == b"\n\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR in HTTP head"),
        (b"\r\n\r\n", "empty request line"),
        (b"GET /  HTTP/1.1\r\n\r\n", "invalid request line"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "invalid request line"),
        (b"GET HTTP/1.1\r\n\r\n", "invalid request line"),
        (b"G(T / HTTP/1.1\r\n\r\n", "invalid request method"),
        (b"GET /\x7f HTTP/1.1\r\n\r\n", "invalid request target"),
        (b"GET /\xe9 HTTP/1.1\r\n\r\n", "invalid request target"),
        (b"GET / HTTP/1.1x\r\n\r\n", "invalid HTTP version"),
        (b"GET / http/1.1\r\n\r\n", "invalid HTTP version"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "obsolete line folding in header"),
        (b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", "obsolete line folding in header"),
        (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", "invalid header line: missing colon"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\n: a\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nH\xe9st: a\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", "invalid character in header value"),
        (b"GET / HTTP/1.1\r\nHost: a\x1bb\r\n\r\n", "invalid character in header value"),
        (b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", "invalid character in header value"),
    ],
)
def test_malformed_request(data: bytes, message: str) -> None:
    assert_bad(data, message)


def test_other_http_version_is_505() -> None:
    assert_bad(b"GET / HTTP/1.0\r\n\r\n", "unsupported HTTP version HTTP/1.0", 505)


def test_header_values_trimmed_and_latin1() -> None:
    request = read_request(b"GET / HTTP/1.1\r\nX: \t caf\xe9 \t\r\nEmpty:\r\nTab: a\tb\r\n\r\n")
    assert request.headers["X"] == "caf\xe9"
    assert request.headers["Empty"] == ""
    assert request.headers["Tab"] == "a\tb"


def test_parse_response() -> None:
    response = read_response(RESPONSE)
    assert response.status == 101
    assert response.reason == "Switching Protocols"
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert response.body == b""


def test_parse_response_body_left_in_trailing() -> None:
    reader = HeadReader(kind="response")
    assert reader.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope\n")
    response = reader.parse_response()
    assert (response.status, response.reason, response.body) == (404, "Not Found", b"")
    assert reader.trailing == b"nope\n"


@pytest.mark.parametrize("line", [b"HTTP/1.1 101", b"HTTP/1.1 101 "])
def test_parse_response_without_reason(line: bytes) -> None:
    response = read_response(line + b"\r\n\r\n")
    assert (response.status, response.reason) == (101, "")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"HTTP/1.1", "invalid status line"),
        (b"HTTP/1.0 101 Switching Protocols", "invalid status line: expected HTTP/1.1"),
        (b"ICY 200 OK", "invalid status line: expected HTTP/1.1"),
        (b"HTTP/1.1 1O1 Switching", "invalid status code"),
        (b"HTTP/1.1 1010 Switching", "invalid status code"),
        (b"HTTP/1.1 099 Weird", "invalid status code"),
        (b"HTTP/1.1 101 Bad\x00", "invalid character in reason phrase"),
    ],
)
def test_malformed_response(line: bytes, message: str) -> None:
    with pytest.raises(InvalidHandshake) as info:
        read_response(line + b"\r\n\r\n")
    assert str(info.value) == message
    assert info.value.status == 400
