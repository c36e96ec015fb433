"""websock.sync echo server: a thread per connection (websock.sync.serve).

Blocking API, no event loop: run.py measures it on its own "sync" row, against
websockets' threading server (ws_websockets_sync.py). --uvloop is accepted and ignored.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

REASON = None
try:
    from websock.sync import ServerConnection, serve
except Exception as exc:  # ImportError, or a half-written package
    serve = None  # type: ignore[assignment]
    REASON = f"websock.sync is not available ({type(exc).__name__}: {exc})"


def handler(ws: "ServerConnection") -> None:
    for message in ws:
        ws.send(message)


if __name__ == "__main__":
    bc.serve_main(__doc__ or "", serve, handler, "max_message_size", REASON)
