"""Attack 6: connections that never complete their opening (open_timeout=2 s).

Partial heads (a byte per 100 ms), silent TCP, a wss server given nothing or half a
ClientHello: each is dropped by open_timeout and its socket freed; 500 of them at once do
not stop the good client, and the server's sockets and memory return to their baseline.
"""

from __future__ import annotations

import pytest
from hostile_attacks import slowloris, slowloris_mass
from hostile_harness import IMPL, check_echo, check_no_problems

pytestmark = pytest.mark.hostile

OPEN_TIMEOUT = 2.0
#: Dropped within open_timeout plus this (scheduling on a loaded machine).
SLACK = 1.5
MASS_RSS_AFTER_MIB = 16


@pytest.mark.parametrize("variant", ["partial-head", "silent", "tls-silent", "tls-partial-hello"])
async def test_slowloris(variant: str) -> None:
    result = await slowloris(IMPL, variant, open_timeout=OPEN_TIMEOUT)
    check_no_problems(result)
    assert result.ending in ("fin", "rst"), result.describe()
    assert result.details["closed_after_s"] <= OPEN_TIMEOUT + SLACK, result.describe()
    assert result.details["socket_freed"], result.describe()
    check_echo(result)


async def test_slowloris_500() -> None:
    result = await slowloris_mass(IMPL, connections=500, open_timeout=OPEN_TIMEOUT)
    check_no_problems(result)
    assert result.details["still_open"] == 0, result.describe()
    assert result.details["all_closed_after_s"] <= OPEN_TIMEOUT + SLACK + 1, result.describe()
    assert result.details["sockets_freed"], result.describe()
    assert result.rss_after_mib is not None
    assert result.rss_after_mib < MASS_RSS_AFTER_MIB, result.describe()
    check_echo(result)
