"""The asyncio I/O layer: :func:`serve` and :func:`connect` on asyncio transports."""

from __future__ import annotations

from .client import ClientConnection, connect
from .connection import Connection, Data
from .server import Server, ServerConnection, serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Data",
    "Server",
    "ServerConnection",
    "connect",
    "serve",
]
