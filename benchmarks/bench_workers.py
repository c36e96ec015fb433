"""websock.run(workers=N): echo workload (b), 64 connections x 4 messages in flight, 32 B.

    .venv/bin/python benchmarks/bench_workers.py [--rounds 3] [--duration 3] [--workers 1,2]

Runs the same load (benchmarks/loadgen.c, built by run.py's build() if missing) against
``websock.run(echo, workers=N)`` for each N, alternating N within every round, and prints
messages/s per N (median and best of the rounds: on a shared machine, background load can
only lower a sample, so the best is the least disturbed), the ratios to the first N, and
the CPU used by the server processes (supervisor and workers) and by the load generator.
Nothing is pinned: on a machine with as many cores as workers, the load generator competes
with the workers for the same cores, and its CPU share is printed so that you can see how
much it took.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
LOADGEN = os.path.join(BENCH, "out", "loadgen")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def serve(workers: int) -> None:
    """The server: ``bench_workers.py --serve N`` (prints the port once every worker listens)."""
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import websock

    async def echo(ws: websock.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    websock.run(
        echo,
        "127.0.0.1",
        0,
        workers=workers,
        on_ready=lambda port: print(port, flush=True),
        compression=None,
        max_message_size=2**21,
    )


def tree_ticks(pid: int) -> int:
    """CPU ticks (user + system) of a process and its children still running."""
    total = 0
    pids = [pid]
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids += [int(p) for p in f.read().split()]
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def measure(workers: int, duration: float, warmup: float) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        t0, w0 = tree_ticks(server.pid), time.monotonic()
        cmd = [LOADGEN, "--port", str(port), "--mode", "ws", "--workload", "echo"]
        cmd += ["--conns", "64", "--inflight", "4", "--size", "32"]
        cmd += ["--duration", str(duration), "--warmup", str(warmup)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60)
        t1, w1 = tree_ticks(server.pid), time.monotonic()
        result = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
        return {
            "per_s": float(result["per_s"]),
            "srv_cpu": 100.0 * (t1 - t0) / CLK_TCK / (w1 - w0),
            "gen_cpu": float(result.get("cpu_pct") or 0.0),
            "errors": float(result.get("errors") or 0),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--workers", default="1,2", help="comma-separated (default 1,2)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if not os.path.exists(LOADGEN):
        sys.path.insert(0, BENCH)
        import run

        run.build()
    counts = [int(n) for n in args.workers.split(",")]
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for rnd in range(args.rounds):
        order = counts if rnd % 2 == 0 else counts[::-1]
        for n in order:
            s = measure(n, args.duration, args.warmup)
            samples[n].append(s)
            print(
                f"round {rnd + 1}, {n} worker(s): {s['per_s']:,.0f} msg/s, "
                f"server CPU {s['srv_cpu']:.0f}%, loadgen CPU {s['gen_cpu']:.0f}%",
                file=sys.stderr,
            )
    print(f"(b) 64 connections x 4 in flight, 32 B; {os.cpu_count()} cores; ", end="")
    print(f"median of {args.rounds} rounds of {args.duration:g} s")
    print("| workers | median msg/s | ratio | best msg/s | ratio | server CPU | loadgen CPU |")
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(s["per_s"] for s in samples[counts[0]])
    base_best = max(s["per_s"] for s in samples[counts[0]])
    for n in counts:
        rate = statistics.median(s["per_s"] for s in samples[n])
        best = max(s["per_s"] for s in samples[n])
        srv = statistics.median(s["srv_cpu"] for s in samples[n])
        gen = statistics.median(s["gen_cpu"] for s in samples[n])
        print(
            f"| {n} | {rate:,.0f} | {rate / base:.2f}x | {best:,.0f} | {best / base_best:.2f}x "
            f"| {srv:.0f}% | {gen:.0f}% |"
        )


if __name__ == "__main__":
    main()
