"""websock echo server. Reports UNAVAILABLE (the runner shows "n/a") until
websock.serve exists."""

import argparse
import inspect
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

REASON = None
try:
    import websock

    serve = websock.serve
except Exception as exc:  # ImportError, AttributeError, or a half-written package
    serve = None
    REASON = f"websock.serve is not available ({type(exc).__name__}: {exc})"


async def handler(ws):  # type: ignore[no-untyped-def]
    async for message in ws:
        await ws.send(message)


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    kwargs = bc.serve_options(args, "max_message_size")
    params = inspect.signature(serve).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        missing = [k for k in kwargs if k not in params]
        if args.deflate and "compression" in missing:
            bc.unavailable("websock.serve has no compression= parameter yet")
        for k in missing:
            if kwargs[k] is not None and k != "max_message_size":
                bc.unavailable(f"websock.serve has no {k}= parameter yet")
            kwargs.pop(k)
    await bc.serve_async(serve(handler, args.host, args.port, **kwargs), args.port)


if __name__ == "__main__":
    bc.server_main(__doc__ or "", main, REASON)
