#!/usr/bin/env python3
# ruff: noqa: E501  (the report's markdown table rows are long lines by nature)
"""Fan-out benchmark: one publisher, many subscribers (issue "Fan-out at scale").

    .venv/bin/python benchmarks/bench_fanout.py --quick    # ~2-3 minutes, 1 round
    .venv/bin/python benchmarks/bench_fanout.py            # ~10 minutes, 3 rounds

1. Fan-out, in one server process pinned to core 0: websock.broadcast() vs websockets'
   broadcast() vs a sequential ``await ws.send()`` loop (websock's), at 1,000 / 10,000 /
   50,000 subscribers opened by benchmarks/fanout_sub.c (pinned to core 1).  Implementations
   alternate in a shuffled order within each round; each measurement uses a fresh server.
2. Cross-process: websock.pubsub.Hub in two server processes joined through a redis-server
   started here on a free port; subscribers on B, publisher on A (through Redis) alternated
   with the publisher on B (the same hub, local), one message in flight.

Appends (or replaces) its section in benchmarks/RESULTS.md between markers and writes the
raw samples to benchmarks/out/fanout.json.  See benchmarks/README.md, "Fan-out".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, "out")
LOGS = os.path.join(OUT, "logs")
PY = sys.executable
SERVER = os.path.join(BENCH, "servers", "fanout_server.py")
START = "<!-- bench_fanout.py: start -->"
END = "<!-- bench_fanout.py: end -->"

LABEL = {
    "websock": "websock.broadcast()",
    "websockets": "websockets broadcast()",
    "websock-send": "websock `await ws.send()` loop",
    "websockets-send": "websockets `await ws.send()` loop",
    "hub": "websock.pubsub.Hub.publish() (local)",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build() -> str:
    os.makedirs(LOGS, exist_ok=True)
    src = os.path.join(BENCH, "fanout_sub.c")
    exe = os.path.join(OUT, "fanout_sub")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            sys.exit("bench_fanout.py: no C compiler")
        subprocess.run([cc, "-O2", "-o", exe, src], check=True, timeout=120)
        log(f"built {os.path.relpath(exe, ROOT)}")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def preexec(core: int | None, nofile: int = 200_000):  # type: ignore[no-untyped-def]
    def fn() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        except (ValueError, OSError):
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return fn


class Proc:
    """A server process; stops when its stdin closes (lifeline) or after max-seconds."""

    def __init__(self, name: str, cmd: list[str], core: int | None, ready: str = "READY"):
        self.name = name
        self.logf = open(os.path.join(LOGS, f"fanout-{name}.log"), "ab")
        self.logf.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self.logf.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.logf,
            preexec_fn=preexec(core),
            cwd=ROOT,
        )
        self.ok = False
        if ready:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode(errors="replace")
            self.ok = line.startswith(ready)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        self.logf.close()


def start_server(impl: str, core: int | None, redis: str | None = None, tag: str = "") -> Proc:
    port = free_port()
    cmd = [PY, SERVER, "--port", str(port), "--impl", impl, "--max-seconds", "900"]
    if redis:
        cmd += ["--redis", redis]
    p = Proc(f"{impl}{tag}", cmd, core)
    p.port = port  # type: ignore[attr-defined]
    return p


def run_sub(
    exe: str,
    a: argparse.Namespace,
    port: int,
    pub_port: int,
    conns: int,
    window: int,
    server_pid: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    cmd = [
        exe,
        "--port",
        str(port),
        "--pub-port",
        str(pub_port),
        "--conns",
        str(conns),
        "--src-ips",
        str(a.src_ips),
        "--concurrency",
        str(a.concurrency),
        "--window",
        str(window),
        "--size",
        str(a.size),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--timeout",
        str(30 + conns / 500),
        "--stall",
        str(a.stall),
        "--server-pid",
        str(server_pid),
    ]
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            preexec_fn=preexec(a.gen_core),
            timeout=60 + conns / 250 + warmup + duration,
        )
        line = (r.stdout.strip().splitlines() or ["{}"])[-1]
        res = json.loads(line)
    except subprocess.TimeoutExpired:
        res = {"errors": 1, "error": "generator timed out"}
    except json.JSONDecodeError:
        res = {
            "errors": 1,
            "error": f"bad generator output: {r.stdout[-200:]!r} {r.stderr[-200:]!r}",
        }
    res["wall_s"] = round(time.monotonic() - t0, 2)
    return res


def cpu_pressure() -> str:
    try:
        with open("/proc/pressure/cpu") as f:
            return " ".join(f.readline().split()[1:3])
    except OSError:
        return "n/a"


def busy_fraction(seconds: float = 0.5) -> float:
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v), idle

    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


# ----------------------------------------------------------------------------- fan-out


def fanout(exe: str, a: argparse.Namespace, samples: list[dict[str, Any]]) -> None:
    for rnd in range(1, a.rounds + 1):
        for n in a.sizes:
            impls = list(a.impls)
            random.shuffle(impls)
            for impl in impls:
                srv = start_server(impl, a.server_core, tag=f"-{n}")
                if not srv.ok:
                    res = {"errors": 1, "error": "server did not start (see out/logs)"}
                else:
                    res = run_sub(
                        exe,
                        a,
                        srv.port,
                        srv.port,
                        n,
                        a.window,
                        srv.pid,  # type: ignore[attr-defined]
                        a.warmup,
                        a.duration,
                    )
                srv.stop()
                res.update(round=rnd, impl=impl, n=n)
                samples.append(res)
                log(
                    f"round {rnd} n={n:>6} {impl:<16} "
                    + (
                        f"{res.get('deliveries_per_s', 0):>10,.0f} deliveries/s  "
                        f"p50 {res.get('lat_p50_us', 0) / 1000:7.1f} ms  "
                        f"p99 {res.get('lat_p99_us', 0) / 1000:7.1f} ms  "
                        f"cpu/deliv {1e6 * res.get('server_cpu_s', 0) / max(1, res.get('deliveries', 0)):5.1f} µs  "
                        f"open {res.get('open_s', 0):.1f} s"
                        if not res.get("errors")
                        else f"FAILED: {res.get('error')}"
                    )
                )


# ----------------------------------------------------------------------------- Redis


def start_redis(core: int | None) -> tuple[Proc | None, str]:
    exe = shutil.which("redis-server")
    if not exe:
        return None, "redis-server not found"
    port = free_port()
    cmd = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ]
    p = Proc("redis", cmd, core, ready="")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    p.port = port  # type: ignore[attr-defined]
                    return p, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    p.proc.terminate()
    return None, "redis-server did not answer"


def cross_process(exe: str, a: argparse.Namespace, samples: list[dict[str, Any]]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    redis, url = start_redis(a.gen_core)
    if redis is None:
        info["error"] = url
        log(f"Redis part skipped: {url}")
        return info
    try:
        out = subprocess.run(
            [shutil.which("redis-server") or "redis-server", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        info["redis_version"] = out.split(" v=")[1].split()[0] if " v=" in out else out
    except Exception:
        info["redis_version"] = "?"
    # B (subscribers, the fan-out) alone on the server core; A (publisher side) and
    # redis-server on the generator's core: in this mode it only has one message in flight.
    b = start_server("hub", a.server_core, redis=url, tag="-B")
    srv_a = start_server("hub", a.gen_core, redis=url, tag="-A")
    try:
        if not (b.ok and srv_a.ok):
            info["error"] = "hub servers did not start (see out/logs)"
            return info
        for rnd in range(1, a.rounds + 1):
            for n in a.redis_sizes:
                modes = ["redis", "local"]
                random.shuffle(modes)
                for mode in modes:
                    pub_port = srv_a.port if mode == "redis" else b.port  # type: ignore[attr-defined]
                    res = run_sub(
                        exe,
                        a,
                        b.port,
                        pub_port,
                        n,
                        1,
                        b.pid,  # type: ignore[attr-defined]
                        a.warmup,
                        a.redis_duration,
                    )
                    res.update(round=rnd, impl=f"hub-{mode}", n=n, mode=mode)
                    samples.append(res)
                    log(
                        f"round {rnd} redis n={n:>5} {mode:<6} "
                        + (
                            f"p50 {res.get('lat_p50_us', 0):9.0f} µs  p99 "
                            f"{res.get('lat_p99_us', 0):9.0f} µs  "
                            f"{res.get('messages_per_s', 0):7.1f} msgs/s"
                            if not res.get("errors")
                            else f"FAILED: {res.get('error')}"
                        )
                    )
    finally:
        srv_a.stop()
        b.stop()
        redis.stop()
    return info


# ----------------------------------------------------------------------------- report


def med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if x is None else f"{x:{spec}}{suffix}"


def ok(s: dict[str, Any]) -> bool:
    return not s.get("errors") and s.get("deliveries", 0) > 0


def per_delivery_us(s: dict[str, Any], key: str = "server_cpu_s") -> float | None:
    v = s.get(key)
    if v is None or v < 0 or not s.get("deliveries"):
        return None
    return 1e6 * v / s["deliveries"]


def report(
    a: argparse.Namespace,
    samples: list[dict[str, Any]],
    rinfo: dict[str, Any],
    meta: dict[str, Any],
) -> str:
    L: list[str] = []
    w = L.append
    w(START)
    w("")
    w("## Fan-out at scale (`benchmarks/bench_fanout.py`)")
    w("")
    w(
        f"Generated by `{meta['command']}` on {meta['date']} (wall time {meta['wall_s'] / 60:.1f} min). "
        'How it works and how to read it: README.md, "Fan-out". Quote the ratios.'
    )
    w("")
    fan = [s for s in samples if s["impl"] in a.impls]
    by = lambda impl, n: [s for s in fan if s["impl"] == impl and s["n"] == n and ok(s)]  # noqa: E731

    def ratios(x: str, y: str, n: int, key: str, invert: bool = False) -> list[float]:
        out = []
        for rnd in range(1, a.rounds + 1):
            sx = [s for s in by(x, n) if s["round"] == rnd]
            sy = [s for s in by(y, n) if s["round"] == rnd]
            if sx and sy:
                vx = sx[0][key] if key in sx[0] else per_delivery_us(sx[0], key[4:])
                vy = sy[0][key] if key in sy[0] else per_delivery_us(sy[0], key[4:])
                if vx and vy:
                    out.append(vy / vx if invert else vx / vy)
        return out

    def rcell(x: str, y: str, n: int, key: str = "deliveries_per_s", invert: bool = False) -> str:
        rs = ratios(x, y, n, key, invert)
        if not rs:
            return "n/a"
        m = statistics.median(rs)
        rng = f" ({min(rs):.2f}-{max(rs):.2f})" if len(rs) > 1 else ""
        return f"**{m:.2f}×**{rng}"

    w("### Ratios (median of per-round ratios; range over rounds in parentheses)")
    w("")
    w(
        "Deliveries/s = subscriber-messages received per second with the publisher going as "
        "fast as every subscriber receives everything. Each ratio compares two servers "
        "measured in the same round. >1 = websock better."
    )
    w("")
    others = [i for i in a.impls if i != "websock"]
    head = (
        "| subscribers | "
        + " | ".join(f"websock.broadcast ÷ {LABEL[o]}, deliveries/s" for o in others)
        + " | server CPU per delivery, websockets broadcast ÷ websock.broadcast | user-space CPU per delivery, websockets ÷ websock |"
    )
    w(head)
    w("|" + "---|" * (len(others) + 3))
    for n in a.sizes:
        cells = [rcell("websock", o, n) for o in others]
        cpu = (
            rcell("websock", "websockets", n, "per_server_cpu_s", invert=True)
            if "websockets" in a.impls
            else "n/a"
        )
        ucpu = (
            rcell("websock", "websockets", n, "per_server_user_s", invert=True)
            if "websockets" in a.impls
            else "n/a"
        )
        w(f"| {n:,} | " + " | ".join(cells) + f" | {cpu} | {ucpu} |")
    w("")
    if "websockets" in a.impls and 10000 in a.sizes:
        rs = ratios("websock", "websockets", 10000, "deliveries_per_s")
        if rs:
            m = statistics.median(rs)
            w(
                f'Target "≥ 3× websockets\' broadcast at 10,000 subscribers": **{"met" if m >= 3 else "not met"}** '
                f"({m:.2f}× deliveries/s)."
            )
            w("")

    w("### Absolute numbers (medians over rounds; this shared 2-core VM, see caveats)")
    w("")
    w(
        "| subscribers | implementation | deliveries/s | messages published/s | publish→receive p50 | p99 | "
        "server CPU per delivery (user part) | server CPU busy (runq wait) | generator CPU (wait) | "
        "open N conns | rounds ok |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in a.sizes:
        for impl in a.impls:
            ss = by(impl, n)
            allss = [s for s in fan if s["impl"] == impl and s["n"] == n]
            if not ss:
                err = next((s.get("error") for s in allss if s.get("error")), "no sample")
                w(
                    f"| {n:,} | {LABEL[impl]} | failed: {str(err)[:90]} | | | | | | | | 0/{len(allss)} |"
                )
                continue
            dps = med([s["deliveries_per_s"] for s in ss])
            mps = med([s["messages_per_s"] for s in ss])
            p50 = med([s["lat_p50_us"] / 1000 for s in ss])
            p99 = med([s["lat_p99_us"] / 1000 for s in ss])
            cpd = med([per_delivery_us(s) for s in ss])
            upd = med([per_delivery_us(s, "server_user_s") for s in ss])
            busy = med([100 * s["server_cpu_s"] / s["window_s"] for s in ss])
            swait = med([100 * max(0, s["server_wait_s"]) / s["window_s"] for s in ss])
            gcpu = med([100 * s["gen_cpu_s"] / s["window_s"] for s in ss])
            gwait = med([100 * max(0, s["gen_wait_s"]) / s["window_s"] for s in ss])
            opn = med([s["open_s"] for s in ss])
            w(
                f"| {n:,} | {LABEL[impl]} | {fmt(dps)} | {fmt(mps, ',.1f')} | {fmt(p50, ',.1f', ' ms')} | "
                f"{fmt(p99, ',.1f', ' ms')} | {fmt(cpd, '.1f', ' µs')} ({fmt(upd, '.1f', ' µs')}) | "
                f"{fmt(busy, '.0f', '%')} ({fmt(swait, '.0f', '%')}) | {fmt(gcpu, '.0f', '%')} "
                f"({fmt(gwait, '.0f', '%')}) | {fmt(opn, '.1f', ' s')} | {len(ss)}/{len(allss)} |"
            )
    w("")
    bad = [s for s in fan if s.get("gaps") or s.get("dups")]
    if bad:
        w(
            f"Ordering: {len(bad)} sample(s) saw gaps or duplicates in a subscriber's sequence "
            "(messages dropped by a slow-consumer policy)."
        )
    else:
        w(
            "Every subscriber received every message in order in every sample (no gap, no duplicate)."
        )
    w("")

    w("### Cross-process through Redis (websock.pubsub.Hub)")
    w("")
    if rinfo.get("error"):
        w(f"Not measured: {rinfo['error']}.")
    else:
        w(
            f"redis-server {rinfo.get('redis_version', '?')} started on a free port; hub A "
            "(publisher's server) and redis-server on core 1 with the generator, hub B "
            "(subscribers) on core 0; one message in flight (the next is published when every "
            'subscriber has the previous one). "local" = the publisher connected to B (same '
            'hub, no Redis hop), alternated with "redis" in each round.'
        )
        w("")
        w(
            "| subscribers on B | path | publish→receive p50 | p99 | messages/s | Redis hop, p50 (redis − local) | rounds ok |"
        )
        w("|---|---|---|---|---|---|---|")
        for n in a.redis_sizes:
            p50s = {}
            for mode in ("redis", "local"):
                ss = [s for s in samples if s["impl"] == f"hub-{mode}" and s["n"] == n and ok(s)]
                alls = [s for s in samples if s["impl"] == f"hub-{mode}" and s["n"] == n]
                if not ss:
                    err = next((s.get("error") for s in alls if s.get("error")), "no sample")
                    w(f"| {n:,} | {mode} | failed: {str(err)[:90]} | | | | 0/{len(alls)} |")
                    continue
                p50 = med([s["lat_p50_us"] for s in ss])
                p99 = med([s["lat_p99_us"] for s in ss])
                mps = med([s["messages_per_s"] for s in ss])
                p50s[mode] = p50
                hop = ""
                if mode == "local" and "redis" in p50s and p50 is not None:
                    hop = fmt(p50s["redis"] - p50, ",.0f", " µs")
                w(
                    f"| {n:,} | {mode} | {fmt(p50, ',.0f', ' µs')} | {fmt(p99, ',.0f', ' µs')} | "
                    f"{fmt(mps, ',.1f')} | {hop} | {len(ss)}/{len(alls)} |"
                )
        w("")

    w("### Setup and caveats")
    w("")
    w(
        f"- Machine: {meta['machine']}. Python {meta['python']}; websock {meta['websock']}; "
        f"websockets {meta['websockets']}. Server pinned to core {a.server_core}, "
        f"generator (benchmarks/fanout_sub.c, one thread, epoll) to core {a.gen_core}."
    )
    w(
        f"- {a.rounds} round(s); per measurement a fresh server, N subscribers opened "
        f"({a.concurrency} handshakes in flight, source addresses 127.0.0.2-127.0.0.{1 + a.src_ips}), "
        f"then {a.warmup} s warm-up and {a.duration} s counted; {a.size}-byte binary messages, "
        f"window of {a.window} messages not yet delivered to every subscriber; compression off; "
        "implementations shuffled within each round."
    )
    for fit, want in getattr(a, "capped", {}).items():
        w(
            f"- **{want:,} subscribers could not be measured**: the open-files hard limit "
            f"(RLIMIT_NOFILE) is {a.nofile_hard:,} here and cannot be raised (no "
            f"CAP_SYS_RESOURCE), and one server process must hold every connection; the "
            f'{fit:,} row is the largest that fits (websock\'s max_connections="auto" is 90% '
            "of the limit). Run as a user allowed to raise it (`ulimit -Hn 200000`) for 50,000."
        )
    w(
        f"- Background load: all-CPU busy {meta['busy_before']:.0f}% before, {meta['busy_after']:.0f}% after; "
        f"load average {meta['load_before']} → {meta['load_after']}; CPU pressure (PSI some) "
        f"{meta['psi_before']} → {meta['psi_after']}."
    )
    if meta["src_before"] != meta["src_after"]:
        w("- **Warning: src/websock changed during the run**: websock's samples mix versions.")
    waits = [100 * max(0, x["server_wait_s"]) / x["window_s"] for x in fan if ok(x)]
    if waits and statistics.median(waits) > 20:
        w(
            f"- **The server waited for its CPU {statistics.median(waits):.0f}% of the counted "
            f"time (median; {min(waits):.0f}-{max(waits):.0f}%)**: other jobs ran on its core. "
            "Deliveries/s and latencies then mostly measure the share of core 0 the server "
            "got, and their ratios swing from round to round; **server CPU per delivery** "
            "(CPU time actually used ÷ deliveries) is the figure to quote, and its user part "
            "most of all."
        )
    w(
        "- Loopback: every delivery is one send() per subscriber socket, and on loopback the "
        "sender's CPU also pays the receiver's TCP processing (and the wake-up of the "
        "generator). The kernel part (server CPU minus user part) is the same work for every "
        "implementation, so it compresses the ratios: the user-space column shows the "
        "libraries' own cost per delivery."
    )
    w(
        "- Two cores shared by the server, the generator and other jobs: compare rows within "
        "the same run, not with other machines. Latency with a window of "
        f"{a.window} includes the time the message waits behind the previous broadcast; it "
        "grows with N because one broadcast to N sockets takes N sends."
    )
    w("")
    w(END)
    return "\n".join(L) + "\n"


def write_section(path: str, text: str) -> None:
    try:
        with open(path) as f:
            cur = f.read()
    except FileNotFoundError:
        cur = ""
    if START in cur and END in cur:
        pre, rest = cur.split(START, 1)
        _, post = rest.split(END, 1)
        new = pre + text.rstrip("\n") + post
    else:
        new = cur.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)


def source_fingerprint() -> str:
    import hashlib

    h = hashlib.sha256()
    src = os.path.join(ROOT, "src", "websock")
    for dp, _, fs in sorted(os.walk(src)):
        for fn in sorted(fs):
            if fn.endswith(".py"):
                with open(os.path.join(dp, fn), "rb") as f:
                    h.update(fn.encode() + f.read())
    return h.hexdigest()[:12]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="1 round, short windows (~2-3 min)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--sizes", help="subscriber counts (default 1000,10000,50000)")
    p.add_argument(
        "--impls",
        default="websock,websockets,websock-send",
        help="of websock,websockets,websock-send,websockets-send,hub",
    )
    p.add_argument("--window", type=int, default=2, help="messages in flight (fan-out part)")
    p.add_argument("--size", type=int, default=64, help="message size in bytes (16-200)")
    p.add_argument("--warmup", type=float)
    p.add_argument("--duration", type=float)
    p.add_argument("--redis-sizes", help="subscribers on B in the Redis part (default 10,1000)")
    p.add_argument("--redis-duration", type=float)
    p.add_argument("--no-redis", action="store_true")
    p.add_argument("--no-fanout", action="store_true")
    p.add_argument("--src-ips", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--stall", type=float, default=10.0)
    p.add_argument("--output", default=os.path.join(BENCH, "RESULTS.md"))
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--report-only",
        metavar="JSON",
        help="rewrite the RESULTS.md section from a raw file (benchmarks/out/fanout.json)",
    )
    a = p.parse_args()
    if a.report_only:
        with open(a.report_only) as f:
            d = json.load(f)
        ra = argparse.Namespace(**d["args"])
        ra.capped = {int(k): v for k, v in ra.capped.items()}
        write_section(a.output, report(ra, d["samples"], d["redis"], d["meta"]))
        log(
            f"rewrote the fan-out section of {os.path.relpath(a.output, ROOT)} from {a.report_only}"
        )
        return
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if a.quick else 1.0)
    a.duration = a.duration or (1.5 if a.quick else 2.5)
    a.redis_duration = a.redis_duration or (1.5 if a.quick else 2.5)
    a.sizes = [int(x) for x in (a.sizes or "1000,10000,50000").split(",") if x]
    a.redis_sizes = [int(x) for x in (a.redis_sizes or "10,1000").split(",") if x]
    a.impls = [x.strip() for x in a.impls.split(",") if x.strip()]
    for i in a.impls:
        if i not in LABEL:
            p.error(f"unknown implementation {i!r}")
    if a.seed is not None:
        random.seed(a.seed)
    cores = sorted(os.sched_getaffinity(0))
    a.server_core, a.gen_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200_000, 200_000))
    except (ValueError, OSError):
        pass
    # One process per side holds every connection: N + a few hundred descriptors. Without
    # CAP_SYS_RESOURCE the hard limit cannot be raised; websock's max_connections="auto" is
    # 90% of it. Sizes above what fits are replaced by the largest that does (and said so).
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fit = int(hard * 0.9) - 500 if hard != resource.RLIM_INFINITY else 10**9
    a.capped = {}
    for i, n in enumerate(a.sizes):
        if n > fit:
            a.capped[fit] = n
            a.sizes[i] = fit
            log(
                f"{n:,} subscribers do not fit under RLIMIT_NOFILE {hard:,} (hard limit, cannot "
                f"be raised here): measuring {fit:,} instead"
            )
    a.sizes = sorted(set(a.sizes))
    a.nofile_hard = hard
    exe = build()
    import platform
    from importlib import metadata

    def ver(d: str) -> str:
        try:
            return metadata.version(d)
        except Exception:
            return "n/a"

    meta: dict[str, Any] = {
        "command": " ".join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "websock": ver("pywebsock"),
        "websockets": ver("websockets"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "busy_before": busy_fraction(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "psi_before": cpu_pressure(),
        "src_before": source_fingerprint(),
    }
    t0 = time.monotonic()
    samples: list[dict[str, Any]] = []
    rinfo: dict[str, Any] = {}
    if not a.no_fanout:
        fanout(exe, a, samples)
    if not a.no_redis:
        rinfo = cross_process(exe, a, samples)
    else:
        rinfo = {"error": "skipped (--no-redis)"}
    meta.update(
        wall_s=time.monotonic() - t0,
        busy_after=busy_fraction(),
        load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        psi_after=cpu_pressure(),
        src_after=source_fingerprint(),
    )
    raw = os.path.join(OUT, "fanout-quick.json" if a.quick else "fanout.json")
    with open(raw, "w") as f:
        json.dump(
            {
                "meta": meta,
                "args": {k: v for k, v in vars(a).items()},
                "redis": rinfo,
                "samples": samples,
            },
            f,
            indent=1,
        )
    text = report(a, samples, rinfo, meta)
    write_section(a.output, text)
    log(
        f"wrote {os.path.relpath(a.output, ROOT)} (section) and {os.path.relpath(raw, ROOT)} "
        f"in {meta['wall_s'] / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
