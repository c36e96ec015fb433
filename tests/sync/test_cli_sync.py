"""``websock serve --sync``: the echo server on websock.sync, run as a subprocess.

Every wait is bounded and driven by what the process prints or sends: the port comes from
its "listening" line, a signal's effect from the Close frame the clients receive.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from syncpeer import TIMEOUT, RawClient

from websock import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websock.protocol.frames import Opcode
from websock.sync import connect

LISTENING = re.compile(r"echo server \(sync\) listening on (wss?)://([^/]+):(\d+)/")


class Served:
    """A running ``websock serve --sync`` process and what it printed so far."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port = 0
        self.scheme = ""

    def read_line(self) -> str:
        """The next line of stdout, waiting at most 2 * TIMEOUT (a cold start imports a lot)."""
        stdout = self.proc.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            line = b""
            while not line.endswith(b"\n"):
                assert selector.select(TIMEOUT * 2), f"no output line; so far: {self.lines}"
                # One byte at a time: readline() could block on a partial line.
                byte = os.read(stdout.fileno(), 1)
                assert byte, f"the process ended its output; so far: {self.lines}"
                line += byte
        self.lines.append(line.decode())
        return self.lines[-1]

    def wait_listening(self) -> None:
        while True:
            match = LISTENING.search(self.read_line())
            if match:
                self.scheme, self.port = match.group(1), int(match.group(3))
                return

    def uri(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}/"

    def finish(self) -> tuple[int, str, str]:
        """Wait for the exit; return (status, rest of stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return self.proc.returncode, out.decode(), err.decode()


@contextmanager
def serve_sync(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "websock", "serve", "--sync", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    served = Served(proc)
    try:
        served.wait_listening()
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_echo_then_signal_closes_with_1001(sig: signal.Signals) -> None:
    with serve_sync("--plain") as served:
        assert served.scheme == "ws"
        clients = [connect(served.uri()) for _ in range(2)]
        for i, ws in enumerate(clients):
            ws.send(f"hello {i}")
            assert ws.recv(timeout=TIMEOUT) == f"hello {i}"
            ws.send(b"\x00\xff" * 1000)
            assert ws.recv(timeout=TIMEOUT) == b"\x00\xff" * 1000
        served.proc.send_signal(sig)
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.code == 1001
            assert ws.wait_closed(TIMEOUT)
        status, out, err = served.finish()
        assert status == 0, err
        assert "shutting down: closing connections with 1001" in out
        assert "Traceback" not in err


def test_signal_without_connections_exits_cleanly() -> None:
    with serve_sync("--plain") as served:
        served.proc.send_signal(signal.SIGINT)
        status, _, err = served.finish()
        assert status == 0, err
        assert "Traceback" not in err


def test_wss_with_dev_certificate(tmp_path: Path) -> None:
    with serve_sync(env={"XDG_CACHE_HOME": str(tmp_path)}) as served:
        assert served.scheme == "wss"
        ca_line = next(line for line in served.lines if "CA file for clients" in line)
        ca_path = Path(ca_line.rsplit(": ", 1)[1].strip())
        assert tmp_path in ca_path.parents
        context = ssl.create_default_context(cafile=str(ca_path))
        with connect(served.uri("localhost"), ssl=context) as ws:
            ws.send("secure")
            assert ws.recv(timeout=TIMEOUT) == "secure"
            served.proc.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.code == 1001
        assert served.finish()[0] == 0


def test_certfile_and_keyfile(tmp_path: Path) -> None:
    import trustme

    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    with serve_sync("--certfile", str(cert), "--keyfile", str(key)) as served:
        context = ssl.create_default_context()
        authority.configure_trust(context)
        with connect(served.uri(), ssl=context) as ws:
            ws.send("chain")
            assert ws.recv(timeout=TIMEOUT) == "chain"


def test_limits_and_compression_options_apply() -> None:
    with serve_sync("--plain", "--max-message-size", "1K", "--no-compression") as served:
        with connect(served.uri()) as ws:
            assert ws.extensions == []  # --no-compression: nothing negotiated
            ws.send(b"x" * 1024)
            assert ws.recv(timeout=TIMEOUT) == b"x" * 1024
            ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.code == 1009  # message too big
    with serve_sync("--plain") as served, connect(served.uri()) as ws:
        assert [e.name for e in ws.extensions] == ["permessage-deflate"]
    with serve_sync("--plain", "--max-frame-size", "100", "--no-compression") as served:
        with connect(served.uri()) as ws:
            ws.send(b"y" * 100)
            assert ws.recv(timeout=TIMEOUT) == b"y" * 100
            ws.send(b"y" * 101)
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.code == 1009


def test_open_timeout() -> None:
    # A client that connects and never sends its request is dropped after --open-timeout.
    with serve_sync("--plain", "--open-timeout", "0.1") as served:
        with socket.create_connection(("127.0.0.1", served.port), TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            assert sock.recv(1) == b""


def test_max_connections() -> None:
    with serve_sync("--plain", "--max-connections", "1") as served:
        with connect(served.uri()) as first:
            with pytest.raises(InvalidStatus) as info:
                connect(served.uri())
            assert info.value.response.status == 503
            first.send("still served")
            assert first.recv(timeout=TIMEOUT) == "still served"


def test_ping_interval() -> None:
    # A raw client never sends anything unasked: the first frame it gets is a keepalive.
    with serve_sync("--plain", "--ping-interval", "0.05", "--ping-timeout", "0") as served:
        raw = RawClient(served.port)
        try:
            assert raw.status == 101
            assert raw.read_frame().opcode == Opcode.PING
        finally:
            raw.close()


def test_port_in_use_is_an_error() -> None:
    with serve_sync("--plain") as served:
        proc = subprocess.run(
            [sys.executable, "-m", "websock", "serve", "--sync", "--plain"]
            + ["--port", str(served.port)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith("websock serve:"), proc.stderr
        assert "Traceback" not in proc.stderr
