"""Attack 12: connections the server refuses, which then linger.

After an HTTP 4xx the server half-closes and drains for at most CLOSE_GRACE (1 s); a
connection beyond ``max_connections`` waits at most REFUSED_LINGER (1 s) for its request,
is answered 503, then drains the same way. Whatever the refused peer does (trickles a byte
every 0.2 s, or sends FIN mid-head), the server's socket is freed within those bounds plus
slack, and the server is quiet afterwards (no thread left spinning on a closed socket).
websockets has no ``max_connections``: its 503 cases are skipped.
"""

from __future__ import annotations

import pytest
from hostile_attacks import CLOSE_GRACE, REFUSAL_CASES, REFUSED_LINGER, refusal_linger
from hostile_harness import IMPL, check_echo, check_no_problems

pytestmark = pytest.mark.hostile

#: Scheduling and /proc polling on a loaded machine.
SLACK = 1.5
#: CPU seconds the server may use in the quiet 2 s window: an idle server uses ~0.01 s; a thread
#: spinning on a closed socket, most of it, and still ~0.4 s on a machine loaded 4 times over.
QUIET_CPU_S = 0.15


@pytest.mark.parametrize("case", REFUSAL_CASES)
async def test_refused_connection_freed(case: str) -> None:
    if case.startswith("503") and IMPL == "websockets":
        pytest.skip("websockets has no max_connections")
    result = await refusal_linger(IMPL, case)
    check_no_problems(result)
    status = result.details["status"]
    if case == "400-trickle":
        assert isinstance(status, int) and 400 <= status < 500, result.describe()
    elif case == "503":
        assert status == 503, result.describe()
    bound = CLOSE_GRACE + SLACK + (REFUSED_LINGER if case.startswith("503") else 0.0)
    freed = result.details["freed_after_s"]
    assert freed is not None and freed <= bound, result.describe()
    quiet = result.details["quiet_cpu_s"]
    assert quiet is not None and quiet < QUIET_CPU_S, result.describe()
    check_echo(result)
