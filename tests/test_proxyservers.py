"""The proxy fixtures of tests/proxyservers.py work, checked without websock's client.

Each test tunnels to a local TCP echo server through a real proxy (python-socks, or a
hand-written CONNECT) and checks the echo and what the proxy logged.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from python_socks import ProxyError, ProxyType
from python_socks.sync import Proxy

from proxyservers import (
    SOCKS_AUTH,
    STARTUP_TIMEOUT,
    TINYPROXY_AUTH,
    ProxyServer,
    closed_port,
    start_socks5,
    start_tinyproxy,
)

pytest_plugins = ["proxyservers"]

TIMEOUT = STARTUP_TIMEOUT


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1, one thread per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(TIMEOUT)
        listener.close()


def check_echo(sock: socket.socket | ssl.SSLSocket, payload: bytes = b"hello proxy\n") -> None:
    sock.settimeout(TIMEOUT)
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    assert received == payload


def raw_connect(
    sock: socket.socket | ssl.SSLSocket, target: str, credentials: tuple[str, str] | None = None
) -> bytes:
    """Send a CONNECT by hand; return the response head (up to the blank line)."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    sock.settimeout(TIMEOUT)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"closed after {head!r}"
        head += chunk
    return head


# tinyproxy.


def test_tinyproxy_tunnels(tinyproxy: ProxyServer, echo_port: int) -> None:
    assert tinyproxy.url == f"http://127.0.0.1:{tinyproxy.port}"
    assert tinyproxy.connects() == []
    with Proxy.from_url(tinyproxy.url).connect("127.0.0.1", echo_port, timeout=TIMEOUT) as sock:
        check_echo(sock)
    assert tinyproxy.connects() == [f"127.0.0.1:{echo_port}"]
    tinyproxy.wait_for_connect(f"127.0.0.1:{echo_port}", timeout=0)


def test_tinyproxy_any_port_and_refusal(tinyproxy: ProxyServer) -> None:
    # Not 443 or 563: CONNECT is allowed to any port, and a refused connection is a 500.
    port = closed_port()
    with socket.create_connection(tinyproxy.address, timeout=TIMEOUT) as sock:
        head = raw_connect(sock, f"127.0.0.1:{port}")
    assert head.startswith(b"HTTP/1.1 500 "), head
    assert tinyproxy.connects() == [f"127.0.0.1:{port}"]


def test_tinyproxy_auth(tinyproxy_auth: ProxyServer, echo_port: int) -> None:
    user, password = TINYPROXY_AUTH
    assert tinyproxy_auth.auth == TINYPROXY_AUTH
    assert tinyproxy_auth.url == f"http://{user}:{password}@127.0.0.1:{tinyproxy_auth.port}"
    target = f"127.0.0.1:{echo_port}"
    with socket.create_connection(tinyproxy_auth.address, timeout=TIMEOUT) as sock:
        head = raw_connect(sock, target)
    assert head.startswith(b"HTTP/1.0 407 "), head
    assert b"Proxy-Authenticate: Basic" in head
    with socket.create_connection(tinyproxy_auth.address, timeout=TIMEOUT) as sock:
        head = raw_connect(sock, target, (user, "wrong"))
    # tinyproxy 1.11.1 answers wrong credentials with 401 (and WWW-Authenticate), not 407.
    assert head.startswith((b"HTTP/1.0 401 ", b"HTTP/1.0 407 ")), head
    url = tinyproxy_auth.url
    with Proxy.from_url(url).connect("127.0.0.1", echo_port, timeout=TIMEOUT) as sock:
        check_echo(sock)
    # Every CONNECT received, refused ones included.
    assert tinyproxy_auth.connects() == [target] * 3


def test_tinyproxy_rejects_unusable_credentials() -> None:
    with pytest.raises(ValueError, match="BasicAuth"), start_tinyproxy(("alice", "a b")):
        pass


# HTTPS proxy.


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_https_proxy(https_proxy: ProxyServer, echo_port: int, server_hostname: str) -> None:
    assert https_proxy.url == f"https://127.0.0.1:{https_proxy.port}"
    assert https_proxy.upstream is not None and https_proxy.client_context is not None
    raw = socket.create_connection(https_proxy.address, timeout=TIMEOUT)
    with https_proxy.client_context.wrap_socket(raw, server_hostname=server_hostname) as sock:
        head = raw_connect(sock, f"127.0.0.1:{echo_port}")
        assert head.startswith(b"HTTP/1.0 200 "), head
        check_echo(sock)
    assert https_proxy.connects() == [f"127.0.0.1:{echo_port}"]


def test_https_proxy_untrusted(https_proxy: ProxyServer) -> None:
    raw = socket.create_connection(https_proxy.address, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()


def test_https_proxy_auth(https_proxy_auth: ProxyServer, echo_port: int) -> None:
    assert https_proxy_auth.auth == TINYPROXY_AUTH
    assert https_proxy_auth.url.startswith("https://alice:")
    context = https_proxy_auth.client_context
    assert context is not None
    target = f"127.0.0.1:{echo_port}"
    raw = socket.create_connection(https_proxy_auth.address, timeout=TIMEOUT)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert raw_connect(sock, target).startswith(b"HTTP/1.0 407 ")
    raw = socket.create_connection(https_proxy_auth.address, timeout=TIMEOUT)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert raw_connect(sock, target, TINYPROXY_AUTH).startswith(b"HTTP/1.0 200 ")
        check_echo(sock)


# dante.


def test_socks5(socks5_proxy: ProxyServer, echo_port: int) -> None:
    assert socks5_proxy.url == f"socks5://127.0.0.1:{socks5_proxy.port}"
    target = f"127.0.0.1:{echo_port}"
    with Proxy.from_url(socks5_proxy.url).connect("127.0.0.1", echo_port, timeout=TIMEOUT) as s:
        check_echo(s)
    assert socks5_proxy.wait_for_connect(target, TIMEOUT) == [target]
    # Remote resolution (socks5h): dante logs the address it resolved the name to.
    proxy = Proxy.from_url(socks5_proxy.url, rdns=True)
    with proxy.connect("localhost", echo_port, timeout=TIMEOUT) as sock:
        check_echo(sock)
    assert socks5_proxy.wait_for_connect(target, TIMEOUT) == [target] * 2


def test_socks4(socks5_proxy: ProxyServer, echo_port: int) -> None:
    url = socks5_proxy.url_as("socks4")
    with Proxy.from_url(url).connect("127.0.0.1", echo_port, timeout=TIMEOUT) as sock:
        check_echo(sock)
    socks5_proxy.wait_for_connect(f"127.0.0.1:{echo_port}", TIMEOUT)
    # SOCKS4a (host name resolved by the proxy) is not supported by dante.
    proxy = Proxy(ProxyType.SOCKS4, socks5_proxy.host, socks5_proxy.port, rdns=True)
    with pytest.raises(ProxyError):
        proxy.connect("localhost", echo_port, timeout=TIMEOUT)


def test_socks5_refused(socks5_proxy: ProxyServer) -> None:
    proxy = Proxy.from_url(socks5_proxy.url)
    with pytest.raises(ProxyError, match="refused"):
        proxy.connect("127.0.0.1", closed_port(), timeout=TIMEOUT)
    assert socks5_proxy.connects() == []


def test_socks5_auth(socks5_proxy_auth: ProxyServer, echo_port: int) -> None:
    user, _ = SOCKS_AUTH
    url = socks5_proxy_auth.url
    assert url == f"socks5://{user}:pw%3A%20s%40cks%25%2Fx@127.0.0.1:{socks5_proxy_auth.port}"
    # No method offered that dante accepts: only username/password.
    anonymous = Proxy(ProxyType.SOCKS5, "127.0.0.1", socks5_proxy_auth.port)
    with pytest.raises(ProxyError, match="authentication"):
        anonymous.connect("127.0.0.1", echo_port, timeout=TIMEOUT)
    with pytest.raises(ProxyError, match="authentication"):
        bad = Proxy(ProxyType.SOCKS5, "127.0.0.1", socks5_proxy_auth.port, user, "wrong")
        bad.connect("127.0.0.1", echo_port, timeout=TIMEOUT)
    with Proxy.from_url(url).connect("127.0.0.1", echo_port, timeout=TIMEOUT) as sock:
        check_echo(sock)
    target = f"127.0.0.1:{echo_port}"
    assert socks5_proxy_auth.wait_for_connect(target, TIMEOUT) == [target]
    assert f"username%{user}@" in socks5_proxy_auth.log()


def test_closed_port() -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port()), timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("start", "package"),
    [(start_tinyproxy, "tinyproxy"), (start_socks5, "dante-server")],
)
def test_missing_program_skips(
    monkeypatch: pytest.MonkeyPatch,
    start: Callable[[], AbstractContextManager[ProxyServer]],
    package: str,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(pytest.skip.Exception, match=f"apt-get install {package}"), start():
        pass
