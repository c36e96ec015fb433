"""The opening handshake over real sockets: rejections, hooks, timeouts, TLS."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from rawpeer import (
    LONG,
    TIMEOUT,
    RawClient,
    RawServer,
    accept_handshake,
    close_payload,
    echo,
    parse_head,
    read_head,
)

import websock
from websock import InvalidHandshake, InvalidStatus
from websock.protocol.frames import Opcode
from websock.protocol.handshake import accept_key
from websock.protocol.http import Request, Response


def request(version: str = "13", extra: str = "", key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    return (
        "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


async def exchange(running: Any, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``data``, read the whole answer until the server closes; split it."""
    client = await RawClient.open(running.port, ssl_context=running.client_ssl)
    client.send_raw(data)
    head = await read_head(client.reader)
    status, headers = parse_head(head)
    body = await asyncio.wait_for(client.reader.read(), TIMEOUT)  # the server closes: EOF
    await client.aclose()
    return status, headers, body


async def test_malformed_request_gets_400(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        status, headers, body = await exchange(running, b"NONSENSE\r\n\r\n")
        assert status.startswith("HTTP/1.1 400 ")
        assert headers["content-type"].startswith("text/plain")
        assert int(headers["content-length"]) == len(body)
        assert 0 < len(body) < 200 and body.endswith(b"\n")
        assert b"Traceback" not in body


async def test_missing_key_gets_400(start_server: Any) -> None:
    async with start_server(echo) as running:
        data = request().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")
        status, _, body = await exchange(running, data)
        assert status.startswith("HTTP/1.1 400 ")
        assert b"Sec-WebSocket-Key" in body


async def test_unsupported_version_gets_426(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        status, headers, _ = await exchange(running, request(version="8"))
        assert status.startswith("HTTP/1.1 426 ")
        assert headers["sec-websocket-version"] == "13"


async def test_wrong_origin_gets_403(start_server: Any) -> None:
    origins = ["https://good.example"]
    async with start_server(echo, origins=origins) as running:
        status, _, _ = await exchange(running, request(extra="Origin: https://evil.example\r\n"))
        assert status.startswith("HTTP/1.1 403 ")
        status, _, _ = await exchange(running, request())  # no Origin, None not allowed
        assert status.startswith("HTTP/1.1 403 ")
        async with running.connect(origin="https://good.example") as ws:
            await ws.send("ok")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ok"
        with pytest.raises(InvalidStatus) as info:
            await running.connect(origin="https://evil.example")
        assert info.value.status == 403


async def test_oversize_head_gets_431(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure, max_handshake_size=4096) as running:
        status, _, _ = await exchange(running, request(extra=f"X-Big: {'a' * 5000}\r\n"))
        assert status.startswith("HTTP/1.1 431 ")


async def test_oversize_head_without_end_gets_431(start_server: Any) -> None:
    # The head never ends: the server must not wait for the blank line.
    async with start_server(echo, max_handshake_size=4096) as running:
        status, _, _ = await exchange(running, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 8000)
        assert status.startswith("HTTP/1.1 431 ")


async def test_open_timeout_disconnects_half_request(start_server: Any, secure: bool) -> None:
    # Not before open_timeout: with a long one, a half request is kept, not dropped, and
    # can still be completed.
    async with start_server(echo, secure=secure, open_timeout=LONG) as running:
        client = await RawClient.open(running.port, ssl_context=running.client_ssl)
        client.send_raw(request()[:30])
        # A whole exchange on a second connection: the server's loop has meanwhile read the
        # half request, which was in its socket before that connection was even opened.
        async with running.connect() as ws:
            await ws.send("meanwhile")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "meanwhile"
        client.send_raw(request()[30:])
        status, _ = parse_head(await read_head(client.reader))
        assert status.startswith("HTTP/1.1 101 ")
        client.send_frame(Opcode.TEXT, b"completed")
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"completed")
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        await client.read_eof()
        await client.aclose()

    # Once open_timeout runs out: the server drops the half request.
    async with start_server(echo, secure=secure, open_timeout=0.3) as running:
        client = await RawClient.open(running.port, ssl_context=running.client_ssl)
        client.send_raw(request()[:30])
        try:
            data = await asyncio.wait_for(client.reader.read(), TIMEOUT)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        assert data == b""
        assert running.server.connections == set()
        await client.aclose()


async def test_open_timeout_does_not_affect_open_connection(start_server: Any) -> None:
    async with start_server(echo, open_timeout=0.2) as running:
        async with running.connect() as ws:
            # Stay open well beyond open_timeout. No race: the loop runs its timers in
            # order, and the open timer (due open_timeout after the accept) is due before
            # the end of this wait, which started later and lasts longer.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 0.5)
            await ws.send("still open")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still open"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_process_request_rejects_with_401(start_server: Any, is_async: bool) -> None:
    def check(ws: websock.ServerConnection, req: Request) -> Response | None:
        if req.headers.get("Authorization") != "Bearer good":
            return ws.respond(401, "who are you?\n", {"WWW-Authenticate": "Bearer"})
        return None

    async def acheck(ws: websock.ServerConnection, req: Request) -> Response | None:
        await asyncio.sleep(0)
        return check(ws, req)

    hook = acheck if is_async else check
    async with start_server(echo, process_request=hook) as running:
        status, headers, body = await exchange(running, request())
        assert status.startswith("HTTP/1.1 401 ")
        assert headers["www-authenticate"] == "Bearer"
        assert body == b"who are you?\n"
        with pytest.raises(InvalidStatus) as info:
            await running.connect()
        assert info.value.status == 401
        assert info.value.response.status == 401
        async with running.connect(additional_headers={"Authorization": "Bearer good"}) as ws:
            await ws.send("in")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "in"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_process_request_health_check(
    start_server: Any, secure: bool, is_async: bool
) -> None:
    def health(ws: websock.ServerConnection, req: Request) -> Response | None:
        if req.path == "/healthz":
            return ws.respond(200, "OK\n")
        ws.response_headers["X-Session"] = "abc"
        return None

    async def ahealth(ws: websock.ServerConnection, req: Request) -> Response | None:
        await asyncio.sleep(0.01)
        return health(ws, req)

    hook = ahealth if is_async else health
    async with start_server(echo, secure=secure, process_request=hook) as running:
        data = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        status, _, body = await exchange(running, data)
        assert status.startswith("HTTP/1.1 200 ")
        assert body == b"OK\n"
        async with running.connect("/ws") as ws:
            assert ws.response is not None
            assert ws.response.headers["X-Session"] == "abc"
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"


async def test_async_hook_with_frames_pipelined_after_request(start_server: Any) -> None:
    """Frames sent right behind the request, while an async hook runs, are not lost."""
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hook(ws: websock.ServerConnection, req: Request) -> None:
        entered.set()
        await release.wait()

    async with start_server(echo, process_request=hook, compression=None) as running:
        client = await RawClient.open(running.port)
        client.send_raw(request(key="AQIDBAUGBwgJCgsMDQ4PEA=="))
        # The server has read the request and the hook is running.
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        client.send_frame(Opcode.TEXT, b"early")
        release.set()
        status, _ = parse_head(await read_head(client.reader))
        assert status.startswith("HTTP/1.1 101 ")
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"early")
        await client.aclose()


async def test_process_request_exception_gives_500(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(ws: websock.ServerConnection, req: Request) -> None:
        raise RuntimeError("hook bug")

    async with start_server(echo, process_request=hook) as running:
        status, _, body = await exchange(running, request())
        assert status.startswith("HTTP/1.1 500 ")
        assert b"hook bug" not in body
    assert any("process_request" in r.getMessage() for r in caplog.records)


async def test_client_invalid_status(start_server: Any, secure: bool) -> None:
    def hook(ws: websock.ServerConnection, req: Request) -> Response:
        return ws.respond(404, "nothing here\n")

    async with start_server(echo, secure=secure, process_request=hook) as running:
        with pytest.raises(InvalidStatus) as info:
            await running.connect()
        assert info.value.status == 404
        assert info.value.response.status == 404


async def test_client_rejects_bad_accept(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, secure: bool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer, accept="d3Jvbmcgd3Jvbmcgd3Jvbmc=")
        await reader.read()

    async with RawServer(script, server_ssl if secure else None) as server:
        scheme = "wss" if secure else "ws"
        with pytest.raises(InvalidHandshake) as info:
            await websock.connect(
                f"{scheme}://localhost:{server.port}/",
                host="127.0.0.1",
                ssl=client_ssl if secure else None,
                open_timeout=TIMEOUT,
            )
        assert "Accept" in str(info.value)


async def test_client_rejects_unrequested_extension(server_ssl: ssl.SSLContext) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer, extra="Sec-WebSocket-Extensions: x-unknown\r\n")
        await reader.read()

    async with RawServer(script) as server:
        with pytest.raises(InvalidHandshake):
            await websock.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT)


async def test_client_tls_verification_failure(start_server: Any) -> None:
    async with start_server(echo, secure=True) as running:
        untrusting = ssl.create_default_context()  # system CAs only: not our test CA
        with pytest.raises(ssl.SSLCertVerificationError):
            await running.connect(ssl=untrusting, open_timeout=TIMEOUT)
        # A wrong host name fails too.
        with pytest.raises(ssl.SSLCertVerificationError):
            await websock.connect(
                f"wss://127.0.0.1:{running.port}/",
                ssl=running.client_ssl,
                server_hostname="not-the-host.example",
                open_timeout=TIMEOUT,
            )


async def test_client_open_timeout(server_ssl: ssl.SSLContext, secure: bool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept TCP (and TLS), never answer

    async with RawServer(script, server_ssl if secure else None) as server:
        scheme = "wss" if secure else "ws"
        # The client's own TimeoutError, with its message: not wait_for's, which has none.
        with pytest.raises(TimeoutError, match="did not complete within 0.3s"):
            await asyncio.wait_for(
                websock.connect(
                    f"{scheme}://localhost:{server.port}/",
                    host="127.0.0.1",
                    ssl=_trusting() if secure else None,
                    open_timeout=0.3,
                ),
                TIMEOUT,
            )


def _trusting() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_client_connection_refused() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await websock.connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)


async def test_client_server_closes_during_handshake() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.close()

    async with RawServer(script) as server:
        with pytest.raises((ConnectionError, InvalidHandshake)):
            await websock.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT)


async def test_first_frame_in_same_segment_as_101(server_ssl: ssl.SSLContext) -> None:
    """A server may send its first message right behind the 101 response."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers = parse_head(await read_head(reader))

        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n"
            ).encode()
            + b"\x81\x05hello"
        )
        await reader.read()

    async with RawServer(script) as server:
        ws = await websock.connect(f"ws://127.0.0.1:{server.port}/", close_timeout=0.2)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
        await asyncio.wait_for(ws.close(), TIMEOUT)


async def test_client_gone_during_async_hook_is_forgotten(start_server: Any) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    hook_tasks: list[asyncio.Task[Any]] = []

    async def hook(ws: websock.ServerConnection, req: Request) -> None:
        task = asyncio.current_task()
        assert task is not None
        hook_tasks.append(task)
        entered.set()
        await release.wait()

    # Reading is paused while the hook runs, so the peer's departure is noticed only when
    # open_timeout drops the connection.
    async with start_server(echo, process_request=hook, open_timeout=0.3) as running:
        client = await RawClient.open(running.port)
        client.send_raw(request())
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        assert len(running.server.connections) == 1
        (conn,) = running.server.connections
        client.writer.transport.abort()
        await asyncio.wait_for(conn.wait_closed(), TIMEOUT)
        release.set()
        (task,) = hook_tasks
        await asyncio.wait_for(task, TIMEOUT)  # the hook's task has finished
        assert running.server.connections == set()


async def test_server_close_during_hanging_async_hook(start_server: Any) -> None:
    entered = asyncio.Event()

    async def hook(ws: websock.ServerConnection, req: Request) -> None:
        entered.set()
        await asyncio.Event().wait()  # never returns

    async with start_server(echo, process_request=hook, close_timeout=0.2) as running:
        client = await RawClient.open(running.port)
        client.send_raw(request())
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        running.server.close()
        await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
        try:
            data = await asyncio.wait_for(client.reader.read(), TIMEOUT)
        except ConnectionResetError:
            data = b""
        assert data == b""
        assert running.server.connections == set()
        await client.aclose()


async def test_open_timeout_covers_tls_handshake(start_server: Any) -> None:
    """A client that opens TCP to a wss:// server and never starts TLS is dropped too."""
    async with start_server(echo, secure=True, open_timeout=0.3) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        # Within TIMEOUT: without open_timeout, asyncio's ssl_handshake_timeout (60 s).
        try:
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
        except ConnectionResetError:
            data = b""
        assert data == b""
        writer.close()


async def test_open_timeout_counts_from_tcp_accept_not_from_tls_end(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_timeout bounds TCP, TLS and the upgrade together: a TLS handshake that used up
    the whole budget leaves nothing for the HTTP request (the timer does not restart)."""
    loop = asyncio.get_running_loop()
    try:
        real_time = loop.time
        monkeypatch.setattr(loop, "time", real_time)
    except AttributeError:
        pytest.skip("this event loop's clock cannot be replaced (uvloop)")
    offset = [0.0]
    monkeypatch.setattr(loop, "time", lambda: real_time() + offset[0])
    accepted = asyncio.Event()
    original_init = websock.ServerConnection.__init__

    def accept_then_skip_time(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)  # the accept time is taken here
        offset[0] = LONG + 1  # the TLS handshake "took" longer than open_timeout
        accepted.set()

    monkeypatch.setattr(websock.ServerConnection, "__init__", accept_then_skip_time)
    # ssl_handshake_timeout far beyond the skip: only the open timer can end this.
    async with start_server(
        echo,
        secure=True,
        open_timeout=LONG,
        ssl_handshake_timeout=100 * LONG,
    ) as running:
        reader, writer = await asyncio.open_connection(
            "localhost",
            running.port,
            ssl=running.client_ssl,
            ssl_handshake_timeout=100 * LONG,
        )
        assert accepted.is_set()
        # No request is sent: with the timer restarted after TLS, nothing would come
        # for LONG seconds.
        try:
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        assert data == b""
        writer.close()
