"""Autobahn conformance client: drives websock's client against a fuzzing server.

The fuzzing server (``kosoku -m fuzzingserver``, or the original Autobahn one) serves
the cases; this client asks how many there are, then runs each one by connecting to
``/runCase?case=N&agent=AGENT`` and echoing every message (text as text, binary as
binary) until the connection closes, and finally asks the server to write its reports
with ``/updateReports?agent=AGENT``.

Errors inside a case are expected (the suite sends bad frames on purpose): they are
logged and the run goes on. Each case is bounded by ``--case-timeout`` so a hung case
cannot hang the run; the verdicts are the fuzzing server's business, not ours.

Usage::

    python compliance/client.py ws://127.0.0.1:9001
    python compliance/client.py wss://127.0.0.1:9443 --cafile ca.pem

``--impl websockets`` runs the same loop with the ``websockets`` library instead of
websock: a reference peer, to check the harness itself. ``--impl websock-sync`` drives
websock's threading client (:mod:`websock.sync`): the same loop, blocking, each case in a
thread of a pool of ``--parallel`` threads.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["main"]

log = logging.getLogger("compliance.client")

# The suite sends messages of up to 16 MiB (9.1.6, 9.2.6); leave room.
MAX_MESSAGE_SIZE = 64 * 2**20


def make_connect(impl: str) -> Callable[..., Any]:
    """Return ``connect(uri, ssl=...)`` for the chosen implementation.

    Without keepalive pings: a case that expects no event (9.7.*, 12.*, 13.*) ends at the
    first one the client sends unasked, and fails ("Case did not finish within 480
    seconds") when it lasts longer than the ping interval, as on a loaded machine.
    """
    if impl == "websock":
        import websock

        def connect_websock(uri: str, ssl: ssl.SSLContext | None) -> Any:
            return websock.connect(
                uri,
                ssl=ssl,
                max_message_size=MAX_MESSAGE_SIZE,
                compression="deflate",
                open_timeout=10,
                close_timeout=10,
                ping_interval=None,
            )

        return connect_websock

    if impl == "websockets":
        from websockets.asyncio.client import connect as ws_connect

        def connect_websockets(uri: str, ssl: ssl.SSLContext | None) -> Any:
            return ws_connect(
                uri,
                ssl=ssl,
                max_size=MAX_MESSAGE_SIZE,
                compression="deflate",
                open_timeout=10,
                close_timeout=10,
                ping_interval=None,
            )

        return connect_websockets

    if impl == "websock-sync":
        from websock.sync import connect as sync_connect

        def connect_websock_sync(uri: str, ssl: ssl.SSLContext | None) -> Any:
            return sync_connect(
                uri,
                ssl=ssl,
                max_message_size=MAX_MESSAGE_SIZE,
                compression="deflate",
                open_timeout=10,
                close_timeout=10,
                ping_interval=None,
            )

        return connect_websock_sync

    raise ValueError(f"unknown implementation {impl!r}")


async def echo_case(connect: Callable[..., Any], uri: str, ctx: ssl.SSLContext | None) -> None:
    async with connect(uri, ssl=ctx) as ws:
        async for message in ws:
            await ws.send(message)


async def run_case(
    connect: Callable[..., Any],
    base: str,
    agent: str,
    case: int,
    ctx: ssl.SSLContext | None,
    timeout: float,
) -> str:
    """Run one case; return "ok", "error" or "timeout" (for the log, not a verdict)."""
    uri = f"{base}/runCase?case={case}&agent={agent}"
    start = time.monotonic()
    try:
        await asyncio.wait_for(echo_case(connect, uri, ctx), timeout)
    except asyncio.TimeoutError:
        log.warning("case %d: no end after %.0f s, abandoned", case, timeout)
        return "timeout"
    except Exception as exc:  # the suite breaks the protocol on purpose
        log.info("case %d: %s: %s", case, type(exc).__name__, exc)
        return "error"
    log.debug("case %d: closed after %.0f ms", case, (time.monotonic() - start) * 1000)
    return "ok"


async def run(args: argparse.Namespace) -> int:
    base = args.uri.rstrip("/")
    ctx: ssl.SSLContext | None = None
    if base.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.cafile)
    connect = make_connect(args.impl)

    async with connect(f"{base}/getCaseCount", ssl=ctx) as ws:
        count = int(await asyncio.wait_for(ws.recv(), args.case_timeout))
    log.warning("running %d cases against %s as agent %r", count, base, args.agent)

    outcomes: dict[str, int] = {"ok": 0, "error": 0, "timeout": 0}
    pending = iter(range(1, count + 1))

    async def worker() -> None:
        for case in pending:
            outcome = await run_case(connect, base, args.agent, case, ctx, args.case_timeout)
            outcomes[outcome] += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(max(1, args.parallel))))
    elapsed = time.monotonic() - start

    # kosoku ends its run after the last case and may already be gone; Autobahn's
    # fuzzing server writes its reports only now.
    uri = f"{base}/updateReports?agent={args.agent}"
    try:
        await asyncio.wait_for(echo_case(connect, uri, ctx), args.case_timeout)
    except (Exception, asyncio.TimeoutError) as exc:
        log.info("updateReports: %s: %s", type(exc).__name__, exc)
    log.warning(
        "done: %d cases in %.1f s (closed cleanly: %d, ended with an error: %d, timed out: %d)",
        count,
        elapsed,
        outcomes["ok"],
        outcomes["error"],
        outcomes["timeout"],
    )
    return 0


# --------------------------------------------------------------------------- threads


def echo_case_sync(
    connect: Callable[..., Any], uri: str, ctx: ssl.SSLContext | None, timeout: float
) -> bool:
    """Echo one case with a blocking client; return False if it was abandoned.

    A thread cannot be cancelled as a task can, so a watchdog shuts the socket down after
    ``timeout``: that wakes a recv() or a send() blocked on a peer that stopped reading,
    and the case ends with an error (the connection was cut) instead of hanging its thread.
    """
    abandoned = threading.Event()
    with connect(uri, ssl=ctx) as ws:

        def abandon() -> None:
            abandoned.set()
            try:
                # The TCP socket itself, even under TLS: SSLSocket.shutdown() would try to
                # unwrap TLS under the threads that use it.
                socket.socket.shutdown(ws.socket, socket.SHUT_RDWR)
            except OSError:
                pass

        watchdog = threading.Timer(timeout, abandon)
        watchdog.daemon = True
        watchdog.start()
        try:
            for message in ws:
                ws.send(message)
        except Exception:
            if not abandoned.is_set():
                raise
        finally:
            watchdog.cancel()
    return not abandoned.is_set()


def run_case_sync(
    connect: Callable[..., Any],
    base: str,
    agent: str,
    case: int,
    ctx: ssl.SSLContext | None,
    timeout: float,
) -> str:
    """Run one case in this thread; return "ok", "error" or "timeout" (see run_case)."""
    uri = f"{base}/runCase?case={case}&agent={agent}"
    start = time.monotonic()
    try:
        finished = echo_case_sync(connect, uri, ctx, timeout)
    except Exception as exc:  # the suite breaks the protocol on purpose
        log.info("case %d: %s: %s", case, type(exc).__name__, exc)
        return "error"
    if not finished:
        log.warning("case %d: no end after %.0f s, abandoned", case, timeout)
        return "timeout"
    log.debug("case %d: closed after %.0f ms", case, (time.monotonic() - start) * 1000)
    return "ok"


def run_threads(args: argparse.Namespace) -> int:
    """:func:`run` for a blocking client: the cases in a pool of ``--parallel`` threads."""
    base = args.uri.rstrip("/")
    ctx: ssl.SSLContext | None = None
    if base.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.cafile)
    connect = make_connect(args.impl)

    with connect(f"{base}/getCaseCount", ssl=ctx) as ws:
        count = int(ws.recv(timeout=args.case_timeout))
    log.warning("running %d cases against %s as agent %r", count, base, args.agent)

    def one(case: int) -> str:
        return run_case_sync(connect, base, args.agent, case, ctx, args.case_timeout)

    outcomes: dict[str, int] = {"ok": 0, "error": 0, "timeout": 0}
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        # map() submits every case at once; the pool runs --parallel of them at a time,
        # in order, as the asyncio workers do.
        for outcome in pool.map(one, range(1, count + 1)):
            outcomes[outcome] += 1
    elapsed = time.monotonic() - start

    uri = f"{base}/updateReports?agent={args.agent}"
    try:
        echo_case_sync(connect, uri, ctx, args.case_timeout)
    except Exception as exc:  # kosoku may already be gone: see run()
        log.info("updateReports: %s: %s", type(exc).__name__, exc)
    log.warning(
        "done: %d cases in %.1f s (closed cleanly: %d, ended with an error: %d, timed out: %d)",
        count,
        elapsed,
        outcomes["ok"],
        outcomes["error"],
        outcomes["timeout"],
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="base URI of the fuzzing server, e.g. ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="websock", help="agent name in the reports")
    parser.add_argument("--cafile", help="CA certificate(s) to verify a wss:// server")
    parser.add_argument(
        "--case-timeout", type=float, default=120.0, help="seconds before a case is abandoned"
    )
    parser.add_argument("--parallel", type=int, default=1, help="cases to run at once (default: 1)")
    parser.add_argument(
        "--impl",
        choices=["websock", "websock-sync", "websockets"],
        default="websock",
        help="client implementation: websock (asyncio), websock-sync (websock.sync, "
        "threads), websockets (a reference peer to check the harness)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    # The peer libraries log each failed connection; the case log above says enough.
    for name in ("websock", "websockets"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING) + 10)
    if args.impl == "websock-sync":
        return run_threads(args)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
