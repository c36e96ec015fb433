"""picows echo server (callback API: WSListener.on_ws_frame). picows has no
permessage-deflate, so it is n/a for workload (h). picows uses aiofastnet
for its transports when that package is installed (as picows does by default)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server  # noqa: E402

DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main(args: argparse.Namespace) -> None:
    if args.deflate:
        bc.unavailable("picows does not implement permessage-deflate")
    server = await ws_create_server(
        lambda _request: Echo(),
        args.host,
        args.port,
        ssl=bc.server_ssl(args),
        max_frame_size=bc.MAX_MESSAGE,
    )
    await bc.serve_async(server, args.port)


if __name__ == "__main__":
    bc.server_main(__doc__ or "", main)
