"""websock.run(workers=N) and ``websock serve --workers N``: real processes on loopback.

The servers run as subprocesses (tests/workers/app.py, or ``python -m websock serve``); every
connection to app.py first receives the PID of the worker that accepted it. Synchronisation is
on what the processes print (the ready line, the supervisor's log) and on connections; every
wait is bounded by TIMEOUT, and no assertion is about timing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import websock
from websock import ConnectionClosedOK
from websock.workers import RestartPolicy, run

TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
APP = Path(__file__).parent / "workers" / "app.py"
# Connections opened to meet a given worker: the kernel hashes each new connection (its
# source port) onto one of the listening sockets, so missing one of two workers 64 times in
# a row has a probability of 2**-64.
ATTEMPTS = 64

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


class Server:
    """A server subprocess; its stderr is collected line by line for :meth:`expect`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_stderr())

    @classmethod
    async def start(cls, *args: str) -> Server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self._new_line.set()
        self._new_line.set()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    async def stdout_line(self) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT * 2)
        assert line, f"the server ended its output; stderr:\n{self.stderr}"
        return line.decode()

    async def port(self) -> int:
        match = re.search(
            r"(?:ready on port |listening on ws://[^/]+:)(\d+)", await self.stdout_line()
        )
        assert match, self.stderr
        return int(match.group(1))

    async def expect(self, pattern: str, start: int = 0) -> re.Match[str]:
        """The first stderr line from index ``start`` on that matches ``pattern``."""
        async with asyncio.timeout(TIMEOUT * 2):
            index = start
            while True:
                while index < len(self.lines):
                    if match := re.search(pattern, self.lines[index]):
                        return match
                    index += 1
                assert not self._reader.done(), f"no {pattern!r} in stderr:\n{self.stderr}"
                self._new_line.clear()
                await self._new_line.wait()

    async def finish(self) -> int:
        """The exit status, waited for within a bound."""
        code = await asyncio.wait_for(self.proc.wait(), TIMEOUT * 3)
        await asyncio.wait_for(self._reader, TIMEOUT)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            # The supervisor first (its workers get SIGTERM from the kernel), then wait.
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        await server.kill()


async def app(servers: list[Server], mode: str, port: int = 0, workers: int = 2) -> Server:
    server = await Server.start(str(APP), mode, str(port), str(workers))
    servers.append(server)
    return server


async def connect(port: int) -> tuple[websock.ClientConnection, int]:
    """A connection to app.py and the PID of the worker that accepted it."""
    ws = await asyncio.wait_for(websock.connect(f"ws://127.0.0.1:{port}/"), TIMEOUT)
    pid = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(pid, str)
    return ws, int(pid)


async def one_per_worker(port: int, count: int) -> dict[int, websock.ClientConnection]:
    """Open connections until ``count`` workers answered; keep one per worker."""
    clients: dict[int, websock.ClientConnection] = {}
    for _ in range(ATTEMPTS):
        ws, pid = await connect(port)
        if pid in clients:
            await ws.close()
        else:
            clients[pid] = ws
        if len(clients) == count:
            return clients
    raise AssertionError(f"{len(clients)} workers answered {ATTEMPTS} connections")


async def echo(ws: websock.ClientConnection, text: str) -> None:
    await ws.send(text)
    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text


async def closed_with(ws: websock.ClientConnection) -> int:
    with pytest.raises(ConnectionClosedOK) as info:
        await asyncio.wait_for(ws.recv(), TIMEOUT * 2)
    return info.value.code


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> set[int]:
    return {p for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if _ppid(p) == pid}


def _ppid(pid: int) -> int | None:
    try:
        return parent_of(pid)
    except OSError:  # gone meanwhile
        return None


# --- the supervisor, through websock.run ------------------------------------------------


async def test_two_workers_serve_and_close_with_1001_on_sigterm(servers: list[Server]) -> None:
    server = await app(servers, "pid")
    port = await server.port()
    clients = await one_per_worker(port, 2)
    for pid, ws in clients.items():
        assert parent_of(pid) == server.proc.pid
        await echo(ws, f"hello from {pid}")
    server.proc.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(closed_with(ws) for ws in clients.values()))
    assert codes == [1001, 1001]
    assert await server.finish() == 0
    assert "Traceback" not in server.stderr
    assert "WARNING" not in server.stderr  # no worker exit looked unexpected


async def test_a_killed_worker_is_restarted(servers: list[Server]) -> None:
    server = await app(servers, "pid")
    port = await server.port()
    clients = await one_per_worker(port, 2)
    victim, survivor = list(clients)
    mark = len(server.lines)
    os.kill(victim, signal.SIGKILL)
    await server.expect(rf"worker (\d) \(pid {victim}\) was killed by SIGKILL; restarting", mark)
    new = int((await server.expect(r"worker \d \(pid (\d+)\) serving", mark)).group(1))
    assert new not in clients
    await echo(clients[survivor], "still here")  # the other worker never stopped
    for _ in range(ATTEMPTS):
        ws, pid = await connect(port)
        assert pid in (survivor, new)
        if pid == new:
            await echo(ws, "reborn")
            break
        await ws.close()
    else:
        raise AssertionError(f"the new worker {new} answered none of {ATTEMPTS} connections")
    server.proc.send_signal(signal.SIGINT)
    assert await closed_with(ws) == 1001
    assert await closed_with(clients[survivor]) == 1001
    assert await server.finish() == 0


async def test_a_second_signal_kills_workers_that_do_not_stop(servers: list[Server]) -> None:
    # Their handlers never return: the workers would wait for close_timeout (60 s).
    server = await app(servers, "stubborn")
    port = await server.port()
    clients = await one_per_worker(port, 2)
    server.proc.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(closed_with(ws) for ws in clients.values()))
    assert codes == [1001, 1001]  # the closing handshakes are done; the handlers are not
    await server.expect(r"SIGTERM: stopping the workers")
    server.proc.send_signal(signal.SIGINT)
    await server.expect(r"signalled again: killing 2 workers")
    assert await server.finish() == 0
    for pid in clients:
        await server.expect(rf"worker \d \(pid {pid}\) was killed by SIGKILL")


async def test_workers_that_cannot_start_make_run_fail(servers: list[Server]) -> None:
    server = await app(servers, "crash-startup")
    assert await server.finish() != 0
    assert "workers keep failing to start" in server.stderr
    assert "RuntimeError: no database" in server.stderr  # why, from the workers
    assert server.proc.stdout is not None
    assert b"ready on port" not in await server.proc.stdout.read()


async def test_workers_that_keep_crashing_make_run_fail(servers: list[Server]) -> None:
    # "die" ends the worker that reads it (os._exit(3)). The policy restarts it after a
    # backoff, and gives up on the 6th death within 60 s (more than max(5, workers)).
    server = await app(servers, "die")
    port = await server.port()
    deaths = 0
    for _ in range(ATTEMPTS):
        if server.proc.returncode is not None or "workers keep dying" in server.stderr:
            break
        mark = len(server.lines)
        try:
            ws, _ = await connect(port)
        except (OSError, websock.WebSocketError):
            # Both workers are waiting to be restarted: wait for one to serve.
            await server.expect(r"serving", mark)
            continue
        await ws.send("die")
        await server.expect(r"exited with status 3|workers keep dying", mark)
        deaths += 1
    assert await server.finish() != 0
    assert deaths == 6
    assert "workers keep dying (6 deaths within 60 s)" in server.stderr


async def test_a_port_in_use_fails_before_any_worker_starts(servers: list[Server]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = await app(servers, "pid", port)
        assert await server.finish() != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in server.stderr
    assert "started (pid" not in server.stderr  # no worker was forked


async def test_a_second_supervisor_does_not_share_the_port(servers: list[Server]) -> None:
    # The first one's workers listen with SO_REUSEPORT; the second must not join them.
    first = await app(servers, "pid")
    port = await first.port()
    second = await app(servers, "pid", port)
    assert await second.finish() != 0
    assert "Address already in use" in second.stderr
    first.proc.send_signal(signal.SIGTERM)
    assert await first.finish() == 0


async def test_one_worker_serves_in_this_process(servers: list[Server]) -> None:
    server = await app(servers, "pid", workers=1)
    port = await server.port()
    ws, pid = await connect(port)
    assert pid == server.proc.pid
    await echo(ws, "alone")
    server.proc.send_signal(signal.SIGTERM)
    assert await closed_with(ws) == 1001
    assert await server.finish() == 0
    assert server.proc.stdout is not None
    assert await server.proc.stdout.read() == b"stopped\n"


# --- the command line -------------------------------------------------------------------


async def test_cli_serve_workers(servers: list[Server]) -> None:
    server = await Server.start(
        "-m", "websock", "serve", "--plain", "--port", "0", "--workers", "2"
    )
    servers.append(server)
    line = await server.stdout_line()
    assert line.endswith("/ (2 workers)\n"), line
    port = int(re.findall(r":(\d+)/", line)[0])
    assert len(children_of(server.proc.pid)) == 2
    clients = [
        await asyncio.wait_for(websock.connect(f"ws://127.0.0.1:{port}/"), TIMEOUT)
        for _ in range(8)
    ]
    for i, ws in enumerate(clients):
        await echo(ws, f"echo {i}")
    server.proc.send_signal(signal.SIGINT)
    codes = await asyncio.gather(*(closed_with(ws) for ws in clients))
    assert set(codes) == {1001}
    assert await server.finish() == 0
    assert "Traceback" not in server.stderr


async def test_cli_serve_workers_port_in_use(servers: list[Server]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        args = ("-m", "websock", "serve", "--plain", "--port", str(port), "--workers", "2")
        server = await Server.start(*args)
        servers.append(server)
        assert await server.finish() == 1
    assert server.stderr == (
        f"websock serve: [Errno 98] cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


async def test_cli_serve_workers_refuses_sync(servers: list[Server]) -> None:
    server = await Server.start("-m", "websock", "serve", "--plain", "--sync", "--workers", "2")
    servers.append(server)
    assert await server.finish() == 2
    assert "--workers needs the asyncio server" in server.stderr


async def test_cli_serve_workers_usage(servers: list[Server]) -> None:
    server = await Server.start("-m", "websock", "serve", "--workers", "0")
    servers.append(server)
    assert await server.finish() == 2
    assert "not a number of workers: '0'" in server.stderr


# --- in this process --------------------------------------------------------------------


async def test_reuse_port_servers_in_one_process_both_accept() -> None:
    async def tell(name: str, ws: websock.ServerConnection) -> None:
        await ws.send(name)

    async with websock.serve(lambda ws: tell("a", ws), "127.0.0.1", 0, reuse_port=True) as a:
        async with websock.serve(lambda ws: tell("b", ws), "127.0.0.1", a.port, reuse_port=True):
            seen: set[str] = set()
            for _ in range(ATTEMPTS):
                async with websock.connect(f"ws://127.0.0.1:{a.port}/") as ws:
                    seen.add(str(await asyncio.wait_for(ws.recv(), TIMEOUT)))
                if seen == {"a", "b"}:
                    break
            assert seen == {"a", "b"}


async def test_run_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="outside of an event loop"):
        run(lambda ws: asyncio.sleep(0), "127.0.0.1", 0)


def test_run_checks_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="workers must be a number >= 1 or 'auto', not 0"):
        run(lambda ws: asyncio.sleep(0), "127.0.0.1", 0, workers=0)
    with pytest.raises(ValueError, match="not sock"):
        run(lambda ws: asyncio.sleep(0), workers=2, sock=socket.socket())
    with pytest.raises(TypeError, match="max_mesage_size"):  # in this process: no worker
        run(lambda ws: asyncio.sleep(0), "127.0.0.1", 0, workers=2, max_mesage_size=1)
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(NotImplementedError, match="needs Linux"):
        run(lambda ws: asyncio.sleep(0), "127.0.0.1", 0, workers=2)


def test_websock_run_is_exported() -> None:
    assert websock.run is run
    assert "run" in websock.__all__


# --- the restart policy -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_policy_backs_off_then_gives_up_on_too_many_deaths() -> None:
    clock = Clock()
    policy = RestartPolicy(max_deaths=5, window=60, clock=clock)
    policy.serving()
    delays = []
    for _ in range(5):
        delays.append(policy.died(served=True))
        clock.now += 1
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert policy.died(served=True) is None
    assert policy.reason == "workers keep dying (6 deaths within 60 s)"


def test_policy_forgets_deaths_outside_the_window() -> None:
    clock = Clock()
    policy = RestartPolicy(max_deaths=2, window=60, clock=clock)
    for _ in range(10):
        assert policy.died(served=True) == 0.1
        clock.now += 61
    assert policy.reason is None


def test_policy_caps_the_delay() -> None:
    clock = Clock()
    policy = RestartPolicy(max_deaths=100, max_delay=5.0, clock=clock)
    delays = [policy.died(served=True) for _ in range(10)]
    assert delays[-1] == 5.0


def test_policy_gives_up_on_failed_starts_in_a_row() -> None:
    clock = Clock()
    policy = RestartPolicy(max_failed_starts=3, max_deaths=100, clock=clock)
    assert policy.died(served=False) is not None
    assert policy.died(served=False) is not None
    policy.serving()  # one worker made it: the streak is over
    assert policy.died(served=False) is not None
    assert policy.died(served=False) is not None
    assert policy.died(served=False) is None
    assert policy.reason == "workers keep failing to start (3 in a row died before serving)"
