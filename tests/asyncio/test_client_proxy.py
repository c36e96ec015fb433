"""The asyncio client through real proxies (tests/proxyservers.py): tinyproxy for HTTP
CONNECT, tinyproxy behind a TLS front for HTTPS, dante for SOCKS; ws and wss through each;
the environment's proxy and no_proxy; credentials; refusals."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from rawpeer import TIMEOUT

import websock
from proxyservers import SOCKS_AUTH, TINYPROXY_AUTH, ProxyServer, closed_port
from websock.reconnect import is_transient

pytestmark = pytest.mark.usefixtures("no_proxy_environment")


async def echo(ws: websock.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def direct_uri(running: Any) -> str:
    return f"{'wss' if running.secure else 'ws'}://127.0.0.1:{running.port}/echo"


async def round_trip(uri: str, **kwargs: Any) -> websock.ClientConnection:
    async with websock.connect(uri, open_timeout=TIMEOUT, **kwargs) as ws:
        await ws.send("through the proxy")
        assert await ws.recv() == "through the proxy"
        await ws.send(b"\x00" * 100_000)
        assert await ws.recv() == b"\x00" * 100_000
    assert ws.close_code == 1000
    return ws


async def test_http_proxy(start_server: Any, secure: bool, tinyproxy: ProxyServer) -> None:
    async with start_server(echo, secure=secure) as running:
        await round_trip(direct_uri(running), proxy=tinyproxy.url, ssl=running.client_ssl)
        assert tinyproxy.connects() == [f"127.0.0.1:{running.port}"]


async def test_http_proxy_with_credentials(
    start_server: Any, secure: bool, tinyproxy_auth: ProxyServer
) -> None:
    async with start_server(echo, secure=secure) as running:
        await round_trip(direct_uri(running), proxy=tinyproxy_auth.url, ssl=running.client_ssl)
        user, _ = TINYPROXY_AUTH
        without = tinyproxy_auth.url.replace(f"{user}:{TINYPROXY_AUTH[1]}@", "")
        assert "@" not in without
        with pytest.raises(websock.InvalidProxyStatus) as missing:
            await websock.connect(direct_uri(running), proxy=without, ssl=running.client_ssl)
        wrong = tinyproxy_auth.url.replace(TINYPROXY_AUTH[1], "wrong-password")
        with pytest.raises(websock.InvalidProxyStatus) as refused:
            await websock.connect(direct_uri(running), proxy=wrong, ssl=running.client_ssl)
    assert missing.value.response.status == 407
    assert "put user:password in the proxy URL" in str(missing.value)
    assert refused.value.response.status == 401  # tinyproxy's answer to wrong credentials
    for error in (missing.value, refused.value):
        assert not is_transient(error)


async def test_https_proxy(start_server: Any, secure: bool, https_proxy: ProxyServer) -> None:
    """TLS to the proxy; for wss://, the server's TLS inside it."""
    async with start_server(echo, secure=secure) as running:
        await round_trip(
            direct_uri(running),
            proxy=https_proxy.url,
            proxy_ssl=https_proxy.client_context,
            ssl=running.client_ssl,
        )
        # The proxy's certificate is checked: the system's CAs do not know the test CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            await websock.connect(
                direct_uri(running), proxy=https_proxy.url, ssl=running.client_ssl
            )
        assert f"127.0.0.1:{running.port}" in https_proxy.connects()


async def test_https_proxy_with_credentials(
    start_server: Any, https_proxy_auth: ProxyServer
) -> None:
    async with start_server(echo, secure=True) as running:
        await round_trip(
            direct_uri(running),
            proxy=https_proxy_auth.url,
            proxy_ssl=https_proxy_auth.client_context,
            ssl=running.client_ssl,
        )


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4"])
async def test_socks_proxy(
    start_server: Any, secure: bool, socks5_proxy: ProxyServer, scheme: str
) -> None:
    async with start_server(echo, secure=secure) as running:
        # socks5h sends the name for the proxy to resolve; the others an address.
        host = "localhost" if scheme == "socks5h" else "127.0.0.1"
        uri = f"{'wss' if secure else 'ws'}://{host}:{running.port}/"
        await round_trip(uri, proxy=socks5_proxy.url_as(scheme), ssl=running.client_ssl)
        socks5_proxy.wait_for_connect(f"127.0.0.1:{running.port}", TIMEOUT)


async def test_socks_proxy_with_credentials(
    start_server: Any, secure: bool, socks5_proxy_auth: ProxyServer
) -> None:
    async with start_server(echo, secure=secure) as running:
        await round_trip(direct_uri(running), proxy=socks5_proxy_auth.url, ssl=running.client_ssl)
        wrong = socks5_proxy_auth.url.replace("@", "x@", 1)
        with pytest.raises(websock.ProxyError, match="authentication") as refused:
            await websock.connect(direct_uri(running), proxy=wrong, ssl=running.client_ssl)
    assert not refused.value.transient
    assert SOCKS_AUTH[0] in socks5_proxy_auth.url


async def test_proxy_from_the_environment(
    start_server: Any,
    secure: bool,
    tinyproxy: ProxyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variable = "HTTPS_PROXY" if secure else "http_proxy"
    other = "http_proxy" if secure else "HTTPS_PROXY"
    async with start_server(echo, secure=secure) as running:
        target = f"127.0.0.1:{running.port}"
        monkeypatch.setenv(other, "http://127.0.0.1:1")  # the wrong scheme's: never used
        monkeypatch.setenv(variable, tinyproxy.url)
        await round_trip(direct_uri(running), ssl=running.client_ssl)
        assert tinyproxy.connects() == [target]
        # proxy=None: direct, whatever the environment says.
        await round_trip(direct_uri(running), ssl=running.client_ssl, proxy=None)
        # no_proxy lists the host (here as a CIDR range): direct.
        monkeypatch.setenv("no_proxy", "example.org, 127.0.0.0/8")
        await round_trip(direct_uri(running), ssl=running.client_ssl)
        assert tinyproxy.connects() == [target]
        # all_proxy when the scheme's own variable is unset.
        monkeypatch.delenv("no_proxy")
        monkeypatch.delenv(variable)
        monkeypatch.setenv("ALL_PROXY", tinyproxy.url)
        await round_trip(direct_uri(running), ssl=running.client_ssl)
        assert tinyproxy.connects() == [target, target]


async def test_proxy_not_listening() -> None:
    port = closed_port()
    for url in (f"http://127.0.0.1:{port}", f"socks5://127.0.0.1:{port}"):
        with pytest.raises(OSError) as refused:
            await websock.connect("ws://127.0.0.1:9/", proxy=url, open_timeout=TIMEOUT)
        assert f"127.0.0.1:{port}" in str(refused.value)
        assert is_transient(refused.value)


async def test_server_refused_through_the_proxy(
    tinyproxy: ProxyServer, socks5_proxy: ProxyServer
) -> None:
    """The proxy reaches nothing: its failure is reported, and is worth a retry."""
    target = f"ws://127.0.0.1:{closed_port()}/"
    with pytest.raises(websock.InvalidProxyStatus) as http_error:
        await websock.connect(target, proxy=tinyproxy.url, open_timeout=TIMEOUT)
    assert http_error.value.response.status >= 500
    with pytest.raises(websock.ProxyError, match="refused") as socks_error:
        await websock.connect(target, proxy=socks5_proxy.url, open_timeout=TIMEOUT)
    assert is_transient(http_error.value) and is_transient(socks_error.value)


async def test_invalid_proxy_url() -> None:
    with pytest.raises(websock.InvalidProxy, match="scheme must be"):
        await websock.connect("ws://127.0.0.1:9/", proxy="ftp://127.0.0.1:21")


async def test_redirect_through_the_proxy(start_server: Any, tinyproxy: ProxyServer) -> None:
    """Each hop of a redirect goes through the proxy."""
    async with start_server(echo) as target:

        def redirect(ws: websock.ServerConnection, request: websock.Request) -> Any:
            response = ws.respond(301, "moved\n")
            response.headers["Location"] = f"ws://127.0.0.1:{target.port}/echo"
            return response

        async with start_server(echo, process_request=redirect) as first:
            ws = await round_trip(f"ws://127.0.0.1:{first.port}/", proxy=tinyproxy.url)
            hops = [f"127.0.0.1:{first.port}", f"127.0.0.1:{target.port}"]
    assert ws.request.path == "/echo"
    assert tinyproxy.connects() == hops


async def test_proxy_answer_held_to_max_handshake_size() -> None:
    """A proxy's answer to CONNECT is bounded as a server's head is (max_handshake_size),
    in both clients: a clear InvalidProxyMessage, not a buffer that grows."""
    import websock.sync

    async def huge_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 Connection established\r\n" + b"X-Padding: yyyyyyyy\r\n" * 200)
        await writer.drain()
        await reader.read()  # until the client gives up
        writer.close()

    fake = await asyncio.start_server(huge_answer, "127.0.0.1", 0)
    proxy = f"http://127.0.0.1:{fake.sockets[0].getsockname()[1]}"
    async with fake:
        with pytest.raises(websock.InvalidProxyMessage, match="larger than 1024 bytes"):
            await websock.connect("ws://127.0.0.1:9/", proxy=proxy, max_handshake_size=1024)
        with pytest.raises(websock.InvalidProxyMessage, match="larger than 1024 bytes"):
            await asyncio.to_thread(
                websock.sync.connect, "ws://127.0.0.1:9/", proxy=proxy, max_handshake_size=1024
            )
