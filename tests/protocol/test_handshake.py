from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock.exceptions import InvalidHandshake, InvalidStatus, NegotiationError
from websock.protocol.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from websock.protocol.frames import Frame
from websock.protocol.handshake import (
    GUID,
    USER_AGENT,
    ClientHandshake,
    ServerHandshake,
    accept_key,
    build_extension_header,
    build_subprotocol_header,
    generate_key,
    parse_connection_tokens,
    parse_extension_header,
    parse_subprotocol_header,
    parse_upgrade_protocols,
)
from websock.protocol.http import Headers, Request, serialize_request, serialize_response
from websock.protocol.uri import parse_uri

# RFC 6455 section 1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# Fake extensions


class FakeExtension(Extension):
    name = "x-fake"

    def __init__(self, params: Sequence[ExtensionParameter], seen: Sequence[Extension] = ()):
        self.params = list(params)
        self.seen = list(seen)

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame


class OtherExtension(FakeExtension):
    name = "x-other"


class FakeServerFactory(ServerExtensionFactory):
    """Accepts any offer without a ``decline`` parameter and echoes its parameters."""

    name = "x-fake"
    extension = FakeExtension

    def process_offer(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension] | None:
        if any(p == "decline" for p, _ in params):
            return None
        return list(params), self.extension(params, accepted)


class OtherServerFactory(FakeServerFactory):
    name = "x-other"
    extension = OtherExtension


class FakeClientFactory(ClientExtensionFactory):
    """Offers ``level=<level>``; refuses a response carrying ``refuse``."""

    name = "x-fake"
    extension = FakeExtension

    def __init__(self, level: str = "1") -> None:
        self.level = level

    def offer(self) -> list[ExtensionParameter]:
        return [("level", self.level)]

    def process_response(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        if ("level", self.level) not in params:
            raise NegotiationError(f"x-fake: expected level {self.level}")
        return self.extension(params, accepted)


class OtherClientFactory(FakeClientFactory):
    name = "x-other"
    extension = OtherExtension


# Keys


def test_guid() -> None:
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_accept_key_rfc_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_generate_key_injected_bytes() -> None:
    assert generate_key(b"the sample nonce") == KEY


def test_generate_key_random() -> None:
    key = generate_key()
    assert len(key) == 24
    assert len(base64.b64decode(key, validate=True)) == 16
    assert generate_key() != key


def test_generate_key_wrong_length() -> None:
    with pytest.raises(ValueError, match="16 bytes, got 3"):
        generate_key(b"abc")


# Header helpers


def test_parse_connection_tokens() -> None:
    assert parse_connection_tokens("keep-alive, Upgrade") == ["keep-alive", "upgrade"]
    assert parse_connection_tokens(["keep-alive", "UPGRADE"]) == ["keep-alive", "upgrade"]
    assert parse_connection_tokens(" ,upgrade,, ") == ["upgrade"]
    assert parse_connection_tokens([]) == []


def test_parse_connection_tokens_invalid() -> None:
    with pytest.raises(InvalidHandshake, match="^invalid Connection header$") as info:
        parse_connection_tokens("keep alive")
    assert info.value.status == 400


def test_parse_upgrade_protocols() -> None:
    assert parse_upgrade_protocols("HTTP/2.0, WebSocket") == ["http/2.0", "websocket"]
    with pytest.raises(InvalidHandshake, match="^invalid Upgrade header$"):
        parse_upgrade_protocols("a/b/c")


def test_subprotocol_header() -> None:
    assert parse_subprotocol_header("chat, superchat") == ["chat", "superchat"]
    assert parse_subprotocol_header(["chat", "v2.json"]) == ["chat", "v2.json"]
    assert build_subprotocol_header(["chat", "superchat"]) == "chat, superchat"
    with pytest.raises(InvalidHandshake, match="^invalid Sec-WebSocket-Protocol header$"):
        parse_subprotocol_header("chat; v=1")
    with pytest.raises(ValueError, match="invalid subprotocol"):
        build_subprotocol_header(["chat room"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("permessage-deflate", [("permessage-deflate", [])]),
        (
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, "
            "permessage-deflate",
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", None), ("server_max_window_bits", "10")],
                ),
                ("permessage-deflate", []),
            ],
        ),
        ('foo; bar="baz"', [("foo", [("bar", "baz")])]),
        ('foo; bar="b\\az"', [("foo", [("bar", "baz")])]),
        ("foo ; bar = 1 ,, baz\t", [("foo", [("bar", "1")]), ("baz", [])]),
        (", foo,", [("foo", [])]),
    ],
)
def test_parse_extension_header(
    value: str, expected: list[tuple[str, list[ExtensionParameter]]]
) -> None:
    assert parse_extension_header(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no extension at offset 0"),
        (" , ", "no extension at offset 3"),
        ("foo;", "expected a token at offset 4"),
        ("foo; =1", "expected a token at offset 5"),
        ("foo bar", "expected ',' or ';' at offset 4"),
        ('foo; bar="b az"', "quoted value is not a token at offset 15"),
        ('foo; bar="open', "invalid quoted string at offset 9"),
        ("foo; bar=", "expected a token at offset 9"),
        ("foo, ;x", "expected a token at offset 5"),
        ("f\xf6o", "expected ',' or ';' at offset 1"),
    ],
)
def test_parse_extension_header_invalid(value: str, message: str) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_extension_header(value)
    assert str(info.value) == f"invalid Sec-WebSocket-Extensions header: {message}"
    assert info.value.status == 400


def test_build_extension_header() -> None:
    extensions: list[tuple[str, list[ExtensionParameter]]] = [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("x-fake", []),
    ]
    value = build_extension_header(extensions)
    assert value == (
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-fake"
    )
    assert parse_extension_header(value) == extensions


@pytest.mark.parametrize(
    "extensions",
    [[("bad name", [])], [("ok", [("bad param", None)])], [("ok", [("p", "bad value")])]],
)
def test_build_extension_header_invalid(
    extensions: list[tuple[str, list[ExtensionParameter]]],
) -> None:
    with pytest.raises(ValueError, match="must be a token"):
        build_extension_header(extensions)


# Server: receiving the request

REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def make_request(
    *, method: str = "GET", target: str = "/chat", **changes: str | list[str] | None
) -> Request:
    """The RFC 6455 section 1.3 request; ``Sec_WebSocket_Key="x"`` replaces a header,
    a list gives several fields, None removes it."""
    headers = Headers(
        [
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    for attr, value in changes.items():
        name = attr.replace("_", "-")
        if name in headers:
            del headers[name]
        for item in [value] if isinstance(value, str) else value or []:
            headers.add(name, item)
    return Request(method, target, headers)


def test_server_receive_data_whole() -> None:
    server = ServerHandshake()
    request = server.receive_data(REQUEST + b"\x81\x80")
    assert request is not None
    assert request.target == "/chat"
    assert request.headers["Origin"] == "http://example.com"
    assert server.request is request
    assert server.trailing == b"\x81\x80"
    assert server.receive_data(b"more") is request
    assert server.trailing == b"\x81\x80more"


def test_server_receive_data_byte_by_byte() -> None:
    server = ServerHandshake()
    for i in range(len(REQUEST) - 1):
        assert server.receive_data(REQUEST[i : i + 1]) is None
    request = server.receive_data(REQUEST[-1:])
    assert request == ServerHandshake().receive_data(REQUEST)
    assert server.trailing == b""


def test_server_receive_data_oversize() -> None:
    server = ServerHandshake(max_size=100)
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(REQUEST)
    assert info.value.status == 431
    assert str(info.value) == "request head larger than 100 bytes"
    response = server.response_for_error(info.value)
    assert serialize_response(response).startswith(
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    )


def test_server_receive_data_too_many_headers() -> None:
    server = ServerHandshake(max_headers=3)
    with pytest.raises(InvalidHandshake, match="too many headers") as info:
        server.receive_data(REQUEST)
    assert info.value.status == 431


def test_server_receive_data_malformed() -> None:
    server = ServerHandshake()
    with pytest.raises(InvalidHandshake, match="obsolete line folding") as info:
        server.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n")
    assert info.value.status == 400


# Server: validation


def test_valid_request() -> None:
    ServerHandshake().validate(make_request())


@pytest.mark.parametrize(
    "request_",
    [
        make_request(Upgrade="WebSocket", Connection="keep-alive, UPGRADE"),
        make_request(Upgrade="h2c, websocket"),
        make_request(Connection=["keep-alive", "Upgrade"]),
        make_request(Sec_WebSocket_Version=" 13 "),
        make_request(target="/chat?room=1"),
    ],
)
def test_valid_request_variants(request_: Request) -> None:
    ServerHandshake().validate(request_)


VALIDATION_RULES = [
    (make_request(method="POST"), 405, "unsupported method POST: expected GET"),
    (make_request(target="*"), 400, "request target must be an absolute path"),
    (make_request(target="http://a/"), 400, "request target must be an absolute path"),
    (make_request(Host=None), 400, "missing Host header"),
    (make_request(Host=["a", "b"]), 400, "multiple Host headers"),
    (make_request(Host=""), 400, "empty Host header"),
    (make_request(Upgrade=None), 426, "missing Upgrade header"),
    (make_request(Upgrade="h2c"), 426, "Upgrade header does not include websocket"),
    (make_request(Upgrade="web socket"), 400, "invalid Upgrade header"),
    (make_request(Connection=None), 400, "missing Connection header"),
    (make_request(Connection="keep-alive"), 400, "Connection header does not include upgrade"),
    (make_request(Connection="up grade"), 400, "invalid Connection header"),
    (
        make_request(Sec_WebSocket_Version=None),
        426,
        "missing Sec-WebSocket-Version header",
    ),
    (
        make_request(Sec_WebSocket_Version="8"),
        426,
        "unsupported Sec-WebSocket-Version: expected 13",
    ),
    (
        make_request(Sec_WebSocket_Version=["13", "8"]),
        400,
        "multiple Sec-WebSocket-Version headers",
    ),
    (make_request(Sec_WebSocket_Key=None), 400, "missing Sec-WebSocket-Key header"),
    (make_request(Sec_WebSocket_Key=[KEY, KEY]), 400, "multiple Sec-WebSocket-Key headers"),
    (
        make_request(Sec_WebSocket_Key="not base64!"),
        400,
        "invalid Sec-WebSocket-Key header: not base64",
    ),
    (
        make_request(Sec_WebSocket_Key="caf\xe9"),
        400,
        "invalid Sec-WebSocket-Key header: not base64",
    ),
    (
        make_request(Sec_WebSocket_Key=base64.b64encode(b"x" * 15).decode()),
        400,
        "invalid Sec-WebSocket-Key header: not 16 bytes",
    ),
]


@pytest.mark.parametrize(("request_", "status", "message"), VALIDATION_RULES)
def test_validation_rules(request_: Request, status: int, message: str) -> None:
    server = ServerHandshake()
    with pytest.raises(InvalidHandshake) as info:
        server.validate(request_)
    assert str(info.value) == message
    assert info.value.status == status
    # accept() validates too.
    with pytest.raises(InvalidHandshake, match=message):
        server.accept(request_)


def test_origin_allowed() -> None:
    server = ServerHandshake(origins=["https://a.example", "https://b.example"])
    server.validate(make_request(Origin="https://b.example"))


@pytest.mark.parametrize(
    ("origins", "origin", "status", "message"),
    [
        (["https://a.example"], "https://evil.example", 403, "Origin not allowed"),
        (["https://a.example"], "HTTPS://A.EXAMPLE", 403, "Origin not allowed"),
        (["https://a.example"], None, 403, "missing Origin header"),
        (["https://a.example"], ["https://a.example"] * 2, 400, "multiple Origin headers"),
        ([], "https://a.example", 403, "Origin not allowed"),
    ],
)
def test_origin_rejected(
    origins: list[str | None], origin: str | list[str] | None, status: int, message: str
) -> None:
    with pytest.raises(InvalidHandshake) as info:
        ServerHandshake(origins=origins).validate(make_request(Origin=origin))
    assert (info.value.status, str(info.value)) == (status, message)


def test_origin_none_allows_missing_header() -> None:
    server = ServerHandshake(origins=["https://a.example", None])
    server.validate(make_request())
    with pytest.raises(InvalidHandshake, match="Origin not allowed"):
        server.validate(make_request(Origin="https://evil.example"))


def test_origin_not_checked_by_default() -> None:
    ServerHandshake().validate(make_request(Origin="https://anything.example"))


# Server: responses


def test_accept_rfc_example_bytes() -> None:
    server = ServerHandshake(server_header=None)
    request = server.receive_data(REQUEST)
    assert request is not None
    response = server.accept(request)
    assert serialize_response(response) == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )
    assert server.response is response
    assert server.subprotocol is None
    assert server.extensions == []


def test_accept_server_header_and_extra_headers() -> None:
    server = ServerHandshake()
    response = server.accept(make_request(), extra_headers={"Set-Cookie": "a=1"})
    assert response.headers["Server"] == USER_AGENT == "websock/0.1"
    assert response.headers["Set-Cookie"] == "a=1"
    response = server.accept(make_request(), extra_headers=[("server", "custom")])
    assert response.headers.get_all("Server") == ["custom"]


@pytest.mark.parametrize(
    ("server_protocols", "offered", "chosen"),
    [
        (["chat", "superchat"], "superchat, chat", "superchat"),  # client preference
        (["superchat"], "chat, superchat", "superchat"),
        (["chat"], ["other", "chat"], "chat"),  # several header fields
        (["chat"], "other", None),
        (None, "chat", None),
        (["chat"], None, None),
    ],
)
def test_accept_subprotocol(
    server_protocols: list[str] | None, offered: str | list[str] | None, chosen: str | None
) -> None:
    server = ServerHandshake(subprotocols=server_protocols)
    response = server.accept(make_request(Sec_WebSocket_Protocol=offered))
    assert server.subprotocol == chosen
    assert response.headers.get("Sec-WebSocket-Protocol") == chosen


def test_accept_invalid_subprotocol_header() -> None:
    with pytest.raises(InvalidHandshake, match="invalid Sec-WebSocket-Protocol header") as info:
        ServerHandshake(subprotocols=["chat"]).accept(make_request(Sec_WebSocket_Protocol="a b"))
    assert info.value.status == 400


def test_accept_extensions() -> None:
    server = ServerHandshake(extensions=[OtherServerFactory(), FakeServerFactory()])
    offers = [
        "x-unknown, x-fake; decline, x-fake; level=1",
        "x-fake; level=2, x-other; a=b",
    ]
    response = server.accept(make_request(Sec_WebSocket_Extensions=offers))
    assert response.headers["Sec-WebSocket-Extensions"] == "x-fake; level=1, x-other; a=b"
    assert [type(e) for e in server.extensions] == [FakeExtension, OtherExtension]
    fake, other = server.extensions
    assert isinstance(fake, FakeExtension) and isinstance(other, OtherExtension)
    assert fake.params == [("level", "1")]
    assert fake.seen == []
    assert other.seen == [fake]  # process_offer saw what was accepted before


def test_accept_extensions_all_declined() -> None:
    server = ServerHandshake(extensions=[FakeServerFactory()])
    response = server.accept(make_request(Sec_WebSocket_Extensions="x-fake; decline"))
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert server.extensions == []


def test_accept_extensions_tries_each_factory_of_a_name() -> None:
    class Picky(FakeServerFactory):
        def process_offer(
            self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
        ) -> tuple[list[ExtensionParameter], Extension] | None:
            return None

    server = ServerHandshake(extensions=[Picky(), FakeServerFactory()])
    server.accept(make_request(Sec_WebSocket_Extensions="x-fake"))
    assert len(server.extensions) == 1


def test_accept_malformed_extension_header() -> None:
    server = ServerHandshake(extensions=[FakeServerFactory()])
    with pytest.raises(InvalidHandshake, match="invalid Sec-WebSocket-Extensions") as info:
        server.accept(make_request(Sec_WebSocket_Extensions="x-fake;"))
    assert info.value.status == 400


def test_reject_bytes() -> None:
    server = ServerHandshake()
    response = server.reject(401, "authentication required\n", {"WWW-Authenticate": "Basic"})
    assert serialize_response(response) == (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 24\r\n"
        b"Connection: close\r\n"
        b"Server: websock/0.1\r\n"
        b"WWW-Authenticate: Basic\r\n"
        b"\r\n"
        b"authentication required\n"
    )
    assert server.response is response


def test_reject_bytes_body_and_unknown_status() -> None:
    response = ServerHandshake(server_header=None).reject(599, b"\xff")
    assert (response.status, response.reason, response.body) == (599, "", b"\xff")
    assert response.headers["Content-Length"] == "1"
    assert "Server" not in response.headers
    empty = ServerHandshake().reject(404)
    assert serialize_response(empty).endswith(
        b"Content-Length: 0\r\nConnection: close\r\nServer: websock/0.1\r\n\r\n"
    )


def test_response_for_426_carries_version() -> None:
    server = ServerHandshake()
    request = server.receive_data(REQUEST.replace(b"Version: 13", b"Version: 8"))
    assert request is not None
    with pytest.raises(InvalidHandshake) as info:
        server.validate(request)
    response = server.response_for_error(info.value)
    body = b"unsupported Sec-WebSocket-Version: expected 13\n"
    assert serialize_response(response) == (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n"
        b"Server: websock/0.1\r\n"
        b"Upgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n" + body
    )


def test_response_for_405_carries_allow() -> None:
    server = ServerHandshake()
    with pytest.raises(InvalidHandshake) as info:
        server.validate(make_request(method="POST"))
    response = server.response_for_error(info.value)
    assert (response.status, response.reason) == (405, "Method Not Allowed")
    assert response.headers["Allow"] == "GET"
    assert response.body == b"unsupported method POST: expected GET\n"


@pytest.mark.parametrize(("status", "reason"), [(400, "Bad Request"), (403, "Forbidden")])
def test_response_for_error(status: int, reason: str) -> None:
    response = ServerHandshake().response_for_error(InvalidHandshake("nope", status))
    assert (response.status, response.reason, response.body) == (status, reason, b"nope\n")
    assert response.headers["Connection"] == "close"
    assert "Sec-WebSocket-Version" not in response.headers
    assert "Allow" not in response.headers


# Client: the request


def test_client_request_bytes() -> None:
    client = ClientHandshake(
        parse_uri("wss://alice:s%3Acret@example.com:8443/chat?room=1"),
        origin="https://example.com",
        subprotocols=["chat", "superchat"],
        extensions=[FakeClientFactory("3"), OtherClientFactory()],
        extra_headers=[("X-Trace", "1"), ("User-Agent", "custom/1.0")],
        key=KEY,
    )
    credentials = base64.b64encode(b"alice:s:cret").decode()
    expected = (
        "GET /chat?room=1 HTTP/1.1\r\n"
        "Host: example.com:8443\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Origin: https://example.com\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Extensions: x-fake; level=3, x-other; level=1\r\n"
        f"Authorization: Basic {credentials}\r\n"
        "X-Trace: 1\r\n"
        "User-Agent: custom/1.0\r\n"
        "\r\n"
    ).encode()
    assert client.data_to_send() == [expected]
    assert client.data_to_send() == []
    assert serialize_request(client.request) == expected


def test_client_minimal_request() -> None:
    client = ClientHandshake(parse_uri("ws://example.com"), user_agent=None)
    assert client.request.target == "/"
    assert [name for name, _ in client.request.headers.items()] == [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
    ]
    assert len(base64.b64decode(client.key, validate=True)) == 16
    assert client.request.headers["Sec-WebSocket-Key"] == client.key
    # The server accepts what the client builds.
    ServerHandshake().validate(client.request)


def test_client_default_user_agent() -> None:
    client = ClientHandshake(parse_uri("ws://example.com"))
    assert client.request.headers["User-Agent"] == "websock/0.1"


# Client: the response


def response_bytes(*lines: str, status: str = "101 Switching Protocols") -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


BASE = ("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {ACCEPT}")


def make_client(**kwargs: object) -> ClientHandshake:
    return ClientHandshake(parse_uri("ws://example.com/chat"), key=KEY, **kwargs)  # type: ignore[arg-type]


def test_client_receive_valid_response_byte_by_byte() -> None:
    client = make_client()
    data = response_bytes(*BASE) + b"\x81\x02hi"
    head_length = len(data) - 4
    for i in range(head_length - 1):
        assert client.receive_data(data[i : i + 1]) is None
    response = client.receive_data(data[head_length - 1 :])
    assert response is not None
    assert response.status == 101
    assert client.response is response
    assert client.trailing == b"\x81\x02hi"
    assert client.subprotocol is None
    assert client.extensions == []
    assert client.receive_data(b"!") is response
    assert client.trailing == b"\x81\x02hi!"


def test_client_accepts_case_insensitive_tokens() -> None:
    client = make_client()
    data = response_bytes(
        "upgrade: WebSocket", "connection: keep-alive, UPGRADE", f"sec-websocket-accept: {ACCEPT}"
    )
    assert client.receive_data(data) is not None


def test_client_invalid_status() -> None:
    client = make_client()
    data = response_bytes("Content-Length: 10", status="403 Forbidden") + b"forbidden\n"
    with pytest.raises(InvalidStatus) as info:
        client.receive_data(data)
    assert info.value.response.status == 403
    assert info.value.response.body == b""
    assert str(info.value) == "server rejected WebSocket connection: HTTP 403 Forbidden"
    assert client.trailing == b"forbidden\n"
    assert client.response is None
    with pytest.raises(InvalidStatus):  # the failure sticks
        client.receive_data(b"")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (BASE[1:], "missing Upgrade header"),
        (("Upgrade: h2c", *BASE[1:]), "Upgrade header is not websocket"),
        (("Upgrade: websocket, h2c", *BASE[1:]), "Upgrade header is not websocket"),
        ((BASE[0], BASE[2]), "missing Connection header"),
        ((BASE[0], "Connection: close", BASE[2]), "Connection header does not include upgrade"),
        (BASE[:2], "missing Sec-WebSocket-Accept header"),
        ((*BASE, f"Sec-WebSocket-Accept: {ACCEPT}"), "multiple Sec-WebSocket-Accept headers"),
        (
            (*BASE[:2], f"Sec-WebSocket-Accept: {accept_key(generate_key())}"),
            "Sec-WebSocket-Accept mismatch",
        ),
    ],
)
def test_client_invalid_response(lines: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidHandshake) as info:
        make_client().receive_data(response_bytes(*lines))
    assert str(info.value) == message
    assert not isinstance(info.value, NegotiationError)


def test_client_malformed_response_head() -> None:
    with pytest.raises(InvalidHandshake, match="invalid status code"):
        make_client().receive_data(b"HTTP/1.1 abc Nope\r\n\r\n")


def test_client_oversize_response() -> None:
    client = make_client(max_size=50)
    with pytest.raises(InvalidHandshake, match="response head larger than 50 bytes"):
        client.receive_data(response_bytes(*BASE))


def test_client_subprotocol() -> None:
    client = make_client(subprotocols=["chat", "superchat"])
    client.receive_data(response_bytes(*BASE, "Sec-WebSocket-Protocol: superchat"))
    assert client.subprotocol == "superchat"


@pytest.mark.parametrize(
    ("subprotocols", "header", "message"),
    [
        (["chat"], "other", "server chose a subprotocol we did not offer: other"),
        (None, "chat", "server chose a subprotocol we did not offer: chat"),
        (["chat", "other"], "chat, other", "server chose more than one subprotocol"),
    ],
)
def test_client_subprotocol_errors(
    subprotocols: list[str] | None, header: str, message: str
) -> None:
    client = make_client(subprotocols=subprotocols)
    with pytest.raises(NegotiationError) as info:
        client.receive_data(response_bytes(*BASE, f"Sec-WebSocket-Protocol: {header}"))
    assert str(info.value) == message


def test_client_extensions() -> None:
    client = make_client(extensions=[FakeClientFactory("2"), OtherClientFactory()])
    client.receive_data(
        response_bytes(
            *BASE,
            "Sec-WebSocket-Extensions: x-other; level=1",
            "Sec-WebSocket-Extensions: x-fake; level=2",
        )
    )
    other, fake = client.extensions
    assert isinstance(other, OtherExtension) and isinstance(fake, FakeExtension)
    assert fake.seen == [other]


def test_client_extension_second_factory_of_same_name() -> None:
    client = make_client(extensions=[FakeClientFactory("1"), FakeClientFactory("2")])
    assert client.request.headers["Sec-WebSocket-Extensions"] == "x-fake; level=1, x-fake; level=2"
    client.receive_data(response_bytes(*BASE, "Sec-WebSocket-Extensions: x-fake; level=2"))
    assert len(client.extensions) == 1


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("x-unknown", "server accepted an extension we did not offer: x-unknown"),
        ("x-fake; level=1, x-fake; level=1", "extension x-fake accepted twice"),
        ("x-fake; level=9", "x-fake: expected level 1"),
    ],
)
def test_client_extension_errors(header: str, message: str) -> None:
    client = make_client(extensions=[FakeClientFactory("1")])
    with pytest.raises(NegotiationError) as info:
        client.receive_data(response_bytes(*BASE, f"Sec-WebSocket-Extensions: {header}"))
    assert str(info.value) == message
    assert client.extensions == []


def test_client_malformed_extension_header() -> None:
    client = make_client(extensions=[FakeClientFactory("1")])
    with pytest.raises(InvalidHandshake, match="invalid Sec-WebSocket-Extensions header"):
        client.receive_data(response_bytes(*BASE, "Sec-WebSocket-Extensions: ;"))


# Round trip


def round_trip(chunks: list[int]) -> tuple[ClientHandshake, ServerHandshake]:
    client = ClientHandshake(
        parse_uri("ws://example.com:8080/feed?x=1"),
        origin="https://example.com",
        subprotocols=["v2.chat", "v1.chat"],
        extensions=[FakeClientFactory("4")],
    )
    server = ServerHandshake(
        origins=["https://example.com"],
        subprotocols=["v1.chat", "v2.chat"],
        extensions=[FakeServerFactory()],
    )
    data = b"".join(client.data_to_send()) + b"\x81\x85masked"  # the client may send a frame early
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in chunks)})
    request = None
    for start, end in zip(points, points[1:], strict=False):
        request = server.receive_data(data[start:end])
    assert request is not None
    assert server.trailing == b"\x81\x85masked"
    assert request.path == "/feed?x=1"  # the whole target, as in websockets
    assert request.path_without_query == "/feed"
    assert request.query == {"x": ["1"]}
    assert request.headers["Host"] == "example.com:8080"
    response = client.receive_data(serialize_response(server.accept(request)) + b"\x81\x00")
    assert response is not None
    return client, server


def test_round_trip() -> None:
    client, server = round_trip([])
    assert client.subprotocol == server.subprotocol == "v2.chat"  # the client's preference
    assert [e.name for e in client.extensions] == [e.name for e in server.extensions] == ["x-fake"]
    client_ext, server_ext = client.extensions[0], server.extensions[0]
    assert isinstance(client_ext, FakeExtension) and isinstance(server_ext, FakeExtension)
    assert client_ext.params == server_ext.params == [("level", "4")]
    assert client.trailing == b"\x81\x00"


@given(st.lists(st.integers(min_value=0), max_size=20))
def test_round_trip_any_chunking(chunks: list[int]) -> None:
    client, server = round_trip(chunks)
    assert client.subprotocol == server.subprotocol == "v2.chat"
