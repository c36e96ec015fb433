"""An echo server for the hostile tests, run as a subprocess so that its memory can be measured.

    python tests/hostile/server.py websock|websock-sync|websockets [--port 0] [--open-timeout 2] ...

``websock`` is websock's asyncio server, ``websock-sync`` its threading server
(``websock.sync.serve``: a thread per connection plus a reader thread per connection),
``websockets`` the websockets library's asyncio server, for comparison.

It prints one line to stdout once it listens::

    READY port=41234 impl=websock max_fragments=unsupported

and nothing else to stdout. Logging (WARNING and above, tracebacks included) goes to stderr,
which the tests search for "Traceback" and "Logging error". SIGTERM and SIGINT close the
server the library's way (every connection gets Close 1001) and the process exits once
``wait_closed()`` returns, printing ``CLOSED`` to stdout. For websock-sync the signal handler
starts a thread that calls ``server.shutdown()`` (``--sync-shutdown thread``, the default) or
calls it itself (``--sync-shutdown handler``), while the main thread runs ``serve_forever()``;
the process prints ``CLOSED`` once both have returned.

The handler echoes every message; the ConnectionClosed exceptions of each library are caught
(an application does so), so that any traceback in stderr comes from the library itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import ssl
import sys
import threading
from typing import Any

IMPLS = ("websock", "websock-sync", "websockets")


def _seconds(text: str) -> float | None:
    value = float(text)
    return value if value > 0 else None


def _size(text: str) -> int | None:
    value = int(text)
    return value if value > 0 else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("impl", choices=IMPLS)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--open-timeout", type=_seconds, default=10.0)
    p.add_argument("--close-timeout", type=_seconds, default=10.0)
    p.add_argument("--ping-interval", type=_seconds, default=20.0, help="0: off")
    p.add_argument("--ping-timeout", type=_seconds, default=20.0, help="0: off")
    p.add_argument("--max-message-size", type=_size, default=1 << 20, help="0: unlimited")
    p.add_argument("--max-queue", type=int, default=16)
    p.add_argument(
        "--max-fragments",
        type=int,
        default=None,
        help="passed only when given (websock's per-message fragment bound)",
    )
    p.add_argument("--no-compression", action="store_true")
    p.add_argument("--tls", action="store_true", help="serve wss:// with a trustme certificate")
    p.add_argument("--ca-out", help="with --tls: write the CA certificate (PEM) here")
    p.add_argument("--backlog", type=int, default=1024)
    p.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="websock, websock-sync: passed only when given (the default is 'auto')",
    )
    p.add_argument(
        "--reserve-fds",
        type=int,
        default=0,
        help="open this many descriptors first, so that connections get numbers above them "
        "(as on a busy server)",
    )
    p.add_argument(
        "--sync-shutdown",
        choices=("thread", "handler"),
        default="thread",
        help="websock-sync: call server.shutdown() from a new thread or in the signal handler",
    )
    return p


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _tls_context(ca_out: str | None) -> ssl.SSLContext:
    import trustme

    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    if ca_out:
        authority.cert_pem.write_to_path(ca_out)
    return context


async def _serve_websock(args: argparse.Namespace, context: ssl.SSLContext | None) -> Any:
    import websock

    async def echo(ws: websock.ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except websock.ConnectionClosed:
            pass

    kwargs: dict[str, Any] = {
        "ssl": context,
        "compression": None if args.no_compression else "deflate",
        "open_timeout": args.open_timeout,
        "close_timeout": args.close_timeout,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "max_message_size": args.max_message_size,
        "max_queue": args.max_queue,
        "backlog": args.backlog,
    }
    if args.max_connections is not None:
        kwargs["max_connections"] = args.max_connections
    fragments = "unsupported"
    if args.max_fragments is not None:
        try:
            server = await websock.serve(
                echo, args.host, args.port, max_fragments=args.max_fragments, **kwargs
            )
            fragments = "supported"
            return server, fragments
        except TypeError as exc:
            if "max_fragments" not in str(exc):
                raise
    else:
        import inspect

        if "max_fragments" in inspect.signature(websock.serve).parameters:
            fragments = "supported"
    server = await websock.serve(echo, args.host, args.port, **kwargs)
    return server, fragments


async def _serve_websockets(args: argparse.Namespace, context: ssl.SSLContext | None) -> Any:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    if args.max_connections is not None:
        raise SystemExit("websockets has no max_connections")

    async def echo(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    server = await serve(
        echo,
        args.host,
        args.port,
        ssl=context,
        compression=None if args.no_compression else "deflate",
        open_timeout=args.open_timeout,
        close_timeout=args.close_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        max_size=args.max_message_size,
        max_queue=args.max_queue,
        backlog=args.backlog,
    )
    return server, "unsupported"


async def _main(args: argparse.Namespace) -> None:
    context = _tls_context(args.ca_out) if args.tls else None
    if args.impl == "websock":
        server, fragments = await _serve_websock(args, context)
    else:
        server, fragments = await _serve_websockets(args, context)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    module = sys.modules[args.impl]
    print(
        f"READY port={port} impl={args.impl} max_fragments={fragments} module={module.__file__}",
        flush=True,
    )
    await stop
    server.close()
    await server.wait_closed()
    # Before asyncio.run() closes the loop: a signal arriving between the loop closing its
    # wake-up pipe and removing its handlers would print a traceback that is not the library's.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    print("CLOSED", flush=True)


def _main_sync(args: argparse.Namespace) -> None:
    """websock's threading server: serve_forever() in the main thread, shutdown() on a signal."""
    import inspect

    from websock.exceptions import ConnectionClosed
    from websock.sync import ServerConnection, serve

    def echo(ws: ServerConnection) -> None:
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass

    context = _tls_context(args.ca_out) if args.tls else None
    kwargs: dict[str, Any] = {
        "ssl": context,
        "compression": None if args.no_compression else "deflate",
        "open_timeout": args.open_timeout,
        "close_timeout": args.close_timeout,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "max_message_size": args.max_message_size,
        "max_queue": args.max_queue,
        "backlog": args.backlog,
    }
    if args.max_connections is not None:
        kwargs["max_connections"] = args.max_connections
    fragments = "unsupported"
    if "max_fragments" in inspect.signature(serve).parameters:
        fragments = "supported"
        if args.max_fragments is not None:
            kwargs["max_fragments"] = args.max_fragments
    server = serve(echo, args.host, args.port, **kwargs)
    stoppers: list[threading.Thread] = []

    def request_stop(signum: int, frame: object) -> None:
        if stoppers:
            return
        if args.sync_shutdown == "handler":
            # In the signal handler, that is in the main thread, inside serve_forever().
            stoppers.append(threading.current_thread())
            server.shutdown()
            return
        stopper = threading.Thread(target=server.shutdown, name="hostile-shutdown")
        stoppers.append(stopper)
        stopper.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    module = sys.modules["websock.sync"]
    print(
        f"READY port={server.port} impl={args.impl} max_fragments={fragments} "
        f"module={module.__file__}",
        flush=True,
    )
    server.serve_forever()
    for stopper in stoppers:
        if stopper is not threading.current_thread():
            stopper.join()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    print("CLOSED", flush=True)


def main() -> None:
    args = _parser().parse_args()
    _raise_nofile()
    reserved = [os.open(os.devnull, os.O_RDONLY) for _ in range(args.reserve_fds)]
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.impl == "websock-sync":
        _main_sync(args)
    else:
        asyncio.run(_main(args))
    for fd in reserved:
        os.close(fd)


if __name__ == "__main__":
    main()
