"""``for ws in websock.sync.reconnecting(uri)``: the asyncio client's reconnect policy, in
threads. The loop's sleep is a recorder and the jitter a constant: delays are exact."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from syncpeer import TIMEOUT, running_server

import websock.sync.client as client_module
from websock import Backoff, ConnectionClosed, InvalidStatus
from websock import reconnect as reconnect_module
from websock.protocol.http import Request, Response
from websock.sync import ServerConnection, reconnecting, serve

BACKOFF = Backoff(initial=1.0, maximum=5.0, factor=2.0)


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.actions: list[Callable[[], None]] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        assert len(self.delays) < 50, "the reconnect loop does not stop retrying"
        if self.actions:
            self.actions.pop(0)()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(client_module, "_sleep", recorder)
    monkeypatch.setattr(reconnect_module, "_jitter", lambda: 1.0)
    return recorder


def greet(ws: ServerConnection) -> None:
    ws.send("hello")
    ws.recv(timeout=TIMEOUT)


def test_reconnects_after_the_server_restarts(sleeps: SleepRecorder) -> None:
    import threading

    first = serve(greet, "127.0.0.1", 0)
    port = first.port
    threading.Thread(target=first.serve_forever, daemon=True).start()
    restarted = []

    def restart() -> None:
        server = serve(greet, "127.0.0.1", port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        restarted.append(server)

    sleeps.actions = [lambda: None, restart]
    greetings = 0
    for ws in reconnecting(f"ws://127.0.0.1:{port}/", backoff=BACKOFF):
        assert ws.recv(timeout=TIMEOUT) == "hello"
        greetings += 1
        if greetings == 2:
            ws.close()
            break
        first.shutdown()  # 1001: a normal close, reconnect at once (and be refused)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert sleeps.delays == [1.0, 2.0]
    for server in restarted:
        server.shutdown()


def test_503_with_retry_after_then_101(sleeps: SleepRecorder) -> None:
    refusals = [2]

    def busy(ws: ServerConnection, request: Request) -> Response | None:
        if refusals[0]:
            refusals[0] -= 1
            return ws.respond(503, "busy\n", {"Retry-After": "7"})
        return None

    with running_server(greet, process_request=busy) as server:
        for ws in reconnecting(f"ws://127.0.0.1:{server.port}/", backoff=BACKOFF):
            assert ws.recv(timeout=TIMEOUT) == "hello"
            ws.close()
            break
    assert sleeps.delays == [7.0, 7.0]


def test_abnormal_closes_back_off_and_normal_ones_do_not(sleeps: SleepRecorder) -> None:
    codes = [1012, 1013, 1000, 1011]

    def close_with_the_next_code(ws: ServerConnection) -> None:
        if codes:
            ws.close(codes.pop(0))
            return
        greet(ws)

    seen: list[int | None] = []
    with running_server(close_with_the_next_code) as server:
        for ws in reconnecting(f"ws://127.0.0.1:{server.port}/", backoff=BACKOFF):
            try:
                assert ws.recv(timeout=TIMEOUT) == "hello"
                ws.close()
                break
            except ConnectionClosed:
                seen.append(ws.close_code)
    assert seen == [1012, 1013, 1000, 1011]
    assert sleeps.delays == [1.0, 2.0, 1.0]


def test_permanent_failures_are_raised_at_once(sleeps: SleepRecorder) -> None:
    def forbid(ws: ServerConnection, request: Request) -> Response:
        return ws.respond(403, "no\n")

    with running_server(greet, process_request=forbid) as server:
        with pytest.raises(InvalidStatus):
            for _ in reconnecting(f"ws://127.0.0.1:{server.port}/"):
                pytest.fail("a 403 must not yield a connection")
        with pytest.raises(TypeError):
            for _ in reconnecting(f"ws://127.0.0.1:{server.port}/", no_such_knob=1):
                pytest.fail("a bad keyword must not yield a connection")
    assert sleeps.delays == []
