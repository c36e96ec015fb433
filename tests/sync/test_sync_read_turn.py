"""Who reads the socket in websock.sync: recv() itself, or the connection's reader thread.

recv() reads the socket in the calling thread when nobody else does (no hand-off between
threads on the common path); the reader thread reads when the application is away from
recv() (busy, sending, waiting for a Pong, closing). These tests pin both halves: the fast
path is taken, and the peer is still read when the application does not read.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from syncpeer import TIMEOUT, RawClient, close_payload, running_server

from websock.protocol.frames import Opcode
from websock.sync import ServerConnection, connect
from websock.sync import connection as sync_connection


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_recv_reads_the_socket_in_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    readers: list[str] = []
    original = sync_connection.Connection._read_once

    def spy(self: sync_connection.Connection) -> bool:
        readers.append(threading.current_thread().name)
        return original(self)

    monkeypatch.setattr(sync_connection.Connection, "_read_once", spy)
    handler_threads: set[str] = set()

    def recording_echo(ws: ServerConnection) -> None:
        handler_threads.add(threading.current_thread().name)
        echo(ws)

    with running_server(recording_echo) as server:
        peer = RawClient(server.port)
        for i in range(50):
            peer.send(Opcode.TEXT, b"%d" % i)
            assert peer.read_frame().payload == b"%d" % i
        peer.send(Opcode.CLOSE, close_payload(1000))
        assert peer.read_close()[0] == 1000
        peer.close()
    (handler_thread,) = handler_threads
    # Every message was read by the handler's own recv(); the reader thread may only have
    # taken a read or two (the Close, or while the handler was slow to come back).
    assert readers.count(handler_thread) >= 40, readers


def test_pings_are_answered_after_the_handler_stops_reading() -> None:
    stop_reading = threading.Event()

    def read_one_then_idle(ws: ServerConnection) -> None:
        ws.send(ws.recv(timeout=TIMEOUT))
        stop_reading.set()
        ws.wait_closed(TIMEOUT * 2)

    with running_server(read_one_then_idle) as server:
        peer = RawClient(server.port)
        peer.send(Opcode.TEXT, b"one")
        assert peer.read_frame().payload == b"one"
        assert stop_reading.wait(TIMEOUT)
        for payload in (b"first", b"second"):
            peer.send(Opcode.PING, payload)
            frame = peer.read_frame()
            assert (frame.opcode, frame.payload) == (Opcode.PONG, payload)
        peer.send(Opcode.CLOSE, close_payload(1000))
        assert peer.read_close()[0] == 1000
        peer.expect_eof()
        peer.close()


def test_ping_is_answered_while_nobody_calls_recv() -> None:
    with running_server(echo) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("warm up")
        assert ws.recv(timeout=TIMEOUT) == "warm up"  # recv() had the read turn last
        for _ in range(3):
            assert 0 <= ws.ping(timeout=TIMEOUT) < TIMEOUT


def test_both_sides_writing_a_large_message_before_reading_do_not_deadlock() -> None:
    """Each side writes more than the socket buffers hold before it reads: the reader thread
    must take over reading while the application is blocked in send()."""
    size = 16 * 2**20
    big = b"s" * size

    def send_first(ws: ServerConnection) -> None:
        ws.send(big)
        assert ws.recv(timeout=TIMEOUT) == b"c" * size

    options: dict[str, Any] = {"max_message_size": 2 * size, "compression": None}
    with (
        running_server(send_first, **options) as server,
        connect(f"ws://127.0.0.1:{server.port}/", **options) as ws,
    ):
        ws.send(b"c" * size)
        assert ws.recv(timeout=TIMEOUT) == big


def test_a_full_queue_is_drained_in_order_by_recv() -> None:
    release = threading.Event()
    received: list[str] = []

    def slow_reader(ws: ServerConnection) -> None:
        release.wait(TIMEOUT)
        for _ in range(40):
            received.append(str(ws.recv(timeout=TIMEOUT)))
        ws.send("done")

    with running_server(slow_reader, max_queue=4) as server:
        peer = RawClient(server.port)
        peer.send_raw(b"".join(peer.frame(Opcode.TEXT, b"m%02d" % i) for i in range(40)))
        release.set()
        assert peer.read_frame().payload == b"done"
        peer.close()
    assert received == [f"m{i:02d}" for i in range(40)]
