"""The process_response hook, in both I/O layers: edit the 101, replace it, refuse, fail."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from rawpeer import TIMEOUT, echo

import websock
import websock.sync
from websock import InvalidStatus
from websock.protocol.http import Request, Response


def add_header(ws: Any, request: Request, response: Response) -> None:
    response.headers["X-Session"] = "42"


async def add_header_later(ws: Any, request: Request, response: Response) -> None:
    await asyncio.sleep(0)  # an async hook (a database lookup, say)
    response.headers["X-Session"] = "42"


def refuse(ws: Any, request: Request, response: Response) -> Response:
    return ws.respond(403, "not today\n")


def not_a_response(ws: Any, request: Request, response: Response) -> Any:
    return "yes"


def broken(ws: Any, request: Request, response: Response) -> None:
    raise RuntimeError("bug in the hook")


def bad_header(ws: Any, request: Request, response: Response) -> None:
    response.headers["X-Bad"] = "a\r\nb"  # refused (header injection): the hook fails


SYNC_CASES: list[tuple[Callable[..., Any], str | int]] = [
    (add_header, "42"),
    (refuse, 403),
    (not_a_response, 500),
    (broken, 500),
    (bad_header, 500),
]


@pytest.mark.parametrize(("hook", "expected"), [*SYNC_CASES, (add_header_later, "42")])
async def test_asyncio_server(hook: Callable[..., Any], expected: str | int) -> None:
    async with websock.serve(echo, "127.0.0.1", 0, process_response=hook) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        if isinstance(expected, int):
            with pytest.raises(InvalidStatus) as info:
                await websock.connect(uri)
            assert info.value.response.status == expected
            return
        async with websock.connect(uri) as ws:
            assert ws.response is not None
            assert ws.response.headers["X-Session"] == expected
            await ws.send("still works")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still works"


def _sync_echo(ws: websock.sync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@pytest.mark.parametrize(("hook", "expected"), SYNC_CASES)
def test_sync_server(hook: Callable[..., Any], expected: str | int) -> None:
    server = websock.sync.serve(_sync_echo, "127.0.0.1", 0, process_response=hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"ws://127.0.0.1:{server.port}/"
        if isinstance(expected, int):
            with pytest.raises(InvalidStatus) as info:
                websock.sync.connect(uri)
            assert info.value.response.status == expected
            return
        with websock.sync.connect(uri) as ws:
            assert ws.response is not None
            assert ws.response.headers["X-Session"] == expected
            ws.send("still works")
            assert ws.recv(timeout=TIMEOUT) == "still works"
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
