"""The threading I/O layer: blocking :func:`connect` and a thread-per-connection :func:`serve`.

::

    from websock.sync import connect, serve

    def handler(ws):
        for message in ws:
            ws.send(message)

    with serve(handler, "127.0.0.1", 8765) as server:
        server.serve_forever()          # server.shutdown() from another thread stops it

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=10))

    for ws in reconnecting("ws://127.0.0.1:8765/"):   # reconnects with backoff
        try:
            for message in ws:
                print(message)
        except ConnectionClosed:
            continue

It drives the same sans-I/O core as :mod:`websock.asyncio`, through the same contract, and
imports no asyncio.
"""

from __future__ import annotations

from .client import ClientConnection, connect, reconnecting, unix_connect
from .connection import Connection, Data
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Data",
    "Server",
    "ServerConnection",
    "connect",
    "reconnecting",
    "serve",
    "unix_connect",
    "unix_serve",
]
