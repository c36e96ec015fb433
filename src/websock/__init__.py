"""websock: a fast, strictly conformant WebSocket library (RFC 6455, RFC 7692) for asyncio.

::

    import websock

    async def handler(ws: websock.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with websock.serve(handler, "127.0.0.1", 8765) as server:
        await server.serve_forever()

    async with websock.connect("ws://127.0.0.1:8765/") as ws:
        await ws.send("hello")
        print(await ws.recv())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .options import Options
from .protocol.close import CloseCode
from .protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from .protocol.http import Headers, Request, Response
from .reconnect import Backoff

if TYPE_CHECKING:
    from .asyncio.broadcast import BroadcastResult, broadcast
    from .asyncio.client import ClientConnection, connect, unix_connect
    from .asyncio.server import Server, ServerConnection, serve, unix_serve
    from .workers import run

__version__ = "0.1.0"

# The asyncio layer (and aiofastnet, which it loads) is imported on first use of one of its
# names, so that ``import websock.protocol`` or ``import websock.sync`` pulls in no asyncio.
_ASYNCIO_NAMES = {
    "broadcast": "broadcast",
    "BroadcastResult": "broadcast",
    "ClientConnection": "client",
    "connect": "client",
    "Server": "server",
    "ServerConnection": "server",
    "serve": "server",
    "unix_connect": "client",
    "unix_serve": "server",
}


def __getattr__(name: str) -> Any:
    if name == "run":  # websock.workers, which runs the asyncio layer: loaded on first use too
        from .workers import run

        globals()[name] = run
        return run
    module = _ASYNCIO_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'websock' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".asyncio.{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ASYNCIO_NAMES) | {"run"})


__all__ = [
    "__version__",
    "Backoff",
    "broadcast",
    "BroadcastResult",
    "ClientConnection",
    "ClientPerMessageDeflateFactory",
    "CloseCode",
    "ConcurrencyError",
    "connect",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "InvalidHandshake",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "Options",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "Request",
    "Response",
    "run",
    "serve",
    "Server",
    "ServerConnection",
    "ServerPerMessageDeflateFactory",
    "unix_connect",
    "unix_serve",
    "WebSocketError",
]
