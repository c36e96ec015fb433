"""websock.sync echo server: a thread per connection (websock.sync.serve).

Blocking API, no event loop: run.py measures it on its own "sync" row, against
websockets' threading server (ws_websockets_sync.py). --uvloop is accepted and ignored.
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

try:
    from websock.sync import ServerConnection, serve
except Exception as exc:  # ImportError, or a half-written package
    serve = None  # type: ignore[assignment]
    REASON = f"websock.sync is not available ({type(exc).__name__}: {exc})"


def handler(ws: "ServerConnection") -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    args = bc.server_args(__doc__ or "")
    logging.basicConfig(level=logging.ERROR)
    # Before serve(): max_connections="auto" follows the open files limit, and (f) opens
    # 10,000 connections.
    bc.raise_nofile()
    with serve(
        handler,
        args.host,
        args.port,
        ssl=bc.server_ssl(args),
        compression="deflate" if args.deflate else None,
        max_message_size=bc.MAX_MESSAGE,
    ) as server:
        bc.ready(args.port)
        server.serve_forever()


if __name__ == "__main__":
    a = bc.server_args(__doc__ or "")
    if serve is None:
        bc.unavailable(REASON)
    bc.lifeline(a.max_seconds)
    main()
