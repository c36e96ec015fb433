"""aiohttp echo server (web.WebSocketResponse)."""

import argparse
import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=args.deflate, max_msg_size=bc.MAX_MESSAGE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    logging.basicConfig(level=logging.ERROR)
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=bc.server_ssl(args))
    await site.start()
    bc.ready(args.port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    bc.server_main(__doc__ or "", main)
