"""What the test fixtures that run real servers as child processes share.

tests/proxyservers.py (tinyproxy, dante, socat), tests/redisserver.py (redis-server) and
tests/nginxserver.py (nginx, ``python -m websock serve``) each run a program on a free port
of 127.0.0.1, in a session of its own and a directory of its own, and stop it with bounded
waits. The pieces, one job each:

* :func:`free_port`: a loopback port free right now;
* :func:`accepts`: whether a loopback port accepts connections;
* :func:`require_program`: a program's path, or skip the test naming the Debian package;
* :func:`stop_process_group`: SIGTERM to a process group, a bounded wait, then SIGKILL;
* :func:`private_directory`: a given directory, or a temporary one removed afterwards;
* :func:`launch_listening`: run a server on a free port until it accepts connections,
  retrying on another port if it exits first (built on the above).

Every wait is bounded: :data:`STARTUP_TIMEOUT` and :data:`STOP_TIMEOUT`, scaled by
``WEBSOCK_TEST_TIMEOUT_FACTOR`` (:data:`TIMEOUT_FACTOR`) on slow machines.

Module-importable like the fixture modules: ``from serverprocess import ...`` (``tests/`` is
on ``sys.path`` through ``tests/conftest.py``).

PYTEST_DONT_REWRITE: imported by fixture modules that test modules import before pytest
registers them as plugins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = [
    "TIMEOUT_FACTOR",
    "STARTUP_TIMEOUT",
    "STOP_TIMEOUT",
    "POLL",
    "free_port",
    "accepts",
    "require_program",
    "stop_process_group",
    "private_directory",
    "launch_listening",
]

#: ``WEBSOCK_TEST_TIMEOUT_FACTOR``: every bound below is multiplied by it (1 by default).
TIMEOUT_FACTOR = float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
#: Bound on a server's start (until it listens, or answers).
STARTUP_TIMEOUT = 10.0 * TIMEOUT_FACTOR
#: Bound on a server's shutdown after SIGTERM, before SIGKILL (and again after SIGKILL).
STOP_TIMEOUT = 5.0 * TIMEOUT_FACTOR
#: Interval between two checks of a condition polled until a deadline.
POLL = 0.01


def free_port() -> int:
    """A port of 127.0.0.1 that nothing is bound to right now.

    The socket that found it is closed at once: someone else may take the port before the
    caller binds it, so a server that fails to bind it should be retried on another one
    (as :func:`launch_listening` does).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether a TCP connection to ``127.0.0.1:port`` succeeds (within 1 s); it is closed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def require_program(program: str, package: str, note: str = "") -> str:
    """The path of ``program`` (on PATH, or in /usr/sbin or /sbin), or skip the test.

    The skip reason names the Debian ``package`` to install:
    ``PROGRAM is not installed: install the Debian package PACKAGE (apt-get install
    PACKAGE)`` followed by ``note`` (e.g. ``"; scripts/test does when run as root"``).
    """
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(
            f"{program} is not installed: install the Debian package {package} "
            f"(apt-get install {package}){note}"
        )
    return path


def stop_process_group(
    process: subprocess.Popen[bytes],
    timeout: float = STOP_TIMEOUT,
    signum: signal.Signals = signal.SIGTERM,
) -> None:
    """Stop ``process``, started with ``start_new_session=True``, and its whole group.

    Sends ``signum`` (SIGTERM: a clean shutdown) to the process group, waits up to
    ``timeout`` for the process to exit, then SIGKILLs the group and waits up to
    ``timeout`` again (a process that still does not exit raises TimeoutExpired). Last,
    SIGKILLs whatever of the group outlived its leader (forked workers or helpers).
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
    # Children (nginx's worker, dante's and socat's forks) that outlived their parent.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def private_directory(directory: Path | None, prefix: str) -> Iterator[Path]:
    """``directory`` (created if missing, kept afterwards), or if None a new temporary
    directory named ``prefix...``, removed with its contents on exit."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as name:
            yield Path(name)


def launch_listening(
    name: str,
    directory: Path,
    log_path: Path,
    command: Callable[[int], list[str]],
) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``command(port)`` on a :func:`free_port` until the port accepts connections.

    The process runs in ``directory``, in a session of its own (stop it with
    :func:`stop_process_group`), its output in ``directory/NAME-PORT.out``. A process that
    exits before listening (a port taken meanwhile by someone else) is retried on another
    port, twice; one that neither exits nor listens within STARTUP_TIMEOUT is stopped. Both
    raise RuntimeError with the output and the contents of ``log_path`` (the server's own
    log), attempt by attempt.
    """
    failures = []
    for _attempt in range(3):
        port = free_port()
        output_path = directory / f"{name}-{port}.out"
        with output_path.open("wb") as output:
            process = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=directory,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if accepts(port):
                if process.poll() is None:
                    return process, port
                break
            time.sleep(POLL)
        running = process.poll() is None
        if running:
            stop_process_group(process)
        logs = output_path.read_text(errors="replace")
        if log_path.exists():
            logs += log_path.read_text(errors="replace")
        failures.append(
            f"{name} on port {port} "
            + (
                f"did not listen within {STARTUP_TIMEOUT} s"
                if running
                else f"exited with status {process.returncode}"
            )
            + f":\n{logs}"
        )
        if running:
            break
    raise RuntimeError("\n".join(failures))
