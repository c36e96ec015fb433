"""The sans-I/O side of proxies: URLs, the environment, no_proxy, and CONNECT on the wire."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock.exceptions import (
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    ProxyError,
)
from websock.protocol.proxy import (
    Proxy,
    ProxyConnect,
    bypass_proxy,
    parse_proxy,
    proxy_from_environment,
    select_proxy,
)
from websock.protocol.uri import parse_uri
from websock.reconnect import is_transient

WS = parse_uri("ws://example.org/chat")
WSS = parse_uri("wss://example.org/chat")


# ---------------------------------------------------------------- parse_proxy


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy:3128", Proxy("http", "proxy", 3128)),
        ("http://proxy", Proxy("http", "proxy", 80)),
        ("https://proxy", Proxy("https", "proxy", 443)),
        ("socks5://proxy", Proxy("socks5", "proxy", 1080)),
        ("socks5h://proxy:9050", Proxy("socks5h", "proxy", 9050)),
        ("socks4://proxy", Proxy("socks4", "proxy", 1080)),
        ("socks4a://proxy", Proxy("socks4a", "proxy", 1080)),
        ("HTTP://Proxy.Example:8080/", Proxy("http", "proxy.example", 8080)),
        ("http://[::1]:3128", Proxy("http", "::1", 3128)),
        (
            "http://alice:s3cret%3A%20p%40ss@proxy:1",
            Proxy("http", "proxy", 1, "alice", "s3cret: p@ss"),
        ),
        ("http://bob@proxy:1", Proxy("http", "proxy", 1, "bob", "")),
    ],
)
def test_parse_proxy(url: str, expected: Proxy) -> None:
    assert parse_proxy(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://proxy:21", "scheme must be one of"),
        ("proxy:3128", "scheme must be one of"),
        ("http://:3128", "no host"),
        ("http://proxy:99999", "out of range"),
        ("http://proxy:3128/path", "no path"),
        ("http://proxy:3128?x=1", "no path"),
        ("http://[::1", "IPv6"),
    ],
)
def test_parse_proxy_rejects(url: str, why: str) -> None:
    with pytest.raises(InvalidProxy, match=why) as info:
        parse_proxy(url)
    assert isinstance(info.value, ValueError)
    assert info.value.proxy == url


def test_proxy_str_hides_the_password() -> None:
    proxy = parse_proxy("socks5://alice:secret@[::1]:1080")
    assert str(proxy) == "socks5://alice@[::1]:1080"
    assert "secret" not in str(proxy)
    assert proxy.is_socks and not proxy.remote_dns
    assert parse_proxy("socks5h://h").remote_dns and parse_proxy("socks4a://h").remote_dns
    assert not parse_proxy("http://h").is_socks


# ---------------------------------------------------------------- the environment


@pytest.mark.parametrize(
    ("environ", "uri", "expected"),
    [
        ({}, WS, None),
        ({"http_proxy": "http://a:1"}, WS, "http://a:1"),
        ({"http_proxy": "http://a:1"}, WSS, None),
        ({"https_proxy": "http://b:1"}, WSS, "http://b:1"),
        ({"HTTPS_PROXY": "http://b:2"}, WSS, "http://b:2"),
        ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}, WSS, "http://lower:1"),
        ({"HTTP_PROXY": "http://upper:1"}, WS, "http://upper:1"),
        # httpoxy: in a CGI script HTTP_PROXY comes from the request's Proxy header.
        ({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}, WS, None),
        ({"http_proxy": "http://ok:1", "REQUEST_METHOD": "GET"}, WS, "http://ok:1"),
        ({"all_proxy": "socks5://c:1"}, WS, "socks5://c:1"),
        ({"ALL_PROXY": "socks5://c:2"}, WSS, "socks5://c:2"),
        ({"https_proxy": "http://b:1", "all_proxy": "socks5://c:1"}, WSS, "http://b:1"),
        ({"https_proxy": "", "all_proxy": "socks5://c:1"}, WSS, "socks5://c:1"),
        ({"http_proxy": " ", "all_proxy": "socks5://c:1"}, WS, "socks5://c:1"),
        ({"http_proxy": "http://a:1", "no_proxy": "example.org"}, WS, None),
        ({"http_proxy": "http://a:1", "NO_PROXY": ".org"}, WS, None),
        ({"http_proxy": "http://a:1", "no_proxy": "other.org"}, WS, "http://a:1"),
    ],
)
def test_proxy_from_environment(environ: dict[str, str], uri: object, expected: str | None) -> None:
    assert proxy_from_environment(uri, environ) == expected  # type: ignore[arg-type]


def test_select_proxy() -> None:
    environ = {"http_proxy": "http://env:8080"}
    assert select_proxy(True, WS, environ) == Proxy("http", "env", 8080)
    assert select_proxy(True, WSS, environ) is None
    assert select_proxy(None, WS, environ) is None
    assert select_proxy(False, WS, environ) is None
    assert select_proxy("socks5h://given", WS, environ) == Proxy("socks5h", "given", 1080)
    with pytest.raises(InvalidProxy):
        select_proxy(True, WS, {"http_proxy": "gopher://x"})
    with pytest.raises(TypeError, match="proxy must be"):
        select_proxy(3, WS, environ)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("example.org", 80, "*", True),
        ("example.org", 80, "example.org", True),
        ("EXAMPLE.org", 80, "example.ORG", True),
        ("ws.example.org", 80, "example.org", True),
        ("ws.example.org", 80, ".example.org", True),
        ("ws.example.org", 80, "*.example.org", True),
        ("badexample.org", 80, "example.org", False),
        ("example.org", 80, "ws.example.org", False),
        ("example.org", 80, "a.com, b.net example.org", True),
        ("example.org", 80, "a.com,,b.net", False),
        ("example.org", 8080, "example.org:8080", True),
        ("example.org", 80, "example.org:8080", False),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("127.0.0.1", 9000, "127.0.0.1:9000", True),
        ("127.0.0.1", 80, "localhost", False),
        ("::1", 80, "::1", True),
        ("::1", 80, "[::1]", True),
        ("::1", 443, "[::1]:443", True),
        ("::1", 80, "[::1]:443", False),
        ("2001:db8::5", 80, "2001:db8::/32", True),
        ("example.org.", 80, "example.org", True),
        ("example.org", 80, "", False),
    ],
)
def test_bypass_proxy(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypass_proxy(host, port, no_proxy) is bypass


@given(st.text(max_size=60), st.text(max_size=30), st.integers(0, 65535))
def test_bypass_proxy_never_raises(no_proxy: str, host: str, port: int) -> None:
    assert bypass_proxy(host, port, no_proxy) in (True, False)


# ---------------------------------------------------------------- CONNECT


def test_connect_request_on_the_wire() -> None:
    exchange = ProxyConnect(parse_proxy("http://proxy:3128"), "example.org", 443, user_agent="ua/1")
    assert exchange.data_to_send() == (
        b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nUser-Agent: ua/1\r\n\r\n"
    )


def test_connect_request_with_credentials_and_ipv6() -> None:
    proxy = parse_proxy("http://alice:s3cret%3A%20p%40ss@proxy:3128")
    exchange = ProxyConnect(proxy, "::1", 8765)
    token = base64.b64encode(b"alice:s3cret: p@ss").decode()
    assert exchange.data_to_send() == (
        b"CONNECT [::1]:8765 HTTP/1.1\r\nHost: [::1]:8765\r\n"
        b"Proxy-Authorization: Basic " + token.encode() + b"\r\n\r\n"
    )


RESPONSE = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"


@pytest.mark.parametrize("size", [1, 2, 7, len(RESPONSE)])
def test_connect_response_in_any_chunks(size: int) -> None:
    exchange = ProxyConnect(parse_proxy("http://proxy"), "h", 1)
    chunks = [RESPONSE[i : i + size] for i in range(0, len(RESPONSE), size)]
    results = [exchange.receive_data(chunk) for chunk in chunks]
    assert results[:-1] == [None] * (len(chunks) - 1)
    response = results[-1]
    assert response is not None and response.status == 200
    assert response.headers["Proxy-agent"] == "tinyproxy/1.11.1"


def test_connect_407() -> None:
    exchange = ProxyConnect(parse_proxy("http://proxy"), "h", 1)
    with pytest.raises(InvalidProxyStatus) as info:
        exchange.receive_data(
            b"HTTP/1.0 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="tinyproxy"\r\nContent-Length: 3\r\n\r\nno!'
        )
    error = info.value
    assert error.status == 407 and error.response.status == 407
    assert "HTTP 407 Proxy Authentication Required" in str(error)
    assert "user:password in the proxy URL" in str(error)
    assert isinstance(error, ProxyError) and isinstance(error, InvalidHandshake)
    assert not error.transient and not is_transient(error)


@pytest.mark.parametrize(
    ("status", "transient"), [(403, False), (502, True), (503, True), (429, True)]
)
def test_connect_refused_statuses(status: int, transient: bool) -> None:
    exchange = ProxyConnect(parse_proxy("http://proxy"), "h", 1)
    with pytest.raises(InvalidProxyStatus) as info:
        exchange.receive_data(f"HTTP/1.1 {status} No\r\n\r\n".encode())
    assert info.value.transient is transient
    assert is_transient(info.value) is transient


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "invalid answer from proxy http://proxy:80"),
        (b"HTTP/2 200 OK\r\n\r\n", "invalid answer"),
        (b"HTTP/1.1 200 OK\r\n\r\nhello", "sent data after its 200 response"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5000, "larger than"),
    ],
)
def test_connect_invalid_answers(data: bytes, match: str) -> None:
    exchange = ProxyConnect(parse_proxy("http://proxy"), "h", 1)
    with pytest.raises(InvalidProxyMessage, match=match) as info:
        exchange.receive_data(data)
    assert not is_transient(info.value)


def test_connect_eof_before_the_answer() -> None:
    exchange = ProxyConnect(parse_proxy("http://proxy"), "h", 1)
    assert exchange.receive_data(b"HTTP/1.1 200") is None
    with pytest.raises(InvalidProxyMessage, match="closed the connection without answering"):
        exchange.receive_eof()
