"""Raw asyncio TCP echo server (asyncio.Protocol): the floor for any asyncio
WebSocket server. No WebSocket framing at all: bytes in, same bytes out."""

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]

    # eof_received() returns None: the transport closes (the peer sees our FIN).


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, args.host, args.port, ssl=bc.server_ssl(args))
    await bc.serve_async(server, args.port)


if __name__ == "__main__":
    bc.server_main(__doc__ or "", main)
