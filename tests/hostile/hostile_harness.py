"""The machinery of the hostile tests: processes under attack, memory sampling, raw peers.

- :class:`ServerProcess` starts ``server.py`` (websock, websock-sync or websockets) on a free
  port and :class:`ClientProcess` starts ``client.py``; both expose the child's pid, its RSS,
  socket, thread and CPU counts (from ``/proc``) and the problems found in its stderr
  ("Traceback", "Logging error").
- :class:`RssMonitor` samples a process's VmRSS in a thread every few milliseconds and also
  reads the kernel's high-water mark (VmHWM, reset at the baseline through
  ``/proc/<pid>/clear_refs``), so a short spike between two samples is not missed.
- :class:`RawConn` is a misbehaving peer over a plain non-blocking socket: it sends any bytes
  (masked or not, fragments, compressed with zlib per RFC 7692), reads only when told to, and
  tells a FIN from an RST.
- :class:`GoodClient` is websock's own client in the test process: it echoes probe messages
  during and after an attack and records how long each took.
- :class:`Session` ties them together for one attack on one server.

Every wait is bounded. The only sleeps are the attack durations themselves (an attack runs for
N seconds while memory is sampled) and the pacing of deliberately slow peers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import os
import re
import resource
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
MIB = 1 << 20

#: The implementations server.py and client.py run: websock's asyncio layer, its threading
#: layer (websock.sync: a thread per connection), and websockets, for comparison.
IMPLS = ("websock", "websock-sync", "websockets")

#: The implementation under attack: websock (default), websock-sync or websockets.
IMPL = os.environ.get("WEBSOCK_HOSTILE_SERVER", "websock")
if IMPL not in IMPLS:
    raise RuntimeError(f"WEBSOCK_HOSTILE_SERVER must be one of {', '.join(IMPLS)}, not {IMPL!r}")

#: True when the implementation runs a thread per connection (websock.sync).
THREADED = IMPL == "websock-sync"

#: A source tree (its ``src`` directory) to import websock from in the server and client
#: processes instead of the installed one, e.g. an export of another commit:
#: ``git archive HEAD src | tar -x -C /tmp/head`` then ``WEBSOCK_HOSTILE_SRC=/tmp/head/src``.
SRC = os.environ.get("WEBSOCK_HOSTILE_SRC")

#: How long the good client may wait for its echo, during and after an attack.
ECHO_BOUND = float(os.environ.get("WEBSOCK_HOSTILE_ECHO_BOUND", "2.5"))

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROBLEM_MARKERS = ("Traceback", "Logging error")


def raise_nofile(target: int | None = None) -> int:
    """Raise this process's soft RLIMIT_NOFILE (to the hard limit by default); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if target is None else min(target, hard)
    if hard == resource.RLIM_INFINITY:
        want = target or 1 << 20
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


# --------------------------------------------------------------------------- /proc


def read_status(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status in bytes (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key.encode() + b":"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def rss(pid: int) -> int | None:
    return read_status(pid, "VmRSS")


def reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS record of ``pid`` to its current RSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def socket_count(pid: int) -> int:
    """Sockets open in ``pid`` (listening ones included)."""
    count = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return 0
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def thread_count(pid: int) -> int | None:
    """Threads of ``pid`` (the ``Threads`` line of /proc/<pid>/status; None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time ``pid`` has used, in seconds (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces: count the fields after its closing ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssMonitor:
    """Sample VmRSS of ``pid`` in a thread; the peak also comes from VmHWM."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = rss(pid) or 0
        self.peak = self.baseline
        self.last = self.baseline
        self.hwm_reset = reset_hwm(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss(self.pid)
            if value is None:
                return
            self.last = value
            if value > self.peak:
                self.peak = value
            self._stop.wait(self.interval)

    def current_growth(self) -> float:
        """Growth over the baseline now, in MiB (reads /proc: cheap enough per chunk)."""
        value = rss(self.pid)
        if value is not None:
            self.last = value
        return (self.last - self.baseline) / MIB

    def stop(self) -> None:
        if self.hwm_reset:
            hwm = read_status(self.pid, "VmHWM")
            if hwm is not None and hwm > self.peak:
                self.peak = hwm
        self._stop.set()
        self._thread.join(2)

    @property
    def growth(self) -> float:
        """Peak growth over the baseline, in MiB."""
        return (self.peak - self.baseline) / MIB


# --------------------------------------------------------------------------- processes


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first stdout line, within ``timeout``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line from {proc.args!r} within {timeout}s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").split("\n", 1)[0]


class ChildProcess:
    """A subprocess that prints a READY line; its stderr goes to a temporary file."""

    def __init__(
        self, cmd: Sequence[str], *, ready_timeout: float = 20.0, ready_prefix: str = "READY"
    ) -> None:
        self.cmd = list(cmd)
        fd, name = tempfile.mkstemp(prefix="hostile-", suffix=".stderr")
        self.stderr_path = Path(name)
        env = dict(os.environ)
        if SRC:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
        with os.fdopen(fd, "wb") as stderr:
            self.proc = subprocess.Popen(
                self.cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                preexec_fn=raise_nofile,
            )
        self.pid = self.proc.pid
        try:
            self.ready_line = _read_line(self.proc, ready_timeout)
        except BaseException:
            self.kill()
            raise
        if not self.ready_line.startswith(ready_prefix):
            self.kill()
            raise RuntimeError(
                f"{self.cmd} did not start: {self.ready_line!r}\n{self.stderr_text()[-3000:]}"
            )
        self.fields = dict(
            item.split("=", 1) for item in self.ready_line.split()[1:] if "=" in item
        )
        self.returncode: int | None = None

    def rss(self) -> int | None:
        return rss(self.pid)

    def sockets(self) -> int:
        return socket_count(self.pid)

    def threads(self) -> int | None:
        return thread_count(self.pid)

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal the child and wait up to ``timeout`` for it to exit (then kill it)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stdout_rest(self) -> str:
        """What the child printed after READY (once it has exited)."""
        if self.proc.stdout is None or self.proc.stdout.closed:
            return ""
        try:
            return self.proc.stdout.read().decode(errors="replace")
        except ValueError:
            return ""

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def problems(self) -> list[str]:
        """Lines of stderr showing a traceback or a logging failure."""
        return [
            line
            for line in self.stderr_text().splitlines()
            if any(marker in line for marker in PROBLEM_MARKERS)
        ]

    def cleanup(self) -> None:
        self.kill()
        with contextlib.suppress(FileNotFoundError):
            self.stderr_path.unlink()


class ServerProcess(ChildProcess):
    """``server.py IMPL --port 0 ...``; ``knobs`` become ``--name value`` arguments."""

    def __init__(self, impl: str = IMPL, *, tls: bool = False, **knobs: Any) -> None:
        self.impl = impl
        self.tls = tls
        self.ca_path: Path | None = None
        cmd = [PYTHON, str(HERE / "server.py"), impl, "--port", "0"]
        if tls:
            fd, ca = tempfile.mkstemp(prefix="hostile-ca-", suffix=".pem")
            os.close(fd)
            self.ca_path = Path(ca)
            cmd += ["--tls", "--ca-out", ca]
        for name, value in knobs.items():
            if value is None:
                continue
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is not False:
                cmd += [flag, str(value)]
        super().__init__(cmd)
        self.port = int(self.fields["port"])
        self.max_fragments_supported = self.fields.get("max_fragments") == "supported"

    def client_ssl(self) -> ssl.SSLContext | None:
        if self.ca_path is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_path))

    def cleanup(self) -> None:
        super().cleanup()
        if self.ca_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.ca_path.unlink()


class CliServerProcess(ChildProcess):
    """``python -m websock serve --plain --port 0 ...``: the command-line echo server."""

    def __init__(self, *args: str) -> None:
        self.impl = "websock"
        cmd = [PYTHON, "-m", "websock", "serve", "--plain", "--host", "127.0.0.1", "--port", "0"]
        super().__init__([*cmd, *args], ready_prefix="websock ")
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", self.ready_line)
        if match is None:
            self.kill()
            raise RuntimeError(f"no address in {self.ready_line!r}")
        self.port = int(match.group(1))


class ClientProcess(ChildProcess):
    """``client.py IMPL URI --mode MODE``."""

    def __init__(self, impl: str, uri: str, mode: str = "recv") -> None:
        self.impl = impl
        super().__init__([PYTHON, str(HERE / "client.py"), impl, uri, "--mode", mode])


# --------------------------------------------------------------------------- frames


def _xor(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = b"\x00\x00\x00\x00",
    length: int | None = None,
) -> bytes:
    """One frame's bytes. ``mask=None`` sends it unmasked (server to client).

    ``length`` overrides the length announced in the header (to lie about it).
    """
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _xor(payload, mask)


def random_mask() -> bytes:
    return os.urandom(4)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class Deflater:
    """permessage-deflate for a hostile peer: raw deflate (wbits < 0), tail 00 00 ff ff dropped.

    With ``takeover`` the compressor keeps its window across messages (RFC 7692 context
    takeover); otherwise each message starts afresh.
    """

    def __init__(self, wbits: int = 15, takeover: bool = True, level: int = 9) -> None:
        self.wbits = wbits
        self.takeover = takeover
        self.level = level
        self._c = self._new()

    def _new(self) -> Any:
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits)

    def compress_zeros(self, size: int, chunk: int = 1 << 20) -> bytes:
        """``size`` zero bytes compressed, without holding them in memory at once."""
        zeros = bytes(min(chunk, size))
        parts = []
        left = size
        while left:
            n = min(left, len(zeros))
            parts.append(self._c.compress(zeros if n == len(zeros) else zeros[:n]))
            left -= n
        return self._finish(parts)

    def compress(self, data: bytes) -> bytes:
        return self._finish([self._c.compress(data)])

    def _finish(self, parts: list[bytes]) -> bytes:
        parts.append(self._c.flush(zlib.Z_SYNC_FLUSH))
        out = b"".join(parts)
        assert out.endswith(b"\x00\x00\xff\xff")
        if not self.takeover:
            self._c = self._new()
        return out[:-4]


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool
    rsv1: bool

    @property
    def code(self) -> int | None:
        if len(self.payload) >= 2:
            return int(struct.unpack("!H", self.payload[:2])[0])
        return 1005


# --------------------------------------------------------------------------- raw peer


class PeerReset(Exception):
    """The other end reset the TCP connection (RST)."""


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def upgrade_request(
    *,
    path: str = "/",
    extensions: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    key: str | None = None,
) -> tuple[bytes, str]:
    """An opening request and its key; ``extra`` header values are sent as they are."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    for name, value in extra:
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class RawConn:
    """A hostile peer over a non-blocking TCP socket; it reads only when asked to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.sent = 0

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        timeout: float = 10.0,
    ) -> RawConn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    # -- writing

    async def send(self, data: bytes, timeout: float | None = None) -> bool:
        """Send ``data``; False if the peer closed or reset the connection (or timeout)."""
        try:
            if timeout is None:
                await self.loop.sock_sendall(self.sock, data)
            else:
                await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), timeout)
        except asyncio.TimeoutError:
            return False
        except (BrokenPipeError, ConnectionResetError):
            self.reset = True
            return False
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.EBADF):
                return False
            raise
        self.sent += len(data)
        return True

    async def flood(
        self,
        chunk: bytes,
        duration: float,
        *,
        stall: float | None = None,
        stop: Any = None,
    ) -> int:
        """Send ``chunk`` over and over for up to ``duration`` seconds; return the bytes sent.

        It ends early when ``stop()`` becomes true (checked between chunks), or when one
        chunk could not be sent within ``stall`` seconds: the peer stopped reading.
        ``flood_end`` tells which: 'deadline', 'stop', 'stalled' or 'closed'.
        """
        deadline = time.monotonic() + duration
        sent = 0
        self.flood_end = "deadline"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if stop is not None and stop():
                self.flood_end = "stop"
                break
            wait = left if stall is None else min(left, stall)
            try:
                await asyncio.wait_for(self.loop.sock_sendall(self.sock, chunk), wait)
            except asyncio.TimeoutError:
                if wait < left:
                    self.flood_end = "stalled"
                break
            except OSError:
                self.reset = True
                self.flood_end = "closed"
                break
            sent += len(chunk)
        self.sent += sent
        return sent

    flood_end = ""

    # -- reading

    async def _fill(self, timeout: float) -> bool:
        """Read more into ``buf``; False at EOF. Raise PeerReset, TimeoutError."""
        if self.eof:
            return False
        try:
            data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 262144), timeout)
        except ConnectionResetError:
            self.reset = True
            raise PeerReset() from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def read_head(self, timeout: float = 5.0) -> tuple[int, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            if not await self._fill(left):
                raise ConnectionError(f"EOF before a complete response head: {bytes(self.buf)!r}")
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return parse_head(head)

    async def handshake(
        self,
        *,
        extensions: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
        timeout: float = 5.0,
    ) -> dict[str, str]:
        request, key = upgrade_request(extensions=extensions, extra=extra)
        await self.send(request)
        status, headers = await self.read_head(timeout)
        if status != 101:
            raise ConnectionError(f"handshake refused: {status}")
        if headers.get("sec-websocket-accept") != accept_key(key):
            raise ConnectionError("bad Sec-WebSocket-Accept")
        return headers

    async def read_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame; None at EOF. Raise PeerReset or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            if not await self._fill(left):
                return None

    def _parse(self) -> Frame | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack("!H", buf[2:4])[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack("!Q", buf[2:10])[0]
            pos = 10
        mask = None
        if b1 & 0x80:
            if len(buf) < pos + 4:
                return None
            mask = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        del buf[: pos + n]
        if mask is not None:
            payload = _xor(payload, mask)
        return Frame(b0 & 0x0F, payload, bool(b0 & 0x80), bool(b0 & 0x40))

    async def read_close(
        self, timeout: float = 5.0, *, answer_pings: bool = False
    ) -> tuple[Frame | None, list[Frame]]:
        """Read until a Close frame; return it (None at EOF) and the frames before it.

        Raise PeerReset or TimeoutError.
        """
        deadline = time.monotonic() + timeout
        seen: list[Frame] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            f = await self.read_frame(left)
            if f is None or f.opcode == 0x8:
                return f, seen
            if answer_pings and f.opcode == 0x9:
                await self.send(frame(0xA, f.payload, mask=random_mask()))
            seen.append(f)

    async def read_to_end(self, timeout: float = 5.0) -> str:
        """Discard what arrives until the peer ends TCP: 'fin', 'rst' or 'timeout'."""
        deadline = time.monotonic() + timeout
        self.buf.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                if not await self._fill(left):
                    return "fin"
            except PeerReset:
                return "rst"
            except asyncio.TimeoutError:
                return "timeout"
            self.buf.clear()

    def peer_gone(self) -> bool:
        """True once the peer sent FIN or RST, without reading anything (POLLRDHUP)."""
        poller = select.poll()
        flags = select.POLLRDHUP | select.POLLHUP | select.POLLERR  # type: ignore[attr-defined,unused-ignore]
        poller.register(self.sock, flags)
        return bool(poller.poll(0))

    def abort(self) -> None:
        """Close at once with RST (SO_LINGER 0)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def negotiated_wbits(headers: dict[str, str]) -> int | None:
    """The client window bits to compress with, if permessage-deflate was accepted."""
    value = headers.get("sec-websocket-extensions", "")
    if "permessage-deflate" not in value:
        return None
    for param in value.split(";"):
        name, _, arg = param.strip().partition("=")
        if name == "client_max_window_bits" and arg:
            return int(arg.strip('"'))
    return 15


# --------------------------------------------------------------------------- good client


class GoodClient:
    """websock's client in the test process: echoes probes and times them."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.count = 0
        self.latencies: list[float | None] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @classmethod
    async def connect(cls, server: ServerProcess) -> GoodClient:
        import websock

        scheme = "wss" if server.tls else "ws"
        kwargs: dict[str, Any] = {}
        if server.tls:
            kwargs["ssl"] = server.client_ssl()
        ws = await websock.connect(
            f"{scheme}://localhost:{server.port}/",
            host="127.0.0.1",
            ping_interval=None,
            open_timeout=10,
            close_timeout=2,
            **kwargs,
        )
        return cls(ws)

    async def echo(self, bound: float = ECHO_BOUND) -> float | None:
        """Send a probe, wait for its echo; the latency, or None past ``bound`` (or closed)."""
        self.count += 1
        probe = f"probe {self.count} {os.urandom(4).hex()}"
        start = time.monotonic()
        try:
            async with asyncio.timeout(bound) if hasattr(asyncio, "timeout") else _timeout(bound):
                await self.ws.send(probe)
                while True:
                    message = await self.ws.recv()
                    if message == probe:
                        return time.monotonic() - start
                    # A late echo of an earlier probe: skip it.
        except Exception:  # a timeout, or the connection closed
            return None

    async def _probe_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            latency = await self.echo()
            self.latencies.append(latency)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    def start_probes(self, interval: float = 0.25) -> None:
        self._stop.clear()
        self._task = asyncio.ensure_future(self._probe_loop(interval))

    async def stop_probes(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, ECHO_BOUND + 1)
            self._task = None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)
        with contextlib.suppress(Exception):
            self.ws.transport.abort()


@contextlib.asynccontextmanager
async def _timeout(delay: float) -> Any:  # Python 3.10: no asyncio.timeout
    task = asyncio.current_task()
    assert task is not None
    handle = asyncio.get_running_loop().call_later(delay, task.cancel)
    try:
        yield
    except asyncio.CancelledError:
        raise asyncio.TimeoutError() from None
    finally:
        handle.cancel()


# --------------------------------------------------------------------------- results


@dataclass
class AttackResult:
    """What one attack did to one implementation."""

    attack: str
    impl: str
    rss_growth_mib: float | None = None  # peak over the baseline
    rss_after_mib: float | None = None  # at the end, over the baseline
    echo_ok: bool | None = None  # None: no good client (client role)
    echo_worst: float | None = None  # worst probe latency, s (None: a probe failed)
    probes: int = 0
    outcome: str = ""
    close_code: int | None = None
    ending: str | None = None  # 'fin', 'rst', 'timeout', 'open'
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        rss_text = "n/a" if self.rss_growth_mib is None else f"{self.rss_growth_mib:.1f} MiB"
        parts = [
            f"{self.attack} [{self.impl}]: peak RSS growth {rss_text}",
            f"echo_ok={self.echo_ok} worst={self.echo_worst}",
            f"outcome={self.outcome!r}",
        ]
        if self.rss_after_mib is not None:
            parts.append(f"RSS after {self.rss_after_mib:.1f} MiB")
        if self.problems:
            parts.append(f"stderr problems: {self.problems[:5]}")
        if self.details:
            parts.append(f"details={self.details}")
        return "; ".join(parts)


class Session:
    """One server under attack, a good client connected and warmed up, RSS sampled.

    ``async with Session(impl, **knobs) as s:`` then ``s.start_probes()``, attack,
    ``await s.finish(result)``: the probes stop, the good client's final echo is checked,
    RSS growth is recorded; on exit the server is stopped and its stderr examined.
    """

    def __init__(
        self, attack: str, impl: str = IMPL, *, tls: bool = False, good: bool = True, **knobs: Any
    ) -> None:
        self.attack = attack
        self.impl = impl
        self.tls = tls
        self.want_good = good
        self.knobs = knobs
        self.server: ServerProcess
        self.good: GoodClient | None = None
        self.monitor: RssMonitor
        self.result = AttackResult(attack, impl)
        self.base_sockets = 0
        self.raw: list[RawConn] = []

    async def __aenter__(self) -> Session:
        self.server = await asyncio.to_thread(ServerProcess, self.impl, tls=self.tls, **self.knobs)
        try:
            if self.want_good:
                self.good = await GoodClient.connect(self.server)
                if await self.good.echo(5.0) is None:
                    raise RuntimeError("warm-up echo failed")
            self.base_sockets = self.server.sockets()
            self.monitor = RssMonitor(self.server.pid)
        except BaseException:
            self.server.cleanup()
            raise
        return self

    async def connect_raw(self, **kwargs: Any) -> RawConn:
        conn = await RawConn.open(self.server.port, **kwargs)
        self.raw.append(conn)
        return conn

    def start_probes(self, interval: float = 0.25) -> None:
        if self.good is not None:
            self.good.start_probes(interval)

    async def finish(self) -> AttackResult:
        """Stop the probes, check a last echo, record memory."""
        result = self.result
        if self.good is not None:
            await self.good.stop_probes()
            final = await self.good.echo()
            latencies = [*self.good.latencies, final]
            result.probes = len(latencies)
            result.echo_ok = all(x is not None for x in latencies)
            result.echo_worst = (
                max(x for x in latencies if x is not None) if result.echo_ok else None
            )
            result.details["probe_failures"] = sum(x is None for x in latencies)
            result.details["probe_latencies"] = [
                None if x is None else round(x, 3) for x in latencies
            ]
        self.monitor.stop()
        result.rss_growth_mib = round(self.monitor.growth, 1)
        return result

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.raw:
            conn.abort()
        if self.good is not None:
            await self.good.stop_probes()
            await self.good.close()
        with contextlib.suppress(Exception):
            self.monitor.stop()
        await asyncio.to_thread(self.server.stop, signal.SIGTERM, 5.0)
        self.result.problems = self.server.problems()
        if self.result.problems:
            self.result.details["stderr"] = self.server.stderr_text()[-4000:]
        self.server.cleanup()


# --------------------------------------------------------------------------- assertions


def check_no_problems(result: AttackResult) -> None:
    assert not result.problems, (
        f"{result.impl} wrote tracebacks or logging errors to stderr:\n"
        + result.details.get("stderr", "\n".join(result.problems))
    )


def check_rss(result: AttackResult, bound_mib: float) -> None:
    assert result.rss_growth_mib is not None
    assert result.rss_growth_mib < bound_mib, (
        f"{result.impl}: peak RSS grew {result.rss_growth_mib:.1f} MiB over the baseline "
        f"(bound {bound_mib} MiB): {result.describe()}"
    )


def check_echo(result: AttackResult) -> None:
    assert result.echo_ok, (
        f"{result.impl}: the good client missed an echo (bound {ECHO_BOUND} s): "
        + result.describe()
    )


# --------------------------------------------------------------------------- hostile server


class HostileServer:
    """A raw server for client-role attacks: answers the opening handshake, then misbehaves."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[RawConn] = []

    async def accept(self, timeout: float = 10.0, *, rcvbuf: int | None = None) -> RawConn:
        """Accept one client and complete its opening handshake (no extension)."""
        loop = asyncio.get_running_loop()
        sock, _ = await asyncio.wait_for(loop.sock_accept(self.sock), timeout)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        conn = RawConn(sock)
        self.conns.append(conn)
        _, headers = await conn.read_head(timeout)
        key = headers["sec-websocket-key"]
        await conn.send(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode()
        )
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.abort()
        self.sock.close()


async def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> float | None:
    """Poll ``predicate()`` (state of another process) until true; the time it took, or None."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        await asyncio.sleep(interval)
