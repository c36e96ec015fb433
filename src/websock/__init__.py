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

from .asyncio.client import ClientConnection, connect
from .asyncio.server import Server, ServerConnection, serve
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    WebSocketError,
)
from .protocol.close import CloseCode
from .protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from .protocol.http import Headers, Request, Response

__version__ = "0.1.0"

__all__ = [
    "ClientConnection",
    "ClientPerMessageDeflateFactory",
    "CloseCode",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "InvalidHandshake",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "ServerPerMessageDeflateFactory",
    "WebSocketError",
    "__version__",
    "connect",
    "serve",
]
