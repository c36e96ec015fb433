"""Several processes on one port: :func:`run` and its supervisor (``websock serve --workers``).

One asyncio event loop uses one core. ``run(handler, host, port, workers=N)`` uses N: this
process becomes a *supervisor* that forks N *worker* processes, each running the same
``serve(handler, host, port, reuse_port=True, ...)`` on its own listening socket. With
``SO_REUSEPORT``, Linux (3.9+) hashes each new connection onto one of the listening sockets
bound to the port, so the workers share the load without a shared accept queue (no thundering
herd, no lock). ``workers=1`` (the default) runs the server in this process, with the same
signal handling and no supervisor.

Decisions, and why:

- **Linux only for workers > 1.** Elsewhere ``SO_REUSEPORT`` exists but does not balance
  (macOS hands every connection to one socket; FreeBSD needs ``SO_REUSEPORT_LB``): a
  :class:`NotImplementedError` says so rather than silently using one core. Workers are
  *forked* (the ``fork`` start method, asked for explicitly): the handler may be any
  callable, a closure or a lambda, which ``spawn`` could not pickle, and the workers start
  in milliseconds. Fork before starting threads or an event loop in the supervisor
  (``run()`` refuses to run inside an event loop).
- **The port is checked and held by the supervisor.** Before forking, the supervisor binds a
  probe socket *without* ``SO_REUSEPORT``: if anything listens on the port (another server,
  or another ``websock serve --workers`` that would otherwise share it silently) this fails
  with ``EADDRINUSE`` and :func:`run` raises a clear :class:`OSError`, instead of every
  worker failing and being restarted. The supervisor then keeps a *bound but not listening*
  ``SO_REUSEPORT`` socket on the port until it exits: it receives no connections (Linux
  balances only among listening sockets) but reserves the port across worker restarts, and
  turns ``port=0`` into one port that every worker binds.
- **Readiness is reported.** A worker tells the supervisor over a pipe when it listens (or
  why it could not start). :func:`run` calls ``on_ready(port)`` once every worker serves,
  and the restart policy tells a worker that never started (a configuration error, a
  failing ``lifespan``) from one that crashed later.
- **Restarts are bounded** (:class:`RestartPolicy`, a pure class with an injected clock): a
  worker that exits while the supervisor is not stopping is restarted after a short
  backoff (0.1 s, doubling with each death in the window, at most 5 s), logged at WARNING
  with its exit status or signal. The supervisor gives up — stops the other workers
  gracefully and raises :class:`WorkersFailed` — after 3 workers in a row died before
  serving, or more than ``max(5, workers)`` deaths within 60 s. A worker that exits with
  status 0 on its own (someone sent it SIGTERM) is restarted too, and counts the same.
- **Signals.** SIGINT and SIGTERM to the supervisor send SIGTERM to every worker; each
  closes its server gracefully (Close 1001 to every connection, bounded by
  ``close_timeout``) and exits. The supervisor waits at most ``2 × close_timeout + 5 s``
  (connections, then handlers, then the grace; ``close_timeout=None`` counts as the default
  10 s here), then SIGKILLs the rest; a second SIGINT/SIGTERM kills them at once. Ctrl-C in a
  terminal also reaches the workers directly (same process group); a second SIGTERM is
  harmless to them. Workers ask the kernel for SIGTERM when the supervisor dies
  (``PR_SET_PDEATHSIG``), so a killed supervisor never leaves workers holding the port.
- **No busy-waiting.** The supervisor sleeps in :func:`multiprocessing.connection.wait` on
  the workers' sentinels, their pipes and a signal wake-up socket
  (:func:`signal.set_wakeup_fd`), with a timeout only while a restart is pending or the
  shutdown deadline runs.
- **Per-worker setup: ``lifespan``.** Resources bound to an event loop (a database pool, a
  Redis backplane) cannot cross a fork: ``lifespan`` is a callable returning an async
  context manager, entered in each worker's loop before it listens and exited after its
  server closed. A ``lifespan`` that raises counts as a worker that failed to start.
- **Options are validated before forking** (``serve()`` checks them when called and binds
  only when awaited): a misspelt one raises in :func:`run`, once, not in every worker.
- ``workers="auto"`` means one worker per core this process may run on
  (``os.sched_getaffinity``, which honours CPU affinity and cpusets, unlike
  ``os.cpu_count()``); on one core that is ``workers=1``, in this process.

Logging: the supervisor logs on ``websock.workers``: worker starts and readiness at INFO,
unexpected exits at WARNING, giving up at ERROR; workers log a failed start with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Literal

from .asyncio.server import DEFAULT_CLOSE_TIMEOUT, Handler, serve

__all__ = ["Lifespan", "RestartPolicy", "WorkersFailed", "run"]

log = logging.getLogger("websock.workers")

#: ``lifespan()``: an async context manager entered in each worker before it listens.
Lifespan = Callable[[], AbstractAsyncContextManager[object]]

#: Beyond 2 × close_timeout, how long the supervisor waits for workers to stop: the close
#: grace (1 s), the handlers' cancellation (1 s) and the lifespan's exit.
SHUTDOWN_MARGIN = 5.0
#: How long the supervisor waits for SIGKILLed workers to be reaped (SIGKILL cannot be
#: caught: only a process stuck in the kernel takes more than milliseconds).
KILL_WAIT = 5.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1


class WorkersFailed(RuntimeError):
    """The supervisor gave up: workers kept dying, or could not start. The message says why."""


class RestartPolicy:
    """Decide whether a worker that died is restarted, and after how long.

    No I/O and no clock of its own (``clock`` is injected), so it is tested on its own:

    - a worker that dies before it served counts toward ``max_failed_starts`` in a row
      (reset as soon as any worker serves): 3 by default, since a worker that cannot start
      three times will not start the fourth;
    - any death counts toward ``max_deaths`` within ``window`` seconds (more gives up);
    - the delay before a restart is ``first_delay`` doubled for each other death in the
      window, at most ``max_delay``: a worker that crashes once is back at once, a crash
      loop slows down before it is stopped.
    """

    def __init__(
        self,
        *,
        max_failed_starts: int = 3,
        max_deaths: int = 5,
        window: float = 60.0,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failed_starts = max_failed_starts
        self.max_deaths = max_deaths
        self.window = window
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._clock = clock
        self._deaths: list[float] = []
        self._failed_starts = 0
        #: Why :meth:`died` returned None (the policy gave up), else None.
        self.reason: str | None = None

    def serving(self) -> None:
        """A worker started serving: the run of failed starts is over."""
        self._failed_starts = 0

    def died(self, *, served: bool) -> float | None:
        """A worker died (``served``: after it had started serving).

        Return the delay before restarting it, in seconds, or None to give up (see
        :attr:`reason`).
        """
        now = self._clock()
        self._deaths = [t for t in self._deaths if now - t < self.window]
        self._deaths.append(now)
        if not served:
            self._failed_starts += 1
            if self._failed_starts >= self.max_failed_starts:
                self.reason = (
                    f"workers keep failing to start ({self._failed_starts} in a row "
                    "died before serving)"
                )
                return None
        if len(self._deaths) > self.max_deaths:
            self.reason = (
                f"workers keep dying ({len(self._deaths)} deaths within {self.window:g} s)"
            )
            return None
        return min(self.first_delay * 2.0 ** (len(self._deaths) - 1), self.max_delay)


def _resolve_workers(workers: int | Literal["auto"]) -> int:
    if workers == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a number >= 1 or 'auto', not {workers!r}")
    return workers


def run(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    workers: int | Literal["auto"] = 1,
    lifespan: Lifespan | None = None,
    on_ready: Callable[[int], object] | None = None,
    **serve_kwargs: Any,
) -> None:
    """Serve ``handler`` on ``host:port`` until SIGINT or SIGTERM, in ``workers`` processes.

    Blocks. ``serve_kwargs`` go to :func:`websock.serve` (``ssl``, limits, timeouts, hooks,
    and its own pass-through to ``loop.create_server``). On SIGINT or SIGTERM every
    connection gets Close 1001 (``server.close()``), bounded by ``close_timeout``, and
    ``run()`` returns.

    - ``workers=1``: the server runs in this process (``asyncio.run``).
    - ``workers=N`` (N > 1, Linux only): this process supervises N forked workers sharing
      the port with ``SO_REUSEPORT``; a worker that dies is restarted, and if workers keep
      dying :class:`WorkersFailed` is raised after the others stopped.
      ``workers="auto"``: one per usable core. See the module's documentation.
    - ``lifespan``: a callable returning an async context manager, entered in each worker
      (in this process with ``workers=1``) before it listens and exited after its server
      closed: per-worker resources such as a database pool.
    - ``on_ready(port)``: called in this process once every worker listens (the port is
      the actual one with ``port=0``).

    Raises :class:`OSError` if the port cannot be bound (before any worker starts),
    :class:`NotImplementedError` for ``workers > 1`` outside Linux, :class:`ValueError`
    for a bad ``workers`` or ``sock`` with ``workers > 1``, :class:`RuntimeError` when
    called from a running event loop or outside the main thread.
    """
    count = _resolve_workers(workers)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("websock.run() blocks: call it outside of an event loop")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("websock.run() handles SIGINT and SIGTERM: call it in the main thread")
    if count == 1:
        _run_here(handler, host, port, serve_kwargs, lifespan, on_ready)
        return
    if not sys.platform.startswith("linux"):
        raise NotImplementedError(
            f"workers={workers!r} needs Linux, whose SO_REUSEPORT balances connections "
            f"between processes ({sys.platform} does not): use workers=1, or one server "
            "per port behind a load balancer"
        )
    if serve_kwargs.get("sock") is not None:
        raise ValueError("workers > 1 bind a socket each: pass host and port, not sock")
    spec = _WorkerSpec(handler, host, port, {**serve_kwargs, "reuse_port": True}, lifespan)
    # Validates every option without binding: a misspelt or bad one raises here, once,
    # rather than in every worker until the restart policy gives up.
    serve(handler, host, port, **spec.serve_kwargs)
    close_timeout = serve_kwargs.get("close_timeout", DEFAULT_CLOSE_TIMEOUT)
    with _reserve(host, port) as bound_port:
        spec.port = bound_port
        supervisor = _Supervisor(
            spec,
            count,
            RestartPolicy(max_deaths=max(5, count)),
            shutdown_timeout=2 * (close_timeout or DEFAULT_CLOSE_TIMEOUT) + SHUTDOWN_MARGIN,
            on_ready=on_ready,
        )
        supervisor.run()


# --- serving, in a worker or in this process -------------------------------------------


@dataclass
class _WorkerSpec:
    handler: Handler
    host: str | None
    port: int
    serve_kwargs: dict[str, Any]
    lifespan: Lifespan | None


async def _serve_until_signalled(
    spec: _WorkerSpec, ready: Callable[[int], object], stopped_early: list[int]
) -> None:
    """Serve until SIGINT or SIGTERM, then close gracefully (1001 to every connection)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, request_stop)
    if stopped_early:  # a signal arrived before the loop's handlers were installed
        request_stop()
    try:
        lifespan = spec.lifespan() if spec.lifespan is not None else contextlib.nullcontext()
        async with lifespan:
            server = await serve(spec.handler, spec.host, spec.port, **spec.serve_kwargs)
            try:
                ready(server.port)
                await stop
            finally:
                server.close()
                await server.wait_closed()
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def _run_here(
    handler: Handler,
    host: str | None,
    port: int,
    serve_kwargs: dict[str, Any],
    lifespan: Lifespan | None,
    on_ready: Callable[[int], object] | None,
) -> None:
    """``workers=1``: serve in this process, restoring the signal handlers afterwards."""
    spec = _WorkerSpec(handler, host, port, serve_kwargs, lifespan)
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    try:
        asyncio.run(_serve_until_signalled(spec, on_ready or (lambda port: None), []))
    finally:
        for sig, action in previous.items():
            if action is not None:
                signal.signal(sig, action)


def _worker_main(spec: _WorkerSpec, index: int, parent: int, report: Connection) -> None:
    """The body of a worker process (forked: everything of the supervisor is here)."""
    # Until the event loop's handlers replace these, a signal is noted, not fatal: a worker
    # told to stop while it starts stops right after (exit 0), with nothing left unclosed.
    stopped_early: list[int] = []
    signal.set_wakeup_fd(-1)  # the supervisor's
    for sig in _SIGNALS:
        signal.signal(sig, lambda signum, frame: stopped_early.append(signum))
    _die_with_parent(parent)

    served = False

    def ready(port: int) -> None:
        nonlocal served
        served = True
        report.send(("ready", port))

    try:
        asyncio.run(_serve_until_signalled(spec, ready, stopped_early))
    except BaseException as exc:
        what = "failed" if served else "failed to start"
        log.error("worker %d (pid %d) %s", index, os.getpid(), what, exc_info=True)
        with contextlib.suppress(OSError, ValueError):
            report.send(("failed", f"{type(exc).__name__}: {exc}"))
        sys.exit(1)
    finally:
        report.close()


def _die_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the supervisor dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl()
        os.kill(os.getpid(), signal.SIGTERM)


# --- the supervisor --------------------------------------------------------------------


@contextlib.contextmanager
def _reserve(host: str | None, port: int) -> Iterator[int]:
    """Check that nothing listens on host:port and hold it (see the module's documentation).

    Yields the port (the one chosen for ``port=0``); raises OSError with the address.
    """
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot resolve {host!r}: {exc.strerror}") from None
    held: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in dict.fromkeys(infos):
            for reuse_port in (False, True):
                sock = socket.socket(family, type_, proto)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((address[0], port, *address[2:]))
                except OSError as exc:
                    sock.close()
                    where = address[0] if family != socket.AF_INET6 else f"[{address[0]}]"
                    raise OSError(
                        exc.errno, f"cannot listen on {where}:{port}: {exc.strerror or exc}"
                    ) from None
                if port == 0:
                    port = sock.getsockname()[1]  # then the same port for every address
                if reuse_port:
                    held.append(sock)
                else:
                    sock.close()
        yield port
    finally:
        for sock in held:
            sock.close()


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    report: Connection | None = None
    serving: bool = False
    restart_at: float | None = None
    last_error: str | None = None


def _exit_description(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Supervisor:
    """Start, watch, restart and stop the workers. Single-threaded, in the main thread."""

    def __init__(
        self,
        spec: _WorkerSpec,
        count: int,
        policy: RestartPolicy,
        *,
        shutdown_timeout: float,
        on_ready: Callable[[int], object] | None,
    ) -> None:
        self.spec = spec
        self.slots = [_Slot(i) for i in range(count)]
        self.policy = policy
        self.shutdown_timeout = shutdown_timeout
        self.on_ready = on_ready
        self.context = multiprocessing.get_context("fork")
        self.signals: list[int] = []
        self.wakeup_r, self.wakeup_w = socket.socketpair()

    def run(self) -> None:
        """Supervise until a signal (return) or until the policy gives up (raise)."""
        for sock in (self.wakeup_r, self.wakeup_w):
            sock.setblocking(False)
        previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        previous_fd = signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        try:
            for sig in _SIGNALS:
                signal.signal(sig, self._note_signal)
            failure = self._supervise()
            self._stop_all()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, action in previous.items():
                if action is not None:
                    signal.signal(sig, action)
            self.wakeup_r.close()
            self.wakeup_w.close()
        if failure is not None:
            raise WorkersFailed(failure)

    def _note_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _drain_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.wakeup_r.recv(4096):
                pass

    def _start(self, slot: _Slot) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main,
            args=(self.spec, slot.index, os.getpid(), writer),
            name=f"websock-worker-{slot.index}",
        )
        process.start()
        writer.close()  # the worker's end: ours would hide its EOF
        slot.process, slot.report, slot.serving = process, reader, False
        slot.restart_at = slot.last_error = None
        log.info("worker %d started (pid %s)", slot.index, process.pid)

    def _supervise(self) -> str | None:
        """The main loop: return None after SIGINT/SIGTERM, or why the policy gave up."""
        for slot in self.slots:
            self._start(slot)
        announced = False
        while not self.signals:
            waitables: list[Any] = [self.wakeup_r]
            for slot in self.slots:
                if slot.process is not None:
                    waitables.append(slot.process.sentinel)
                if slot.report is not None:
                    waitables.append(slot.report)
            pending = [s.restart_at for s in self.slots if s.restart_at is not None]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else None
            ready = multiprocessing.connection.wait(waitables, timeout)
            if self.wakeup_r in ready:
                self._drain_wakeup()
                if self.signals:  # workers that exit now were signalled too (Ctrl-C)
                    break
            for slot in self.slots:
                if slot.report is not None and slot.report in ready:
                    self._read_report(slot)
            for slot in self.slots:
                process = slot.process
                if process is not None and process.sentinel in ready:
                    failure = self._reap(slot)
                    if failure is not None:
                        log.error("giving up: %s", failure)
                        return failure
            if self.signals:
                break
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self._start(slot)
            if not announced and all(s.serving for s in self.slots):
                announced = True
                log.info("%d workers serving on port %d", len(self.slots), self.spec.port)
                if self.on_ready is not None:
                    self.on_ready(self.spec.port)
        log.info("%s: stopping the workers", signal.Signals(self.signals[0]).name)
        return None

    def _read_report(self, slot: _Slot) -> None:
        assert slot.report is not None and slot.process is not None
        try:
            while slot.report.poll():
                kind, value = slot.report.recv()
                if kind == "ready":
                    slot.serving = True
                    self.policy.serving()
                    log.info("worker %d (pid %s) serving", slot.index, slot.process.pid)
                else:
                    slot.last_error = str(value)
        except (EOFError, OSError):  # the worker is gone: its sentinel says so
            slot.report.close()
            slot.report = None

    def _reap(self, slot: _Slot) -> str | None:
        """A worker exited: schedule its restart, or return why we give up."""
        assert slot.process is not None
        if slot.report is not None:  # a report written just before it died
            self._read_report(slot)
            if slot.report is not None:
                slot.report.close()
                slot.report = None
        process, served = slot.process, slot.serving
        process.join()
        slot.process, slot.serving = None, False
        how = _exit_description(process.exitcode)
        if not served and slot.last_error:
            how += f" before serving ({slot.last_error})"
        elif not served:
            how += " before serving"
        delay = self.policy.died(served=served)
        if delay is None:
            last = f"; the last one: {slot.last_error}" if slot.last_error else ""
            return f"{self.policy.reason}{last}"
        log.warning(
            "worker %d (pid %s) %s; restarting it in %.1f s", slot.index, process.pid, how, delay
        )
        slot.restart_at = time.monotonic() + delay
        return None

    def _alive(self) -> list[_Slot]:
        return [s for s in self.slots if s.process is not None]

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait (bounded), SIGKILL those left; reap them all."""
        for slot in self.slots:
            slot.restart_at = None
        # Stopping after a signal: the next one kills. After giving up: the first one does.
        signalled = min(len(self.signals), 1)
        for slot in self._alive():
            assert slot.process is not None and slot.process.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout
        while (alive := self._alive()) and len(self.signals) <= signalled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "%d workers still running %.0f s after SIGTERM: killing them",
                    len(alive),
                    self.shutdown_timeout,
                )
                break
            waitables: list[Any] = [self.wakeup_r]
            waitables += [s.process.sentinel for s in alive if s.process is not None]
            ready = multiprocessing.connection.wait(waitables, remaining)
            if self.wakeup_r in ready:
                self._drain_wakeup()
            for slot in alive:
                if slot.process is not None and slot.process.sentinel in ready:
                    self._finish(slot)
        else:
            if alive:
                log.warning("signalled again: killing %d workers", len(alive))
        for slot in self._alive():
            assert slot.process is not None
            slot.process.kill()
        deadline = time.monotonic() + KILL_WAIT
        while (alive := self._alive()) and (remaining := deadline - time.monotonic()) > 0:
            sentinels = [s.process.sentinel for s in alive if s.process is not None]
            ready = multiprocessing.connection.wait(sentinels, remaining)
            for slot in alive:
                if slot.process is not None and slot.process.sentinel in ready:
                    self._finish(slot)
        for slot in self._alive():  # pragma: no cover - a process stuck in the kernel
            assert slot.process is not None
            log.error("worker %d (pid %s) did not die", slot.index, slot.process.pid)

    def _finish(self, slot: _Slot) -> None:
        assert slot.process is not None
        slot.process.join()
        code = slot.process.exitcode
        if code != 0:
            log.warning(
                "worker %d (pid %s) %s", slot.index, slot.process.pid, _exit_description(code)
            )
        else:
            log.info("worker %d (pid %s) stopped", slot.index, slot.process.pid)
        if slot.report is not None:
            slot.report.close()
            slot.report = None
        slot.process = None
