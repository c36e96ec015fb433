"""Attack 8: invalid Close frames, and a violation followed by the peer's Close.

The server's Close (1002 or 1007) arrives, then its FIN within 1 s (the peer's Close has
arrived, so nothing is left to wait for; close_timeout is the default 10 s), never an RST.
"""

from __future__ import annotations

import pytest
from hostile_attacks import EXPECTED_CLOSE, invalid_close
from hostile_harness import IMPL, check_echo, check_no_problems

pytestmark = pytest.mark.hostile

FIN_BOUND_S = 1.0


@pytest.mark.parametrize("case", sorted(EXPECTED_CLOSE))
async def test_invalid_close(case: str) -> None:
    result = await invalid_close(IMPL, case)
    check_no_problems(result)
    assert result.close_code == EXPECTED_CLOSE[case], result.describe()
    assert result.ending == "fin", result.describe()
    assert result.details["end_after_close_s"] < FIN_BOUND_S, result.describe()
    check_echo(result)
