"""The closing handshake and who closes TCP, checked byte by byte with scripted peers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest
from rawpeer import (
    LONG,
    TIMEOUT,
    BioTlsClient,
    RawClient,
    RawServer,
    accept_handshake,
    close_payload,
    echo,
    read_frame,
)

import websock
from websock import ConnectionClosedError, ConnectionClosedOK
from websock.protocol.connection import State
from websock.protocol.frames import Opcode

# The server must close TCP promptly after the closing handshake (CONFORMANCE.md #3). The
# tests that check it give the server close_timeout=LONG and wait TIMEOUT for the FIN: seen
# by then, it came from the closing handshake, not from close_timeout running out.


async def raw_client(running: Any) -> RawClient:
    return await RawClient.connect(running.port, ssl_context=running.client_ssl)


async def test_server_closes_tcp_promptly_after_close_handshake(
    start_server: Any, secure: bool
) -> None:
    """The regression: Close 1000 answered, then the server's FIN without delay."""
    async with start_server(echo, secure=secure, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.PING, b"hello")
        pong = await client.read_frame()
        assert (pong.opcode, pong.payload, pong.fin, pong.masked) == (
            Opcode.PONG,
            b"hello",
            True,
            False,
        )

        client.send_frame(Opcode.CLOSE, close_payload(1000))
        # The Close frame exactly: FIN + opcode 8, unmasked, 2-byte payload 1000.
        raw = await asyncio.wait_for(client.reader.readexactly(4), TIMEOUT)
        assert raw == b"\x88\x02\x03\xe8"
        await client.read_eof()
        await client.aclose()


async def test_server_echoes_close_code_and_defaults_to_1000(start_server: Any) -> None:
    async with start_server(echo, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.CLOSE, close_payload(4321, "bye"))
        reply = await client.read_frame()
        assert (reply.opcode, reply.close_code, reply.close_reason) == (Opcode.CLOSE, 4321, "")
        await client.read_eof()
        await client.aclose()

        client = await raw_client(running)
        client.send_frame(Opcode.CLOSE, b"")  # no status code
        reply = await client.read_frame()
        assert (reply.opcode, reply.close_code) == (Opcode.CLOSE, 1000)
        await client.read_eof()
        await client.aclose()


async def test_server_cuts_off_silent_peer_after_close_timeout(start_server: Any) -> None:
    codes: asyncio.Queue[int | None] = asyncio.Queue()

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.close(1000)
        codes.put_nowait(ws.close_code)

    # Not before close_timeout: with a long one, the server still waits for our Close
    # after sending its own, and the handshake completes (a server that dropped TCP as it
    # sent its Close would never see our answer: close_code 1006).
    async with start_server(handler, close_timeout=LONG) as running:
        client = await raw_client(running)
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        assert await asyncio.wait_for(codes.get(), TIMEOUT) == 1000
        await client.read_eof()
        await client.aclose()

    # Once close_timeout runs out: a peer that never answers is cut off.
    async with start_server(handler, close_timeout=0.2) as running:
        client = await raw_client(running)
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        # Never answer: the server must drop TCP after close_timeout.
        data = await asyncio.wait_for(client.reader.read(), TIMEOUT)
        assert data == b""
        assert await asyncio.wait_for(codes.get(), TIMEOUT) == 1006
        await client.aclose()


async def test_client_closes_tcp_when_server_does_not(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, secure: bool
) -> None:
    """A server that answers Close but keeps TCP open: the client closes after close_timeout."""
    eof_seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        frame = await read_frame(reader)
        assert frame.opcode == Opcode.CLOSE and frame.masked
        assert frame.close_code == 1000
        writer.write(b"\x88\x02\x03\xe8")
        try:
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if data:
            eof_seen.set_exception(AssertionError(data))
        else:
            eof_seen.set_result(None)

    async with RawServer(script, server_ssl if secure else None) as server:
        scheme = "wss" if secure else "ws"
        ws = await websock.connect(
            f"{scheme}://localhost:{server.port}/",
            host="127.0.0.1",
            ssl=client_ssl if secure else None,
            close_timeout=0.2,
        )
        # The server never ends TCP: only the client's close timer can end close().
        await asyncio.wait_for(ws.close(), TIMEOUT)
        assert ws.state is State.CLOSED
        assert ws.close_code == 1000
        await asyncio.wait_for(eof_seen, TIMEOUT)


async def test_client_close_is_quick_when_server_closes_tcp(
    start_server: Any, secure: bool
) -> None:
    async with start_server(echo, secure=secure) as running:
        # close_timeout=LONG: close() can end within TIMEOUT only on the server's FIN.
        ws = await running.connect(close_timeout=LONG)
        await asyncio.wait_for(ws.close(), TIMEOUT)
        assert ws.state is State.CLOSED
        assert ws.close_code == 1000


async def test_server_close_sends_1001_to_every_connection(start_server: Any, secure: bool) -> None:
    handlers_done = 0

    async def handler(ws: websock.ServerConnection) -> None:
        nonlocal handlers_done
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            handlers_done += 1

    async with start_server(handler, secure=secure) as running:
        clients = [await running.connect() for _ in range(3)]
        for ws in clients:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"
        assert len(running.server.connections) == 3
        port = running.port
        running.server.close()
        await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
        assert handlers_done == 3
        assert running.server.connections == set()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.code == 1001
            assert info.value.rcvd_then_sent is True
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        # No longer listening.
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)


async def test_server_close_with_raw_client_bytes(start_server: Any) -> None:
    async with start_server(echo, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.TEXT, b"x")
        assert (await client.read_frame()).payload == b"x"
        running.server.close()
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code, frame.masked) == (Opcode.CLOSE, 1001, False)
        client.send_frame(Opcode.CLOSE, close_payload(1001))
        await client.read_eof()
        await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
        await client.aclose()


async def test_handler_exception_closes_1011_without_details(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.recv()
        raise RuntimeError("secret internal detail")

    caplog.set_level(logging.ERROR, logger="websock.server")
    async with start_server(handler, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.TEXT, b"go")
        frame = await client.read_frame()
        assert frame.opcode == Opcode.CLOSE
        assert frame.payload == b"\x03\xf3"  # 1011, no reason
        client.send_frame(Opcode.CLOSE, close_payload(1011))
        await client.read_eof()
        await client.aclose()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "the handler's exception was not logged"
    assert any(
        r.exc_info is not None and "secret internal detail" in str(r.exc_info[1]) for r in errors
    )


async def test_handler_exception_seen_by_our_client(start_server: Any, secure: bool) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        raise ValueError("boom")

    async with start_server(handler, secure=secure) as running:
        async with running.connect() as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.code == 1011
            assert info.value.reason == ""


async def test_handler_return_closes_1000(start_server: Any, secure: bool) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        return

    async with start_server(handler, secure=secure, close_timeout=LONG) as running:
        client = await raw_client(running)
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.CLOSE, b"\x03\xe8")
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        await client.read_eof()
        await client.aclose()


async def test_messages_sent_before_close_arrive_before_close(start_server: Any) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        for i in range(5):
            await ws.send(f"m{i}")
        await ws.send(b"x" * 200_000)  # beyond the write buffer's high-water mark
        await ws.close(1000, "done")

    async with start_server(handler, compression=None, close_timeout=LONG) as running:
        client = await raw_client(running)
        for i in range(5):
            frame = await client.read_frame()
            assert (frame.opcode, frame.payload) == (Opcode.TEXT, f"m{i}".encode())
        frame = await client.read_frame()
        assert (frame.opcode, len(frame.payload)) == (Opcode.BINARY, 200_000)
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code, frame.close_reason) == (Opcode.CLOSE, 1000, "done")
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        await client.read_eof()
        await client.aclose()


async def test_close_after_message_in_same_segment(start_server: Any, secure: bool) -> None:
    """The handler gets the message and its echo goes out before our Close reply."""
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        message = await ws.recv()
        got.set_result(message)
        await ws.send(message)
        await ws.recv()  # the Close: raises ConnectionClosedOK

    async with start_server(handler, secure=secure, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_raw(
            client.frame_bytes(Opcode.TEXT, b"last words")
            + client.frame_bytes(Opcode.CLOSE, close_payload(1000))
        )
        assert await asyncio.wait_for(got, TIMEOUT) == "last words"
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"last words")
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        await client.read_eof()
        await client.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"\x81\x01x", id="unmasked"),
        pytest.param(b"\x8b\x80\x00\x00\x00\x00", id="reserved-opcode"),
        pytest.param(b"\xc1\x80\x00\x00\x00\x00", id="rsv1-without-extension"),
        pytest.param(b"\x00\x80\x00\x00\x00\x00", id="continuation-without-message"),
    ],
)
async def test_violation_after_message_in_same_segment(
    start_server: Any, secure: bool, bad: bytes
) -> None:
    """CONFORMANCE.md #7: the echo of the valid message is written before Close 1002."""
    async with start_server(echo, secure=secure, compression=None, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_raw(
            client.frame_bytes(Opcode.TEXT, b"one")
            + client.frame_bytes(Opcode.BINARY, b"two")
            + bad
        )
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"one")
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.BINARY, b"two")
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1002)
        client.send_frame(Opcode.CLOSE, close_payload(1002))
        await client.read_eof()
        await client.aclose()


async def test_invalid_utf8_after_message_closes_1007(start_server: Any) -> None:
    async with start_server(echo, compression=None, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_raw(
            client.frame_bytes(Opcode.TEXT, b"fine") + client.frame_bytes(Opcode.TEXT, b"\xff")
        )
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"fine")
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1007)
        client.send_frame(Opcode.CLOSE, close_payload(1007))
        await client.read_eof()
        await client.aclose()


async def test_abrupt_disconnect_gives_1006(start_server: Any, secure: bool) -> None:
    seen: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    opened = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        opened.set()
        try:
            await ws.recv()
        except BaseException as exc:
            seen.set_result(exc)

    async with start_server(handler, secure=secure) as running:
        client = await raw_client(running)
        await asyncio.wait_for(opened.wait(), TIMEOUT)
        client.writer.transport.abort()
        exc = await asyncio.wait_for(seen, TIMEOUT)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.code == 1006
        assert exc.rcvd is None and exc.sent is None


async def test_client_frames_are_masked_server_frames_not(
    server_ssl: ssl.SSLContext,
) -> None:
    """CONFORMANCE.md #4: our client masks every frame and sets no RSV bit uninvited."""
    frames: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        seen = []
        while True:
            frame = await read_frame(reader)
            seen.append(frame)
            if frame.opcode == Opcode.CLOSE:
                break
        writer.write(b"\x88\x02\x03\xe8")
        writer.close()
        frames.set_result(seen)

    async with RawServer(script) as server:
        async with websock.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("text")
            await ws.send(b"bin" * 1000)
            await ws.send(["frag", "ment"])
            await ws.pong(b"p")
        seen = await asyncio.wait_for(frames, TIMEOUT)
    assert [f.opcode for f in seen] == [
        Opcode.TEXT,
        Opcode.BINARY,
        Opcode.TEXT,
        Opcode.CONT,
        Opcode.PONG,
        Opcode.CLOSE,
    ]
    assert all(f.masked and f.rsv == 0 for f in seen)
    assert [f.fin for f in seen] == [True, True, False, True, True, True]
    assert seen[0].payload == b"text" and seen[2].payload + seen[3].payload == b"fragment"


async def test_server_closes_tcp_promptly_when_peer_ignores_close_notify(
    start_server: Any, client_ssl: ssl.SSLContext
) -> None:
    """Over TLS, the FIN must not wait for a close_notify that never comes."""
    # close_timeout=LONG: seen within TIMEOUT, the FIN came from the TLS grace, not from
    # close_timeout (nor from asyncio's 30 s ssl_shutdown_timeout).
    async with start_server(echo, secure=True, close_timeout=LONG) as running:
        client = await BioTlsClient.connect(running.port, ssl_context=client_ssl)
        client.send_frame(Opcode.PING, b"hello")
        pong = await client.read_frame()
        assert (pong.opcode, pong.payload) == (Opcode.PONG, b"hello")
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        raw = await asyncio.wait_for(client.reader.readexactly(4), TIMEOUT)
        assert raw == b"\x88\x02\x03\xe8"
        await asyncio.wait_for(asyncio.shield(client.close_notify), TIMEOUT)
        await asyncio.wait_for(asyncio.shield(client.tcp_eof), TIMEOUT)
        await client.aclose()


async def test_client_half_closes_after_message_and_close(start_server: Any) -> None:
    """Message, Close and FIN in one go: the Close is still answered, and nobody hangs."""
    outcome: asyncio.Future[tuple[Any, BaseException]] = asyncio.get_running_loop().create_future()

    release = asyncio.Event()

    async def handler(ws: websock.ServerConnection) -> None:
        await release.wait()  # EOF arrives while the message is still unread
        message = await ws.recv()
        try:
            while True:
                await ws.recv()
        except websock.ConnectionClosed as exc:
            outcome.set_result((message, exc))

    async with start_server(handler, compression=None, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_raw(
            client.frame_bytes(Opcode.TEXT, b"last")
            + client.frame_bytes(Opcode.CLOSE, close_payload(1000))
        )
        client.writer.write_eof()
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        await client.read_eof()
        release.set()
        message, exc = await asyncio.wait_for(outcome, TIMEOUT)
        assert message == "last"
        assert isinstance(exc, ConnectionClosedOK)
        assert exc.rcvd is not None and exc.rcvd.code == 1000
        assert exc.sent is not None and exc.sent.code == 1000
        await client.aclose()


async def test_server_sends_message_close_and_fin_at_once() -> None:
    """A server that does not wait for our Close reply: async for still ends quietly."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        writer.write(b"\x81\x03bye" + b"\x88\x02\x03\xe8")
        writer.write_eof()
        await reader.read()

    async with RawServer(script) as server:
        ws = await websock.connect(f"ws://127.0.0.1:{server.port}/", close_timeout=0.5)
        received = [m async for m in ws]
        assert received == ["bye"]
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


@pytest.mark.parametrize(
    "frames, expected",
    [
        pytest.param([(Opcode.PING, b"p")], [(Opcode.PONG, b"p")], id="ping-close"),
        pytest.param(
            [(Opcode.TEXT, b"t"), (Opcode.PING, b"p")],
            [(Opcode.PONG, b"p"), (Opcode.TEXT, b"t")],
            id="text-ping-close",
        ),
        pytest.param(
            [(Opcode.TEXT, b"1"), (Opcode.TEXT, b"2"), (Opcode.BINARY, b"3")],
            [(Opcode.TEXT, b"1"), (Opcode.TEXT, b"2"), (Opcode.BINARY, b"3")],
            id="three-messages-close",
        ),
    ],
)
async def test_everything_in_one_segment_before_close(
    start_server: Any, secure: bool, frames: list[tuple[int, bytes]], expected: list[Any]
) -> None:
    async with start_server(echo, secure=secure, compression=None, close_timeout=LONG) as running:
        client = await raw_client(running)
        data = b"".join(client.frame_bytes(op, payload) for op, payload in frames)
        client.send_raw(data + client.frame_bytes(Opcode.CLOSE, close_payload(1000)))
        for opcode, payload in expected:
            frame = await client.read_frame()
            assert (frame.opcode, frame.payload) == (opcode, payload)
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.CLOSE, b"\x03\xe8")
        await client.read_eof()
        await client.aclose()


@pytest.mark.parametrize(
    "payload, code",
    [
        pytest.param(b"\x03", 1002, id="one-byte"),
        pytest.param(close_payload(999), 1002, id="code-999"),
        pytest.param(close_payload(1005), 1002, id="code-1005"),
        pytest.param(close_payload(1006), 1002, id="code-1006"),
        pytest.param(close_payload(5000), 1002, id="code-5000"),
        pytest.param(close_payload(1000) + b"\xff", 1007, id="bad-utf8-reason"),
    ],
)
async def test_invalid_close_frame(start_server: Any, payload: bytes, code: int) -> None:
    """A bad Close is answered with 1002/1007, and TCP ends at once: the peer sent its Close."""
    async with start_server(echo, close_timeout=LONG) as running:
        client = await raw_client(running)
        client.send_frame(Opcode.CLOSE, payload)
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, code)
        await client.read_eof()
        await client.aclose()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x81\x82abcdxx", id="masked"),
        pytest.param(b"\xc1\x01x", id="rsv1-without-extension"),
        pytest.param(b"\x89\x7e\x00\x7e" + b"p" * 126, id="ping-over-125"),
        pytest.param(b"\x09\x01p", id="fragmented-ping"),
    ],
)
async def test_client_fails_bad_server_frames(data: bytes) -> None:
    """CONFORMANCE.md #4: our client rejects server frames that break the framing rules."""
    close: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_handshake(reader, writer)
        writer.write(b"\x81\x02ok" + data)
        close.set_result(await read_frame(reader))
        writer.write(b"\x88\x02\x03\xea")
        writer.close()

    async with RawServer(script) as server:
        ws = await websock.connect(f"ws://127.0.0.1:{server.port}/", compression=None)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ok"  # delivered first
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.sent is not None and info.value.sent.code == 1002
        frame = await asyncio.wait_for(close, TIMEOUT)
        assert (frame.opcode, frame.close_code, frame.masked) == (Opcode.CLOSE, 1002, True)
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_tls_grace_does_not_cut_a_slow_reader(
    start_server: Any, client_ssl: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TLS grace drops TCP only once everything is written, even to a slow reader."""
    monkeypatch.setattr(websock.asyncio.connection, "TLS_CLOSE_GRACE", 0.05)
    # Tell when the grace has run out (the server then drops TCP or, data still pending,
    # waits on), rather than guess how long that takes.
    expired = asyncio.Event()
    close_expired = websock.asyncio.connection.Connection._close_expired

    def spy(self: websock.asyncio.connection.Connection, deadline: float | None) -> None:
        close_expired(self, deadline)
        expired.set()

    monkeypatch.setattr(websock.asyncio.connection.Connection, "_close_expired", spy)
    big = bytes(range(256)) * 32768  # 8 MiB: more than the kernel buffers take at once
    async with start_server(
        echo, secure=True, compression=None, max_message_size=None, close_timeout=LONG
    ) as running:
        client = await BioTlsClient.open(running.port, ssl_context=client_ssl, rcvbuf=65536)
        await client.handshake()
        (conn,) = running.server.connections
        client.reading.clear()
        client.send_frame(Opcode.BINARY, big)
        client.send_frame(Opcode.CLOSE, close_payload(1000))
        # Read nothing until the grace has run out: the echo backs up in the server's
        # buffers, and the server must not drop TCP under it although the closing handshake
        # is over (if it did, the echo below would come incomplete).
        await asyncio.wait_for(expired.wait(), TIMEOUT)
        assert conn.protocol is not None and conn.protocol.close_sent is not None
        client.reading.set()
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload == big) == (Opcode.BINARY, True)
        frame = await client.read_frame()
        assert (frame.opcode, frame.close_code) == (Opcode.CLOSE, 1000)
        # Within TIMEOUT, so not from close_timeout (LONG): the grace, once all is written.
        await asyncio.wait_for(asyncio.shield(client.tcp_eof), TIMEOUT)
        await client.aclose()
