"""Attack 7: abusive opening requests.

Thousands of headers, an oversize head, NUL/CR/LF in names, values and the target: an HTTP
4xx (400/431), quickly, no traceback. Huge extension offers and thousands of subprotocol
tokens within the size limit: a quick answer, 101 or 4xx. Header names never seen before in
10,000 requests: the server's memory returns near its baseline (no interning leak).
"""

from __future__ import annotations

import os

import pytest
from hostile_attacks import header_abuse, unique_header_names
from hostile_harness import IMPL, check_echo, check_no_problems

pytestmark = pytest.mark.hostile

HEADER_REQUESTS = int(os.environ.get("WEBSOCK_HOSTILE_HEADER_REQUESTS", "10000"))
#: 10,000 requests x 100 new names: a leak of the names alone would be ~100 MiB.
UNIQUE_NAMES_RSS_AFTER_MIB = 24
ANSWER_BOUND_S = 2.0


def _is_4xx(status: object) -> bool:
    return isinstance(status, int) and 400 <= status < 500


@pytest.mark.parametrize("case", ["many-headers", "oversize-head", "control-chars"])
async def test_rejected_with_4xx(case: str) -> None:
    result = await header_abuse(IMPL, case)
    check_no_problems(result)
    statuses = result.details["statuses"]
    assert all(_is_4xx(status) for status in statuses.values()), result.describe()
    assert max(result.details["seconds"].values()) < ANSWER_BOUND_S, result.describe()
    check_echo(result)


@pytest.mark.parametrize("case", ["huge-extension-offer", "many-subprotocols"])
async def test_answered_quickly(case: str) -> None:
    result = await header_abuse(IMPL, case)
    check_no_problems(result)
    statuses = result.details["statuses"]
    assert all(status == 101 or _is_4xx(status) for status in statuses.values()), result.describe()
    assert max(result.details["seconds"].values()) < ANSWER_BOUND_S, result.describe()
    check_echo(result)


@pytest.mark.timeout(280)
async def test_unique_header_names() -> None:
    result = await unique_header_names(IMPL, requests=HEADER_REQUESTS, names=100)
    check_no_problems(result)
    upgraded = result.details["statuses"].get(101, 0)
    assert upgraded >= 0.99 * HEADER_REQUESTS, result.describe()
    assert result.details["sockets_freed"], result.describe()
    assert result.rss_after_mib is not None
    assert result.rss_after_mib < UNIQUE_NAMES_RSS_AFTER_MIB, result.describe()
    check_echo(result)
