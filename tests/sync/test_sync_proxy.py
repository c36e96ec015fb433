"""websock.sync's client through real proxies (tests/proxyservers.py): HTTP CONNECT
(tinyproxy), HTTPS (tinyproxy behind a TLS front), SOCKS (dante); the environment."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from syncpeer import TIMEOUT, running_server

import websock
from proxyservers import TINYPROXY_AUTH, ProxyServer, closed_port
from websock.reconnect import is_transient
from websock.sync import ServerConnection, connect

pytestmark = pytest.mark.usefixtures("no_proxy_environment")


@pytest.fixture(params=["ws", "wss"])
def secure(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "wss")


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def round_trip(uri: str, **kwargs: Any) -> None:
    with connect(uri, open_timeout=TIMEOUT, **kwargs) as ws:
        ws.send("through the proxy")
        assert ws.recv(timeout=TIMEOUT) == "through the proxy"
        ws.send(b"\x01" * 100_000)
        assert ws.recv(timeout=TIMEOUT) == b"\x01" * 100_000
    assert ws.close_code == 1000


def serving(secure: bool, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> Any:
    return running_server(echo, ssl=tls[0] if secure else None, max_message_size=8 << 20)


def uri_of(server: Any, secure: bool, host: str = "127.0.0.1") -> str:
    return f"{'wss' if secure else 'ws'}://{host}:{server.socket.getsockname()[1]}/"


def test_http_proxy(
    secure: bool, tls: tuple[ssl.SSLContext, ssl.SSLContext], tinyproxy_auth: ProxyServer
) -> None:
    client_ssl = tls[1] if secure else None
    with serving(secure, tls) as server:
        round_trip(uri_of(server, secure), proxy=tinyproxy_auth.url, ssl=client_ssl)
        port = server.socket.getsockname()[1]
        assert tinyproxy_auth.connects() == [f"127.0.0.1:{port}"]
        without = tinyproxy_auth.url.replace(f"{TINYPROXY_AUTH[0]}:{TINYPROXY_AUTH[1]}@", "")
        with pytest.raises(websock.InvalidProxyStatus) as missing:
            connect(uri_of(server, secure), proxy=without, ssl=client_ssl)
    assert missing.value.response.status == 407
    assert not is_transient(missing.value)


def test_https_proxy(tls: tuple[ssl.SSLContext, ssl.SSLContext], https_proxy: ProxyServer) -> None:
    with serving(False, tls) as server:
        round_trip(
            uri_of(server, False), proxy=https_proxy.url, proxy_ssl=https_proxy.client_context
        )
        assert https_proxy.connects() == [f"127.0.0.1:{server.socket.getsockname()[1]}"]


def test_wss_through_https_proxy(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], https_proxy_auth: ProxyServer
) -> None:
    """TLS inside TLS: the server's TLS runs through the proxy's (tls_tunnel.py); keepalive
    pings and a large message both ways exercise the reader and writer threads together."""
    with serving(True, tls) as server:
        round_trip(
            uri_of(server, True),
            proxy=https_proxy_auth.url,
            proxy_ssl=https_proxy_auth.client_context,
            ssl=tls[1],
        )
        with connect(
            uri_of(server, True),
            proxy=https_proxy_auth.url,
            proxy_ssl=https_proxy_auth.client_context,
            ssl=tls[1],
            open_timeout=TIMEOUT,
            max_message_size=8 << 20,
        ) as ws:
            assert ws.socket.version() is not None  # type: ignore[union-attr]
            ws.ping()
            big = b"\x02" * (4 << 20)
            ws.send(big)
            assert ws.recv(timeout=TIMEOUT) == big
        assert ws.close_code == 1000
        assert https_proxy_auth.connects() == [f"127.0.0.1:{server.socket.getsockname()[1]}"] * 2


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_proxy(
    secure: bool,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    socks5_proxy_auth: ProxyServer,
    scheme: str,
) -> None:
    host = "localhost" if scheme == "socks5h" else "127.0.0.1"
    with serving(secure, tls) as server:
        round_trip(
            uri_of(server, secure, host),
            proxy=socks5_proxy_auth.url_as(scheme),
            ssl=tls[1] if secure else None,
        )
        socks5_proxy_auth.wait_for_connect(f"127.0.0.1:{server.socket.getsockname()[1]}", TIMEOUT)


def test_proxy_from_the_environment(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    socks5_proxy: ProxyServer,
    tinyproxy: ProxyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serving(True, tls) as server:
        target = f"127.0.0.1:{server.socket.getsockname()[1]}"
        monkeypatch.setenv("https_proxy", tinyproxy.url)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # for ws:// only: not used
        round_trip(uri_of(server, True), ssl=tls[1])
        assert tinyproxy.connects() == [target]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        round_trip(uri_of(server, True), ssl=tls[1])
        assert tinyproxy.connects() == [target]
        monkeypatch.delenv("NO_PROXY")
        round_trip(uri_of(server, True), ssl=tls[1], proxy=socks5_proxy.url)  # given wins
        socks5_proxy.wait_for_connect(target, TIMEOUT)
        assert tinyproxy.connects() == [target]


def test_proxy_not_listening_and_server_refused(tinyproxy: ProxyServer) -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError, match=f"proxy http://127.0.0.1:{port}"):
        connect("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port}", open_timeout=TIMEOUT)
    with pytest.raises(websock.InvalidProxyStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/", proxy=tinyproxy.url, open_timeout=TIMEOUT)
    assert refused.value.response.status >= 500 and is_transient(refused.value)
