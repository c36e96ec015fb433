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
import importlib
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


# --impl: (module, its connect's name for the message size limit, the I/O layer).
IMPLEMENTATIONS = {
    "websock": ("websock", "max_message_size", "asyncio"),
    "websockets": ("websockets.asyncio.client", "max_size", "asyncio"),
    "websock-sync": ("websock.sync", "max_message_size", "threads"),
}


def make_connect(impl: str) -> Callable[..., Any]:
    """Return ``connect(uri, ssl=...)`` for the chosen implementation.

    Without keepalive pings: a case that expects no event (9.7.*, 12.*, 13.*) ends at the
    first one the client sends unasked, and fails ("Case did not finish within 480
    seconds") when it lasts longer than the ping interval, as on a loaded machine.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}")
    module, size_option, _ = IMPLEMENTATIONS[impl]
    library_connect = importlib.import_module(module).connect

    def connect(uri: str, ssl: ssl.SSLContext | None) -> Any:
        return library_connect(
            uri,
            ssl=ssl,
            compression="deflate",
            open_timeout=10,
            close_timeout=10,
            ping_interval=None,
            **{size_option: MAX_MESSAGE_SIZE},
        )

    return connect


async def echo_case(connect: Callable[..., Any], uri: str, ctx: ssl.SSLContext | None) -> None:
    async with connect(uri, ssl=ctx) as ws:
        async for message in ws:
            await ws.send(message)


class Layer:
    """What an I/O layer supplies to the run (:func:`run_with`): how to ask the fuzzing
    server for its case count, and how to echo one case, abandoned after ``timeout``."""

    def __init__(self, connect: Callable[..., Any], ctx: ssl.SSLContext | None, timeout: float):
        self.connect = connect
        self.ctx = ctx
        self.timeout = timeout

    async def case_count(self, uri: str) -> int:
        raise NotImplementedError

    async def echo(self, uri: str) -> bool:
        """Echo one case; return False if it was abandoned."""
        raise NotImplementedError


class AsyncioLayer(Layer):
    """An asyncio client: the echo loop of a case as a task, cancelled after ``timeout``."""

    async def case_count(self, uri: str) -> int:
        async with self.connect(uri, ssl=self.ctx) as ws:
            return int(await asyncio.wait_for(ws.recv(), self.timeout))

    async def echo(self, uri: str) -> bool:
        try:
            await asyncio.wait_for(echo_case(self.connect, uri, self.ctx), self.timeout)
        except asyncio.TimeoutError:
            return False
        return True


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


class ThreadsLayer(Layer):
    """A blocking client: every connection of the run in a thread of ``pool``
    (``--parallel`` threads, a case each at a time); the event loop only waits for them."""

    def __init__(
        self,
        connect: Callable[..., Any],
        ctx: ssl.SSLContext | None,
        timeout: float,
        pool: ThreadPoolExecutor,
    ):
        super().__init__(connect, ctx, timeout)
        self.pool = pool

    def _case_count(self, uri: str) -> int:
        with self.connect(uri, ssl=self.ctx) as ws:
            return int(ws.recv(timeout=self.timeout))

    async def case_count(self, uri: str) -> int:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._case_count, uri)

    async def echo(self, uri: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, echo_case_sync, self.connect, uri, self.ctx, self.timeout
        )


# ------------------------------------------------------------------------------- run


async def run_case(layer: Layer, base: str, agent: str, case: int) -> str:
    """Run one case; return "ok", "error" or "timeout" (for the log, not a verdict)."""
    uri = f"{base}/runCase?case={case}&agent={agent}"
    start = time.monotonic()
    try:
        finished = await layer.echo(uri)
    except Exception as exc:  # the suite breaks the protocol on purpose
        log.info("case %d: %s: %s", case, type(exc).__name__, exc)
        return "error"
    if not finished:
        log.warning("case %d: no end after %.0f s, abandoned", case, layer.timeout)
        return "timeout"
    log.debug("case %d: closed after %.0f ms", case, (time.monotonic() - start) * 1000)
    return "ok"


async def run_with(layer: Layer, args: argparse.Namespace, base: str) -> int:
    """Ask the fuzzing server for its case count, run every case, ``--parallel`` at a
    time and in order, then ask it to write its reports."""
    count = await layer.case_count(f"{base}/getCaseCount")
    log.warning("running %d cases against %s as agent %r", count, base, args.agent)

    outcomes: dict[str, int] = {"ok": 0, "error": 0, "timeout": 0}
    pending = iter(range(1, count + 1))

    async def worker() -> None:
        for case in pending:
            outcomes[await run_case(layer, base, args.agent, case)] += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(max(1, args.parallel))))
    elapsed = time.monotonic() - start

    # kosoku ends its run after the last case and may already be gone; Autobahn's
    # fuzzing server writes its reports only now.
    try:
        if not await layer.echo(f"{base}/updateReports?agent={args.agent}"):
            log.info("updateReports: no end after %.0f s, abandoned", layer.timeout)
    except Exception as exc:
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


async def run(args: argparse.Namespace) -> int:
    base = args.uri.rstrip("/")
    ctx: ssl.SSLContext | None = None
    if base.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.cafile)
    connect = make_connect(args.impl)
    if IMPLEMENTATIONS[args.impl][2] == "asyncio":
        return await run_with(AsyncioLayer(connect, ctx, args.case_timeout), args, base)
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        layer = ThreadsLayer(connect, ctx, args.case_timeout, pool)
        return await run_with(layer, args, base)


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
        choices=sorted(IMPLEMENTATIONS),
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
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
