"""The sans-I/O protocol core: no asyncio, no sockets, no clocks.

Bytes go in, events and bytes come out; any I/O layer (asyncio today) drives it. See
:mod:`websock.protocol.connection` for the I/O contract.
"""

from __future__ import annotations

from .close import Close, CloseCode
from .connection import (
    CloseReceived,
    Connection,
    Event,
    MessagePiece,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
)
from .frames import Frame, Opcode
from .handshake import ClientHandshake, ServerHandshake
from .http import Headers, Request, Response
from .uri import WebSocketURI, parse_uri

__all__ = [
    "ClientHandshake",
    "Close",
    "CloseCode",
    "CloseReceived",
    "Connection",
    "Event",
    "Frame",
    "Headers",
    "MessagePiece",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolViolation",
    "Request",
    "Response",
    "Role",
    "ServerHandshake",
    "State",
    "WebSocketURI",
    "parse_uri",
]
