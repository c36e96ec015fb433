"""Run the hostile attacks against websock (asyncio), websock-sync (threads) and websockets,
side by side, and tabulate them.

    .venv/bin/python scripts/attack_table.py [--jobs 2] [--only deflate] [--impls websock,...]
                                             [--no-write]

Each attack (tests/hostile/hostile_attacks.py, the same coroutines the tests run) is run once
per implementation, in worker processes (``--jobs``, 2 by default: one attack per core), each
attack with its own server process. The markdown table goes to docs/hostile.md, between the
``attack-table`` markers (the rest of the file is left alone), and to stdout.

A few attacks run smaller than in the test suite to keep the run within about 5 minutes:
floods run their full 10 s (no early stop at 64 MiB), 2,000 idle connections instead of
10,000, 2,000 requests with new header names instead of 10,000. ``WEBSOCK_HOSTILE_SRC``
(see tests/hostile/hostile_harness.py) makes the websock columns use another source tree.
An attack that does not apply to an implementation (a knob it lacks) shows "n/a".
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "hostile"))

import hostile_attacks as attacks  # noqa: E402
from hostile_harness import IMPLS, AttackResult, raise_nofile  # noqa: E402

DOC = ROOT / "docs" / "hostile.md"
START = "<!-- attack-table:start -->"
END = "<!-- attack-table:end -->"

# (row label, attack coroutine name, keyword arguments)
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("1. Ping flood, peer never reads (server, 10 s)", "ping_flood_server", {"bound": 1e6}),
    ("1. Ping flood, peer never reads (client role, 10 s)", "ping_flood_client", {"bound": 1e6}),
    ("2. Data flood, peer never reads (server, 10 s)", "data_flood_server", {"bound": 1e6}),
    ("2. Data flood, peer never reads (client role, 10 s)", "data_flood_client", {"bound": 1e6}),
    ("2. 300,000 Pings and a message, then read (a batch)", "ping_batch_then_read", {}),
    ("3. 300 deflated 1 MB messages in one write", "compressed_batch", {"connections": 1}),
    ("3. The same on 8 connections", "compressed_batch", {"connections": 8}),
    ("4. Deflate bomb, one frame (64 MiB of zeros)", "deflate_bomb", {"variant": "frame"}),
    ("4. Deflate bomb, 64 fragments", "deflate_bomb", {"variant": "fragments"}),
    ("4. Deflate bomb, context takeover (4 MiB)", "deflate_bomb", {"variant": "takeover"}),
    ("5. 1,000,000 one-byte fragments", "many_fragments", {"count": 1_000_000}),
    ("6. Slowloris: partial head, a byte per 100 ms", "slowloris", {"variant": "partial-head"}),
    ("6. Slowloris: silent TCP", "slowloris", {"variant": "silent"}),
    ("6. Slowloris: wss, silent", "slowloris", {"variant": "tls-silent"}),
    ("6. Slowloris: wss, half a ClientHello", "slowloris", {"variant": "tls-partial-hello"}),
    ("6. Slowloris x 500 (silent + partial heads)", "slowloris_mass", {"connections": 500}),
    ("7. 2,000 headers", "header_abuse", {"case": "many-headers"}),
    ("7. 64 KiB header", "header_abuse", {"case": "oversize-head"}),
    ("7. Huge extension offers", "header_abuse", {"case": "huge-extension-offer"}),
    ("7. Thousands of subprotocol tokens", "header_abuse", {"case": "many-subprotocols"}),
    ("7. NUL/CR/LF in names, values, target", "header_abuse", {"case": "control-chars"}),
    (
        "7. New header names (2,000 requests x 100)",
        "unique_header_names",
        {"requests": 2000, "names": 100},
    ),
    ("8. Close with a 126-byte payload", "invalid_close", {"case": "length-126"}),
    ("8. Close code 999", "invalid_close", {"case": "code-999"}),
    ("8. Close reason not UTF-8", "invalid_close", {"case": "bad-utf8-reason"}),
    ("8. Bad UTF-8 at byte 3 of 1,000, then Close", "invalid_close", {"case": "mid-frame-utf8"}),
    (
        "8. The same, rest sent after the server's Close",
        "invalid_close",
        {"case": "mid-frame-utf8-split"},
    ),
    ("8. Bad Close + 1 MiB unread, slow reader", "invalid_close", {"case": "junk-after-close"}),
    ("9. Dead peer, keepalive 1 s / 1 s", "dead_peer", {"give_up": 13.0}),
    ("9. Slow 200 kB upload, keepalive 0.2 s / 0.3 s", "slow_upload", {}),
    ("9. Keepalive 0.5 s / 0.5 s, descriptors above 1023", "keepalive_busy", {}),
    ("10. 2,000 idle connections, then SIGTERM", "shutdown_idle", {"connections": 2000}),
    (
        "10. The same, 20 connections, `shutdown()` in the signal handler",
        "shutdown_idle",
        {"connections": 20, "exit_wait": 10.0, "sync_shutdown": "handler"},
    ),
    ("10. `python -m websock serve`: 200 connections, SIGTERM", "cli_shutdown", {}),
    ("12. 4xx, then a byte every 0.2 s", "refusal_linger", {"case": "400-trickle"}),
    ("12. Server full (503): a complete request", "refusal_linger", {"case": "503"}),
    (
        "12. Server full: part of a head, then a byte every 0.2 s",
        "refusal_linger",
        {"case": "503-trickle"},
    ),
    ("12. Server full: part of a head, then FIN", "refusal_linger", {"case": "503-fin"}),
]


def _not_applicable(index: int, impl: str) -> str | None:
    """Why row ``index`` does not apply to ``impl`` (None: it does)."""
    _, name, kwargs = ROWS[index]
    if "sync_shutdown" in kwargs and impl != "websock-sync":
        return "n/a (websock-sync's shutdown from a signal handler)"
    if name == "refusal_linger" and kwargs["case"].startswith("503") and impl == "websockets":
        return "n/a (no max_connections)"
    if name == "cli_shutdown" and impl != "websock":
        return "n/a (websock's command line, asyncio)"
    return None


def _run_one(index: int, impl: str) -> tuple[int, str, dict[str, Any], float]:
    """In a worker process: run one attack on one implementation."""
    _, name, kwargs = ROWS[index]
    raise_nofile()
    start = time.monotonic()
    reason = _not_applicable(index, impl)
    if reason is not None:
        data = dataclasses.asdict(AttackResult(name, impl, outcome=reason))
        return index, impl, data, 0.0
    try:
        result = asyncio.run(getattr(attacks, name)(impl, **kwargs))
        data = dataclasses.asdict(result)
    except Exception as exc:  # an attack that could not run is reported, not fatal
        data = dataclasses.asdict(AttackResult(name, impl, outcome=f"attack error: {exc!r}"))
    data["details"].pop("stderr", None)
    data["details"].pop("probe_latencies", None)
    return index, impl, data, time.monotonic() - start


def _rss(data: dict[str, Any]) -> str:
    if data["rss_growth_mib"] is None:
        return "—"
    text = f"{data['rss_growth_mib']:.1f}"
    if data["rss_after_mib"] is not None:
        text += f" (after: {data['rss_after_mib']:.1f})"
    return text


def _echo(data: dict[str, Any]) -> str:
    if data["echo_ok"] is None:
        return "—"
    if data["echo_ok"]:
        return f"yes ({data['echo_worst']:.2f} s)"
    failed = data["details"].get("probe_failures", "?")
    return f"**no** ({failed}/{data['probes']} missed)"


def _outcome(data: dict[str, Any]) -> str:
    text = str(data["outcome"]).replace("|", "/")
    if data["problems"]:
        text += " **+ traceback in stderr**"
    return text


def table(results: dict[tuple[int, str], dict[str, Any]], impls: list[str], rows: list[int]) -> str:
    head = ["Attack"]
    for impl in impls:
        head += [f"{impl}: RSS +MiB", f"{impl}: echo", f"{impl}: outcome"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for index in rows:
        cells = [ROWS[index][0]]
        for impl in impls:
            data = results.get((index, impl))
            if data is None:
                cells += ["", "", "not run"]
            else:
                cells += [_rss(data), _echo(data), _outcome(data)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _git_state() -> str:
    """`` at <commit>`` (and whether src/ has uncommitted changes), read-only git calls."""
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""
    if not commit:
        return ""
    return f" at {commit}" + (" + uncommitted changes in src/" if dirty else "")


def _versions(impls: list[str]) -> str:
    from websockets.version import version as websockets_version

    import websock

    src = os.environ.get("WEBSOCK_HOSTILE_SRC")
    parts = [f"Python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    if "websock" in impls or "websock-sync" in impls:
        where = f" from {src}" if src else _git_state()
        parts.append(f"websock {websock.__version__}{where}")
    if "websockets" in impls:
        parts.append(f"websockets {websockets_version}")
    return ", ".join(parts)


def write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else f"# Hostile peers\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(f"{before}{START}\n{section}\n{END}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="attacks run at once (default 2)")
    parser.add_argument("--only", help="rows whose label or attack contains this text")
    parser.add_argument("--impls", default=",".join(IMPLS), help=f"default {','.join(IMPLS)}")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC}")
    args = parser.parse_args()
    impls = [impl for impl in args.impls.split(",") if impl]
    rows = [
        i
        for i, (label, name, _) in enumerate(ROWS)
        if not args.only or args.only in label or args.only in name
    ]
    raise_nofile()
    start = time.monotonic()
    results: dict[tuple[int, str], dict[str, Any]] = {}
    # Longest first, so that the pool ends together; the implementations interleaved.
    jobs = [(i, impl) for i in rows for impl in impls]
    slow = {"shutdown_idle", "unique_header_names", "dead_peer"}
    jobs.sort(key=lambda job: ROWS[job[0]][1] not in slow)
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run_one, i, impl) for i, impl in jobs]
        for future in concurrent.futures.as_completed(futures):
            index, impl, data, seconds = future.result()
            results[(index, impl)] = data
            print(
                f"[{time.monotonic() - start:6.1f} s] {ROWS[index][0]} [{impl}] "
                f"({seconds:.1f} s): {data['outcome']}",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.monotonic() - start
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"Last run: {now}; {_versions(impls)}; {len(jobs)} attacks, {args.jobs} at a time, "
        f"in {elapsed:.0f} s (`.venv/bin/python scripts/attack_table.py`).\n\n"
        + table(results, impls, rows)
    )
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"\nwritten to {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
