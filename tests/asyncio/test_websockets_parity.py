"""Names websockets users expect: logger= (each connection logs through the chosen logger,
saying which connection it is: its id and peer address in the message, the connection itself
as ``record.websocket``), ``ws.id``, and the server's get_loop/is_serving/start_serving."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any

import pytest
from rawpeer import TIMEOUT

import websock
import websock.sync
from websock.connection_logger import ConnectionLogger

PREFIX = re.compile(r"^\[([0-9a-f]{8}) 127\.0\.0\.1:(\d+)\] ")


def _records(caplog: pytest.LogCaptureFixture, name: str, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and text in r.getMessage()]


async def test_server_connection_logs_through_the_given_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.ws")
    connections: list[websock.ServerConnection] = []

    async def handler(ws: websock.ServerConnection) -> None:
        connections.append(ws)
        await ws.recv()
        raise RuntimeError("bug in the handler")

    async with websock.serve(handler, "127.0.0.1", 0, logger="app.ws") as server:
        assert server.logger is logging.getLogger("app.ws")
        port = server.sockets[0].getsockname()[1]
        async with websock.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("go")
            with pytest.raises(websock.ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            client_port = ws.local_address[1]
    (record,) = _records(caplog, "app.ws", "connection handler failed")
    (connection,) = connections
    match = PREFIX.match(record.getMessage())
    assert match is not None, record.getMessage()
    assert match.group(1) == connection.id.hex[:8]
    assert int(match.group(2)) == client_port
    assert record.websocket is connection  # type: ignore[attr-defined]
    assert not _records(caplog, "websock.server", "connection handler failed")


async def test_client_logger_adapter_and_default_names(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    base = logging.LoggerAdapter(logging.getLogger("app.client"), {"tenant": "t1"})

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    async with websock.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await websock.connect(f"ws://127.0.0.1:{port}/", logger=base)
        assert isinstance(ws.logger, ConnectionLogger)
        assert ws.logger.logger is base
        ws.logger.info("custom line")
        client_id = ws.id
        await ws.close()
        async with websock.connect(f"ws://127.0.0.1:{port}/") as other:
            assert other.logger.logger is logging.getLogger("websock.client")
            assert other.id != client_id
    (record,) = _records(caplog, "app.client", "custom line")
    assert record.getMessage() == f"[{client_id.hex[:8]} 127.0.0.1:{port}] custom line"
    assert record.tenant == "t1"  # type: ignore[attr-defined]


def test_logger_must_be_a_logger() -> None:
    with pytest.raises(TypeError, match="logger must be"):
        websock.connect("ws://127.0.0.1:1/", logger=42)  # type: ignore[arg-type]


def test_sync_connections_log_through_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.sync")
    connections: list[Any] = []

    def handler(ws: websock.sync.ServerConnection) -> None:
        connections.append(ws)
        ws.recv(timeout=TIMEOUT)
        raise RuntimeError("bug in the handler")

    with websock.sync.serve(handler, "127.0.0.1", 0, logger="app.sync") as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        with websock.sync.connect(f"ws://127.0.0.1:{port}/", logger="app.sync.client") as ws:
            assert ws.logger.logger is logging.getLogger("app.sync.client")
            ws.send("go")
            with pytest.raises(websock.ConnectionClosedError):
                ws.recv(timeout=TIMEOUT)
            client_port = ws.local_address[1]
        server.shutdown()
        thread.join(TIMEOUT)
    (record,) = _records(caplog, "app.sync", "connection handler failed")
    match = PREFIX.match(record.getMessage())
    assert match is not None, record.getMessage()
    assert match.group(1) == connections[0].id.hex[:8]
    assert int(match.group(2)) == client_port
    assert record.websocket is connections[0]  # type: ignore[attr-defined]


async def test_server_loop_and_serving_state() -> None:
    """get_loop(), is_serving() and start_serving(), as websockets' and asyncio's servers."""

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.wait_closed()

    server = await websock.serve(handler, "127.0.0.1", 0)
    assert server.get_loop() is asyncio.get_running_loop()
    await server.start_serving()
    assert server.is_serving()
    server.close()
    assert not server.is_serving()
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    assert not server.is_serving()


@pytest.mark.parametrize("layer", ["asyncio", "sync"])
async def test_client_address_from_trusted_proxies(layer: str) -> None:
    """X-Forwarded-For is believed only with trusted_proxies (the TCP peer, 127.0.0.1, is
    trusted here); remote_address stays the TCP peer."""
    from rawpeer import RawClient

    seen: list[tuple[Any, Any]] = []

    def record(ws: Any) -> None:
        seen.append((ws.remote_address, ws.client_address))

    async def async_handler(ws: websock.ServerConnection) -> None:
        record(ws)

    def sync_handler(ws: websock.sync.ServerConnection) -> None:
        record(ws)

    header = "X-Forwarded-For: 198.51.100.9, 203.0.113.7\r\n"
    for trusted in (None, ["127.0.0.0/8"]):
        if layer == "asyncio":
            server: Any = await websock.serve(
                async_handler, "127.0.0.1", 0, trusted_proxies=trusted
            )
            port = server.port
        else:
            server = websock.sync.serve(sync_handler, "127.0.0.1", 0, trusted_proxies=trusted)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            port = server.socket.getsockname()[1]
        try:
            client = await RawClient.connect(port, extra=header)
            await client.read_frame()  # the handler returned: Close 1000
            await client.aclose()
        finally:
            if layer == "asyncio":
                server.close()
                await asyncio.wait_for(server.wait_closed(), TIMEOUT)
            else:
                await asyncio.to_thread(server.shutdown)
    (remote, ignored), (remote_too, forwarded) = seen
    assert ignored == remote and remote[0] == "127.0.0.1"
    assert forwarded == ("203.0.113.7", 0) and remote_too[0] == "127.0.0.1"
