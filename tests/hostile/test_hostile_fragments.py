"""Attack 5: one message in 1,000,000 one-byte fragments.

Memory stays bounded either way; a server with a per-message fragment bound
(``max_fragments``, 262,144 by default) closes with 1009 once it is exceeded.
"""

from __future__ import annotations

import pytest
from hostile_attacks import many_fragments
from hostile_harness import IMPL, check_echo, check_no_problems, check_rss

pytestmark = pytest.mark.hostile

FRAGMENTS_BOUND_MIB = 64


@pytest.mark.timeout(180)
async def test_million_one_byte_fragments() -> None:
    result = await many_fragments(IMPL, count=1_000_000)
    check_no_problems(result)
    check_rss(result, FRAGMENTS_BOUND_MIB)
    check_echo(result)
    if result.details["max_fragments"] != "supported":
        pytest.skip(
            f"{IMPL}.serve() has no max_fragments keyword yet: the Close 1009 assertion is "
            f"skipped (memory and echo were checked; observed: {result.outcome})"
        )
    assert result.close_code == 1009, result.describe()
    assert result.ending == "fin", result.describe()
