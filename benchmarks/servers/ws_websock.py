"""websock echo server. Reports UNAVAILABLE (the runner shows "n/a") until
websock.serve exists."""

import inspect
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

try:
    import websock

    serve = websock.serve
except Exception as exc:  # ImportError, AttributeError, or a half-written package
    serve = None
    REASON = f"websock.serve is not available ({type(exc).__name__}: {exc})"


async def handler(ws):  # type: ignore[no-untyped-def]
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    args = bc.server_args(__doc__ or "")
    logging.basicConfig(level=logging.ERROR)
    kwargs = dict(
        ssl=bc.server_ssl(args),
        compression="deflate" if args.deflate else None,
        max_message_size=bc.MAX_MESSAGE,
    )
    params = inspect.signature(serve).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        missing = [k for k in kwargs if k not in params]
        if args.deflate and "compression" in missing:
            bc.unavailable("websock.serve has no compression= parameter yet")
        for k in missing:
            if kwargs[k] is not None and k != "max_message_size":
                bc.unavailable(f"websock.serve has no {k}= parameter yet")
            kwargs.pop(k)
    async with serve(handler, args.host, args.port, **kwargs) as server:
        bc.ready(args.port)
        await server.serve_forever()


if __name__ == "__main__":
    a = bc.server_args(__doc__ or "")
    if serve is None:
        bc.unavailable(REASON)
    bc.lifeline(a.max_seconds)
    bc.run(main, a.uvloop)
