"""Attacks 3 and 4: permessage-deflate as an amplifier.

- 300 messages inflating to 1 MB each (zeros: ~1 kB on the wire) in one write: inflation
  must stop when the receive queue is full (bounded in messages and bytes), not after the
  whole read; with 8 such connections the good client is still served.
- Deflate bombs beyond max_message_size (1 MiB): Close 1009 and FIN, memory bounded, in one
  frame, in fragments, and against a window shared with a previous message.
"""

from __future__ import annotations

import pytest
from hostile_attacks import compressed_batch, deflate_bomb
from hostile_harness import IMPL, check_echo, check_no_problems, check_rss

pytestmark = pytest.mark.hostile

#: One connection: the queue (16 messages, or its byte bound) plus what is being echoed.
BATCH_BOUND_MIB = 64
#: Eight connections: about 10 MiB each (a queue bounded in bytes, the message being
#: echoed, zlib state), far below the 8 x ~130 MiB of inflating a whole read.
BATCH8_BOUND_MIB = 80
BOMB_BOUND_MIB = 32


async def test_compressed_batch_one_connection() -> None:
    result = await compressed_batch(IMPL, connections=1)
    check_no_problems(result)
    assert result.outcome != "permessage-deflate not negotiated", result.describe()
    check_rss(result, BATCH_BOUND_MIB)
    check_echo(result)


async def test_compressed_batch_eight_connections() -> None:
    result = await compressed_batch(IMPL, connections=8)
    check_no_problems(result)
    assert result.outcome != "permessage-deflate not negotiated", result.describe()
    check_rss(result, BATCH8_BOUND_MIB)
    check_echo(result)


@pytest.mark.parametrize("variant", ["frame", "fragments", "takeover"])
async def test_deflate_bomb(variant: str) -> None:
    result = await deflate_bomb(IMPL, variant)
    check_no_problems(result)
    assert result.close_code == 1009, result.describe()
    assert result.ending == "fin", result.describe()
    check_rss(result, BOMB_BOUND_MIB)
    check_echo(result)
