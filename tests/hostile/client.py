"""A WebSocket client for the hostile tests (client role), run as a subprocess.

    python tests/hostile/client.py websock|websockets ws://127.0.0.1:PORT/ [--mode recv]

It prints ``READY`` to stdout once the opening handshake is done, then, by ``--mode``:

- ``recv``: receives messages and drops them;
- ``echo``: sends every message back;
- ``idle``: never calls recv().

It exits when the connection closes, or on SIGTERM. Logging (WARNING and above) goes to
stderr; the ConnectionClosed exceptions of each library are caught, so that any traceback
there comes from the library itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any


async def _run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)

    ws: Any
    if args.impl == "websock":
        import websock

        closed: tuple[type[BaseException], ...] = (websock.ConnectionClosed,)
        ws = await websock.connect(args.uri, open_timeout=10)
    else:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        closed = (ConnectionClosed,)
        ws = await connect(args.uri, open_timeout=10, proxy=None)
    print("READY", flush=True)

    async def work() -> None:
        try:
            if args.mode == "idle":
                await ws.wait_closed()
                return
            async for message in ws:
                if args.mode == "echo":
                    await ws.send(message)
        except closed:
            pass

    task = asyncio.ensure_future(work())
    await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    try:
        await asyncio.wait_for(ws.close(), 2)
    except (asyncio.TimeoutError, *closed):
        pass
    ws.transport.abort()
    # Before asyncio.run() closes the loop: a signal arriving between the loop closing its
    # wake-up pipe and removing its handlers would print a traceback that is not the library's.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("impl", choices=("websock", "websockets"))
    p.add_argument("uri")
    p.add_argument("--mode", choices=("recv", "echo", "idle"), default="recv")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
