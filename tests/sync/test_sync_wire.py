"""websock.sync against scripted raw peers: the exact frames, close codes and TCP ends.

These cover what the Autobahn runner does not check (CONFORMANCE.md): that the server
answers a Close and then ends TCP promptly (well before close_timeout), that it ends TCP
after failing the connection, that the client waits for the server's FIN and ends TCP itself
after close_timeout, and the masking rules in both directions.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest
from syncpeer import (
    TIMEOUT,
    RawClient,
    RawServer,
    close_payload,
    read_client_frame,
    running_server,
)

from websock import ConnectionClosedError, ConnectionClosedOK, InvalidState, InvalidStatus
from websock.protocol.frames import Opcode, serialize_frame
from websock.sync import ServerConnection, connect, timers

# Far longer than TIMEOUT: a server that waited for close_timeout would fail the tests,
# which see the FIN within TIMEOUT.
LONG = 60.0


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def idle(ws: ServerConnection) -> None:
    ws.wait_closed(TIMEOUT * 2)


# --------------------------------------------------------------------------- server role


@pytest.mark.parametrize(
    ("payload", "echoed"),
    [(close_payload(1000, "bye"), 1000), (close_payload(4321), 4321), (b"", 1000)],
)
def test_server_answers_close_then_ends_tcp_promptly(payload: bytes, echoed: int) -> None:
    with running_server(echo, close_timeout=LONG) as server:
        peer = RawClient(server.port)
        peer.send(Opcode.CLOSE, payload)
        assert peer.read_close()[0] == echoed
        peer.expect_eof()
        peer.close()


def test_server_fails_unmasked_frame_with_1002_then_fin() -> None:
    with running_server(echo, close_timeout=LONG) as server:
        peer = RawClient(server.port)
        peer.send(Opcode.TEXT, b"hi", masked=False)
        assert peer.read_close()[0] == 1002
        peer.expect_eof()
        peer.close()


def test_server_echoes_messages_before_failing() -> None:
    """Deliver every message that precedes a violation, then fail (blind spot 7)."""
    with running_server(echo, close_timeout=LONG) as server:
        peer = RawClient(server.port)
        good = peer.frame(Opcode.TEXT, b"first") + peer.frame(Opcode.TEXT, b"second")
        bad = peer.frame(Opcode.TEXT, b"\xff\xfe")  # invalid UTF-8
        peer.send_raw(good + bad)  # one write: the core sees all three in one read
        assert peer.read_frame().payload == b"first"
        assert peer.read_frame().payload == b"second"
        assert peer.read_close()[0] == 1007
        peer.expect_eof()
        peer.close()


def test_server_answers_pings_while_the_handler_does_not_read() -> None:
    with running_server(idle) as server:
        peer = RawClient(server.port)
        peer.send(Opcode.PING, b"are you there")
        frame = peer.read_frame()
        assert (frame.opcode, frame.payload) == (Opcode.PONG, b"are you there")
        peer.send(Opcode.CLOSE, close_payload(1000))
        assert peer.read_close()[0] == 1000
        peer.close()


def test_keepalive_timeout_closes_with_1011_then_fin() -> None:
    with running_server(idle, ping_interval=0.05, ping_timeout=0.05, close_timeout=LONG) as server:
        peer = RawClient(server.port)
        frame = peer.read_frame()
        assert frame.opcode == Opcode.PING  # never answered
        assert peer.read_close()[0] == 1011
        peer.expect_eof()
        peer.close()


def test_keepalive_answered_keeps_the_connection() -> None:
    with running_server(echo, ping_interval=0.02, ping_timeout=0.5) as server:
        peer = RawClient(server.port)
        for _ in range(3):
            frame = peer.read_frame()
            assert frame.opcode == Opcode.PING
            peer.send(Opcode.PONG, frame.payload)
        peer.send(Opcode.TEXT, b"still here")
        while (frame := peer.read_frame()).opcode == Opcode.PING:
            peer.send(Opcode.PONG, frame.payload)
        assert frame.payload == b"still here"
        peer.close()


def test_handshake_errors_are_http_4xx_then_fin() -> None:
    with running_server(echo) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), TIMEOUT)
        sock.settimeout(TIMEOUT)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        response = b""
        while data := sock.recv(4096):
            response += data
        assert response.startswith(b"HTTP/1.1 426 ") or response.startswith(b"HTTP/1.1 400 ")
        sock.close()


def test_process_request_can_refuse() -> None:
    def auth(ws: ServerConnection, request: object) -> object:
        return ws.respond(401, "who are you?\n", {"WWW-Authenticate": "Bearer"})

    with running_server(echo, process_request=auth) as server:
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{server.port}/")
        assert info.value.response.status == 401


def test_origin_not_allowed_is_403() -> None:
    with running_server(echo, origins=["https://good.example"]) as server:
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{server.port}/", origin="https://evil.example")
        assert info.value.response.status == 403
        with connect(f"ws://127.0.0.1:{server.port}/", origin="https://good.example") as ws:
            ws.send("ok")
            assert ws.recv(timeout=TIMEOUT) == "ok"


def test_max_connections_answers_503() -> None:
    with running_server(idle, max_connections=1) as server:
        first = RawClient(server.port)
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{server.port}/")
        assert info.value.response.status == 503
        assert info.value.response.headers["Retry-After"] == "5"
        assert server.rejected_connections == 1
        first.close()


def test_open_timeout_drops_a_silent_client() -> None:
    with running_server(echo, open_timeout=0.05) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), TIMEOUT)
        sock.settimeout(TIMEOUT)
        assert sock.recv(4096) == b""  # closed without a word
        sock.close()


# --------------------------------------------------------------------------- client role


def test_client_masks_answers_close_and_waits_for_the_server_fin() -> None:
    frames: list[tuple[int, bytes]] = []

    def script(sock: socket.socket, head: bytes) -> None:
        frame = read_client_frame(sock)  # asserts it is masked
        frames.append((frame.opcode, frame.payload))
        sock.sendall(serialize_frame(Opcode.CLOSE, close_payload(1000, "done")))
        frame = read_client_frame(sock)
        frames.append((frame.opcode, frame.payload))
        sock.shutdown(socket.SHUT_WR)  # the server ends TCP first
        assert sock.recv(10) == b""

    raw = RawServer(script)
    with connect(raw.uri(), close_timeout=LONG) as ws:
        ws.send("hello")
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000 and ws.close_reason == "done"
    raw.join()
    # The reply echoes the code, not the reason.
    assert frames == [(Opcode.TEXT, b"hello"), (Opcode.CLOSE, close_payload(1000))]


def test_client_ends_tcp_after_close_timeout_when_the_server_does_not() -> None:
    ended = threading.Event()

    def script(sock: socket.socket, head: bytes) -> None:
        frame = read_client_frame(sock)
        assert frame.opcode == Opcode.CLOSE
        sock.sendall(serialize_frame(Opcode.CLOSE, frame.payload))
        # We never end TCP: the client must, after its close_timeout.
        assert sock.recv(10) == b""
        ended.set()

    raw = RawServer(script)
    ws = connect(raw.uri(), close_timeout=0.1)
    ws.close()
    assert ended.wait(TIMEOUT)
    raw.join()


def test_client_fails_a_masked_server_frame_with_1002() -> None:
    codes: list[bytes] = []

    def script(sock: socket.socket, head: bytes) -> None:
        sock.sendall(serialize_frame(Opcode.TEXT, b"masked", mask=b"abcd"))
        frame = read_client_frame(sock)
        codes.append(frame.payload[:2])
        sock.shutdown(socket.SHUT_WR)

    raw = RawServer(script)
    with connect(raw.uri()) as ws, pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=TIMEOUT)
    raw.join()
    assert codes == [close_payload(1002)]
    assert info.value.sent is not None and info.value.sent.code == 1002


def test_client_refuses_a_second_ping_with_the_same_payload() -> None:
    def script(sock: socket.socket, head: bytes) -> None:
        assert read_client_frame(sock).opcode == Opcode.PING  # never answered
        frame = read_client_frame(sock)
        assert frame.opcode == Opcode.CLOSE
        sock.sendall(serialize_frame(Opcode.CLOSE, frame.payload))
        sock.shutdown(socket.SHUT_WR)

    raw = RawServer(script)
    with connect(raw.uri()) as ws:
        with pytest.raises(TimeoutError):
            ws.ping(b"same", timeout=0.05)
        with pytest.raises(InvalidState):
            ws.ping(b"same", timeout=0.05)
    raw.join()


def test_client_open_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = listener.getsockname()[1]
    with pytest.raises(TimeoutError):
        connect(f"ws://127.0.0.1:{port}/", open_timeout=0.1)
    listener.close()


def test_client_sees_http_errors_as_invalid_status() -> None:
    raw = RawServer(lambda sock, head: None, status=429, extra_headers="Retry-After: 3\r\n")
    with pytest.raises(InvalidStatus) as info:
        connect(raw.uri())
    assert info.value.response.status == 429
    raw.join()


def test_open_timeout_counts_from_tcp_accept_not_from_tls_end(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_timeout bounds TCP, TLS and the upgrade together: a TLS handshake that used up
    the whole budget leaves nothing for the HTTP request (the deadline does not restart)."""
    server_ctx, client_ctx = tls
    offset = [0.0]
    real_clock = timers.clock
    monkeypatch.setattr(timers, "clock", lambda: real_clock() + offset[0])
    original_wrap = server_ctx.wrap_socket

    def wrap_then_skip_time(*args: Any, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = original_wrap(*args, **kwargs)
        offset[0] = LONG + 1  # the TLS handshake "took" longer than open_timeout
        return wrapped

    monkeypatch.setattr(server_ctx, "wrap_socket", wrap_then_skip_time)
    with running_server(echo, ssl=server_ctx, open_timeout=LONG) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), TIMEOUT)
        sock = client_ctx.wrap_socket(raw, server_hostname="localhost")
        sock.settimeout(TIMEOUT)
        # No request is sent: with the deadline restarted after TLS, nothing would come
        # for LONG seconds.
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        assert data == b""
        sock.close()
