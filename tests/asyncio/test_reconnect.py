"""``async for ws in websock.connect(uri)``: reconnecting, with backoff on a test clock.

The reconnect loop's sleep is replaced by a recorder (no test waits for a delay), and the
jitter by a constant, so the delays asserted are exact: each is min(maximum, initial *
factor ** n) with the jitter at its top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from rawpeer import TIMEOUT

import websock
import websock.asyncio.client as client_module
from websock import Backoff, ConnectionClosed, InvalidStatus
from websock import reconnect as reconnect_module
from websock.protocol.http import Request, Response

BACKOFF = Backoff(initial=1.0, maximum=5.0, factor=2.0)


class SleepRecorder:
    """Stands in for the loop's sleep: records each delay, runs an action, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.actions: list[Callable[[], Awaitable[None]]] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        assert len(self.delays) < 50, "the reconnect loop does not stop retrying"
        if self.actions:
            await self.actions.pop(0)()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(client_module, "_sleep", recorder)
    monkeypatch.setattr(reconnect_module, "_jitter", lambda: 1.0)
    return recorder


async def greet(ws: websock.ServerConnection) -> None:
    await ws.send("hello")
    await ws.recv()


async def test_reconnects_after_the_server_restarts(sleeps: SleepRecorder) -> None:
    server = await websock.serve(greet, "127.0.0.1", 0)
    port = server.port
    restarted: list[websock.Server] = []

    async def restart() -> None:
        restarted.append(await websock.serve(greet, "127.0.0.1", port))

    # Down for three attempts: refused, refused, refused, then back.
    sleeps.actions = [_noop, _noop, restart]
    greetings = 0
    async for ws in websock.connect(f"ws://127.0.0.1:{port}/", backoff=BACKOFF):
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
        greetings += 1
        if greetings == 2:
            break
        server.close()  # 1001 to us: a normal close, reconnect at once (and be refused)
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert sleeps.delays == [1.0, 2.0, 4.0]
    for running in restarted:
        running.close()
        await running.wait_closed()


async def test_503_with_retry_after_then_101(sleeps: SleepRecorder) -> None:
    refusals = [2]

    def busy(ws: websock.ServerConnection, request: Request) -> Response | None:
        if refusals[0]:
            refusals[0] -= 1
            return ws.respond(503, "busy\n", {"Retry-After": "7"})
        return None

    async with websock.serve(greet, "127.0.0.1", 0, process_request=busy) as server:
        async for ws in websock.connect(f"ws://127.0.0.1:{server.port}/", backoff=BACKOFF):
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
            break
    assert sleeps.delays == [7.0, 7.0]  # Retry-After over the backoff's 1 and 2


async def test_abnormal_closes_back_off_and_normal_ones_do_not(sleeps: SleepRecorder) -> None:
    codes = [1012, 1013, 1000, 1011]

    async def close_with_the_next_code(ws: websock.ServerConnection) -> None:
        if codes:
            await ws.close(codes.pop(0))
            return
        await greet(ws)

    async with websock.serve(close_with_the_next_code, "127.0.0.1", 0) as server:
        seen: list[int | None] = []
        async for ws in websock.connect(f"ws://127.0.0.1:{server.port}/", backoff=BACKOFF):
            try:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
                break
            except ConnectionClosed:
                seen.append(ws.close_code)
    assert seen == [1012, 1013, 1000, 1011]
    # 1012 and 1013 back off (1, 2); 1000 starts the delays over and waits nothing; 1011
    # backs off from the start again (1).
    assert sleeps.delays == [1.0, 2.0, 1.0]


async def test_permanent_failures_are_raised_at_once(sleeps: SleepRecorder) -> None:
    def forbid(ws: websock.ServerConnection, request: Request) -> Response:
        return ws.respond(403, "no\n")

    async with websock.serve(greet, "127.0.0.1", 0, process_request=forbid) as server:
        with pytest.raises(InvalidStatus) as info:
            async for _ in websock.connect(f"ws://127.0.0.1:{server.port}/"):
                pytest.fail("a 403 must not yield a connection")
        assert info.value.response.status == 403
    assert sleeps.delays == []


async def test_process_exception_decides(sleeps: SleepRecorder) -> None:
    attempts = [0]

    def forbid_twice(ws: websock.ServerConnection, request: Request) -> Response | None:
        attempts[0] += 1
        return ws.respond(403, "no\n") if attempts[0] <= 2 else None

    def retry_403(exc: Exception) -> Exception | None:
        if isinstance(exc, InvalidStatus) and exc.response.status == 403:
            return None
        return exc

    async with websock.serve(greet, "127.0.0.1", 0, process_request=forbid_twice) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        async for ws in websock.connect(uri, backoff=BACKOFF, process_exception=retry_403):
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
            break
        assert sleeps.delays == [1.0, 2.0]

        class Gone(Exception):
            pass

        attempts[0] = 0
        with pytest.raises(Gone):
            async for _ in websock.connect(uri, process_exception=lambda exc: Gone()):
                pytest.fail("the hook turned the 403 into an error")


async def _noop() -> None:
    return None


def test_backoff_validation_and_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=10, maximum=5)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    monkeypatch.setattr(reconnect_module, "_jitter", lambda: 0.0)
    delays = Backoff(initial=1.0, maximum=5.0, factor=2.0).delays()
    assert [next(delays) for _ in range(5)] == [0.5, 1.0, 2.0, 2.5, 2.5]  # half: the jitter's floor
    with pytest.raises(TypeError):
        websock.connect("ws://127.0.0.1:1/", backoff=(1, 2))  # type: ignore[arg-type]


def test_default_policy() -> None:
    transient = reconnect_module.is_transient

    def status(code: int, headers: dict[str, str] | None = None) -> InvalidStatus:
        return InvalidStatus(Response(code, "X", websock.Headers(headers or {})))

    assert transient(ConnectionRefusedError()) and transient(TimeoutError())
    assert transient(OSError("name resolution failed"))
    assert transient(status(503)) and transient(status(429)) and transient(status(500))
    assert not transient(status(403)) and not transient(status(404))
    assert not transient(websock.InvalidURI("x", "bad"))
    assert not transient(websock.InvalidHandshake("bad accept"))
    import ssl

    assert not transient(ssl.SSLCertVerificationError("untrusted"))
    assert reconnect_module.retry_after(status(503, {"Retry-After": "12"})) == 12.0
    assert reconnect_module.retry_after(status(503, {"Retry-After": "soon"})) is None
    assert reconnect_module.retry_after(status(503)) is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert (
        reconnect_module.retry_after(status(503, {"Retry-After": date}), now=lambda: 1445412470.0)
        == 10.0
    )
    assert reconnect_module.ended_abnormally(1006) and reconnect_module.ended_abnormally(None)
    assert not reconnect_module.ended_abnormally(1000) and not reconnect_module.ended_abnormally(
        1008
    )
