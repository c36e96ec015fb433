"""websockets echo server (new asyncio API: websockets.asyncio.server.serve)."""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402


async def handler(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    args = bc.server_args(__doc__ or "")
    logging.basicConfig(level=logging.ERROR)
    async with serve(
        handler,
        args.host,
        args.port,
        ssl=bc.server_ssl(args),
        compression="deflate" if args.deflate else None,
        max_size=bc.MAX_MESSAGE,
    ) as server:
        bc.ready(args.port)
        await server.serve_forever()


if __name__ == "__main__":
    a = bc.server_args(__doc__ or "")
    bc.lifeline(a.max_seconds)
    bc.run(main, a.uvloop)
