"""Helpers shared by the fuzzing harnesses (see README.md).

Every harness is a script run by atheris/libFuzzer: ``python fuzzing/fuzz_X.py [libFuzzer
flags] [corpus dirs]``. Running one with input files instead of directories replays them
(``python fuzzing/fuzz_connection.py crash-1234``), which is how a crash is reproduced.

Inputs are decoded deterministically from their bytes only (no randomness, no clock), so a
crash file always replays the same way.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        "atheris is not installed: pip install -e '.[fuzz]' (or run fuzzing/run.sh, which "
        "installs it into .venv)\n"
    )
    raise SystemExit(2) from None

__all__ = [
    "atheris",
    "known_bug",
    "chunk_sizes",
    "split",
    "MemoryCheck",
    "run",
]


# Known bugs to step over (FUZZ_KNOWN_BUGS, comma-separated names from README.md), so that a
# long run can look for other ones. Empty by default: every invariant is enforced.
_KNOWN_BUGS = frozenset(filter(None, os.environ.get("FUZZ_KNOWN_BUGS", "").split(",")))


def known_bug(name: str) -> bool:
    """True if the known bug ``name`` should be stepped over in this run."""
    return name in _KNOWN_BUGS


def chunk_sizes(seed: int, total: int) -> Iterator[int]:
    """Chunk lengths adding up to ``total``, all decided by the one-byte ``seed``.

    Seed 0 gives one chunk (the whole stream). Other seeds drive a small LCG: the low bits
    of the seed pick the size class (1-byte reads, small reads, reads around header sizes,
    large reads), the rest the sequence, so the fuzzer reaches every boundary by mutating
    this single byte.
    """
    if seed == 0 or total == 0:
        if total:
            yield total
        return
    state = seed * 2654435761 & 0xFFFFFFFF
    size_class = seed & 3
    left = total
    while left > 0:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        r = state >> 8
        if size_class == 0:
            n = 1 + (r & 1)  # 1-2 bytes: every header straddles reads
        elif size_class == 1:
            n = 1 + (r & 15)  # 1-16
        elif size_class == 2:
            n = (2, 4, 6, 8, 10, 14, 125, 127, 139, 140)[r % 10]  # header / control sizes
        else:
            n = 1 + (r & 1023)  # up to 1 KiB
        n = min(n, left)
        left -= n
        yield n


def split(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut into the chunks :func:`chunk_sizes` gives for ``seed``."""
    out = []
    pos = 0
    for n in chunk_sizes(seed, len(data)):
        out.append(data[pos : pos + n])
        pos += n
    return out


class MemoryCheck:
    """Peak traced memory of one input, compared with a bound the harness computes.

    tracemalloc slows every allocation (about 2-3x on these harnesses), so by default it
    measures one input in 16, picked from the input's bytes (so a crash replays). Set
    ``FUZZ_TRACEMALLOC=all`` to measure every input, ``=off`` to measure none.
    """

    def __init__(self) -> None:
        mode = os.environ.get("FUZZ_TRACEMALLOC", "sample")
        if mode not in ("sample", "all", "off"):
            raise SystemExit(f"FUZZ_TRACEMALLOC must be sample, all or off, not {mode!r}")
        self.mode = mode
        self.active = False

    def start(self, data: bytes) -> None:
        if self.mode == "off" or (self.mode == "sample" and zlib.crc32(data) & 15):
            self.active = False
            return
        self.active = True
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        tracemalloc.clear_traces()
        tracemalloc.reset_peak()

    def check(self, bound: int, what: str) -> None:
        """Fail if the peak traced since :meth:`start` exceeds ``bound`` bytes."""
        if not self.active:
            return
        _, peak = tracemalloc.get_traced_memory()
        if peak > bound:
            raise AssertionError(f"{what}: peak traced memory {peak} > bound {bound} bytes")

    def stop(self) -> None:
        if self.active and self.mode == "sample":
            tracemalloc.stop()
        self.active = False


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``test_one_input`` to atheris (libFuzzer flags and corpus paths come from argv)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
