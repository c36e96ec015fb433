"""Attack 10: many idle connections, then SIGTERM: every one gets Close 1001.

WEBSOCK_HOSTILE_IDLE_CONNS scales it (10,000 by default). The command line's echo server
(``python -m websock serve``) is checked too: it closes with 1001 on SIGTERM.
"""

from __future__ import annotations

import pytest
from hostile_attacks import IDLE_CONNECTIONS, cli_shutdown, shutdown_idle
from hostile_harness import IMPL, check_echo, check_no_problems

pytestmark = pytest.mark.hostile


@pytest.mark.timeout(300)
async def test_shutdown_with_idle_connections() -> None:
    result = await shutdown_idle(IMPL, IDLE_CONNECTIONS)
    check_no_problems(result)
    opened = result.details["opened"]
    assert opened >= 0.99 * IDLE_CONNECTIONS, result.describe()
    assert result.details["got_1001"] == opened, result.describe()
    assert result.details["exit_code"] == 0, result.describe()
    check_echo(result)


async def test_cli_sigterm_closes_with_1001() -> None:
    if IMPL != "websock":
        pytest.skip("the command line is websock's")
    result = await cli_shutdown(IMPL, 200)
    check_no_problems(result)
    assert result.details["got_1001"] == 200, result.describe()
    assert result.details["exit_code"] == 0, result.describe()
