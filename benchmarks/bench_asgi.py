#!/usr/bin/env python3
# ruff: noqa: E501  (the report's markdown table rows are long lines by nature)
"""ASGI benchmark: a FastAPI WebSocket echo endpoint on uvicorn, websock's backend
(``ws=websock.asgi.WebSocketProtocol``) against uvicorn's own (issue 13, item 3).

    .venv/bin/python benchmarks/bench_asgi.py --quick    # 3 rounds, short windows, ~2 min
    .venv/bin/python benchmarks/bench_asgi.py            # 5 rounds, ~5-6 min

Servers (benchmarks/servers/asgi_fastapi_echo.py, one process each, pinned to core 0): the
same FastAPI app and uvicorn settings with ``--ws websock``, ``websockets-sansio``,
``wsproto`` and ``websockets`` (uvicorn's deprecated legacy backend, when it loads), plus
plain ``websock.serve`` (servers/ws_websock.py) as a reference row: what the ASGI layer
(uvicorn + Starlette/FastAPI + the ASGI message dicts) costs. Load: benchmarks/loadgen.c
(pinned to core 1), workloads (a), (b), (c), (e) of benchmarks/run.py, whose helpers
(build, Server, Bench.measure) this script reuses. Within each round every server is started
fresh, then for each workload (in a shuffled order) every server is measured once, in a
shuffled order. Ratios: websock's backend ÷ the best uvicorn backend of the same round,
median over rounds.

Appends (or replaces) its section in benchmarks/RESULTS.md between markers and writes the
raw samples to benchmarks/out/asgi.json (asgi-quick.json with --quick). See
benchmarks/README.md, "ASGI".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import run as R  # noqa: E402  (benchmarks/run.py: build(), Server, Bench.measure, ...)

ROOT = R.ROOT
OUT = R.OUT
PY = sys.executable
START = "<!-- bench_asgi.py: start -->"
END = "<!-- bench_asgi.py: end -->"
ASGI_SERVER = os.path.join(BENCH, "servers", "asgi_fastapi_echo.py")
PLAIN_SERVER = os.path.join(BENCH, "servers", "ws_websock.py")


@dataclass(frozen=True)
class Impl:
    key: str
    label: str
    ws: str | None  # uvicorn --ws value; None: plain websock.serve (no uvicorn)
    peer: bool  # a uvicorn backend websock's is compared with


IMPLS = [
    Impl("websock", "uvicorn + websock.asgi.WebSocketProtocol", "websock", False),
    Impl("websockets-sansio", "uvicorn --ws websockets-sansio", "websockets-sansio", True),
    Impl("wsproto", "uvicorn --ws wsproto", "wsproto", True),
    Impl("websockets", "uvicorn --ws websockets (legacy, deprecated)", "websockets", True),
    Impl("websock-serve", "plain websock.serve (reference, no ASGI)", None, False),
]
IM = {i.key: i for i in IMPLS}
WORKLOAD_KEYS = ["a", "b", "c", "e"]
TARGET = ("b", 1.5)  # websock ÷ best uvicorn backend on (b) should be >= 1.5


def log(msg: str) -> None:
    R.log(msg)


def ver(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def http_impl(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import httptools  # noqa: F401

        return "httptools"
    except ImportError:
        return "h11"


class AsgiBench:
    def __init__(self, a: argparse.Namespace, feats: dict[str, Any]) -> None:
        self.a = a
        # run.py's Bench gives measure() (loadgen command, server CPU and run-queue wait).
        self.bench = R.Bench(a, feats, None)
        self.samples: list[dict[str, Any]] = []
        self.status: dict[tuple[str, str], str] = {}  # (impl, loop) -> n/a or failure note
        self.notes: list[str] = []

    def server_cmd(self, impl: Impl, loop: str, port: int) -> list[str]:
        if impl.ws is None:
            cmd = [PY, PLAIN_SERVER, "--port", str(port)]
        else:
            cmd = [PY, ASGI_SERVER, "--port", str(port), "--ws", impl.ws, "--http", self.a.http]
        cmd += ["--max-seconds", str(self.a.server_max_seconds)]
        if loop == "uvloop":
            cmd.append("--uvloop")
        return cmd

    def start(self, impl: Impl, loop: str) -> tuple[R.Server, int]:
        port = R.free_port()
        srv = R.Server(
            f"asgi-{impl.key}-{loop}", self.server_cmd(impl, loop, port), self.a.server_core
        )
        return srv, port

    def round(self, rnd: int, loop: str, deadline: float) -> None:
        impls = [IM[k] for k in self.a.impls if (IM[k].key, loop) not in self.status]
        servers: dict[str, tuple[R.Server, int]] = {}
        fp = R.source_fingerprint()
        try:
            for impl in impls:
                srv, port = self.start(impl, loop)
                if srv.error:
                    note = ("n/a: " if srv.unavailable else "failed to start: ") + srv.error
                    log(f"  {impl.key} {loop}: {note}")
                    self.status[(impl.key, loop)] = note
                    continue
                servers[impl.key] = (srv, port)
            wls = [R.WL[k] for k in self.a.workloads]
            random.shuffle(wls)
            for w in wls:
                order = [i for i in impls if i.key in servers]
                random.shuffle(order)
                for impl in order:
                    if time.monotonic() > deadline:
                        return
                    self.measure(rnd, loop, w, impl, servers, fp)
        finally:
            for srv, _ in servers.values():
                srv.stop()

    def measure(
        self,
        rnd: int,
        loop: str,
        w: R.Workload,
        impl: Impl,
        servers: dict[str, tuple[R.Server, int]],
        fp: str,
    ) -> None:
        s: R.Sample | None = None
        for attempt in range(2):
            srv, port = servers[impl.key]
            if not srv.alive():
                death = srv.death()
                log(f"  {impl.key} {loop}: {death}; restarting it")
                self.notes.append(f"{impl.key} ({loop}), round {rnd}: {death}; restarted")
                srv.stop()
                srv, port = self.start(impl, loop)
                servers[impl.key] = (srv, port)
                if srv.error:
                    s = R.Sample(None, error=f"restart failed: {srv.error}")
                    break
            s = self.bench.measure(w, port, "ws", srv.pid)
            if not srv.alive():
                s.error = f"{srv.death()}; {s.error}".rstrip("; ")
                s.value = None
            if s.value is not None:
                break
            hint = srv.log_hint()
            if hint:
                s.error += f" (server log: {hint})"
            if attempt == 0:
                log(f"  {impl.key} {loop} {w.key} failed ({s.error}); retrying once")
        assert s is not None
        rec = asdict(s)
        rec.update(round=rnd, loop=loop, workload=w.key, impl=impl.key, src=fp)
        self.samples.append(rec)
        log(
            f"  r{rnd} {loop:7s} {w.key} {impl.key:18s} {R.fmt_num(s.value):>9} {w.metric}"
            f"  srv {R.fmt_num(s.srv_cpu)}% (wait {R.fmt_num(s.srv_wait)}%)"
            f"  gen {R.fmt_num(s.gen_cpu)}%" + (f"  ERROR {s.error}" if s.error else "")
        )


# ----------------------------------------------------------------------------- report


def med(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else None


def fmt(x: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "–" if x is None else f"{x:{spec}}{suffix}"


def ok(s: dict[str, Any]) -> bool:
    return s.get("value") is not None


def report(a: argparse.Namespace, samples: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    L: list[str] = []
    w = L.append
    loops = a.loops
    peers = [k for k in a.impls if IM[k].peer]

    def vals(impl: str, wk: str, loop: str) -> list[dict[str, Any]]:
        return [
            s
            for s in samples
            if s["impl"] == impl and s["workload"] == wk and s["loop"] == loop and ok(s)
        ]

    def by_round(impl: str, wk: str, loop: str, per_cpu: bool = False) -> dict[int, float]:
        if per_cpu:  # per second of server CPU: less sensitive to the share of core 0 it got
            return {
                s["round"]: 100.0 * s["value"] / s["srv_cpu"]
                for s in vals(impl, wk, loop)
                if s.get("srv_cpu")
            }
        return {s["round"]: s["value"] for s in vals(impl, wk, loop)}

    def best_peer_per_round(
        wk: str, loop: str, per_cpu: bool = False
    ) -> dict[int, tuple[float, str]]:
        out: dict[int, tuple[float, str]] = {}
        for p in peers:
            for rnd, v in by_round(p, wk, loop, per_cpu).items():
                if rnd not in out or v > out[rnd][0]:
                    out[rnd] = (v, p)
        return out

    def ratio_list(
        x: str, wk: str, loop: str, y: str | None = None, per_cpu: bool = False
    ) -> list[float]:
        xs = by_round(x, wk, loop, per_cpu)
        if y is None:
            ys = {r: v for r, (v, _) in best_peer_per_round(wk, loop, per_cpu).items()}
        else:
            ys = by_round(y, wk, loop, per_cpu)
        return [xs[r] / ys[r] for r in sorted(xs) if r in ys and ys[r]]

    def rcell(rs: list[float], bold: bool = True) -> str:
        if not rs:
            return "n/a"
        m = statistics.median(rs)
        rng = f" ({min(rs):.2f}-{max(rs):.2f})" if len(rs) > 1 else ""
        return (f"**{m:.2f}×**" if bold else f"{m:.2f}×") + rng

    w(START)
    w("")
    w(
        "## ASGI: FastAPI echo on uvicorn, websock's backend vs uvicorn's (`benchmarks/bench_asgi.py`)"
    )
    w("")
    w(
        f"Generated by `{meta['command']}` on {meta['date']} (wall time {meta['wall_s'] / 60:.1f} min). "
        'How it works: README.md, "ASGI". Quote the ratios; the absolute numbers are from a shared 2-core VM.'
    )
    w("")
    w("### Ratios (median of per-round ratios; range over rounds in parentheses)")
    w("")
    w(
        "**vs best uvicorn backend**: uvicorn + websock's `WebSocketProtocol` ÷ the fastest of uvicorn's own "
        "backends measured in the same round (same FastAPI app, same uvicorn, same loop). "
        "**ASGI layer kept**: uvicorn + websock ÷ plain `websock.serve` (1.00 = the ASGI stack costs nothing). "
        "**per server CPU-second**: the same ratio of messages (handshakes) per second of CPU the server "
        "process actually used (its CPU is read over the generator's whole run, warm-up and close included, "
        "so this is approximate; it discounts the share of core 0 that other jobs took). >1 = faster."
    )
    w("")
    w(
        "| workload | loop | vs best uvicorn backend | best uvicorn backend (rounds it won) | "
        + " | ".join(f"vs {p}" for p in peers)
        + " | vs best uvicorn backend, per server CPU-second | ASGI layer kept (÷ websock.serve) |"
    )
    w("|---|---|---|---|" + "---|" * len(peers) + "---|---|")
    summary: dict[tuple[str, str], float] = {}
    for wk in a.workloads:
        for loop in loops:
            rs = ratio_list("websock", wk, loop)
            if rs:
                summary[(wk, loop)] = statistics.median(rs)
            won: dict[str, int] = {}
            for _, p in best_peer_per_round(wk, loop).values():
                won[p] = won.get(p, 0) + 1
            wins = (
                ", ".join(f"{p} ({n})" for p, n in sorted(won.items(), key=lambda x: -x[1])) or "–"
            )
            per = [rcell(ratio_list("websock", wk, loop, p), bold=False) for p in peers]
            plain = (
                rcell(ratio_list("websock", wk, loop, "websock-serve"), bold=False)
                if "websock-serve" in a.impls
                else "n/a"
            )
            cpu = rcell(ratio_list("websock", wk, loop, per_cpu=True), bold=False)
            w(
                f"| {R.SHORT[wk]} | {loop} | {rcell(rs)} | {wins} | "
                + " | ".join(per)
                + f" | {cpu} | {plain} |"
            )
    w("")
    tw, tv = TARGET
    for loop in loops:
        if (tw, loop) in summary:
            m = summary[(tw, loop)]
            w(
                f'Target "≥ {tv}× the best uvicorn backend on {R.SHORT[tw]}" ({loop}): '
                f"**{'met' if m >= tv else 'not met'}** ({m:.2f}×)."
            )
    w("")

    w("### Absolute numbers (medians over rounds)")
    w("")
    w(
        "Messages/s for (a)-(c), handshakes/s for (e); RTT percentiles from the generator (median over "
        "rounds); server CPU = its core's busy share over the measurement, (wait) = time it was runnable "
        "but another process had its core; generator likewise. † = the generator was ≥85% busy in some sample."
    )
    w("")
    w(
        "| workload | loop | server | value | spread | p50 RTT | p99 RTT | server CPU (wait) | gen CPU (wait) | rounds ok |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|")
    for wk in a.workloads:
        wl = R.WL[wk]
        for loop in loops:
            for impl in a.impls:
                ss = vals(impl, wk, loop)
                alls = [
                    s
                    for s in samples
                    if s["impl"] == impl and s["workload"] == wk and s["loop"] == loop
                ]
                label = IM[impl].label
                if not ss:
                    note = a.status_map.get(f"{impl}|{loop}") or next(
                        (s["error"] for s in alls if s.get("error")), "not run"
                    )
                    w(
                        f"| {R.SHORT[wk]} | {loop} | {label} | {str(note)[:140]} | | | | | | 0/{len(alls)} |"
                    )
                    continue
                v = med([s["value"] for s in ss])
                vs = [s["value"] for s in ss]
                spr = f"±{50 * (max(vs) - min(vs)) / v:.0f}%" if len(vs) > 1 and v else "–"
                p50 = med([(s["extra"] or {}).get("p50_us") for s in ss])
                p99 = med([(s["extra"] or {}).get("p99_us") for s in ss])
                scpu = med([s["srv_cpu"] for s in ss])
                swait = med([s["srv_wait"] for s in ss])
                gcpu = med([s["gen_cpu"] for s in ss])
                gwait = med([s["gen_wait"] for s in ss])
                dag = " †" if any((s["gen_cpu"] or 0) >= R.GEN_SATURATED for s in ss) else ""

                def us(x: float | None) -> str:
                    if x is None:
                        return "–"
                    return f"{x / 1000:,.1f} ms" if x >= 1000 else f"{x:,.0f} µs"

                w(
                    f"| {R.SHORT[wk]} | {loop} | {label} | {fmt(v)} {wl.metric}{dag} | {spr} | {us(p50)} | {us(p99)} | "
                    f"{fmt(scpu, '.0f', '%')} ({fmt(swait, '.0f', '%')}) | {fmt(gcpu, '.0f', '%')} ({fmt(gwait, '.0f', '%')}) | {len(ss)}/{len(alls)} |"
                )
    w("")

    fails = [s for s in samples if not ok(s)]
    if fails or meta["notes"] or a.status_map:
        w("### Failures and restarts")
        w("")
        for k, v in a.status_map.items():
            w(f"- {k.replace('|', ' on ')}: {v}")
        for s in fails:
            w(
                f"- round {s['round']}, {s['loop']}, {s['workload']}, {s['impl']}: {s['error'][:300]}"
            )
        for n in meta["notes"]:
            w(f"- {n}")
        w("")

    v = meta["versions"]
    w("### Setup and caveats")
    w("")
    w(
        f"- Machine: {meta['machine']}. Python {v['python']}; uvicorn {v['uvicorn']} (HTTP parser: "
        f"{meta['http']}); FastAPI {v['fastapi']}; Starlette {v['starlette']}; websockets {v['websockets']}; "
        f"wsproto {v['wsproto']}; uvloop {v['uvloop']}; websock {v['websock']}."
    )
    w(
        f"- {a.rounds} round(s) per loop, {a.warmup} s warm-up + {a.duration} s counted per measurement; "
        f"servers pinned to core {a.server_core}, benchmarks/loadgen.c to core {a.gen_core}; compression off "
        "(`ws_per_message_deflate=False`; websock.serve `compression=None`), 2 MiB max message, access log "
        "and lifespan off, uvicorn's other settings at their defaults. Each round starts every server "
        "afresh; workloads in a shuffled order, and for each workload the servers in a shuffled order; the "
        "idle servers wait on core 0 meanwhile (uvicorn's housekeeping tick, every 0.1 s, is all they do)."
    )
    w(
        "- The endpoint: `await ws.accept()`, then `message = await ws.receive()` and `ws.send_bytes()` "
        "(`send_text()` for text) until `websocket.disconnect`: FastAPI's routing and Starlette's "
        "`WebSocket` wrapper run on every message, on every backend alike. The reference row "
        "(plain `websock.serve`, `async for m in ws: await ws.send(m)`) has none of that."
    )
    w(
        f"- Background load: all-CPU busy {fmt(meta['busy_before'], '.0f', '%')} before, "
        f"{fmt(meta['busy_after'], '.0f', '%')} after; load average {meta['load_before']} → {meta['load_after']}; "
        f"CPU pressure (PSI some) {meta['psi_before']} → {meta['psi_after']}."
    )
    fps = sorted({s["src"] for s in samples})
    if len(fps) > 1 or meta["src_before"] != meta["src_after"]:
        rounds_by_fp = {
            fp: sorted({(s["loop"], s["round"]) for s in samples if s["src"] == fp}) for fp in fps
        }
        desc = "; ".join(
            f"{fp}: " + ", ".join(f"{lp} r{r}" for lp, r in rr) for fp, rr in rounds_by_fp.items()
        )
        w(
            "- **Warning: src/websock changed during the run** (websock is installed in editable mode and "
            f"its ASGI backend was being edited): source fingerprints per round: {desc}. "
            "websock's samples mix versions."
        )
    waits = [s["srv_wait"] for s in samples if ok(s) and s.get("srv_wait") is not None]
    if waits and statistics.median(waits) > 10:
        w(
            f"- **The servers waited for their CPU {statistics.median(waits):.0f}% of the time (median; "
            f"{min(waits):.0f}-{max(waits):.0f}%)**: other jobs ran on core {a.server_core}. Absolute "
            "numbers are then mostly the share of the core the server got; the per-round ratios, taken "
            "between measurements seconds apart, are the figures to quote, and their ranges show how much "
            "the load moved them."
        )
    w(
        "- (a) with one message in flight is bound by wake-up latency on a loaded 2-core machine as much "
        "as by the server's work; (e) includes TCP connect and close on loopback (the generator waits for "
        "the server's Close and FIN), and uvicorn's HTTP parsing before the WebSocket backend is involved, "
        "the same for every backend. Loopback only: compare rows, not machines."
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


def busy() -> float | None:
    return R.background_load(0.5)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="3 rounds, 0.3 + 1.0 s per measurement (~2 min)"
    )
    p.add_argument("--rounds", type=int, help="rounds per loop (default 5; quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds (default 0.5; quick 0.3)")
    p.add_argument("--duration", type=float, help="counted seconds (default 2.5; quick 1.0)")
    p.add_argument("--workloads", default="a,b,c,e", help="comma list of a,b,c,e")
    p.add_argument(
        "--impls", default=",".join(i.key for i in IMPLS), help="comma list of " + ",".join(IM)
    )
    p.add_argument("--loops", default="asyncio", help="asyncio and/or uvloop (default asyncio)")
    p.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="uvicorn's HTTP parser, the same for every backend (auto: httptools if installed)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        help="stop measuring after this long (default 20; quick 8) and report what was measured",
    )
    p.add_argument("--server-core", type=int)
    p.add_argument("--gen-core", type=int)
    p.add_argument("--output", default=os.path.join(BENCH, "RESULTS.md"))
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--report-only", metavar="JSON", help="rewrite the RESULTS.md section from a raw file"
    )
    a = p.parse_args()
    if a.report_only:
        with open(a.report_only) as f:
            d = json.load(f)
        ra = argparse.Namespace(**d["args"])
        write_section(a.output, report(ra, d["samples"], d["meta"]))
        log(f"rewrote the ASGI section of {os.path.relpath(a.output, ROOT)} from {a.report_only}")
        return
    a.rounds = a.rounds or (3 if a.quick else 5)
    a.warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 0.5)
    a.duration = a.duration or (1.0 if a.quick else 2.5)
    a.max_minutes = a.max_minutes or (8.0 if a.quick else 20.0)
    a.workloads = [k.strip() for k in a.workloads.split(",") if k.strip()]
    for k in a.workloads:
        if k not in WORKLOAD_KEYS:
            p.error(f"unknown workload {k!r} (of {','.join(WORKLOAD_KEYS)})")
    a.impls = [k.strip() for k in a.impls.split(",") if k.strip()]
    for k in a.impls:
        if k not in IM:
            p.error(f"unknown implementation {k!r}")
    if "websock" not in a.impls:
        p.error("--impls must include websock")
    a.impls = [i.key for i in IMPLS if i.key in a.impls]
    a.loops = [x.strip() for x in a.loops.split(",") if x.strip()]
    for lp in a.loops:
        if lp not in ("asyncio", "uvloop"):
            p.error(f"unknown loop {lp!r}")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        a.server_core = cores[0] if a.server_core is None else a.server_core
        a.gen_core = cores[1] if a.gen_core is None else a.gen_core
    else:
        log("fewer than 2 usable cores: running unpinned (results are not meaningful)")
    a.server_max_seconds = int(a.max_minutes * 60 + 120)  # every server exits by itself
    a.http = http_impl(a.http)
    if a.seed is not None:
        random.seed(a.seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    feats = R.build()
    import platform

    meta: dict[str, Any] = {
        "command": " ".join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {"python": platform.python_version()}
        | {
            d: ver("pywebsock" if d == "websock" else d)
            for d in (
                "websock",
                "uvicorn",
                "fastapi",
                "starlette",
                "websockets",
                "wsproto",
                "httptools",
                "uvloop",
            )
        },
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "http": a.http,
        "busy_before": busy(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "psi_before": R.cpu_pressure(),
        "src_before": R.source_fingerprint(),
    }
    log(
        f"workloads {a.workloads}, servers {a.impls}, loops {a.loops}, {a.rounds} round(s) x "
        f"({a.warmup}+{a.duration}) s, uvicorn http={a.http}"
    )
    b = AsgiBench(a, feats)
    t0 = time.monotonic()
    deadline = t0 + a.max_minutes * 60
    stopped_early = False
    for rnd in range(1, a.rounds + 1):
        loops = list(a.loops)
        random.shuffle(loops)
        for lp in loops:
            if time.monotonic() > deadline:
                stopped_early = True
                break
            log(f"round {rnd}/{a.rounds} ({lp})")
            b.round(rnd, lp, deadline)
    if time.monotonic() > deadline:
        stopped_early = True
        b.notes.append(
            f"stopped after --max-minutes {a.max_minutes:g}: later rounds were not measured"
        )
    meta.update(
        wall_s=time.monotonic() - t0,
        busy_after=busy(),
        load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        psi_after=R.cpu_pressure(),
        src_after=R.source_fingerprint(),
        notes=b.notes,
        stopped_early=stopped_early,
    )
    a.status_map = {f"{k[0]}|{k[1]}": v for k, v in b.status.items()}
    raw = os.path.join(OUT, "asgi-quick.json" if a.quick else "asgi.json")
    with open(raw, "w") as f:
        json.dump({"meta": meta, "args": vars(a), "samples": b.samples}, f, indent=1)
    write_section(a.output, report(a, b.samples, meta))
    log(
        f"wrote {os.path.relpath(a.output, ROOT)} (section) and {os.path.relpath(raw, ROOT)} in {meta['wall_s'] / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
