"""websock.sync end to end on loopback: messages, fragments, pings, timeouts, threads."""

from __future__ import annotations

import ssl
import threading

import pytest
from syncpeer import TIMEOUT, running_server

from websock import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK
from websock.sync import ServerConnection, connect


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_echo_text_binary_and_large() -> None:
    with running_server(echo) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("héllo")
        assert ws.recv(timeout=TIMEOUT) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff"
        # 300 kB: received into its own buffer (the core's direct path) on both sides.
        big = bytes(range(256)) * 1200
        ws.send(big)
        assert ws.recv(timeout=TIMEOUT) == big


def test_fragmented_send_is_one_message() -> None:
    with running_server(echo) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send(["a", "é", "c"])
        assert ws.recv(timeout=TIMEOUT) == "aéc"
        ws.send([b"x", bytearray(b"y"), memoryview(b"z")])
        assert ws.recv(timeout=TIMEOUT) == b"xyz"
        ws.send([])  # nothing is sent
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"


def test_send_rejects_what_is_not_a_message() -> None:
    with running_server(echo) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        for bad in ({"a": 1}, {"a"}, 42, None):
            with pytest.raises(TypeError):
                ws.send(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.send(["a", b"b"])  # type: ignore[list-item]
        # Refused before anything was sent (a fragment goes out once the next is known).
        ws.send("still open")
        assert ws.recv(timeout=TIMEOUT) == "still open"
        with pytest.raises(TypeError):
            ws.send(["a", "b", b"c"])  # type: ignore[list-item]
        # "a" was sent: the half-sent message makes the connection unusable, and it is
        # failed with 1011.
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.sent is not None and info.value.sent.code == 1011


def test_iteration_ends_quietly_after_a_normal_close() -> None:
    def greet(ws: ServerConnection) -> None:
        ws.send("one")
        ws.send("two")

    with running_server(greet) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert list(ws) == ["one", "two"]
        assert ws.close_code == 1000


def test_recv_timeout_loses_nothing() -> None:
    release = threading.Event()

    def late(ws: ServerConnection) -> None:
        release.wait(TIMEOUT)
        ws.send("late")
        ws.recv(timeout=TIMEOUT)

    with running_server(late) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        release.set()
        assert ws.recv(timeout=TIMEOUT) == "late"


def test_two_concurrent_recv_raise_concurrency_error() -> None:
    entered = threading.Event()

    def silent(ws: ServerConnection) -> None:
        ws.recv(timeout=TIMEOUT)

    with running_server(silent) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        errors: list[BaseException] = []

        def first() -> None:
            entered.set()
            try:
                ws.recv(timeout=TIMEOUT)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=first)
        thread.start()
        entered.wait(TIMEOUT)
        # The first recv() may not be waiting yet: retry until it is (bounded).
        for _ in range(1000):
            try:
                ws.recv(timeout=0)
            except ConcurrencyError:
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("a second recv() never raised ConcurrencyError")
        ws.send("unblock")  # the handler's recv returns, it closes with 1000
        thread.join(TIMEOUT)
        assert len(errors) == 1 and isinstance(errors[0], ConnectionClosedOK)


def test_send_from_many_threads_keeps_messages_whole() -> None:
    threads_count, per_thread = 8, 200
    with (
        running_server(echo, max_queue=None) as server,
        connect(f"ws://127.0.0.1:{server.port}/", max_queue=None) as ws,
    ):

        def sender(k: int) -> None:
            for i in range(per_thread):
                ws.send(f"{k}:{i}:" + "x" * (i % 300))
                ws.send([f"{k}:", f"{i}:", "frag"])

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(threads_count)]
        for thread in threads:
            thread.start()
        received = [ws.recv(timeout=TIMEOUT) for _ in range(threads_count * per_thread * 2)]
        for thread in threads:
            thread.join(TIMEOUT)
    for k in range(threads_count):
        mine = [m for m in received if isinstance(m, str) and m.startswith(f"{k}:")]
        whole = [m for m in mine if not m.endswith("frag")]
        assert whole == [f"{k}:{i}:" + "x" * (i % 300) for i in range(per_thread)]
        assert mine.count(f"{k}:") == 0
        assert len(mine) == 2 * per_thread


def test_ping_returns_the_round_trip_time() -> None:
    with running_server(echo) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        rtt = ws.ping(timeout=TIMEOUT)
        assert isinstance(rtt, float) and 0 <= rtt < TIMEOUT
        assert isinstance(ws.ping(b"payload", timeout=TIMEOUT), float)
        ws.close()
        with pytest.raises(ConnectionClosedOK):
            ws.ping(timeout=TIMEOUT)


def test_close_codes_both_ways() -> None:
    seen: list[BaseException] = []
    done = threading.Event()

    def record(ws: ServerConnection) -> None:
        try:
            ws.recv(timeout=TIMEOUT)
        except BaseException as exc:
            seen.append(exc)
            raise
        finally:
            done.set()

    with running_server(record) as server:
        with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.close(4000, "bye")
            assert ws.close_code == 4000  # echoed by the server
        assert done.wait(TIMEOUT)
        assert isinstance(seen[0], ConnectionClosedError)
        assert seen[0].rcvd is not None and seen[0].rcvd.code == 4000
        assert seen[0].rcvd.reason == "bye"


def test_handler_failure_closes_with_1011() -> None:
    def broken(ws: ServerConnection) -> None:
        raise RuntimeError("boom")

    with running_server(broken) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        assert info.value.rcvd.reason == ""  # no details on the wire


def test_shutdown_closes_every_connection_with_1001() -> None:
    def wait(ws: ServerConnection) -> None:
        for _ in ws:
            pass

    with running_server(wait) as server:
        clients = [connect(f"ws://127.0.0.1:{server.port}/") for _ in range(3)]
        for ws in clients:
            ws.send("x")  # each is served (the handler thread reads)
        server.shutdown()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=TIMEOUT)
            assert ws.close_code == 1001
            assert ws.wait_closed(TIMEOUT)


def test_message_too_big_closes_with_1009() -> None:
    with (
        running_server(echo, max_message_size=1000) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ws.send("x" * 1000)
        assert ws.recv(timeout=TIMEOUT) == "x" * 1000
        with pytest.raises(ConnectionClosedError) as info:
            # send() itself may raise: on a loaded machine the server's Close, and its end
            # of TCP after CLOSE_GRACE, can come before send() has written our reply.
            ws.send("x" * 1001)
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_compression_is_negotiated_and_works() -> None:
    with running_server(echo) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert [ext.name for ext in ws.extensions] == ["permessage-deflate"]
        text = "compressible " * 10000
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text
    with (
        running_server(echo, compression=None) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        assert ws.extensions == []


def test_subprotocol_negotiation() -> None:
    def proto(ws: ServerConnection) -> None:
        ws.send(ws.subprotocol or "none")

    with running_server(proto, subprotocols=["chat", "superchat"]) as server:
        with connect(f"ws://127.0.0.1:{server.port}/", subprotocols=["superchat", "x"]) as ws:
            assert ws.subprotocol == "superchat"
            assert ws.recv(timeout=TIMEOUT) == "superchat"


def test_request_and_addresses() -> None:
    def info(ws: ServerConnection) -> None:
        assert ws.request is not None
        ws.send(f"{ws.request.path}|{ws.remote_address[0]}")

    with running_server(info) as server:
        with connect(f"ws://127.0.0.1:{server.port}/room?x=1") as ws:
            path, host = str(ws.recv(timeout=TIMEOUT)).split("|")
            assert path.startswith("/room")
            assert host == "127.0.0.1"
            assert ws.remote_address == ("127.0.0.1", server.port)
            assert ws.response is not None and ws.response.status == 101


def test_tls_echo_and_close(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    with running_server(echo, ssl=server_ctx) as server:
        with connect(f"wss://localhost:{server.port}/", ssl=client_ctx, host="127.0.0.1") as ws:
            ws.send("secure")
            assert ws.recv(timeout=TIMEOUT) == "secure"
            big = b"\x01" * 500_000
            ws.send(big)
            assert ws.recv(timeout=TIMEOUT) == big
        assert ws.close_code == 1000
        assert ws.wait_closed(TIMEOUT)


def test_tls_certificate_not_trusted_is_an_error(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls
    with running_server(echo, ssl=server_ctx) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(f"wss://localhost:{server.port}/", host="127.0.0.1")
