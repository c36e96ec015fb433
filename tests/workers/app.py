"""A server for tests/test_workers.py: ``python app.py MODE PORT WORKERS``.

Every connection first receives the worker's PID (as text), then its messages echoed.
MODE: ``pid`` (just that), ``crash-startup`` (each worker's lifespan raises before it
listens), ``die`` (a message "die" makes the worker exit at once with status 3),
``stubborn`` (handlers never return, even when cancelled; close_timeout is 60 s).
Prints ``ready on port P`` once every worker listens; logs at INFO on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator

import websock


async def handler(ws: websock.ServerConnection) -> None:
    await ws.send(str(os.getpid()))
    if MODE == "stubborn":
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
    async for message in ws:
        if message == "die" and MODE == "die":
            os._exit(3)
        await ws.send(message)


@contextlib.asynccontextmanager
async def failing_lifespan() -> AsyncIterator[None]:
    raise RuntimeError("no database")
    yield  # pragma: no cover


def ready(port: int) -> None:
    print(f"ready on port {port}", flush=True)


if __name__ == "__main__":
    MODE, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    websock.run(
        handler,
        "127.0.0.1",
        port,
        workers=workers,
        lifespan=failing_lifespan if MODE == "crash-startup" else None,
        on_ready=ready,
        compression=None,
        close_timeout=60 if MODE == "stubborn" else 10,
    )
    print("stopped", flush=True)
