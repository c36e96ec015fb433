"""websock client (websock.connect): send, await recv, repeat."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

ARGS = bc.client_args(__doc__ or "")
URI = f"ws://{ARGS.host}:{ARGS.port}/"

try:
    from websock import connect
except Exception as exc:
    connect = None
    REASON = f"websock.connect is not available ({type(exc).__name__}: {exc})"


async def session(counter: bc.Counter, payload: bytes, opened: asyncio.Event) -> None:
    async with connect(URI, compression=None, max_message_size=bc.MAX_MESSAGE) as ws:
        opened.set()
        while not counter.stop:
            await ws.send(payload)
            await ws.recv()
            counter.count += 1


if __name__ == "__main__":
    if connect is None:
        bc.unavailable(REASON)
    bc.lifeline(ARGS.max_seconds, watch_stdin=False)
    bc.run(lambda: bc.coroutine_client(ARGS, session), ARGS.uvloop)
