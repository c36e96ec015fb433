"""websock.sync stands on the core alone: importing it loads no asyncio (fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_import_websock_sync_loads_no_asyncio() -> None:
    code = (
        "import sys, websock.sync\n"
        "loaded = sorted(m for m in sys.modules if m == 'asyncio' or m.startswith('asyncio.')"
        " or m.startswith('aiofastnet') or m.startswith('websock.asyncio'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_the_checker_sees_asyncio_when_it_is_loaded() -> None:
    """The same check, on an import that does load asyncio: the test above can fail."""
    code = "import sys, websock\nwebsock.serve\nprint('asyncio' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "True"
