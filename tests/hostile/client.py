"""A WebSocket client for the hostile tests (client role), run as a subprocess.

    python tests/hostile/client.py IMPL ws://127.0.0.1:PORT/ [--mode recv]

IMPL is websock, websock-sync or websockets. ``websock-sync`` is websock's threading client
(``websock.sync.connect``, which reads in a thread of its own); the mode's work runs in another
thread, the main thread waits for a signal.

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
import socket
import sys
import threading
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
    ignored: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *closed)
    try:
        await asyncio.wait_for(ws.close(), 2)
    except ignored:
        pass
    ws.transport.abort()
    # Before asyncio.run() closes the loop: a signal arriving between the loop closing its
    # wake-up pipe and removing its handlers would print a traceback that is not the library's.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def _run_sync(args: argparse.Namespace) -> None:
    from websock.exceptions import ConnectionClosed
    from websock.sync import connect

    done = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    ws = connect(args.uri, open_timeout=10)
    print("READY", flush=True)

    def work() -> None:
        try:
            if args.mode == "idle":
                ws.wait_closed()
                return
            for message in ws:
                if args.mode == "echo":
                    ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            done.set()

    threading.Thread(target=work, name="hostile-client-work", daemon=True).start()
    done.wait()
    # Close within 2 s (as the asyncio variant), then drop TCP whatever happened.
    closer = threading.Thread(target=ws.close, name="hostile-client-close", daemon=True)
    closer.start()
    closer.join(2)
    try:
        ws.socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("impl", choices=("websock", "websock-sync", "websockets"))
    p.add_argument("uri")
    p.add_argument("--mode", choices=("recv", "echo", "idle"), default="recv")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.impl == "websock-sync":
        _run_sync(args)
    else:
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
