"""websockets echo server on its threading API (websockets.sync.server.serve).

The peer of ws_websock_sync.py on run.py's "sync" row. --uvloop is accepted and ignored.
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from websockets.sync.server import ServerConnection, serve  # noqa: E402


def handler(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    args = bc.server_args(__doc__ or "")
    logging.basicConfig(level=logging.ERROR)
    bc.raise_nofile()
    with serve(
        handler,
        args.host,
        args.port,
        ssl=bc.server_ssl(args),
        compression="deflate" if args.deflate else None,
        max_size=bc.MAX_MESSAGE,
    ) as server:
        bc.ready(args.port)
        server.serve_forever()


if __name__ == "__main__":
    a = bc.server_args(__doc__ or "")
    bc.lifeline(a.max_seconds)
    main()
