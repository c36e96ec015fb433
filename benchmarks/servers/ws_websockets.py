"""websockets echo server (new asyncio API: websockets.asyncio.server.serve)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402


async def handler(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


if __name__ == "__main__":
    bc.serve_main(__doc__ or "", serve, handler, "max_size")
