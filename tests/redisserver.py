"""A real Redis server on loopback, for the Redis backplane's tests (websock.pubsub).

:func:`start_redis` runs ``redis-server`` as a child process on a free port of 127.0.0.1,
in a directory of its own (its log, and nothing persisted: ``--save ""``, ``--appendonly
no``), so parallel pytest-xdist workers never share anything. It yields a
:class:`RedisServer` that can be stopped (:meth:`RedisServer.stop`, SIGTERM; or
:meth:`RedisServer.kill`, SIGKILL, a crash) and started again on the same port
(:meth:`RedisServer.start`), for outage tests. The fixture ``redis_server`` starts one per
test. A missing ``redis-server`` skips the test, naming the Debian package to install.

Readiness is checked with the protocol itself (``PING`` answered ``+PONG``), not just an
accepted connection: a Redis still loading answers ``-LOADING``. Every wait is bounded
(:data:`STARTUP_TIMEOUT`, scaled by ``WEBSOCK_TEST_TIMEOUT_FACTOR``).

Module-importable like ``proxyservers``: ``from redisserver import ...``; the fixture is
visible to a test module that declares ``pytest_plugins = ["redisserver"]``.

PYTEST_DONT_REWRITE: imported by test modules before pytest registers it as a plugin.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serverprocess import (
    POLL,
    STARTUP_TIMEOUT,
    free_port,
    private_directory,
    require_program,
    stop_process_group,
)

__all__ = ["STARTUP_TIMEOUT", "RedisServer", "start_redis", "redis_server"]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1: where it listens, its process and its log."""

    program: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: How many times it was started (the log of the n-th run is ``redis-<n>.log``).
    runs: int = 0

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """The logs of every run so far."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.directory.glob("redis-*.log"))
        )

    def start(self) -> None:
        """Start it on :attr:`port` (again, after :meth:`stop`); return once it answers
        PING. Raises RuntimeError if it exits or does not answer within STARTUP_TIMEOUT."""
        if self.running:
            raise RuntimeError(f"redis-server already running on port {self.port}")
        self.runs += 1
        log_path = self.directory / f"redis-{self.runs}.log"
        command = [
            self.program,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(log_path),
            "--daemonize",
            "no",
        ]
        with (self.directory / f"redis-{self.runs}.out").open("wb") as output:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            if _answers_ping(self.port):
                return
            time.sleep(POLL)
        running = self.process.poll() is None
        if running:
            self.stop()
        raise RuntimeError(
            f"redis-server on port {self.port} "
            + (
                f"did not answer PING within {STARTUP_TIMEOUT} s"
                if running
                else f"exited with status {self.process.returncode}"
            )
            + f":\n{self.log()}"
        )

    def stop(self) -> None:
        """SIGTERM (a clean shutdown, closing every client connection), then SIGKILL if it
        lingers; return once it has exited. Does nothing if it is not running."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (a crash: the kernel resets its connections); return once it exited."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: signal.Signals) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            stop_process_group(process, signum=signum)
        self.process = None


@contextlib.contextmanager
def start_redis(directory: Path | None = None) -> Iterator[RedisServer]:
    """A running redis-server on a free port of 127.0.0.1, stopped on exit.

    A port taken by someone else between choosing it and binding it (redis-server then
    exits) is retried on another port, twice.
    """
    program = require_program("redis-server", "redis-server")
    with private_directory(directory, "redis-") as path:
        failures = []
        for _attempt in range(3):
            server = RedisServer(program, free_port(), path)
            try:
                server.start()
            except RuntimeError as exc:
                failures.append(str(exc))
                continue
            try:
                yield server
            finally:
                server.stop()
            return
        raise RuntimeError("\n".join(failures))


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for this test only (stop/kill and start it again at will)."""
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
