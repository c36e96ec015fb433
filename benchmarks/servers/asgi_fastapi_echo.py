"""FastAPI WebSocket echo endpoint served by uvicorn, with a choice of WebSocket backend.

    python benchmarks/servers/asgi_fastapi_echo.py --port 8000 --ws websock
    python benchmarks/servers/asgi_fastapi_echo.py --port 8000 --ws websockets-sansio

``--ws``: ``websock`` (``websock.asgi.WebSocketProtocol``) or one of uvicorn's own backends,
``websockets-sansio``, ``wsproto``, ``websockets`` (the legacy one). Everything else is the
same for every backend: uvicorn's HTTP parser (``--http``, default httptools when installed),
no permessage-deflate, 2 MiB messages, access log off, lifespan off, uvicorn's default
keepalive pings (20 s, irrelevant at benchmark durations). The event loop is asyncio's
(``--uvloop`` for uvloop), created here, not by uvicorn (``loop="none"``).

Prints ``READY <port>`` once listening (``UNAVAILABLE <reason>`` and exit status 3 when the
backend cannot be imported); exits when stdin closes or after --max-seconds (see
_bench_common.lifeline). Used by benchmarks/bench_asgi.py; not part of websock.
"""

import argparse
import asyncio
import importlib
import logging
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

# uvicorn's own backends, by their --ws names; the class is imported to check it works here.
UVICORN_WS = {
    "websockets-sansio": "uvicorn.protocols.websockets.websockets_sansio_impl",
    "wsproto": "uvicorn.protocols.websockets.wsproto_impl",
    "websockets": "uvicorn.protocols.websockets.websockets_impl",
}
CHOICES = ["websock", *UVICORN_WS]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ws", choices=CHOICES, required=True, help="WebSocket backend")
    p.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    p.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's")
    p.add_argument("--max-seconds", type=float, default=900.0)
    return p.parse_args()


def ws_backend(name: str) -> object:
    """The value for uvicorn.Config(ws=...), or UNAVAILABLE (exit 3) if it cannot load."""
    try:
        if name == "websock":
            from websock.asgi import WebSocketProtocol

            return WebSocketProtocol
        importlib.import_module(UVICORN_WS[name])  # e.g. wsproto or websockets.legacy missing
        return name
    except Exception as exc:
        bc.unavailable(f"--ws {name} cannot be loaded ({type(exc).__name__}: {exc})")
        raise  # not reached


def make_app() -> Any:
    # No "from __future__ import annotations" in this file: FastAPI reads the parameter's
    # annotation to inject the WebSocket (a string annotation naming a local would not
    # resolve, and the endpoint would refuse every upgrade with 403).
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    app = FastAPI()

    @app.websocket("/")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is not None:
                    await websocket.send_bytes(data)
                else:
                    await websocket.send_text(message["text"])
        except WebSocketDisconnect:
            return

    return app


def main() -> None:
    args = parse_args()
    bc.lifeline(args.max_seconds)
    logging.basicConfig(level=logging.ERROR)
    try:
        import uvicorn
    except ImportError as exc:
        bc.unavailable(f"uvicorn is not installed ({exc})")
    ws = ws_backend(args.ws)
    http = args.http
    if http == "auto":
        try:
            import httptools  # noqa: F401

            http = "httptools"
        except ImportError:
            http = "h11"
    config = uvicorn.Config(
        make_app(),
        host=args.host,
        port=args.port,
        ws=ws,  # type: ignore[arg-type]
        http=http,
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="error",
        ws_max_size=bc.MAX_MESSAGE,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            if task.done():
                task.result()
                bc.unavailable("uvicorn did not start")
            await asyncio.sleep(0.02)
        print(f"READY {args.port} http={http}", flush=True)
        await task

    bc.run(run, args.uvloop)


if __name__ == "__main__":
    main()
