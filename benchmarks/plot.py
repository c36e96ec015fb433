"""Charts of the benchmark results for the documentation.

    python benchmarks/plot.py [RESULTS.md] [--out docs/_static/benchmarks]

Reads the markdown tables of ``benchmarks/RESULTS.md`` (the committed results of the last
full run of ``benchmarks/run.py``, so the charts can be made again from committed data) and
writes PNG charts (matplotlib, Agg backend: no display needed):

- ``summary.png``: websock ÷ the best peer, per workload and event loop (from the summary
  table);
- ``server.png``: every server workload (a)-(h), every implementation, per loop;
- ``client.png``: the client workloads.

It also writes ``SOURCE.txt``, a SHA-256 of the numbers the charts show: the documentation
build (docs/conf.py, which imports :func:`fingerprint` from here without matplotlib) fails
when the tables of RESULTS.md no longer give the same numbers, so that the charts are made
again with this command whenever the results change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
OUT = ROOT / "docs" / "_static" / "benchmarks"

LOOPS = ("asyncio", "uvloop", "sync")
# The families of implementations, in the order of the bars; websock first, raw last.
FAMILIES = ("websock", "websockets", "picows", "aiohttp", "raw")
COLOURS = {
    "websock": "#1f6feb",
    "websockets": "#8b949e",
    "picows": "#d29922",
    "aiohttp": "#2da44e",
    "raw": "#d0d7de",
}
# PNG metadata without the matplotlib version: the same data gives the same file.
PNG_METADATA = {"Software": None}


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)


def read_sections(text: str) -> list[Section]:
    """Every ``##``/``###`` section of the markdown, with its tables."""
    sections: list[Section] = []
    table: Table | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            sections.append(Section(line.lstrip("#").strip()))
            table = None
        elif line.startswith("|") and sections:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if table is None:
                table = Table(cells, [])
                sections[-1].tables.append(table)
            elif not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                table.rows.append(cells)
        else:
            table = None
    return sections


def number(cell: str) -> float | None:
    """``18,302`` -> 18302.0; ``1.35×`` -> 1.35; a failure or n/a -> None."""
    match = re.match(r"^\**([0-9][0-9,]*(?:\.[0-9]+)?)\**\s*[×x]?", cell.strip())
    if not match:
        return None
    return float(match.group(1).replace(",", ""))


def family(name: str) -> str:
    name = name.strip("*").strip()
    if name.startswith("raw"):
        return "raw"
    return name.removesuffix(".sync")


def short_title(title: str) -> str:
    """``(b) 64 connections x 4 messages in flight, 32 B binary`` on two lines at most."""
    title = title.replace("messages in flight", "in flight").replace("connections", "conns")
    lines = textwrap.wrap(title, 52)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def section(sections: list[Section], prefix: str) -> Section:
    for candidate in sections:
        if candidate.title.startswith(prefix):
            return candidate
    raise SystemExit(f"benchmarks/plot.py: no section {prefix!r} in the results")


def plot_summary(sections: list[Section], out: Path) -> None:
    plt = pyplot()
    table = section(sections, "Summary").tables[0]
    columns = {loop: table.header.index(f"{loop}: websock ÷ best peer") for loop in LOOPS}
    labels, values = [], {loop: [] for loop in LOOPS}
    for row in table.rows:
        workload = row[0]
        memory = "memory" in workload
        labels.append(workload + ("\n(inverted: peer ÷ websock)" if memory else ""))
        for loop in LOOPS:
            value = number(row[columns[loop]])
            if value is not None and memory:
                value = 1 / value  # lower memory is better: >1 means websock uses less
            values[loop].append(value)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) + 1.6))
    height = 0.26
    positions = range(len(labels))
    for i, loop in enumerate(LOOPS):
        ys = [p + (i - 1) * height for p in positions]
        xs = [v if v is not None else 0 for v in values[loop]]
        bars = ax.barh(ys, xs, height, label=loop, color=("#1f6feb", "#54aeff", "#8250df")[i])
        for bar, value in zip(bars, values[loop], strict=False):
            if value is not None:
                ax.text(
                    bar.get_width() + 0.03,
                    bar.get_y() + bar.get_height() / 2,
                    f"{value:.2f}×",
                    va="center",
                    fontsize=7,
                )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("websock ÷ best peer (> 1: websock better)")
    ax.set_title("websock against the best other library, per event loop")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=110, metadata=PNG_METADATA)
    plt.close(fig)


def bars(ax, table: Table, value_column: int, loops: tuple[str, ...], title: str) -> None:  # type: ignore[no-untyped-def]
    """Grouped bars: one group per loop, one bar per implementation family."""
    data: dict[tuple[str, str], float] = {}
    for row in table.rows:
        value = number(row[value_column])
        if value is not None:
            data[(row[1], family(row[0]))] = value
    present = [f for f in FAMILIES if any((loop, f) in data for loop in loops)]
    width = 0.8 / max(len(present), 1)
    for i, fam in enumerate(present):
        xs, ys = [], []
        for j, loop in enumerate(loops):
            if (loop, fam) in data:
                xs.append(j + (i - (len(present) - 1) / 2) * width)
                ys.append(data[(loop, fam)])
        ax.bar(xs, ys, width, label=fam, color=COLOURS[fam], edgecolor="#57606a", linewidth=0.4)
    ax.set_xticks(range(len(loops)), loops, fontsize=8)
    ax.set_title(short_title(title), fontsize=8.5)
    unit = table.header[value_column]
    unit = unit.replace(" (higher is better)", " ↑").replace(" (lower is better)", " ↓")
    ax.set_ylabel(unit, fontsize=7.5)
    ax.tick_params(axis="y", labelsize=7)
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.grid(axis="y", alpha=0.3)


def plot_server(sections: list[Section], out: Path) -> None:
    plt = pyplot()
    workloads = [s for s in sections if re.match(r"\([a-h]\)", s.title) and s.tables]
    cols = 3
    rows = -(-len(workloads) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.3 * rows))
    flat = axes.flatten()
    for ax, workload in zip(flat, workloads, strict=False):
        table = workload.tables[0]
        bars(ax, table, 2, LOOPS, workload.title)
    for ax in flat[len(workloads) :]:
        ax.axis("off")
    handles, labels = flat[0].get_legend_handles_labels()
    for ax in flat[: len(workloads)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=False):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    order = sorted(range(len(labels)), key=lambda i: FAMILIES.index(labels[i]))
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.975),
        ncol=len(labels),
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(
        "Server side: one Python server process under a C load generator "
        "(sync: websock.sync, websockets.sync, threaded raw echo)",
        fontsize=10,
        y=0.995,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(out / "server.png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def plot_client(sections: list[Section], out: Path) -> None:
    plt = pyplot()
    table = section(sections, "Client side").tables[0]
    value_columns = [i for i, name in enumerate(table.header) if name.endswith("msgs/s")]
    fig, axes = plt.subplots(1, len(value_columns), figsize=(9, 3.8))
    for ax, column in zip(axes, value_columns, strict=False):
        sub = Table(table.header, table.rows)
        title = table.header[column].removesuffix(" msgs/s")
        bars(ax, sub, column, ("asyncio", "uvloop"), f"client {title}")
        ax.set_ylabel("msgs/s ↑", fontsize=7.5)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.93),
        ncol=len(labels),
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(
        "Client side: one Python client process against a C echo server", fontsize=10, y=0.99
    )
    fig.tight_layout(rect=(0, 0, 1, 0.84))
    fig.savefig(out / "client.png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def chart_data(sections: list[Section]) -> list[Any]:
    """Every number and label the charts are made from."""
    data: list[Any] = []
    for candidate in sections:
        if candidate.title.startswith(("Summary", "Client side")) or re.match(
            r"\([a-h]\)", candidate.title
        ):
            for table in candidate.tables[:1]:
                data.append(
                    [
                        candidate.title,
                        table.header,
                        [[number(c) or c for c in r] for r in table.rows],
                    ]
                )
    return data


def fingerprint(text: str) -> str:
    """The SHA-256 of the chart data of a RESULTS.md text (not of its prose)."""
    encoded = json.dumps(chart_data(read_sections(text)), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = args.results.read_text(encoding="utf-8")
    sections = read_sections(text)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_summary(sections, args.out)
    plot_server(sections, args.out)
    plot_client(sections, args.out)
    (args.out / "SOURCE.txt").write_text(
        f"{fingerprint(text)}  chart data of benchmarks/RESULTS.md\n", encoding="utf-8"
    )
    for name in ("summary.png", "server.png", "client.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
