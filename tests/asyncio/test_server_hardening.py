"""Server hardening: failed TLS handshakes, invalid hook responses, long peer input and
max_connections, checked on the wire and in the logs."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from rawpeer import TIMEOUT, RawClient, echo, parse_head, read_head

import websock
from websock.asyncio import transports
from websock.asyncio.server import ServerConnection
from websock.protocol.http import Request, Response


def request(method: str = "GET") -> bytes:
    return (
        f"{method} / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def exchange(port: int, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``data``; read the response until the server closes (a clean EOF, not a reset)."""
    client = await RawClient.open(port)
    client.send_raw(data)
    status, headers = parse_head(await read_head(client.reader))
    body = await asyncio.wait_for(client.reader.read(), TIMEOUT)
    await client.aclose()
    return status, headers, body


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


class Waiter(logging.Handler):
    """Sets an event when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def tls_info_waiter() -> Iterator[Waiter]:
    waiter = Waiter("TLS handshake with")
    log = logging.getLogger("websock.server")
    log.addHandler(waiter)
    try:
        yield waiter
    finally:
        log.removeHandler(waiter)


# ---------------------------------------------------------------- B1. failed TLS handshakes


async def tcp_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)


async def server_closes(reader: asyncio.StreamReader) -> None:
    """Wait (bounded) for the server to end the connection, by EOF or by reset."""

    async def drain() -> None:
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass

    await asyncio.wait_for(drain(), TIMEOUT)


def check_tls_failure_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], client_port: int
) -> None:
    assert not errors(caplog), [r.getMessage() for r in errors(caplog)]
    stderr = capfd.readouterr().err
    assert "Logging error" not in stderr and "Traceback" not in stderr, stderr
    lines = [
        r
        for r in caplog.records
        if r.name == "websock.server" and "TLS handshake with" in r.getMessage()
    ]
    if transports.fast_tls_available(asyncio.get_running_loop()):
        # aiofastnet reports the failure: one line, peer address and reason.
        assert len(lines) == 1, [r.getMessage() for r in lines]
        record = lines[0]
        assert record.levelno == logging.INFO
        assert record.exc_info is None
        message = record.getMessage()
        assert "\n" not in message
        assert f"('127.0.0.1', {client_port})" in message
        assert message.endswith("failed: connection closed by the peer")
    else:
        # asyncio's and uvloop's transports drop it silently (nothing reaches websock).
        assert lines == []


async def test_tcp_connect_and_close_before_tls_handshake(
    start_server: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tls_info_waiter: Waiter,
) -> None:
    caplog.set_level(logging.INFO)
    async with start_server(echo, secure=True) as running:
        # A load balancer's port check: connect, then close without a word.
        reader, writer = await tcp_connect(running.port)
        client_port = writer.get_extra_info("sockname")[1]
        writer.write_eof()
        await server_closes(reader)  # the server processed the EOF and gave up
        writer.close()
        if transports.fast_tls_available(asyncio.get_running_loop()):
            await asyncio.wait_for(tls_info_waiter.event.wait(), TIMEOUT)
        # The server still serves.
        async with running.connect() as ws:
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still here"
    check_tls_failure_logged(caplog, capfd, client_port)


async def untrusting_tls_client(port: int, *, send_alert: bool) -> int:
    """A TLS client without our CA: it rejects the certificate, then half-closes.

    Like asyncio's client, it sends no alert unless ``send_alert`` (as browsers do). Returns
    its port once the server has ended the connection.
    """
    reader, writer = await tcp_connect(port)
    client_port = int(writer.get_extra_info("sockname")[1])
    context = ssl.create_default_context()  # the system's CAs: not the test CA
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")

    async def handshake() -> None:
        while True:
            try:
                sslobj.do_handshake()
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                data = await reader.read(65536)
                assert data, "the server closed during the handshake"
                incoming.write(data)
            else:
                raise AssertionError("the test CA is trusted by the system?")

    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(handshake(), TIMEOUT)
    alert = outgoing.read()
    if send_alert:
        assert alert
        writer.write(alert)
    writer.write_eof()
    await server_closes(reader)
    writer.close()
    return client_port


async def test_client_rejecting_our_certificate(
    start_server: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tls_info_waiter: Waiter,
) -> None:
    caplog.set_level(logging.INFO)
    async with start_server(echo, secure=True) as running:
        client_port = await untrusting_tls_client(running.port, send_alert=False)
        if transports.fast_tls_available(asyncio.get_running_loop()):
            await asyncio.wait_for(tls_info_waiter.event.wait(), TIMEOUT)
        # And a real client, as a user would run it, without the CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            await websock.connect(running.uri(), host="127.0.0.1", ssl=ssl.create_default_context())
        async with running.connect() as ws:
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still here"
    assert not errors(caplog), [r.getMessage() for r in errors(caplog)]
    stderr = capfd.readouterr().err
    assert "Logging error" not in stderr and "Traceback" not in stderr, stderr
    if transports.fast_tls_available(asyncio.get_running_loop()):
        messages = [r.getMessage() for r in caplog.records if r.name == "websock.server"]
        assert any(f"('127.0.0.1', {client_port}) failed" in m for m in messages), messages


async def test_client_rejecting_our_certificate_with_an_alert(
    start_server: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    async with start_server(echo, secure=True) as running:
        await untrusting_tls_client(running.port, send_alert=True)
    assert not errors(caplog), [r.getMessage() for r in errors(caplog)]
    stderr = capfd.readouterr().err
    assert "Logging error" not in stderr and "Traceback" not in stderr, stderr


class FakeTransport:
    """What a TLS transport puts in the loop's exception context, for any transport."""

    def __init__(self, protocol: object) -> None:
        self.protocol = protocol

    def get_protocol(self) -> object:
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 4321) if name == "peername" else default


async def test_tls_error_containment_is_scoped_to_our_server(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    received: list[dict[str, Any]] = []

    def previous(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        received.append(context)

    loop.set_exception_handler(previous)
    try:
        async with start_server(echo, secure=True) as running:
            assert loop.get_exception_handler() is not previous
            ours = FakeTransport(ServerConnection(running.server))
            # What aiofastnet 1.2.0 reports on EOF during the handshake: a class.
            loop.call_exception_handler(
                {
                    "message": "SSL handshake failed",
                    "exception": ConnectionResetError,
                    "transport": ours,
                    "protocol": ours,
                }
            )
            # Not one of ours: passed on, with an instance the handler can format.
            foreign = FakeTransport(asyncio.Protocol())
            loop.call_exception_handler(
                {
                    "message": "SSL handshake failed",
                    "exception": ConnectionResetError,
                    "transport": foreign,
                    "protocol": foreign,
                }
            )
            # Ours, but not a network error: a bug, passed on as it is.
            bug = RuntimeError("bug")
            loop.call_exception_handler(
                {"message": "Fatal error", "exception": bug, "transport": ours, "protocol": ours}
            )
            # Ours and an OSError, but raised by our protocol code, not the TLS layer: a bug.
            our_bug = OSError("bug")
            loop.call_exception_handler(
                {
                    "message": "Fatal error: protocol.buffer_updated() call failed.",
                    "exception": our_bug,
                    "transport": ours,
                    "protocol": ours,
                }
            )
        # Restored once the server is closed.
        assert loop.get_exception_handler() is previous
    finally:
        loop.set_exception_handler(None)
    infos = [r.getMessage() for r in caplog.records if r.name == "websock.server"]
    assert "TLS handshake with ('192.0.2.7', 4321) failed: connection closed by the peer" in infos
    assert len(received) == 3
    assert isinstance(received[0]["exception"], ConnectionResetError)
    assert received[0]["transport"] is foreign
    assert received[1]["exception"] is bug
    assert received[2]["exception"] is our_bug


async def test_tls_error_containment_leaves_a_replaced_handler_alone(start_server: Any) -> None:
    loop = asyncio.get_running_loop()

    def mine(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        pass

    try:
        async with start_server(echo, secure=True):
            loop.set_exception_handler(mine)
        assert loop.get_exception_handler() is mine
    finally:
        loop.set_exception_handler(None)


async def test_plain_server_does_not_touch_the_exception_handler(start_server: Any) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    async with start_server(echo):
        assert loop.get_exception_handler() is before


# ---------------------------------------------------------------- B2. invalid hook responses


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("how", ["respond", "response"])
async def test_invalid_status_from_hook_gives_500(
    start_server: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    is_async: bool,
    how: str,
) -> None:
    def answer(ws: websock.ServerConnection) -> Response:
        if how == "respond":
            return ws.respond(1000, "not an HTTP status")
        return Response(1000, "Nope")  # built by hand, past respond()'s check

    if is_async:

        async def hook(ws: websock.ServerConnection, request: Request) -> Response | None:
            await asyncio.sleep(0)
            return answer(ws)

    else:

        def hook(ws: websock.ServerConnection, request: Request) -> Response | None:  # type: ignore[misc]
            return answer(ws)

    async with start_server(echo, process_request=hook) as running:
        status, headers, body = await exchange(running.port, request())
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert body == b"internal server error\n"
    assert headers["content-length"] == str(len(body))
    logged = errors(caplog)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].name == "websock.server"
    assert "invalid HTTP status 1000" in logged[0].getMessage()
    assert "\n" not in logged[0].getMessage()
    assert "Fatal error" not in capfd.readouterr().err


async def test_hook_returning_something_else_gives_500(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(ws: websock.ServerConnection, request: Request) -> Any:
        return "OK"

    async with start_server(echo, process_request=hook) as running:
        status, _, body = await exchange(running.port, request())
    assert status == "HTTP/1.1 500 Internal Server Error"
    logged = errors(caplog)
    assert len(logged) == 1 and "returned str" in logged[0].getMessage()


async def test_respond_rejects_statuses_that_are_not_final(start_server: Any) -> None:
    async with start_server(echo) as running:
        ws = ServerConnection(running.server)
        for status in (0, 99, 100, 101, 199, 600, 1000):
            with pytest.raises(ValueError, match=f"invalid HTTP status {status}"):
                ws.respond(status)
        assert ws.respond(200, "OK\n").status == 200
        assert ws.respond(599).status == 599


# ---------------------------------------------------------------- C. long peer input


async def test_405_for_an_8_kib_method_is_short(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with start_server(echo) as running:
        status, headers, body = await exchange(running.port, request("M" * 8192))
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == "GET"
    assert len(body) < 200
    assert body == b"unsupported method " + b"M" * 64 + b"...: expected GET\n"
    (logged,) = [r for r in caplog.records if "rejected opening handshake" in r.getMessage()]
    assert len(logged.getMessage()) < 300


# ---------------------------------------------------------------- E. max_connections


async def test_max_connections(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server_side: list[websock.ServerConnection] = []

    async def handler(ws: websock.ServerConnection) -> None:
        server_side.append(ws)
        await echo(ws)

    async with start_server(handler, max_connections=2) as running:
        server = running.server
        assert server.max_connections == 2
        first = await running.connect()
        # A connection still in its opening handshake counts too.
        second = await RawClient.open(running.port)
        # Over the limit: 503 at once, before the request is even sent, then a clean close.
        third = await RawClient.open(running.port)
        status, headers = parse_head(await read_head(third.reader))
        assert status == "HTTP/1.1 503 Service Unavailable"
        assert headers["retry-after"] == "5"
        assert headers["connection"] == "close"
        third.send_raw(request())
        body = await asyncio.wait_for(third.reader.read(), TIMEOUT)  # EOF, not a reset
        assert body == b"server at capacity: try again later\n"
        assert headers["content-length"] == str(len(body))
        await third.aclose()
        assert server.rejected_connections == 1
        # The rejected client of websock itself sees a 503.
        with pytest.raises(websock.InvalidStatus) as info:
            await running.connect()
        assert info.value.status == 503
        assert server.rejected_connections == 2
        # The two admitted connections keep working.
        await second.handshake()
        second.send_frame(1, b"two")
        frame = await second.read_frame()
        assert frame.payload == b"two"
        await first.send("one")
        assert await asyncio.wait_for(first.recv(), TIMEOUT) == "one"
        # Once one of them is gone, a new connection is accepted.
        await first.close()
        await asyncio.wait_for(server_side[0].connection_lost_waiter, TIMEOUT)
        async with running.connect() as fourth:
            await fourth.send("four")
            assert await asyncio.wait_for(fourth.recv(), TIMEOUT) == "four"
        assert server.rejected_connections == 2
        await second.aclose()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, not per refused connection
    assert "max_connections (2) reached" in warnings[0].getMessage()


async def test_refused_client_that_never_sends_is_closed(start_server: Any) -> None:
    async with start_server(echo, max_connections=1, open_timeout=0.2) as running:
        first = await RawClient.connect(running.port)
        reader, writer = await tcp_connect(running.port)
        status, _ = parse_head(await read_head(reader))
        assert status == "HTTP/1.1 503 Service Unavailable"
        # Closed after at most open_timeout, cleanly.
        await asyncio.wait_for(reader.read(), TIMEOUT)
        assert reader.at_eof()
        writer.close()
        await first.aclose()


def test_max_connections_default_and_validation() -> None:
    from websock.asyncio.server import default_max_connections

    resource = pytest.importorskip("resource")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = default_max_connections()
    if soft == resource.RLIM_INFINITY:
        assert expected is None
    else:
        assert expected is not None and 0 < expected < soft
        assert soft - expected >= min(soft - 1, 32)
    for bad in (0, -1, 1.5, True, "many"):
        with pytest.raises(ValueError, match="max_connections"):
            websock.serve(echo, "127.0.0.1", 0, max_connections=bad)
