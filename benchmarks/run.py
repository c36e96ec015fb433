#!/usr/bin/env python3
"""Side-by-side benchmark of websock against websockets, picows and aiohttp (asyncio), and
of websock.sync against websockets' threading server.

    .venv/bin/python benchmarks/run.py --quick      # ~3 minutes, 1 round
    .venv/bin/python benchmarks/run.py              # full run, ~15 minutes

Writes benchmarks/RESULTS.md (and the raw samples to benchmarks/out/results.json).
See benchmarks/README.md for what each workload means and how to read the tables.

Each server runs in its own process pinned to one core, the load generator (a
small C program built here, benchmarks/loadgen.c) on another; rounds are
interleaved (every implementation once per round, in a shuffled order) and the
tables report medians over rounds, as ratios to the fastest peer and to a raw
asyncio TCP echo server.  Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, "out")
LOGS = os.path.join(OUT, "logs")
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

MiB = 1024 * 1024


# ----------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    kind: str  # echo | handshake | idle
    conns: int = 1
    inflight: int = 1
    size: int = 32
    tls: bool = False
    deflate: bool = False
    text: bool = False
    metric: str = "msgs/s"  # msgs/s | MB/s | handshakes/s | KiB/conn

    @property
    def config(self) -> str:
        return "tls" if self.tls else "deflate" if self.deflate else "plain"

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "KiB/conn"


WORKLOADS = [
    Workload("a", "(a) 1 connection, 1 message in flight, 32 B binary", "echo", 1, 1, 32),
    Workload("b", "(b) 64 connections x 4 messages in flight, 32 B binary", "echo", 64, 4, 32),
    Workload("c", "(c) 16 connections x 1 in flight, 64 KiB binary", "echo", 16, 1, 65536),
    Workload(
        "d", "(d) 4 connections x 1 in flight, 1 MiB binary", "echo", 4, 1, MiB, metric="MB/s"
    ),
    Workload(
        "e",
        "(e) handshakes: open, echo one 32 B message, close cleanly; 16 concurrent",
        "handshake",
        16,
        1,
        32,
        metric="handshakes/s",
    ),
    Workload(
        "f",
        "(f) idle connections: server memory per open connection",
        "idle",
        10000,
        metric="KiB/conn",
    ),
    Workload(
        "g-b", "(g) = (b) over TLS: 64 connections x 4 in flight, 32 B", "echo", 64, 4, 32, tls=True
    ),
    Workload(
        "g-d",
        "(g) = (d) over TLS: 4 connections x 1 in flight, 1 MiB",
        "echo",
        4,
        1,
        MiB,
        tls=True,
        metric="MB/s",
    ),
    Workload(
        "h",
        "(h) = (d) with permessage-deflate on compressible text (1 MiB JSON lines)",
        "echo",
        4,
        1,
        MiB,
        deflate=True,
        text=True,
        metric="MB/s",
    ),
]
WL = {w.key: w for w in WORKLOADS}
SHORT = {
    "a": "(a) 1 conn, 32 B",
    "b": "(b) 64 conns x 4, 32 B",
    "c": "(c) 16 conns, 64 KiB",
    "d": "(d) 4 conns, 1 MiB",
    "e": "(e) handshakes",
    "f": "(f) idle memory",
    "g-b": "(g) TLS, 64 conns x 4, 32 B",
    "g-d": "(g) TLS, 4 conns, 1 MiB",
    "h": "(h) deflate, 4 conns, 1 MiB text",
}


@dataclass(frozen=True)
class Impl:
    key: str
    label: str
    server: str
    client: str | None  # None: no client-side benchmark
    peer: bool
    mode: str = "ws"  # ws | raw
    deflate: bool = True
    # "asyncio": runs on the asyncio and uvloop loops; "sync": a threading server, measured
    # on the "sync" row only (it has no event loop), against the other sync peers.
    io: str = "asyncio"

    def runs_on(self, loop: str) -> bool:
        return (self.io == "sync") == (loop == SYNC)


# The "loop" label of the threading servers: a row of its own, compared among themselves.
SYNC = "sync"
# The implementation each loop's ratios are about ("websock ÷ best peer"), and its floor
# ("vs raw"): a TCP echo without WebSocket on the same I/O model.
SUBJECT = {"asyncio": "websock", "uvloop": "websock", SYNC: "websock-sync"}
RAW = {"asyncio": "raw", "uvloop": "raw", SYNC: "raw-sync"}

IMPLS = [
    Impl("websock", "websock", "servers/ws_websock.py", "clients/ws_websock.py", peer=False),
    Impl("websockets", "websockets", "servers/ws_websockets.py", "clients/ws_websockets.py", True),
    Impl("picows", "picows", "servers/ws_picows.py", "clients/ws_picows.py", True, deflate=False),
    Impl("aiohttp", "aiohttp", "servers/ws_aiohttp.py", "clients/ws_aiohttp.py", True),
    Impl(
        "raw",
        "raw asyncio TCP echo",
        "servers/raw_asyncio.py",
        "clients/raw_asyncio.py",
        False,
        mode="raw",
    ),
    Impl(
        "websock-sync",
        "websock.sync",
        "servers/ws_websock_sync.py",
        None,
        peer=False,
        io=SYNC,
    ),
    Impl(
        "websockets-sync",
        "websockets.sync",
        "servers/ws_websockets_sync.py",
        None,
        peer=True,
        io=SYNC,
    ),
    Impl(
        "raw-sync",
        "raw threaded TCP echo",
        "servers/raw_threads.py",
        None,
        peer=False,
        mode="raw",
        io=SYNC,
    ),
]
IM = {i.key: i for i in IMPLS}


def subject(loop: str) -> str:
    return SUBJECT.get(loop, "websock")


GEN_SATURATED = 85  # % of a core: above this a load-generator figure may be generator-limited

CLIENT_WORKLOADS = {"a": "(a) 1 connection, 32 B", "c": "(c) 16 connections, 64 KiB"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- build


def build() -> dict[str, Any]:
    """Compile loadgen and echosrv into out/ (with or without OpenSSL / zlib)."""
    os.makedirs(LOGS, exist_ok=True)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("run.py: no C compiler (cc/gcc) found; the load generator is C")
    feats: dict[str, Any] = {"cc": cc}
    variants = [
        ([], ["-lssl", "-lcrypto", "-lz"], True, True),
        (["-DNO_ZLIB"], ["-lssl", "-lcrypto"], True, False),
        (["-DNO_TLS"], ["-lz"], False, True),
        (["-DNO_TLS", "-DNO_ZLIB"], [], False, False),
    ]
    for name in ("loadgen", "echosrv"):
        src = os.path.join(BENCH, f"{name}.c")
        exe = os.path.join(OUT, name)
        stamp = exe + ".features"
        if (
            os.path.exists(exe)
            and os.path.exists(stamp)
            and os.path.getmtime(exe) >= os.path.getmtime(src)
        ):
            with open(stamp) as f:
                tls, zlib = json.load(f)
        else:
            for defs, libs, tls, zlib in variants:
                cmd = [cc, "-O2", "-o", exe, src, *defs, *libs]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                if r.returncode == 0:
                    with open(stamp, "w") as f:
                        json.dump([tls, zlib], f)
                    log(f"built {name}: {' '.join(cmd[1:])}")
                    break
            else:
                sys.exit(f"run.py: could not compile {src}:\n{r.stderr}")
        feats[name] = {"tls": tls, "zlib": zlib}
    feats["tls"] = feats["loadgen"]["tls"] and feats["echosrv"]["tls"]
    feats["zlib"] = feats["loadgen"]["zlib"]
    if not feats["tls"]:
        log("OpenSSL headers missing (apt-get install libssl-dev): TLS workloads are n/a")
    if not feats["zlib"]:
        log("zlib headers missing (apt-get install zlib1g-dev): workload (h) is n/a")
    try:
        feats["cc_version"] = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0]
    except Exception:
        feats["cc_version"] = cc
    return feats


def make_cert() -> tuple[str, str] | None:
    cert, key = os.path.join(OUT, "cert.pem"), os.path.join(OUT, "key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    if shutil.which("openssl"):
        r = subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "365",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            capture_output=True,
            timeout=60,
        )
        if r.returncode == 0:
            return cert, key
    try:
        import trustme

        ca = trustme.CA()
        sc = ca.issue_cert("127.0.0.1", "localhost")
        sc.private_key_pem.write_to_path(key)
        sc.cert_chain_pems[0].write_to_path(cert)
        return cert, key
    except Exception:
        return None


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _preexec(core: int | None):  # type: ignore[no-untyped-def]
    def fn() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return fn


def cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])  # utime + stime
    except OSError:
        return None


def runq_wait_ns(pid: int) -> int | None:
    """Time the process's main thread spent runnable but waiting for a CPU."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def cpu_pressure() -> str:
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        return " ".join(x for x in some[1:3])
    except OSError:
        return "n/a"


def vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def read_line(proc: subprocess.Popen, timeout: float) -> str | None:  # type: ignore[type-arg]
    """One line from proc.stdout within timeout (None on timeout or EOF)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        ch = os.read(fd, 1)
        if not ch:
            return buf.decode(errors="replace") or None
        if ch == b"\n":
            return buf.decode(errors="replace")
        buf += ch
    return None


class Server:
    """A server process pinned to one core; stops on stdin EOF (and by deadline)."""

    def __init__(self, name: str, cmd: list[str], core: int | None) -> None:
        self.name = name
        self.error: str | None = None
        self.unavailable = False
        self.log_path = os.path.join(LOGS, f"{name}.log")
        self.logf = open(self.log_path, "ab")
        self.logf.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self.logf.flush()
        self.log_start = self.logf.tell()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.logf,
            preexec_fn=_preexec(core),
            cwd=ROOT,
        )
        line = read_line(self.proc, 30.0)
        if line and line.startswith("READY"):
            return
        if line and line.startswith("UNAVAILABLE"):
            self.unavailable = True
            self.error = line.split(" ", 1)[1] if " " in line else "unavailable"
        else:
            self.error = f"did not start (see {os.path.relpath(self.log_path, ROOT)})"
            tail = self._log_tail()
            if tail:
                self.error += f": {tail}"
        self.stop()

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                lines = [
                    x
                    for x in f.read().decode(errors="replace").splitlines()
                    if x.strip() and not x.startswith("=== ")
                ]
            return lines[-1][:160] if lines else ""
        except OSError:
            return ""

    def log_hint(self) -> str:
        """The last exception line the server logged during this run, if any."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                lines = [x.strip() for x in f.read().decode(errors="replace").splitlines()]
        except OSError:
            return ""
        for i in range(len(lines) - 1, -1, -1):
            x = lines[i]
            if x and ("Error" in x or "Exception" in x) and not x.startswith(("===", "Traceback")):
                prev = lines[i - 1] if i and not lines[i - 1].startswith("File ") else ""
                return (f"{prev} → {x}" if prev else x)[:200]
        return ""

    def death(self) -> str:
        rc = self.proc.poll()
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        tail = self._log_tail()
        return f"server process died ({how})" + (f": {tail}" if tail else "")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=3)
        for s in (self.proc.stdout, self.proc.stdin):
            try:
                if s:
                    s.close()
            except OSError:
                pass
        self.logf.close()


def run_json(cmd: list[str], core: int | None, timeout: float) -> dict[str, Any]:
    try:
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_preexec(core),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "errors": 1}
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    unavailable = [x for x in r.stdout.splitlines() if x.startswith("UNAVAILABLE")]
    if unavailable and not lines:
        return {"error": unavailable[0], "errors": 1, "unavailable": True}
    if not lines:
        err = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return {"error": err[:200], "errors": 1}
    try:
        return json.loads(lines[-1])  # type: ignore[no-any-return]
    except json.JSONDecodeError:
        return {"error": "unparsable output", "errors": 1}


# ----------------------------------------------------------------------------- the bench


@dataclass
class Sample:
    value: float | None
    srv_cpu: float | None = None
    gen_cpu: float | None = None
    srv_wait: float | None = None  # % of wall time runnable but not running (other load)
    gen_wait: float | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(
        self, args: argparse.Namespace, feats: dict[str, Any], cert: tuple[str, str] | None
    ) -> None:
        self.a = args
        self.feats = feats
        self.cert = cert
        self.loadgen = os.path.join(OUT, "loadgen")
        self.echosrv = os.path.join(OUT, "echosrv")
        # results[(workload, impl, loop)] -> samples; impl "C-ws"/"C-raw" for ceilings (loop "-")
        self.results: dict[tuple[str, str, str], list[Sample]] = {}
        self.client_results: dict[tuple[str, str, str], list[Sample]] = {}
        self.status: dict[tuple[str, str, str], str] = {}  # n/a or failure notes
        self.skip: set[tuple[str, ...]] = set()
        self.notes: list[str] = []  # e.g. servers killed from outside and restarted

    # -- helpers
    def workload_supported(self, w: Workload) -> str | None:
        if w.tls and (not self.feats["tls"] or not self.cert):
            return "no OpenSSL headers / certificate on this machine"
        if w.deflate and not self.feats["zlib"]:
            return "no zlib headers on this machine"
        return None

    def loadgen_cmd(
        self, w: Workload, port: int, mode: str, duration: float | None = None
    ) -> list[str]:
        a = self.a
        cmd = [
            self.loadgen,
            "--port",
            str(port),
            "--mode",
            mode,
            "--duration",
            str(duration if duration is not None else a.duration),
            "--warmup",
            str(a.warmup),
            "--size",
            str(w.size),
        ]
        if w.kind == "echo":
            cmd += ["--workload", "echo", "--conns", str(w.conns), "--inflight", str(w.inflight)]
        elif w.kind == "handshake":
            cmd += ["--workload", "handshake", "--concurrency", str(w.conns)]
        if w.tls:
            cmd.append("--tls")
        if w.deflate and mode == "ws":
            cmd.append("--deflate")
        if w.text:
            cmd.append("--text")
        return cmd

    def value_of(self, w: Workload, r: dict[str, Any]) -> float | None:
        key = "mb_per_s" if w.metric == "MB/s" else "per_s"
        v = r.get(key)
        return float(v) if isinstance(v, (int, float)) and v > 0 else None

    def measure(self, w: Workload, port: int, mode: str, srv_pid: int | None) -> Sample:
        t0 = cpu_ticks(srv_pid) if srv_pid else None
        q0 = runq_wait_ns(srv_pid) if srv_pid else None
        w0 = time.monotonic()
        r = run_json(
            self.loadgen_cmd(w, port, mode), self.a.gen_core, self.a.warmup + self.a.duration + 30
        )
        w1 = time.monotonic()
        t1 = cpu_ticks(srv_pid) if srv_pid else None
        q1 = runq_wait_ns(srv_pid) if srv_pid else None
        srv_cpu = srv_wait = None
        if t0 is not None and t1 is not None and w1 > w0:
            srv_cpu = 100.0 * (t1 - t0) / CLK_TCK / (w1 - w0)
        if q0 is not None and q1 is not None and w1 > w0:
            srv_wait = 100.0 * (q1 - q0) / 1e9 / (w1 - w0)
        err = r.get("error") or ""
        nerr = r.get("errors") or 0
        if nerr and isinstance(nerr, int) and nerr > 1:
            err = f"{nerr} errors, first: {err}" if err else f"{nerr} errors"
        elif nerr and not err:
            err = "1 error"
        return Sample(
            self.value_of(w, r),
            srv_cpu,
            r.get("cpu_pct"),
            srv_wait,
            r.get("runq_pct"),
            err,
            {k: r.get(k) for k in ("p50_us", "p99_us", "per_s", "mb_per_s", "errors")},
        )

    def server_cmd(self, impl: Impl, loop: str, config: str, port: int) -> list[str]:
        cmd = [
            PY,
            os.path.join(BENCH, impl.server),
            "--port",
            str(port),
            "--max-seconds",
            str(self.a.server_max_seconds),
        ]
        if loop == "uvloop":
            cmd.append("--uvloop")
        if config == "tls" and self.cert:
            cmd += ["--tls", *self.cert]
        if config == "deflate":
            cmd.append("--deflate")
        return cmd

    def add(self, key: tuple[str, str, str], s: Sample) -> None:
        self.results.setdefault(key, []).append(s)

    # -- server side, one round (the C ceiling is shuffled in as one more "implementation")
    def server_round(self, rnd: int, loop: str, with_ceiling: bool = True) -> None:
        wls = [w for w in self.a.wl if w.kind != "idle" and not self.workload_supported(w)]
        entries: list[Impl | None] = [IM[k] for k in self.a.impls if IM[k].runs_on(loop)]
        if self.a.ceiling and with_ceiling:
            entries.append(None)
        random.shuffle(entries)
        for impl in entries:
            if impl is None:
                self.ceiling(rnd, wls)
                continue
            for config in ("plain", "tls", "deflate"):
                todo = [w for w in wls if w.config == config]
                if config == "deflate" and not impl.deflate:
                    for w in todo:
                        self.status[(w.key, impl.key, loop)] = "n/a: no permessage-deflate"
                    continue
                todo = [w for w in todo if (w.key, impl.key, loop) not in self.skip]
                if not todo:
                    continue
                if (impl.key, loop, config) in self.skip:
                    continue
                port = free_port()
                name = f"{impl.key}-{loop}-{config}"
                srv = Server(name, self.server_cmd(impl, loop, config, port), self.a.server_core)
                if srv.error:
                    note = ("n/a: " if srv.unavailable else "failed: ") + srv.error
                    log(f"  {name}: {note}")
                    for w in todo:
                        self.status[(w.key, impl.key, loop)] = note
                    self.skip.add((impl.key, loop, config))
                    continue
                random.shuffle(todo)
                restarts = 0
                for w in todo:
                    s = None
                    for _attempt in range(2):
                        if not srv.alive() and restarts < 2:
                            # killed from outside (a shared machine): note it, start a fresh one
                            death = srv.death()
                            log(f"  {name}: {death}; restarting it")
                            self.notes.append(f"{name}, round {rnd}: {death}; restarted")
                            srv.stop()
                            restarts += 1
                            port = free_port()
                            srv = Server(
                                name, self.server_cmd(impl, loop, config, port), self.a.server_core
                            )
                            if srv.error:
                                break
                        if not srv.alive():
                            break
                        s = self.measure(w, port, impl.mode, srv.pid)
                        if not srv.alive():
                            # died during the measurement: the sample is not usable
                            s.error = f"{srv.death()}; {s.error}".rstrip("; ")
                            s.value = None
                        if s.value is not None:
                            break
                        if _attempt == 0:
                            log(f"  {impl.key} {loop} {w.key} failed ({s.error}); retrying once")
                    if s is None:
                        self.status[(w.key, impl.key, loop)] = f"failed: {srv.error or srv.death()}"
                        continue
                    self.add((w.key, impl.key, loop), s)
                    log(
                        f"  r{rnd} {loop:7s} {impl.key:10s} {w.key:4s} "
                        f"{fmt_num(s.value)} {w.metric}"
                        f"{'  ERROR ' + s.error if s.error else ''}"
                    )
                    if s.value is None:
                        # failed twice in a row: do not spend the next rounds on it
                        self.skip.add((w.key, impl.key, loop))
                        hint = srv.log_hint()
                        self.status[(w.key, impl.key, loop)] = f"failed: {s.error}" + (
                            f" (server log: `{hint}`)" if hint else ""
                        )
                srv.stop()

    # -- generator ceiling: the same load against C epoll echo servers
    def ceiling(self, rnd: int, wls: list[Workload]) -> None:
        for mode in ("ws", "raw"):
            for config in ("plain", "tls", "deflate"):
                todo = [w for w in wls if w.config == config]
                if not todo or (mode == "raw" and config == "deflate"):
                    continue
                port = free_port()
                cmd = [self.echosrv, "--port", str(port), "--mode", mode, "--max-seconds", "600"]
                if config == "tls":
                    assert self.cert
                    cmd += ["--tls", *self.cert]
                if config == "deflate":
                    cmd.append("--deflate")
                srv = Server(f"C-{mode}-{config}", cmd, self.a.server_core)
                if srv.error:
                    log(f"  C echo server {mode}/{config}: {srv.error}")
                    continue
                for w in todo:
                    s = self.measure(w, port, mode, srv.pid)
                    self.add((w.key, f"C-{mode}", "-"), s)
                    log(
                        f"  r{rnd} C-{mode:3s}   {w.key:4s} {fmt_num(s.value)} {w.metric}"
                        f" (gen CPU {cpu_cell([s], 'gen')})"
                        f"{'  ERROR ' + s.error if s.error else ''}"
                    )
                srv.stop()

    # -- client side, one round
    def client_round(self, rnd: int, loops: list[str]) -> None:
        servers: dict[str, Server] = {}
        ports: dict[str, int] = {}
        for mode in ("ws", "raw"):
            ports[mode] = free_port()
            srv = Server(
                f"C-{mode}-clients",
                [self.echosrv, "--port", str(ports[mode]), "--mode", mode, "--max-seconds", "600"],
                self.a.server_core,
            )
            if srv.error:
                log(f"  C echo server for clients: {srv.error}")
                for s in servers.values():
                    s.stop()
                return
            servers[mode] = srv
        try:
            for loop in loops:
                impls = [IM[k] for k in self.a.impls if IM[k].runs_on(loop)]
                random.shuffle(impls)
                for impl in impls:
                    for wk in self.a.client_workloads:
                        key = ("client-" + wk, impl.key, loop)
                        if key in self.skip:
                            continue
                        if impl.client is None:
                            self.status[key] = "n/a: no client benchmark"
                            self.skip.add(key)
                            continue
                        cmd = [
                            PY,
                            os.path.join(BENCH, impl.client),
                            "--port",
                            str(ports[impl.mode]),
                            "--workload",
                            wk,
                            "--duration",
                            str(self.a.duration),
                            "--warmup",
                            str(self.a.warmup),
                        ]
                        if loop == "uvloop":
                            cmd.append("--uvloop")
                        srv = servers[impl.mode]
                        t0, w0 = cpu_ticks(srv.pid), time.monotonic()
                        r = run_json(cmd, self.a.gen_core, self.a.warmup + self.a.duration + 40)
                        t1, w1 = cpu_ticks(srv.pid), time.monotonic()
                        if r.get("unavailable"):
                            self.status[("client-" + wk, impl.key, loop)] = (
                                "n/a: " + r["error"].split(" ", 1)[-1]
                            )
                            self.skip.add(key)
                            continue
                        v = r.get("per_s")
                        s = Sample(
                            float(v) if isinstance(v, (int, float)) and v > 0 else None,
                            100.0 * (t1 - t0) / CLK_TCK / (w1 - w0)
                            if t0 is not None and t1 is not None
                            else None,
                            r.get("cpu_pct"),
                            None,
                            r.get("runq_pct"),
                            r.get("error") or "",
                        )
                        self.client_results.setdefault(key, []).append(s)
                        log(
                            f"  r{rnd} client {loop:7s} {impl.key:10s} {wk} {fmt_num(s.value)} "
                            f"msgs/s{'  ERROR ' + s.error if s.error else ''}"
                        )
                        if s.value is None:
                            self.status[key] = f"failed: {s.error}"
                            # same client, same loop: the other workload would fail the same way
                            for other in self.a.client_workloads:
                                k2 = ("client-" + other, impl.key, loop)
                                self.skip.add(k2)
                                if other != wk and k2 not in self.client_results:
                                    self.status[k2] = f"skipped: failed on ({wk}): {s.error}"
        finally:
            for s in servers.values():
                s.stop()

    # -- (f) idle memory
    def memory_round(self, rnd: int, loop: str) -> None:
        w = WL["f"]
        impls = [IM[k] for k in self.a.impls if IM[k].runs_on(loop)]
        random.shuffle(impls)
        for impl in impls:
            key = ("f", impl.key, loop)
            if key in self.skip or (impl.key, loop, "plain") in self.skip:
                if key not in self.status and (impl.key, loop, "plain") in self.skip:
                    self.status[key] = self.status.get(("a", impl.key, loop), "failed")
                continue
            port = free_port()
            name = f"{impl.key}-{loop}-idle"
            srv = Server(name, self.server_cmd(impl, loop, "plain", port), self.a.server_core)
            if srv.error:
                self.status[key] = ("n/a: " if srv.unavailable else "failed: ") + srv.error
                self.skip.add(key)
                continue
            try:
                s = self._measure_idle(w, impl, port, srv)
            finally:
                srv.stop()
            self.add(key, s)
            log(
                f"  r{rnd} {loop:7s} {impl.key:10s} f    {fmt_num(s.value)} KiB/conn "
                f"({s.extra.get('opened')} conns opened in {fmt_num(s.extra.get('open_s'))} s)"
                f"{'  ERROR ' + s.error if s.error else ''}"
            )
            if s.value is None:
                self.skip.add(key)

    def _measure_idle(self, w: Workload, impl: Impl, port: int, srv: Server) -> Sample:
        # Warm the server's lazy paths (imports, first handler) before the baseline.
        warm = run_json(
            [
                self.loadgen,
                "--port",
                str(port),
                "--mode",
                impl.mode,
                "--duration",
                "0.2",
                "--warmup",
                "0.05",
                "--size",
                "32",
            ],
            self.a.gen_core,
            30,
        )
        if warm.get("error"):
            return Sample(None, error=f"warm-up echo failed: {warm['error']}")
        time.sleep(0.3)
        rss0 = vm_rss_kib(srv.pid)
        n = self.a.idle_conns
        cmd = [
            self.loadgen,
            "--port",
            str(port),
            "--mode",
            impl.mode,
            "--workload",
            "idle",
            "--conns",
            str(n),
            "--concurrency",
            "64",
            "--timeout",
            "60",
            "--hold-max",
            "120",
        ]
        gen = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=_preexec(self.a.gen_core),
        )
        try:
            line = read_line(gen, 150)
            info = json.loads(line) if line and line.startswith("{") else {}
            if not info.get("ready"):
                return Sample(None, error=info.get("error") or "idle connections never ready")
            time.sleep(1.0)  # let the server finish per-connection setup
            rss1 = vm_rss_kib(srv.pid)
            opened = int(info.get("opened", 0))
            err = info.get("error") or ""
            if opened < n:
                err = f"only {opened}/{n} connections opened" + (f" ({err})" if err else "")
            if not srv.alive() or rss0 is None or rss1 is None or opened == 0:
                return Sample(None, error=err or "server died")
            value = (rss1 - rss0) / opened
            return Sample(
                value,
                error=err,
                extra={
                    "opened": opened,
                    "open_s": info.get("open_s"),
                    "rss0_mib": rss0 / 1024,
                    "rss1_mib": rss1 / 1024,
                },
            )
        finally:
            try:
                assert gen.stdin is not None
                gen.stdin.write(b"\n")
                gen.stdin.close()
            except OSError:
                pass
            try:
                gen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait(timeout=5)
            if gen.stdout:
                gen.stdout.close()


def fmt_num(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def med(samples: list[Sample]) -> float | None:
    vals = [s.value for s in samples if s.value is not None]
    return statistics.median(vals) if vals else None


def best_sample(samples: list[Sample]) -> Sample:
    ok = [s for s in samples if s.value is not None]
    return max(ok, key=lambda s: s.value or 0.0) if ok else samples[-1]


def best_of(samples: list[Sample]) -> float | None:
    return best_sample(samples).value if samples else None


def med_attr(samples: list[Sample], attr: str) -> float | None:
    vals = [getattr(s, attr) for s in samples if getattr(s, attr) is not None]
    return statistics.median(vals) if vals else None


def cpu_cell(samples: list[Sample], who: str) -> str:
    """'busy% (wait%)': CPU used, and time runnable but waiting for a CPU taken by other load."""
    busy = med_attr(samples, f"{who}_cpu")
    wait = med_attr(samples, f"{who}_wait")
    if busy is None:
        return "–"
    return f"{busy:.0f}%" + (f" ({wait:.0f}%)" if wait is not None else "")


def spread(samples: list[Sample]) -> str:
    vals = [s.value for s in samples if s.value is not None]
    if len(vals) < 2:
        return "–"
    m = statistics.median(vals)
    return f"±{50.0 * (max(vals) - min(vals)) / m:.0f}%" if m else "–"


# ----------------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    v = {"python": platform.python_version()}
    for dist in ("websock", "websockets", "picows", "aiofastnet", "aiohttp", "uvloop"):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            v[dist] = "not installed"
    try:
        rev = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode == 0:
            v["websock_git"] = rev.stdout.strip() + (
                " + uncommitted changes" if dirty.stdout.strip() else ""
            )
        else:
            v["websock_git"] = "no commit yet (working tree)"
    except Exception:
        v["websock_git"] = "unknown"
    v["openssl"] = ssl.OPENSSL_VERSION
    try:
        import zlib

        v["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    except Exception:
        v["zlib"] = "?"
    return v


def source_fingerprint() -> str:
    """Hash of websock's source tree: the editable install picks up edits made during a run."""
    import hashlib

    h = hashlib.sha256()
    base = os.path.join(ROOT, "src", "websock")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".py", ".pyx", ".pxd", ".c", ".h")):
                p = os.path.join(dirpath, name)
                h.update(os.path.relpath(p, base).encode())
                try:
                    with open(p, "rb") as f:
                        h.update(f.read())
                except OSError:
                    pass
    return h.hexdigest()[:12]


def machine() -> dict[str, str]:
    m = {"kernel": f"{platform.system()} {platform.release()}", "arch": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    m["cores"] = str(os.cpu_count())
    m["usable"] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    try:
        with open("/proc/meminfo") as f:
            m["mem"] = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return m


def background_load(seconds: float = 1.0) -> float | None:
    """Percentage of all CPUs busy (by anything) over `seconds`, while we are idle."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
        return 100.0 * (1 - (i1 - i0) / (t1 - t0)) if t1 > t0 else None
    except OSError:
        return None


def write_report(b: Bench, meta: dict[str, Any], path: str) -> None:
    a = b.a
    L: list[str] = []
    v, m = meta["versions"], meta["machine"]
    L.append("# websock benchmark results")
    L.append("")
    L.append(
        f"Generated by `{meta['command']}` on {meta['date']} "
        f"(wall time {meta['wall_s'] / 60:.1f} min). How to read this: "
        "[README.md](README.md). Quote the ratios, not the absolute numbers."
    )
    L.append("")
    L.append("## Setup")
    L.append("")
    L.append(
        f"- Machine: {m.get('cpu', '?')}, {m['cores']} cores ({m['arch']}), "
        f"{m.get('mem', '?')} RAM, {m['kernel']}."
    )
    L.append(
        f"- Pinning: each server alone on core {a.server_core}, the load generator / client "
        f"on core {a.gen_core}."
        if a.server_core is not None
        else "- Pinning: none (fewer than 2 usable cores): numbers are not meaningful."
    )
    L.append(
        f"- Python {v['python']}; websock {v['websock']} ({v['websock_git']}); "
        f"websockets {v['websockets']}; picows {v['picows']} (with aiofastnet "
        f"{v['aiofastnet']}, which picows uses when installed); aiohttp {v['aiohttp']}; "
        f"uvloop {v['uvloop']}; {v['openssl']}; zlib {v['zlib']}."
    )
    if meta["src_before"] != meta["src_after"]:
        L.append(
            "- **Warning: websock's source (src/websock) changed during this run** "
            f"(fingerprint {meta['src_before']} → {meta['src_after']}): its rows mix versions."
        )
    else:
        L.append(f"- websock source fingerprint (src/websock): {meta['src_before']}.")
    L.append(
        f"- Load generator: benchmarks/loadgen.c (epoll, one thread), built with "
        f"`{meta['feats']['cc_version']}`; TLS {'on' if meta['feats']['tls'] else 'OFF'}, "
        f"zlib {'on' if meta['feats']['zlib'] else 'OFF'}."
    )
    L.append(
        f"- Method: {a.rounds} round(s); each measurement {a.warmup:g} s warm-up + "
        f"{a.duration:g} s counted; implementations shuffled within each round; median over "
        f"rounds. Loops: {', '.join(a.loops)}. (f) opens {a.idle_conns:,} connections."
    )
    bl0, bl1 = meta.get("busy_before"), meta.get("busy_after")
    L.append(
        f"- Background load (other processes on this shared machine): all-CPU busy "
        f"{fmt_num(bl0)}% before the run and {fmt_num(bl1)}% after it; load average "
        f"{meta['loadavg_before']} → {meta['loadavg_after']}; CPU pressure (PSI some) "
        f"{meta['psi_before']} → {meta['psi_after']}. "
        "Above ~10% the absolute numbers are depressed and noisier; ratios within a round "
        "are less affected."
    )
    L.append("")

    # ---- summary
    loops = a.loops
    L.append("## Summary: websock as a ratio")
    L.append("")
    L.append(
        "Throughput ratios >1 mean faster than the reference; for (f) memory, >1 means more "
        "memory per connection than the reference. On the sync row, websock is websock.sync, "
        "its peers are the threading servers (websockets.sync) and raw is the raw threaded "
        "TCP echo."
    )
    L.append("")
    hdr = (
        "| workload | "
        + " | ".join(
            f"{lp}: websock ÷ best peer | {lp}: websock ÷ raw | {lp}: best peer" for lp in loops
        )
        + " |"
    )
    L.append(hdr)
    L.append("|" + "---|" * (1 + 3 * len(loops)))
    for w in a.wl:
        cells = [f"{SHORT[w.key]} ({w.metric})"]
        for lp in loops:
            ws, best, bestname, raw = ratios_for(b, w, lp)
            cells.append(
                fmt_ratio(ws / best) if ws and best else status_short(b, w.key, subject(lp), lp)
            )
            cells.append(fmt_ratio(ws / raw) if ws and raw else "–")
            cells.append(
                f"{bestname} ({fmt_ratio(best / raw) if best and raw else '–'} raw)"
                if bestname
                else "–"
            )
        L.append("| " + " | ".join(cells) + " |")
    for wk in a.client_workloads:
        cells = [f"client {CLIENT_WORKLOADS[wk]} (msgs/s)"]
        for lp in loops:
            ws = med(b.client_results.get(("client-" + wk, subject(lp), lp), []))
            raw = med(b.client_results.get(("client-" + wk, "raw", lp), []))
            best, bestname = None, ""
            for impl in IMPLS:
                if impl.peer and impl.key in a.impls and impl.runs_on(lp):
                    v = med(b.client_results.get(("client-" + wk, impl.key, lp), []))
                    if v is not None and (best is None or v > best):
                        best, bestname = v, impl.label
            cells.append(
                fmt_ratio(ws / best)
                if ws and best
                else status_short(b, "client-" + wk, subject(lp), lp)
            )
            cells.append(fmt_ratio(ws / raw) if ws and raw else "–")
            cells.append(
                f"{bestname} ({fmt_ratio(best / raw) if best and raw else '–'} raw)"
                if bestname
                else "–"
            )
        L.append("| " + " | ".join(cells) + " |")
    L.append("")

    # ---- server tables
    L.append("## Server side (C load generator → one Python server process)")
    L.append("")
    for w in a.wl:
        unsupported = b.workload_supported(w)
        L.append(f"### {w.title}")
        L.append("")
        if unsupported:
            L.append(f"n/a: {unsupported}.")
            L.append("")
            continue
        better = "higher is better" if w.higher_is_better else "lower is better"
        extra = ""
        saturated = False
        if w.kind == "idle":
            L.append(
                f"| implementation | loop | KiB per connection ({better}) | vs best peer | "
                f"vs raw | spread | time to open {a.idle_conns:,} (s) |"
            )
            L.append("|---|---|---|---|---|---|---|")
        else:
            extra = " | p50 RTT µs" if w.kind == "echo" and w.key in ("a", "b", "g-b") else ""
            L.append(
                f"| implementation | loop | {w.metric} ({better}) | vs best peer | "
                f"vs raw | spread | server CPU (wait) | gen CPU (wait){extra} |"
            )
            L.append("|---|---|---|---|---|---|---|---|" + ("---|" if extra else ""))
        for lp in loops:
            _ws, best, _bn, raw = ratios_for(b, w, lp)
            for impl in [IM[k] for k in a.impls if IM[k].runs_on(lp)]:
                samples = b.results.get((w.key, impl.key, lp), [])
                val = med(samples)
                label = f"**{impl.label}**" if impl.key == subject(lp) else impl.label
                if val is None:
                    note = b.status.get((w.key, impl.key, lp))
                    if not note and samples:
                        note = "failed: " + (samples[-1].error or "no result")
                    note = (note or "not run").split(" (server log:")[0]
                    if len(note) > 90:
                        note = note[:87] + "…"
                    ncols = 4 if w.kind == "idle" else (5 if not extra else 6)
                    L.append(f"| {label} | {lp} | {note} |" + " |" * ncols)
                    continue
                vs_best = (val / best if w.higher_is_better else val / best) if best else None
                vs_raw = val / raw if raw else None
                warn = ""
                errs = [s.error for s in samples if s.error]
                if errs:
                    warn = " ⚠"
                    b.status.setdefault((w.key, impl.key, lp), "errors: " + errs[-1])
                if w.kind == "idle":
                    ext = [s.extra.get("open_s") for s in samples if s.extra.get("open_s")]
                    L.append(
                        f"| {label} | {lp} | {fmt_num(val)}{warn} | {fmt_ratio(vs_best)} | "
                        f"{fmt_ratio(vs_raw)} | {spread(samples)} | "
                        f"{fmt_num(statistics.median(ext)) if ext else '–'} |"
                    )
                else:
                    gmax = max((x.gen_cpu for x in samples if x.gen_cpu is not None), default=0)
                    if gmax >= GEN_SATURATED:
                        warn += " †"
                        saturated = True
                    row = (
                        f"| {label} | {lp} | {fmt_num(val)}{warn} | {fmt_ratio(vs_best)} | "
                        f"{fmt_ratio(vs_raw)} | {spread(samples)} | "
                        f"{cpu_cell(samples, 'srv')} | {cpu_cell(samples, 'gen')}"
                    )
                    if extra:
                        p50 = [s.extra.get("p50_us") for s in samples if s.extra.get("p50_us")]
                        row += f" | {fmt_num(statistics.median(p50)) if p50 else '–'}"
                    L.append(row + " |")
        if saturated:
            L.append("")
            L.append(
                f"† the generator was ≥{GEN_SATURATED}% busy in at least one sample of this row: "
                "the figure may be partly generator-limited (a floor for that server, not its "
                "ceiling)."
            )
        if w.kind != "idle":
            L.append("")
            cw = b.results.get((w.key, "C-ws", "-"), [])
            cr = b.results.get((w.key, "C-raw", "-"), [])
            fastest = max(
                (
                    med(b.results.get((w.key, i, lp), [])) or 0
                    for i in a.impls
                    if IM[i].mode == "ws"
                    for lp in loops
                ),
                default=0,
            )
            gen_cpu = [
                s.gen_cpu
                for i in a.impls
                for lp in loops
                for s in b.results.get((w.key, i, lp), [])
                if s.gen_cpu is not None
            ]
            parts = []
            if cw:
                label = "WebSocket" + (", deflate passthrough" if w.deflate else "")
                parts.append(
                    f"vs a C epoll echo server ({label}) **{fmt_num(best_of(cw))} {w.metric}** "
                    f"(best of {len(cw)}) at {cpu_cell([best_sample(cw)], 'gen')} generator "
                    "CPU (wait)"
                )
            if cr:
                parts.append(
                    f"raw TCP {fmt_num(best_of(cr))} {w.metric} at "
                    f"{cpu_cell([best_sample(cr)], 'gen')}"
                )
            if parts:
                text = f"**Generator ceiling**: {'; '.join(parts)}."
                if gen_cpu:
                    text += (
                        " During the Python-server runs above the generator used at most "
                        f"{max(gen_cpu):.0f}% of its core "
                        f"(median {statistics.median(gen_cpu):.0f}%)."
                    )
                cap = best_of(cw) if cw else None
                if cap and fastest > cap:
                    text += (
                        " The C server measured *below* the fastest Python WebSocket server here: "
                        "that is "
                        "other load on the machine stalling the C runs (see the wait figures), "
                        "not a generator limit."
                    )
                L.append(text)
        L.append("")

    # ---- client tables
    if a.client_workloads:
        L.append("## Client side (one Python client process → C epoll echo server)")
        L.append("")
        L.append(
            "Each client sends a message and awaits its echo, one message in flight per "
            "connection; the raw row is an asyncio.Protocol TCP client against the C server "
            "in raw mode. Messages per second, higher is better."
        )
        L.append("")
        hdr = (
            "| client | loop | "
            + " | ".join(
                f"{CLIENT_WORKLOADS[wk]} msgs/s | vs best peer | vs raw | client CPU (wait)"
                for wk in a.client_workloads
            )
            + " |"
        )
        L.append(hdr)
        L.append("|---|---|" + "---|---|---|---|" * len(a.client_workloads))
        for lp in loops:
            for impl in [IM[k] for k in a.impls if IM[k].runs_on(lp) and IM[k].client]:
                cells = [f"**{impl.label}**" if impl.key == subject(lp) else impl.label, lp]
                for wk in a.client_workloads:
                    samples = b.client_results.get(("client-" + wk, impl.key, lp), [])
                    val = med(samples)
                    peers = [
                        med(b.client_results.get(("client-" + wk, p.key, lp), []))
                        for p in IMPLS
                        if p.peer and p.key in a.impls and p.runs_on(lp)
                    ]
                    best = max((x for x in peers if x), default=None)
                    raw = med(b.client_results.get(("client-" + wk, "raw", lp), []))
                    if val is None:
                        note = b.status.get(("client-" + wk, impl.key, lp))
                        if not note and samples:
                            note = "failed: " + (samples[-1].error or "no result")
                        cells += [note or "not run", "", "", ""]
                    else:
                        warn = " ⚠" if any(s.error for s in samples) else ""
                        cells += [
                            fmt_num(val) + warn,
                            fmt_ratio(val / best if best else None),
                            fmt_ratio(val / raw if raw else None),
                            cpu_cell(samples, "gen"),
                        ]
                L.append("| " + " | ".join(cells) + " |")
        L.append("")

    notes = sorted({(k, s) for k, s in b.status.items() if not s.startswith("n/a: no permessage")})
    if notes or b.notes:
        L.append("## Failures, errors and n/a")
        L.append("")
        for (wk, ik, lp), s in notes:
            L.append(f"- {wk} / {ik} / {lp}: {s}")
        for n in b.notes:
            L.append(f"- {n}")
        L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def ratios_for(
    b: Bench, w: Workload, loop: str
) -> tuple[float | None, float | None, str, float | None]:
    ws = med(b.results.get((w.key, subject(loop), loop), []))
    raw = med(b.results.get((w.key, RAW.get(loop, "raw"), loop), []))
    best, bestname = None, ""
    for impl in IMPLS:
        if not impl.peer or impl.key not in b.a.impls or not impl.runs_on(loop):
            continue
        v = med(b.results.get((w.key, impl.key, loop), []))
        if v is None:
            continue
        if best is None or (v > best if w.higher_is_better else v < best):
            best, bestname = v, impl.label
    return ws, best, bestname, raw


def status_short(b: Bench, wk: str, ik: str, loop: str) -> str:
    s = b.status.get((wk, ik, loop))
    if not s:
        samples = b.results.get((wk, ik, loop), []) or b.client_results.get((wk, ik, loop), [])
        return "failed" if samples else "not run"
    return "n/a" if s.startswith("n/a") else "failed"


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="1 round, short measurements (~3 min)")
    p.add_argument("--rounds", type=int, help="rounds (default: 3, quick: 1)")
    p.add_argument(
        "--duration", type=float, help="counted seconds per measurement (default 1.5, quick 0.8)"
    )
    p.add_argument(
        "--warmup", type=float, help="warm-up seconds per measurement (default 0.4, quick 0.3)"
    )
    p.add_argument(
        "--workloads",
        default="a,b,c,d,e,f,g,h",
        help="comma list of a,b,c,d,e,f,g (= g-b,g-d),h (default: all)",
    )
    p.add_argument(
        "--impls",
        default="websock,websockets,picows,aiohttp,raw,websock-sync,websockets-sync,raw-sync",
        help="comma list of websock,websockets,picows,aiohttp,raw (asyncio servers) and "
        "websock-sync,websockets-sync,raw-sync (threading servers, on the 'sync' row)",
    )
    p.add_argument(
        "--loops",
        default=None,
        help="comma list of asyncio,uvloop,sync (default: asyncio and uvloop where installed "
        "if an asyncio server is chosen, sync if a threading server is)",
    )
    p.add_argument(
        "--clients", default="a,c", help="client-side workloads: comma list of a,c, or 'none'"
    )
    p.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip the C echo server (generator ceiling) measurements",
    )
    p.add_argument(
        "--idle-conns", type=int, default=None, help="connections for (f) (10,000; quick: 5,000)"
    )
    p.add_argument("--memory-rounds", type=int, help="rounds for (f) (default 1)")
    p.add_argument("--server-core", type=int, default=None)
    p.add_argument("--gen-core", type=int, default=None)
    p.add_argument("--output", default=os.path.join(BENCH, "RESULTS.md"))
    p.add_argument("--seed", type=int, default=None, help="shuffle seed (default: random)")
    a = p.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (0.6 if a.quick else 1.2)
    a.warmup = a.warmup if a.warmup is not None else (0.2 if a.quick else 0.3)
    a.idle_conns = a.idle_conns or (5000 if a.quick else 10000)
    a.memory_rounds = a.memory_rounds or 1
    keys: list[str] = []
    for k in a.workloads.split(","):
        k = k.strip()
        if k == "g":
            keys += ["g-b", "g-d"]
        elif k in WL:
            keys.append(k)
        elif k:
            p.error(f"unknown workload {k!r}")
    a.wl = [w for w in WORKLOADS if w.key in keys]
    a.impls = [k.strip() for k in a.impls.split(",") if k.strip()]
    for k in a.impls:
        if k not in IM:
            p.error(f"unknown implementation {k!r}")
    a.impls = [i.key for i in IMPLS if i.key in a.impls]  # stable table order
    if a.loops is None:
        a.loops = []
        if any(IM[k].io != SYNC for k in a.impls):
            try:
                import uvloop  # noqa: F401

                a.loops = ["asyncio", "uvloop"]
            except ImportError:
                a.loops = ["asyncio"]
        if any(IM[k].io == SYNC for k in a.impls):
            a.loops.append(SYNC)
    else:
        a.loops = [x.strip() for x in a.loops.split(",") if x.strip()]
        for lp in a.loops:
            if lp not in SUBJECT:
                p.error(f"unknown loop {lp!r}")
    a.client_workloads = (
        []
        if a.clients == "none"
        else [k.strip() for k in a.clients.split(",") if k.strip() in CLIENT_WORKLOADS]
    )
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        a.server_core = cores[0] if a.server_core is None else a.server_core
        a.gen_core = cores[1] if a.gen_core is None else a.gen_core
    else:
        log("fewer than 2 usable cores: running unpinned (results are not meaningful)")
    a.server_max_seconds = 600
    return a


def main() -> None:
    a = parse_args()
    if a.seed is not None:
        random.seed(a.seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.idle_conns + 200 and any(w.kind == "idle" for w in a.wl):
        log(
            f"RLIMIT_NOFILE hard limit {hard} < {a.idle_conns} + 200: (f) will fail; "
            "raise it (ulimit -Hn) or pass --idle-conns"
        )
    feats = build()
    cert = make_cert()
    t_start = time.monotonic()
    meta: dict[str, Any] = {
        "command": " ".join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "machine": machine(),
        "feats": feats,
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "busy_before": background_load(),
        "psi_before": cpu_pressure(),
        "src_before": source_fingerprint(),
    }
    b = Bench(a, feats, cert)
    log(
        f"workloads {[w.key for w in a.wl]}, impls {a.impls}, loops {a.loops}, "
        f"{a.rounds} round(s) x ({a.warmup}+{a.duration}) s"
    )
    for rnd in range(1, a.rounds + 1):
        log(f"round {rnd}/{a.rounds}: servers")
        loops = list(a.loops)
        random.shuffle(loops)
        for n, lp in enumerate(loops):
            # the C ceiling (loop-independent) once per round, shuffled into one loop's turn
            b.server_round(rnd, lp, with_ceiling=n == 0)
        if a.client_workloads:
            log(f"round {rnd}/{a.rounds}: clients")
            b.client_round(rnd, loops)
    if any(w.kind == "idle" for w in a.wl):
        for rnd in range(1, a.memory_rounds + 1):
            log(f"memory round {rnd}/{a.memory_rounds}")
            for lp in a.loops:
                b.memory_round(rnd, lp)
    meta["busy_after"] = background_load()
    meta["psi_after"] = cpu_pressure()
    meta["src_after"] = source_fingerprint()
    meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["wall_s"] = time.monotonic() - t_start
    write_report(b, meta, a.output)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(
            {
                "meta": meta,
                "server": {"|".join(k): [s.__dict__ for s in v] for k, v in b.results.items()},
                "client": {
                    "|".join(k): [s.__dict__ for s in v] for k, v in b.client_results.items()
                },
                "status": {"|".join(k): v for k, v in b.status.items()},
            },
            f,
            indent=1,
        )
    log(f"wrote {os.path.relpath(a.output, ROOT)} in {meta['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
