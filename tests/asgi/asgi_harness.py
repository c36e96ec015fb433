"""Helpers for the websock.asgi tests: real uvicorn servers in a thread, the apps under
test (Starlette and FastAPI, the same endpoints), and a raw sans-I/O client.

Servers listen on a socket bound before uvicorn starts (port 0 on loopback), so a client
can connect at once: the kernel queues it until uvicorn accepts. Stopping sets uvicorn's
``should_exit`` and joins the thread with a bound.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from websock.asgi import WebSocketProtocol
from websock.protocol import ClientHandshake, Connection, Role, parse_uri

__all__ = [
    "BACKENDS",
    "FRAMEWORKS",
    "WAIT",
    "Recorder",
    "RawClient",
    "UvicornThread",
    "build_app",
    "ws_backend",
]

# uvicorn's WebSocket backends under test: ours, and uvicorn's own sans-I/O one for parity.
BACKENDS = ["websock", "websockets-sansio"]
FRAMEWORKS = ["starlette", "fastapi"]
# Upper bound of every wait in these tests (seconds); none is a synchronisation sleep.
WAIT = 10.0


def ws_backend(name: str) -> Any:
    return WebSocketProtocol if name == "websock" else name


class Recorder:
    """What the application saw, recorded from uvicorn's thread, read from the test's."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()

    def put(self, *event: Any) -> None:
        self._queue.put(event)

    async def get(self, timeout: float = WAIT) -> tuple[Any, ...]:
        return await asyncio.to_thread(self._queue.get, True, timeout)


def _endpoints(recorder: Recorder) -> dict[str, Callable[[WebSocket], Any]]:
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                recorder.put("disconnect", message.get("code"), message.get("reason"))
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])

    async def subprotocol(ws: WebSocket) -> None:
        offered = ws.scope["subprotocols"]
        chosen = next((p for p in ("chat.v2", "chat.v1") if p in offered), None)
        await ws.accept(subprotocol=chosen, headers=[(b"x-extra", b"yes")])
        await ws.send_text(chosen or "")
        await ws.receive()

    async def scope(ws: WebSocket) -> None:
        s = ws.scope
        await ws.accept()
        await ws.send_json(
            {
                "type": s["type"],
                "asgi": s["asgi"],
                "http_version": s["http_version"],
                "scheme": s["scheme"],
                "path": s["path"],
                "raw_path": s["raw_path"].decode(),
                "root_path": s["root_path"],
                "query_string": s["query_string"].decode(),
                "headers": [[k.decode(), v.decode()] for k, v in s["headers"]],
                "subprotocols": s["subprotocols"],
                "client": list(s["client"]),
                "server": list(s["server"]),
                "extensions": sorted(s.get("extensions") or {}),
            }
        )
        await ws.receive()

    async def auth(ws: WebSocket) -> None:
        if ws.query_params.get("token") != "secret":
            response = PlainTextResponse(
                "token required", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await ws.send_denial_response(response)
            return
        await ws.accept()
        await ws.send_text("welcome")
        await ws.receive()

    async def reject(ws: WebSocket) -> None:
        await ws.close()

    async def close4000(ws: WebSocket) -> None:
        await ws.accept()
        text = await ws.receive_text()
        await ws.close(4000, f"bye {text}")

    async def boom(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        raise RuntimeError("the application failed (expected by the test)")

    async def accept_and_return(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("done")

    async def boom_before(ws: WebSocket) -> None:
        raise RuntimeError("the application failed before accepting (expected by the test)")

    return {
        "/echo": echo,
        "/subprotocol": subprotocol,
        "/scope/{rest:path}": scope,
        "/auth": auth,
        "/reject": reject,
        "/close4000": close4000,
        "/boom": boom,
        "/boom-before": boom_before,
        "/return": accept_and_return,
    }


def build_app(framework: str, recorder: Recorder) -> Any:
    """The endpoints as a Starlette or a FastAPI application."""
    endpoints = _endpoints(recorder)
    if framework == "starlette":
        return Starlette(routes=[WebSocketRoute(path, ep) for path, ep in endpoints.items()])
    app = FastAPI()
    for path, endpoint in endpoints.items():
        app.add_api_websocket_route(path, endpoint)
    return app


class UvicornThread:
    """A uvicorn server on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, app: Any, backend: str, **config: Any) -> None:
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "off")
        config.setdefault("ws_ping_interval", None)
        self.loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = config.pop(
            "loop_factory", None
        )
        self.config = uvicorn.Config(app, ws=ws_backend(backend), **config)
        self.server = uvicorn.Server(self.config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT + 10)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"
        assert not self.errors, self.errors

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RawClient:
    """A WebSocket client on websock's sans-I/O core that shows every frame it receives
    and may leave Pings unanswered (a dead peer)."""

    def __init__(self, url: str, *, answer_pings: bool = True) -> None:
        self.url = url
        self.answer_pings = answer_pings
        self.events: asyncio.Queue[Any] = asyncio.Queue()

    async def __aenter__(self) -> RawClient:
        uri = parse_uri(self.url)
        self.reader, self.writer = await asyncio.open_connection(uri.host, uri.port)
        handshake = ClientHandshake(uri)
        for chunk in handshake.data_to_send():
            self.writer.write(chunk)
        response = None
        while response is None:
            data = await self.reader.read(65536)
            assert data, "EOF during the opening handshake"
            response = handshake.receive_data(data)
        self.conn = Connection(Role.CLIENT, extensions=handshake.extensions)
        self._task = asyncio.create_task(self._read(handshake.trailing))
        return self

    async def _read(self, data: bytes) -> None:
        conn = self.conn
        if not data:
            data = await self.reader.read(65536)
        while True:
            if data:
                conn.receive_data(data)
            else:
                conn.receive_eof()
            for event in conn.events_received():
                await self.events.put(event)
            conn.messages_consumed()
            out = conn.data_to_send()
            if self.answer_pings or conn.close_sent is not None:
                for chunk in out:
                    if chunk:
                        self.writer.write(chunk)
            if not data:
                await self.events.put(None)  # EOF
                return
            data = await self.reader.read(65536)

    async def next_event(self) -> Any:
        return await asyncio.wait_for(self.events.get(), WAIT)

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()
        self.writer.close()
