"""websockets echo server on its threading API (websockets.sync.server.serve).

The peer of ws_websock_sync.py on run.py's "sync" row. --uvloop is accepted and ignored.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from websockets.sync.server import ServerConnection, serve  # noqa: E402


def handler(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


if __name__ == "__main__":
    bc.serve_main(__doc__ or "", serve, handler, "max_size")
