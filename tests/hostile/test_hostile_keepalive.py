"""Attack 9: keepalive against a dead peer, and against a slow but live one.

- ping_interval=1, ping_timeout=1, a peer that never reads nor answers: freed within
  ping_interval + ping_timeout + 1 s (plus scheduling slack), not after close_timeout (10 s).
- ping_interval=0.2, ping_timeout=0.3, a 200 kB frame uploaded at 100 kB/s: the bytes
  arriving prove the peer alive; no Close 1011, and the message is echoed.
- ping_interval=0.5, ping_timeout=0.5 on a busy server (its connections get descriptors
  above 1023, out of select()'s range): a live client is never closed.
"""

from __future__ import annotations

import pytest
from hostile_attacks import dead_peer, keepalive_busy, slow_upload
from hostile_harness import IMPL, check_echo, check_no_problems

pytestmark = pytest.mark.hostile

#: Scheduling and /proc polling on a loaded machine.
SLACK = 0.75


async def test_dead_peer_freed() -> None:
    interval, timeout = 1.0, 1.0
    bound = interval + timeout + 1 + SLACK
    result = await dead_peer(IMPL, interval, timeout, give_up=bound + 1)
    check_no_problems(result)
    freed = result.details["freed_after_s"]
    assert freed is not None and freed <= bound, result.describe()
    check_echo(result)


async def test_slow_upload_not_closed() -> None:
    result = await slow_upload(
        IMPL, size=200_000, rate=100_000, ping_interval=0.2, ping_timeout=0.3
    )
    check_no_problems(result)
    assert result.close_code is None, result.describe()
    assert result.details.get("echo") is True, result.describe()
    check_echo(result)


async def test_keepalive_with_descriptors_above_1023() -> None:
    result = await keepalive_busy(IMPL)
    check_no_problems(result)
    assert result.close_code is None, result.describe()
    check_echo(result)
