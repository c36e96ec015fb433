"""Who reads the socket in websock.sync: recv() itself, or the connection's reader thread.

recv() reads the socket in the calling thread when nobody else does (no hand-off between
threads on the common path); the reader thread reads when the application is away from
recv() (busy, sending, waiting for a Pong, closing). These tests pin both halves: the fast
path is taken, and the peer is still read when the application does not read.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from syncpeer import TIMEOUT, RawClient, close_payload, running_server

from websock import ConnectionClosed
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


def test_recv_inside_a_fragment_generator_ends_cleanly_at_eof() -> None:
    """recv() called by the generator of a fragmented send (which holds the write lock)
    must not read the socket itself: at EOF, ending the connection needs that lock."""

    in_generator = threading.Event()

    def vanish(ws: ServerConnection) -> None:
        in_generator.wait(TIMEOUT)  # the client is inside its generator, about to recv()
        ws.socket.shutdown(socket.SHUT_RDWR)  # the peer is gone, without a Close

    results: list[str] = []
    with running_server(vanish) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:

        def fragments() -> Iterator[str]:
            yield "part1"
            in_generator.set()
            try:
                ws.recv(timeout=TIMEOUT)
            except ConnectionClosed:
                results.append("recv closed")
            yield "part2"

        def app() -> None:
            try:
                ws.send(fragments())
            except ConnectionClosed:
                results.append("send closed")

        thread = threading.Thread(target=app)
        thread.start()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "send() of a generator calling recv() hung"
        assert ws.wait_closed(TIMEOUT)
    assert results == ["recv closed", "send closed"]


def test_recv_timeouts_beyond_what_poll_takes() -> None:
    def hello(ws: ServerConnection) -> None:
        ws.send("hello")
        for _ in ws:  # until the client closes
            pass

    with running_server(hello) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        results: list[object] = []
        got_hello = threading.Event()

        def reader() -> None:  # not the main thread: recv() reads for itself
            results.append(ws.recv(timeout=30 * 86400.0))  # a month: more than poll() takes
            got_hello.set()
            try:
                results.append(ws.recv(timeout=float("inf")))
            except ConnectionClosed as exc:
                results.append(type(exc).__name__)

        thread = threading.Thread(target=reader)
        thread.start()
        assert got_hello.wait(TIMEOUT)
        ws.close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert results == ["hello", "ConnectionClosedOK"]


def test_max_queue_of_one_delivers_in_order() -> None:
    got: list[str] = []

    def slow(ws: ServerConnection) -> None:
        for _ in range(3):
            got.append(str(ws.recv(timeout=TIMEOUT)))
        ws.send("done")

    with running_server(slow, max_queue=1) as server:
        peer = RawClient(server.port)
        peer.send_raw(b"".join(peer.frame(Opcode.TEXT, b"m%d" % i) for i in range(3)))
        assert peer.read_frame().payload == b"done"
        peer.close()
    assert got == ["m0", "m1", "m2"]
