"""websock.asgi.WebSocketProtocol driven directly, with a fake transport: the upgrade
hand-over as uvicorn's HTTP protocol does it, backpressure (reading stops while
``ws_max_queue`` messages wait for the application, and resumes as it takes them), and
corked writes (replies to a batch of messages go out in one write)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from websock.asgi import WebSocketProtocol
from websock.protocol import Connection, Role

WAIT = 5.0

HEAD = (
    b"GET /chat?room=1 HTTP/1.1\r\nhost: example.org\r\nupgrade: websocket\r\n"
    b"connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"sec-websocket-version: 13\r\n\r\n"
)


class FakeTransport(asyncio.Transport):
    """Records writes and reading state; no socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.reading = True
        self.pauses = 0
        self.closing = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)


def feed(protocol: WebSocketProtocol, data: bytes) -> None:
    """Deliver ``data`` as a buffered read, as the event loop does after set_protocol()."""
    while data:
        buffer = protocol.get_buffer(len(data))
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        protocol.buffer_updated(n)
        data = data[n:]


def client_frames(*messages: str) -> bytes:
    client = Connection(Role.CLIENT)
    for message in messages:
        client.send_text(message)
    return b"".join(client.data_to_send())


def server_messages(written: list[bytes]) -> list[Any]:
    client = Connection(Role.CLIENT)
    client.receive_data(b"".join(written))
    return client.events_received()


async def start(app: Any, **config: Any) -> tuple[WebSocketProtocol, FakeTransport]:
    cfg = uvicorn.Config(
        app, ws=WebSocketProtocol, proxy_headers=False, ws_ping_interval=None, **config
    )
    cfg.load()
    protocol = WebSocketProtocol(cfg, ServerState(), {})
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(HEAD)  # what uvicorn's HTTP protocol hands over
    transport.set_protocol(protocol)
    return protocol, transport


async def test_backpressure_and_corked_replies() -> None:
    accepted = asyncio.Event()
    go = asyncio.Event()
    received: list[Any] = []
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["path"] == "/chat" and scope["query_string"] == b"room=1"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        accepted.set()
        await go.wait()
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                done.set()
                return
            await send({"type": "websocket.send", "text": message["text"].upper()})

    protocol, transport = await start(app, ws_max_queue=2)
    assert not transport.reading  # nothing is read until the application answers
    await asyncio.wait_for(accepted.wait(), WAIT)
    assert transport.written[0].startswith(b"HTTP/1.1 101 ")
    assert transport.reading
    transport.written.clear()

    # Six messages in one read: two fit the queue, the core holds the rest, reading stops.
    feed(protocol, client_frames(*[f"m{i}" for i in range(6)]))
    assert not transport.reading
    assert transport.written == []

    go.set()  # the application takes them: held input is parsed, reading resumes
    closer = Connection(Role.CLIENT)
    closer.send_close(1001)
    for _ in range(1000):  # bounded: a handful of loop iterations suffice
        if len(received) == 6 and transport.reading:
            break
        await _next_iteration()
    assert transport.reading
    assert [m["text"] for m in received] == [f"m{i}" for i in range(6)]
    assert server_messages(transport.written) == [f"M{i}" for i in range(6)]
    # Corked: fewer writes than replies.
    assert len(transport.written) < 6

    transport.written.clear()
    feed(protocol, b"".join(closer.data_to_send()))
    await asyncio.wait_for(done.wait(), WAIT)
    assert received[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": ""}
    protocol.connection_lost(None)


async def test_message_before_accept_is_not_read() -> None:
    # The hand-over pauses reading until the application accepts (no frame is parsed
    # before the 101, nothing is buffered for a client that sends early).
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await release.wait()
        await send({"type": "websocket.close"})

    protocol, transport = await start(app)
    assert not transport.reading
    release.set()
    for _ in range(100):
        if transport.closing:
            break
        await _next_iteration()
    assert transport.written[0].startswith(b"HTTP/1.1 403 ")
    assert transport.closing
    protocol.connection_lost(None)


async def _next_iteration() -> None:
    # One trip through the event loop: lets the application task and call_soon callbacks
    # run. Not a timed sleep.
    await asyncio.sleep(0)
