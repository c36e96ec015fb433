"""A FastAPI echo application served by uvicorn, for conformance runs of websock.asgi.

    python compliance/asgi_echo.py [--ws websock|websockets-sansio|wsproto|...] [--loop auto]
        serve --host 127.0.0.1 --port 9001 [--max-message-size N] [--ping-interval S] [--plain]

The ``serve ...`` part takes the arguments tests/conformance/conftest.py gives its server
under test (``python -m websock serve ...``), so the harness runs this script through
``WEBSOCK_CONFORMANCE_SERVER="python compliance/asgi_echo.py --ws websock"``
(tests/asgi/test_asgi_conformance.py does that). ``--ws websock`` selects
:class:`websock.asgi.WebSocketProtocol`; any other value is one of uvicorn's own backends,
for comparison. The script binds the socket itself and prints ``ws://HOST:PORT`` once it
listens (port 0 picks a free port). Every path is served; text is echoed as text, binary as
binary; a ping interval of 0 turns keepalive off.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

__all__ = ["app", "main"]

app = FastAPI()


@app.websocket("/{path:path}")
async def echo(websocket: WebSocket) -> None:
    """Echo every message until the client closes."""
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", default="websock", help="websock, or a uvicorn ws backend name")
    parser.add_argument("--loop", default="auto", help="uvicorn's --loop (auto, asyncio, uvloop)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9001)
    serve.add_argument("--max-message-size", type=int, default=16 * 1024 * 1024)
    serve.add_argument("--ping-interval", type=float, default=0.0)
    serve.add_argument("--plain", action="store_true", help="accepted for the harness; always ws")
    args = parser.parse_args(argv)

    ws: Any = args.ws
    if ws == "websock":
        from websock.asgi import WebSocketProtocol

        ws = WebSocketProtocol
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    config = uvicorn.Config(
        app,
        ws=ws,
        loop=args.loop,
        ws_max_size=args.max_message_size,
        ws_ping_interval=args.ping_interval or None,
        ws_ping_timeout=None,
        ws_per_message_deflate=True,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    host, port = sock.getsockname()[:2]
    print(f"listening on ws://{host}:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
