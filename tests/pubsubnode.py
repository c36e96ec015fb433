"""One process of the Redis backplane tests: a websock server with a Hub joined to Redis.

Run as ``python pubsubnode.py REDIS_URL``. It serves on a free port of 127.0.0.1, prints
``READY <port>`` on stdout once its hub has made its first attempt to reach Redis, logs
(``websock.pubsub`` at DEBUG and up, one line per record: ``LEVEL name message``) on
stderr, and stops cleanly on SIGTERM or SIGINT (exit status 0).

Each client speaks a tiny text protocol to it:

- ``sub:<topic>``: subscribe this connection to ``<topic>``; answered ``ok:sub:<topic>``
  once Redis has the subscription (``hub.sync()``), or ``timeout:sub:<topic>`` if it is
  unreachable for TIMEOUT seconds. From then on, the connection receives the topic's
  messages; it should send nothing else.
- ``pub:<topic>:<text>``: publish ``<text>`` to ``<topic>``; answered ``ok:pub:<sent>``
  (local deliveries).
- ``sync``: answered ``ok:sync`` once the hub is connected to Redis and its subscriptions
  are in place (``timeout:sync`` after TIMEOUT seconds).
- ``stats``: answered with the hub's counters as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

import websock
from websock.pubsub import Hub

TIMEOUT = 10.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)


async def main(redis_url: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("websock.pubsub").setLevel(logging.DEBUG)
    # Short delays and a short silence: the tests restart Redis.
    hub = Hub(redis_url, ping_interval=2.0, timeout=2.0)

    async def handler(ws: websock.ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, str)
            command, _, rest = message.partition(":")
            if command == "sub":
                hub.subscribe(ws, rest)
                try:
                    await asyncio.wait_for(hub.sync(), TIMEOUT)
                except asyncio.TimeoutError:
                    await ws.send(f"timeout:sub:{rest}")
                else:
                    await ws.send(f"ok:sub:{rest}")
            elif command == "pub":
                topic, _, text = rest.partition(":")
                result = hub.publish(topic, text)
                await ws.send(f"ok:pub:{result.sent}")
            elif command == "sync":
                try:
                    await asyncio.wait_for(hub.sync(), TIMEOUT)
                except asyncio.TimeoutError:
                    await ws.send("timeout:sync")
                else:
                    await ws.send("ok:sync")
            elif command == "stats":
                await ws.send(json.dumps(hub.stats.as_dict()))
            else:
                await ws.close(1008, f"unknown command {command!r}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with hub:
        async with websock.serve(handler, "127.0.0.1", 0) as server:
            print(f"READY {server.port}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
