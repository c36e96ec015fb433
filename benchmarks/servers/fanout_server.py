"""Fan-out server for benchmarks/bench_fanout.py (not part of websock).

Connections to ``/sub`` are subscribers: the server registers them, then sends each one
1-byte "hello" frame (the load generator counts a subscriber as ready when it arrives).
Messages received on ``/pub`` (the publisher) are sent, unchanged, to every subscriber:

- ``websock``: ``websock.broadcast(SUBS, message)`` (frame encoded once, no await);
- ``websockets``: ``websockets.asyncio.server.broadcast(SUBS, message)``;
- ``websock-send`` / ``websockets-send``: ``for ws in list(SUBS): await ws.send(message)``,
  sequentially (the loop websockets' documentation shows next to broadcast());
- ``hub``: ``websock.pubsub.Hub`` topic "t": ``hub.subscribe(ws, "t")`` and
  ``hub.publish("t", message)``; with ``--redis URL`` the hub joins others through Redis
  and a subscriber gets its hello only after ``await hub.sync()``.

Compression off everywhere; every other setting is the library's default.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

IMPLS = ("websock", "websockets", "websock-send", "websockets-send", "hub")
HELLO = b"H"


def raise_nofile(want: int = 200_000) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    impl = args.impl
    subs: dict = {}  # insertion-ordered set of subscriber connections
    hub = None

    if impl.startswith("websockets"):
        from websockets.asyncio.server import broadcast as ws_broadcast
        from websockets.asyncio.server import serve
        from websockets.exceptions import ConnectionClosed

        options = {"compression": None, "max_size": bc.MAX_MESSAGE}
    else:
        import websock
        from websock import serve

        ConnectionClosed = websock.ConnectionClosed  # type: ignore[misc]  # noqa: N806
        options = {"compression": None, "max_message_size": bc.MAX_MESSAGE}
        if impl == "hub":
            from websock.pubsub import Hub

            hub = Hub(redis_url=args.redis) if args.redis else Hub()

    if impl == "websock":
        broadcast = websock.broadcast

        def publish(message: bytes) -> None:
            broadcast(subs, message)

    elif impl == "websockets":

        def publish(message: bytes) -> None:
            ws_broadcast(subs, message)

    elif impl == "hub":
        assert hub is not None

        def publish(message: bytes) -> None:
            hub.publish("t", message)

    else:
        publish = None  # type: ignore[assignment]

    async def publish_loop(message: bytes) -> None:
        for ws in list(subs):
            try:
                await ws.send(message)
            except ConnectionClosed:
                pass

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        path = ws.request.path
        if path.startswith("/pub"):
            if publish is not None:
                async for message in ws:
                    publish(message)
            else:
                async for message in ws:
                    await publish_loop(message)
            return
        try:
            if hub is not None:
                hub.subscribe(ws, "t")
                await hub.sync()
            else:
                subs[ws] = None
            await ws.send(HELLO)
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        finally:
            subs.pop(ws, None)

    server = serve(handler, args.host, args.port, backlog=4096, **options)
    if hub is not None:
        async with hub:
            await bc.serve_async(server, args.port)
    else:
        await bc.serve_async(server, args.port)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--impl", choices=IMPLS, required=True)
    p.add_argument("--redis", default=None, help="redis:// URL (impl hub only)")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--max-seconds", type=float, default=600.0)
    a = p.parse_args()
    bc.lifeline(a.max_seconds)
    raise_nofile()
    bc.run(lambda: main(a), a.uvloop)
