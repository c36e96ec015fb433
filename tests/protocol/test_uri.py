from __future__ import annotations

import dataclasses

import pytest

from websock.exceptions import InvalidURI
from websock.protocol.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/", None)),
        ("wss://localhost/", WebSocketURI(True, "localhost", 443, "/", None)),
        ("ws://localhost", WebSocketURI(False, "localhost", 80, "/", None)),
        ("WS://LocalHost:8765", WebSocketURI(False, "localhost", 8765, "/", None)),
        ("ws://localhost/path?query", WebSocketURI(False, "localhost", 80, "/path?query", None)),
        ("ws://localhost?q=1", WebSocketURI(False, "localhost", 80, "/?q=1", None)),
        ("ws://localhost/?", WebSocketURI(False, "localhost", 80, "/", None)),
        ("wss://[::1]:9000/", WebSocketURI(True, "::1", 9000, "/", None)),
        ("ws://127.0.0.1:80/", WebSocketURI(False, "127.0.0.1", 80, "/", None)),
        ("ws://user:pass@host/", WebSocketURI(False, "host", 80, "/", ("user", "pass"))),
        ("ws://us%40er:p%3Ass@host/", WebSocketURI(False, "host", 80, "/", ("us@er", "p:ss"))),
        ("ws://user@host/", WebSocketURI(False, "host", 80, "/", ("user", ""))),
        ("ws://host/a%20b", WebSocketURI(False, "host", 80, "/a%20b", None)),
    ],
)
def test_parse_valid(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


def test_non_ascii_path_and_query_percent_encoded() -> None:
    uri = parse_uri("ws://host/caf\xe9 au lait?q=\u2603&r=%41")
    assert uri.resource_name == "/caf%C3%A9%20au%20lait?q=%E2%98%83&r=%41"


def test_non_ascii_host_idna() -> None:
    uri = parse_uri("wss://b\xfccher.example/")
    assert uri.host == "xn--bcher-kva.example"
    assert uri.host_header == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("uri", "host_header"),
    [
        ("ws://example.com/", "example.com"),
        ("ws://example.com:80/", "example.com"),
        ("ws://example.com:443/", "example.com:443"),
        ("wss://example.com:443/", "example.com"),
        ("wss://example.com:80/", "example.com:80"),
        ("ws://[::1]/", "[::1]"),
        ("ws://[2001:db8::1]:8080/", "[2001:db8::1]:8080"),
    ],
)
def test_host_header(uri: str, host_header: str) -> None:
    assert parse_uri(uri).host_header == host_header


def test_frozen() -> None:
    uri = parse_uri("ws://host/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        uri.host = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://localhost/", "scheme must be ws or wss"),
        ("localhost/", "scheme must be ws or wss"),
        ("ws://localhost/#frag", "fragments are not allowed"),
        ("ws://localhost/#", "fragments are not allowed"),
        ("ws:///path", "missing host"),
        ("ws://:80/", "missing host"),
        ("ws://localhost:port/", "invalid port"),
        ("ws://localhost:65536/", "invalid port"),
        ("ws://localhost:0/", "invalid port"),
        ("ws://exa mple.com/", "invalid host"),
        ("ws://exa<mple.com/", "invalid host"),
        ("ws://[::g]/", "invalid host"),
        ("ws://[::1/", "invalid host"),
        ("ws://\u2603\u2603" + "a" * 70 + "/", "invalid internationalized host name"),
    ],
)
def test_parse_invalid(uri: str, why: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(uri)
    assert info.value.why == why
    assert info.value.uri == uri
    assert isinstance(info.value, ValueError)
