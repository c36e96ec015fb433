"""aiohttp client (ClientSession.ws_connect): send_bytes, await receive, repeat."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
import aiohttp  # noqa: E402

ARGS = bc.client_args(__doc__ or "")
URI = f"http://{ARGS.host}:{ARGS.port}/"


async def session(counter: bc.Counter, payload: bytes, opened: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(URI, compress=0, max_msg_size=bc.MAX_MESSAGE) as ws:
            opened.set()
            while not counter.stop:
                await ws.send_bytes(payload)
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"unexpected message {msg.type}")
                counter.count += 1


if __name__ == "__main__":
    bc.lifeline(ARGS.max_seconds, watch_stdin=False)
    bc.run(lambda: bc.coroutine_client(ARGS, session), ARGS.uvloop)
