"""Behind nginx: the recipe of docs/deploy-nginx.md, tested against a real nginx.

nginx (tests/nginxserver.py) terminates TLS on a free port of 127.0.0.1 and proxies over
HTTP/1.1 with the Upgrade headers to ``python -m websock serve --plain`` (or, for the
X-Forwarded-For checks, to a server started in this process, whose handler reports what it
sees). The client is websock's own, on wss://127.0.0.1:<nginx port>/ with ``proxy=None``.

What must come through nginx unchanged: text and binary messages, 4 MiB messages both ways,
permessage-deflate negotiated end to end, close codes 1000, 1001 (server shutdown) and 1009
(message too big), and the client's address in X-Forwarded-For, believed only by a server
that trusts nginx (``trusted_proxies``).

Every wait is bounded (TIMEOUT, STARTUP_TIMEOUT); synchronisation is on messages, close
frames, process exits and nginx's logs, never on sleeps.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import websock
from nginxserver import Nginx, WebsockServe, start_nginx, start_websock_serve
from websock import ConnectionClosedError, ConnectionClosedOK

TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
MiB = 1024 * 1024
#: The server's --max-message-size: above 4 MiB (those pass), below 6 MiB (1009).
SERVER_LIMIT = "5M"
CLIENT_LIMIT = 8 * MiB
#: A second loopback address for the client, so that nginx's X-Forwarded-For (the client)
#: differs from the server's TCP peer (nginx, on 127.0.0.1).
CLIENT_HOST = "127.0.0.2"
#: nginx's proxy_read_timeout in the keepalive tests, in seconds (the server pings 5 times
#: as often).
READ_TIMEOUT = max(1, round(float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)))
NGINX_TIMEOUT = f"{READ_TIMEOUT}s"


@pytest.fixture(scope="module")
def nginx_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def backend() -> Iterator[WebsockServe]:
    with start_websock_serve("--max-message-size", SERVER_LIMIT) as served:
        yield served


@pytest.fixture
def nginx(backend: WebsockServe, nginx_ca: trustme.CA, tmp_path: Path) -> Iterator[Nginx]:
    with start_nginx(backend.port, nginx_ca, tmp_path / "nginx") as proxy:
        yield proxy


def connect(nginx: Nginx, **kwargs: Any) -> websock.connect:
    kwargs.setdefault("max_message_size", CLIENT_LIMIT)
    return websock.connect(
        nginx.uri(),
        ssl=nginx.client_context,
        proxy=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        **kwargs,
    )


async def recv(ws: websock.ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def test_echo_text_and_binary_with_compression(nginx: Nginx) -> None:
    async with connect(nginx) as ws:
        # permessage-deflate negotiated end to end: nginx passes the Sec-WebSocket-Extensions
        # headers through and the compressed frames as bytes.
        assert [extension.name for extension in ws.extensions] == ["permessage-deflate"]
        await ws.send("hello through nginx ✓")
        assert await recv(ws) == "hello through nginx ✓"
        await ws.send(b"\x00\x01\xfe\xff" * 256)
        assert await recv(ws) == b"\x00\x01\xfe\xff" * 256
        # The server's TCP peer is nginx; the client's is nginx too.
        assert ws.remote_address[:2] == ("127.0.0.1", nginx.port)
    nginx.wait_for_access(r'"GET / HTTP/1\.1" 101 upgrade=websocket upstream=127\.0\.0\.1:')


async def test_echo_without_compression(nginx: Nginx) -> None:
    async with connect(nginx, compression=None) as ws:
        assert ws.extensions == []
        await ws.send("plain")
        assert await recv(ws) == "plain"


async def test_four_mebibytes_both_ways(nginx: Nginx) -> None:
    binary = os.urandom(4 * MiB)  # incompressible: 4 MiB on the wire each way
    text = "websock behind nginx " * (4 * MiB // 21)  # compressible: inflated to ~4 MiB
    async with connect(nginx) as ws:
        await ws.send(binary)
        assert await recv(ws) == binary
        await ws.send(text)
        assert await recv(ws) == text
    nginx.wait_for_access(r'" 101 upgrade=websocket .* bytes=(\d{7,})')


async def test_client_close_1000(nginx: Nginx) -> None:
    ws = await connect(nginx)
    await ws.send("bye soon")
    assert await recv(ws) == "bye soon"
    await asyncio.wait_for(ws.close(1000, "done"), TIMEOUT)
    # The echo server answered the client's Close with the code it received (no reason).
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK) as info:
        await recv(ws)
    assert info.value.code == 1000
    assert info.value.rcvd_then_sent is False  # the client started the closing handshake


async def test_client_close_1000_reaches_the_handler(nginx_ca: trustme.CA, tmp_path: Path) -> None:
    received: asyncio.Future[tuple[int | None, str | None]] = (
        asyncio.get_running_loop().create_future()
    )

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.wait_closed()
        received.set_result((ws.close_code, ws.close_reason))

    async with nginx_in_front_of(handler, nginx_ca, tmp_path / "nginx") as proxy:
        async with connect(proxy) as ws:
            await ws.close(1000, "done, thanks")
        assert await asyncio.wait_for(received, TIMEOUT) == (1000, "done, thanks")


async def test_server_shutdown_1001(nginx: Nginx, backend: WebsockServe) -> None:
    clients = [await connect(nginx) for _ in range(2)]
    for i, ws in enumerate(clients):
        await ws.send(f"client {i}")
        assert await recv(ws) == f"client {i}"
    backend.process.send_signal(signal.SIGTERM)
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            await recv(ws)
        assert info.value.code == 1001
        assert info.value.rcvd is not None  # a Close frame from the server, not nginx's EOF
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    status, out, err = await asyncio.to_thread(backend.finish)
    assert status == 0, err
    assert "shutting down: closing connections with 1001" in out
    assert "Traceback" not in err


async def test_message_too_big_1009(nginx: Nginx) -> None:
    async with connect(nginx) as ws:
        await ws.send(os.urandom(6 * MiB))  # over the server's 5 MiB
        with pytest.raises(ConnectionClosedError) as info:
            await recv(ws)
        assert info.value.code == 1009
        assert info.value.rcvd is not None


async def test_message_too_big_1009_compressed(nginx: Nginx) -> None:
    # 6 MiB of zeros are a few KiB on the wire: the server's limit applies after inflating.
    async with connect(nginx) as ws:
        assert ws.extensions
        await ws.send(bytes(6 * MiB))
        with pytest.raises(ConnectionClosedError) as info:
            await recv(ws)
        assert info.value.code == 1009


# X-Forwarded-For: a server in this process, whose handler reports what it sees.


async def _report(ws: websock.ServerConnection) -> None:
    assert ws.request is not None
    headers = ws.request.headers
    await ws.send(
        repr(
            {
                "client_address": ws.client_address,
                "remote_address": ws.remote_address[:2],
                "x_forwarded_for": headers.get("X-Forwarded-For"),
                "x_forwarded_proto": headers.get("X-Forwarded-Proto"),
                "host": headers.get("Host"),
            }
        )
    )
    await ws.wait_closed()


@contextlib.asynccontextmanager
async def nginx_in_front_of(
    handler: Callable[[websock.ServerConnection], Awaitable[None]],
    nginx_ca: trustme.CA,
    directory: Path,
    **serve_kwargs: Any,
) -> AsyncIterator[Nginx]:
    """A websock server in this process, behind nginx."""
    server = await websock.serve(handler, "127.0.0.1", 0, **serve_kwargs)
    try:
        with start_nginx(server.port, nginx_ca, directory) as proxy:
            yield proxy
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)


async def _seen_through_nginx(
    nginx_ca: trustme.CA,
    directory: Path,
    trusted_proxies: list[str] | None,
    additional_headers: dict[str, str] | None = None,
) -> dict[str, object]:
    async with nginx_in_front_of(
        _report, nginx_ca, directory, trusted_proxies=trusted_proxies
    ) as proxy:
        async with connect(
            proxy, local_addr=(CLIENT_HOST, 0), additional_headers=additional_headers
        ) as ws:
            assert ws.local_address[0] == CLIENT_HOST
            report = await recv(ws)
        proxy.wait_for_access(f'(?m)^{re.escape(CLIENT_HOST)} "GET / ')
    assert isinstance(report, str)
    seen: dict[str, object] = ast.literal_eval(report)
    return seen


async def test_x_forwarded_for_trusted(nginx_ca: trustme.CA, tmp_path: Path) -> None:
    seen = await _seen_through_nginx(nginx_ca, tmp_path / "nginx", ["127.0.0.1"])
    assert seen["x_forwarded_for"] == CLIENT_HOST
    assert seen["x_forwarded_proto"] == "https"
    # Host $host: the name without the port (use $http_host to keep the client's header).
    assert seen["host"] == "127.0.0.1"
    assert seen["client_address"] == (CLIENT_HOST, 0)
    remote = seen["remote_address"]
    assert isinstance(remote, tuple) and remote[0] == "127.0.0.1"  # nginx, the TCP peer


async def test_x_forwarded_for_ignored_without_trusted_proxies(
    nginx_ca: trustme.CA, tmp_path: Path
) -> None:
    seen = await _seen_through_nginx(nginx_ca, tmp_path / "nginx", None)
    assert seen["x_forwarded_for"] == CLIENT_HOST  # sent, but not believed
    assert seen["client_address"] == seen["remote_address"]
    remote = seen["remote_address"]
    assert isinstance(remote, tuple) and remote[0] == "127.0.0.1"


async def test_x_forwarded_for_spoofed_by_the_client(nginx_ca: trustme.CA, tmp_path: Path) -> None:
    # The client sends its own X-Forwarded-For; nginx appends the real peer after it, and the
    # server takes the rightmost address that is not a trusted proxy: the real one.
    seen = await _seen_through_nginx(
        nginx_ca,
        tmp_path / "nginx",
        ["127.0.0.1"],
        additional_headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert seen["x_forwarded_for"] == f"203.0.113.9, {CLIENT_HOST}"
    assert seen["client_address"] == (CLIENT_HOST, 0)


# proxy_read_timeout against websock's keepalive: nginx closes a WebSocket connection on
# which nothing came from the server for proxy_read_timeout; the server's Pings count.


async def test_idle_connection_kept_by_server_pings(nginx_ca: trustme.CA, tmp_path: Path) -> None:
    with (
        start_websock_serve("--ping-interval", str(READ_TIMEOUT / 5)) as served,
        start_nginx(served.port, nginx_ca, tmp_path / "nginx", read_timeout=NGINX_TIMEOUT) as proxy,
    ):
        async with connect(proxy, ping_interval=None) as ws:
            # The idle period under test (not a synchronisation): three read timeouts.
            await asyncio.sleep(3 * READ_TIMEOUT)
            await ws.send("still there")
            assert await recv(ws) == "still there"


async def test_idle_connection_cut_by_nginx_without_pings(
    nginx_ca: trustme.CA, tmp_path: Path
) -> None:
    with (
        start_websock_serve("--ping-interval", "0") as served,
        start_nginx(served.port, nginx_ca, tmp_path / "nginx", read_timeout=NGINX_TIMEOUT) as proxy,
    ):
        async with connect(proxy, ping_interval=None) as ws:
            # No Close frame: nginx drops both TCP connections ("upstream timed out").
            with pytest.raises(ConnectionClosedError) as info:
                await recv(ws)
            assert info.value.code == 1006
            assert info.value.rcvd is None
        proxy.wait_for_access(r'" 101 upgrade=websocket .* upstream_status=101 ')
        assert "upstream timed out" in proxy.error_log()


async def test_two_servers_behind_one_upstream(nginx_ca: trustme.CA, tmp_path: Path) -> None:
    with (
        start_websock_serve() as first,
        start_websock_serve() as second,
        start_nginx(
            [("127.0.0.1", first.port), ("127.0.0.1", second.port)],
            nginx_ca,
            tmp_path / "nginx",
        ) as proxy,
    ):
        # One nginx worker, round robin: two connections open at once go one to each server.
        clients = [await connect(proxy) for _ in range(2)]
        for i, ws in enumerate(clients):
            await ws.send(f"client {i}")
            assert await recv(ws) == f"client {i}"
        # A server going away closes its own connections with 1001; the other one stays.
        first.process.send_signal(signal.SIGTERM)
        assert (await asyncio.to_thread(first.finish))[0] == 0
        codes = []
        for ws in clients:
            try:
                await ws.send("anyone?")
                assert await recv(ws) == "anyone?"
                codes.append(None)
            except ConnectionClosedOK as closed:
                codes.append(closed.code)
        assert sorted(codes, key=str) == [1001, None]
        # New connections go to the server still running.
        async with connect(proxy) as ws:
            await ws.send("after")
            assert await recv(ws) == "after"
        for ws in clients:
            await asyncio.wait_for(ws.close(), TIMEOUT)
        # nginx logs each connection as it ends: three lines, both servers used.
        log = proxy.wait_for_access(r'(?:\S+ "GET / HTTP/1\.1" 101 .*\n){3}').group(0)
        assert f"upstream=127.0.0.1:{first.port} " in log, log
        assert f"upstream=127.0.0.1:{second.port} " in log, log
