"""The hostile suite: attacks on a real server process over loopback (docs/hostile.md).
Every test here carries the ``hostile`` marker.

    .venv/bin/python -m pytest -n 2 tests/hostile -q
    WEBSOCK_HOSTILE_SERVER=websock-sync .venv/bin/python -m pytest -n 2 tests/hostile -q
    WEBSOCK_HOSTILE_SERVER=websockets .venv/bin/python -m pytest -n 2 tests/hostile -q

Knobs (environment): WEBSOCK_HOSTILE_SERVER (websock | websock-sync | websockets),
WEBSOCK_HOSTILE_SRC (a ``src`` directory to import websock from in the server and client
processes), WEBSOCK_HOSTILE_ECHO_BOUND (seconds, 2.5), WEBSOCK_HOSTILE_IDLE_CONNS (10000;
2000 for websock-sync), WEBSOCK_HOSTILE_HEADER_REQUESTS (10000).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hostile_harness import raise_nofile


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hostile: attacks on a real server process over loopback (tests/hostile, Linux only)",
    )
    # Many raw connections in the test process (the server and client processes raise
    # their own limit when they start).
    raise_nofile()


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if sys.platform.startswith("linux"):
        return
    skip = pytest.mark.skip(reason="the hostile suite reads /proc: Linux only")
    for item in items:
        if item.get_closest_marker("hostile") is not None:
            item.add_marker(skip)
