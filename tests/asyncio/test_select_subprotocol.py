"""The select_subprotocol hook, in both I/O layers: choice, refusal (400), failure (500)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from rawpeer import TIMEOUT

import websock
import websock.sync
from websock import InvalidStatus, NegotiationError


def last_offered(ws: Any, offered: list[str]) -> str | None:
    return offered[-1] if offered else None


def refuse(ws: Any, offered: list[str]) -> str | None:
    raise NegotiationError("no acceptable subprotocol")


def not_offered(ws: Any, offered: list[str]) -> str | None:
    return "something-else"


def broken(ws: Any, offered: list[str]) -> str | None:
    raise RuntimeError("bug in the hook")


CASES: list[tuple[Callable[..., str | None], list[str], str | int | None]] = [
    (last_offered, ["chat", "superchat"], "superchat"),
    (last_offered, [], None),
    (refuse, ["chat"], 400),
    (not_offered, ["chat"], 500),
    (broken, ["chat"], 500),
]


async def _echo_subprotocol(ws: websock.ServerConnection) -> None:
    await ws.send(ws.subprotocol or "-")
    await ws.recv()


@pytest.mark.parametrize(("hook", "offered", "expected"), CASES)
async def test_asyncio_server(
    hook: Callable[..., str | None], offered: list[str], expected: str | int | None
) -> None:
    async with websock.serve(
        _echo_subprotocol, "127.0.0.1", 0, subprotocols=["chat"], select_subprotocol=hook
    ) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        if isinstance(expected, int):
            with pytest.raises(InvalidStatus) as info:
                await websock.connect(uri, subprotocols=offered)
            assert info.value.response.status == expected
            return
        async with websock.connect(uri, subprotocols=offered) as ws:
            assert ws.subprotocol == expected
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == (expected or "-")


def _sync_echo_subprotocol(ws: websock.sync.ServerConnection) -> None:
    ws.send(ws.subprotocol or "-")
    ws.recv(timeout=TIMEOUT)


@pytest.mark.parametrize(("hook", "offered", "expected"), CASES)
def test_sync_server(
    hook: Callable[..., str | None], offered: list[str], expected: str | int | None
) -> None:
    server = websock.sync.serve(
        _sync_echo_subprotocol, "127.0.0.1", 0, subprotocols=["chat"], select_subprotocol=hook
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"ws://127.0.0.1:{server.port}/"
        if isinstance(expected, int):
            with pytest.raises(InvalidStatus) as info:
                websock.sync.connect(uri, subprotocols=offered)
            assert info.value.response.status == expected
            return
        with websock.sync.connect(uri, subprotocols=offered) as ws:
            assert ws.subprotocol == expected
            assert ws.recv(timeout=TIMEOUT) == (expected or "-")
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
