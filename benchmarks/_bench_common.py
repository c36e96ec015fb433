"""Shared helpers for the benchmark servers and clients (not part of websock).

Every process started by benchmarks/run.py must stop by itself: ``lifeline()``
exits the process when its stdin reaches EOF (the runner closes it, or dies)
and after ``max_seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import resource
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

MAX_MESSAGE = 2**21  # >= 2 MiB everywhere: (d) sends 1 MiB messages


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def lifeline(max_seconds: float, watch_stdin: bool = True) -> None:
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        os._exit(0)

    if watch_stdin:
        threading.Thread(target=watch, daemon=True).start()
    timer = threading.Timer(max_seconds, lambda: os._exit(4))
    timer.daemon = True
    timer.start()


def server_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve wss:// / TLS")
    p.add_argument("--deflate", action="store_true", help="enable permessage-deflate (workload h)")
    p.add_argument("--max-seconds", type=float, default=900.0)
    return p.parse_args()


def server_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.tls[0], args.tls[1])
    return ctx


def ready(port: int) -> None:
    print(f"READY {port}", flush=True)


def unavailable(reason: str) -> None:
    print(f"UNAVAILABLE {reason}", flush=True)
    sys.exit(3)


def run(main: Callable[[], Awaitable[None]], use_uvloop: bool) -> None:
    raise_nofile()
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            unavailable("uvloop is not installed")
        uvloop.run(main())  # type: ignore[arg-type]
    else:
        asyncio.run(main())  # type: ignore[arg-type]


def server_main(
    description: str,
    main: Callable[[argparse.Namespace], Awaitable[None]] | Callable[[argparse.Namespace], None],
    unavailable_reason: str | None = None,
) -> None:
    """The entry point of every server in servers/: parse its arguments, report it
    UNAVAILABLE (when ``unavailable_reason`` is set), arm the lifeline, raise the open
    files limit, then run ``main(args)``: a coroutine function on the loop --uvloop asks
    for, a plain function (a threading server, which ignores --uvloop) in this thread.
    The limit is raised before main(): websock.sync's max_connections="auto" follows
    it, and (f) opens 10,000 connections."""
    args = server_args(description)
    if unavailable_reason is not None:
        unavailable(unavailable_reason)
    lifeline(args.max_seconds)
    if inspect.iscoroutinefunction(main):
        run(lambda: main(args), args.uvloop)  # run() raises the open files limit
    else:
        raise_nofile()
        main(args)


def serve_options(args: argparse.Namespace, size_option: str) -> dict[str, Any]:
    """What every WebSocket server is given alike: TLS (--tls), permessage-deflate only
    with --deflate, and MAX_MESSAGE under the library's own name (``size_option``)."""
    return {
        "ssl": server_ssl(args),
        "compression": "deflate" if args.deflate else None,
        size_option: MAX_MESSAGE,
    }


async def serve_async(server: Any, port: int) -> None:
    """Print READY, then serve until the process ends. ``server``: a listening
    asyncio.Server, or an async context manager that gives a server with
    serve_forever() (websockets' and websock's serve())."""
    async with server as listening:
        ready(port)
        await listening.serve_forever()


def serve_main(
    description: str,
    serve: Callable[..., Any],
    handler: Callable[[Any], Any],
    size_option: str,
    unavailable_reason: str | None = None,
) -> None:
    """server_main() for a library's ``serve(handler, host, port, **serve_options())``
    with errors-only logging: an asyncio server (an async context manager) for a
    coroutine ``handler``, else a threading one (a context manager, blocking
    serve_forever(): websockets.sync's and websock.sync's serve())."""

    async def main_async(args: argparse.Namespace) -> None:
        logging.basicConfig(level=logging.ERROR)
        options = serve_options(args, size_option)
        await serve_async(serve(handler, args.host, args.port, **options), args.port)

    def main_threads(args: argparse.Namespace) -> None:
        logging.basicConfig(level=logging.ERROR)
        with serve(handler, args.host, args.port, **serve_options(args, size_option)) as server:
            ready(args.port)
            server.serve_forever()

    is_async = inspect.iscoroutinefunction(handler)
    server_main(description, main_async if is_async else main_threads, unavailable_reason)


def loop_name(use_uvloop: bool) -> str:
    return "uvloop" if use_uvloop else "asyncio"


# ---------------------------------------------------------------- clients

CLIENT_WORKLOADS = {
    # name: (connections, message size); one message in flight per connection
    "a": (1, 32),
    "c": (16, 65536),
}


def client_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workload", choices=sorted(CLIENT_WORKLOADS), default="a")
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--max-seconds", type=float, default=120.0)
    return p.parse_args()


def runq_wait_ns() -> int:
    """Nanoseconds this thread was runnable but waiting for a CPU (other load)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.stop = False
        self.errors = 0
        self.error = ""


def report(result: dict[str, object]) -> None:
    import json

    print(json.dumps(result), flush=True)


async def measure(
    counter: Counter, opened: Callable[[], Awaitable[None]], warmup: float, duration: float
) -> dict[str, object]:
    """Wait for all connections (``opened``), then count round trips in the window."""
    import time

    await asyncio.wait_for(opened(), timeout=15)
    await asyncio.sleep(warmup)
    c0, t0, p0, q0 = counter.count, time.perf_counter(), time.process_time(), runq_wait_ns()
    await asyncio.sleep(duration)
    c1, t1, p1, q1 = counter.count, time.perf_counter(), time.process_time(), runq_wait_ns()
    counter.stop = True
    window = t1 - t0
    return {
        "count": c1 - c0,
        "duration": round(window, 3),
        "per_s": (c1 - c0) / window,
        "cpu_pct": 100.0 * (p1 - p0) / window,
        "runq_pct": 100.0 * (q1 - q0) / 1e9 / window,
        "errors": counter.errors,
        "error": counter.error,
    }


async def coroutine_client(
    args: argparse.Namespace, session: Callable[[Counter, bytes, asyncio.Event], Awaitable[None]]
) -> None:
    """Drive ``session(counter, payload, opened_event)`` once per connection:
    each session opens a connection, sets its event, then loops send/recv until
    counter.stop, then closes cleanly."""
    conns, size = CLIENT_WORKLOADS[args.workload]
    payload = os.urandom(size)
    counter = Counter()
    events = [asyncio.Event() for _ in range(conns)]

    async def guarded(ev: asyncio.Event) -> None:
        try:
            await session(counter, payload, ev)
        except Exception as exc:  # reported, not raised: the JSON line must come out
            counter.errors += 1
            counter.error = counter.error or f"{type(exc).__name__}: {exc}"
            ev.set()

    tasks = [asyncio.create_task(guarded(ev)) for ev in events]

    async def opened() -> None:
        for ev in events:
            await ev.wait()

    try:
        result = await measure(counter, opened, args.warmup, args.duration)
    except asyncio.TimeoutError:
        counter.stop = True
        result = {
            "per_s": 0.0,
            "errors": counter.errors or 1,
            "error": counter.error or "could not open the connections",
        }
    done, pending = await asyncio.wait(tasks, timeout=5)
    for t in pending:
        t.cancel()
    report(result)
