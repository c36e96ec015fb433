"""Attacks 1 and 2: floods from a peer that never reads, in both roles.

A peer that sends and never reads must not make us buffer without bound: our Pongs (and
echoes) pile up in the write buffer unless reading from that peer stops. Each flood lasts up
to 10 s; it ends early once memory is over the bound (a failure) or once the target has not
read a 64 kB chunk for 2 s (it stopped reading from the flooder: nothing more can pile up).

Memory must stay under 64 MiB over the baseline and, since a loaded machine may read slowly
(a server that buffers every Pong may then not reach 64 MiB in 10 s), also under
8 MiB + 25% of what the target read: a server that buffers its answers grows by ~100% of it.

And the other side of it: a peer that writes a batch of 300,000 Pings and a message before
it reads anything is not a flood but a pipelining client; the server must keep reading
while its Pongs cannot be written (answering the latest Ping suffices), and echo the message.
"""

from __future__ import annotations

import pytest
from hostile_attacks import (
    FLOOD_BOUND_MIB,
    FLOOD_SECONDS,
    data_flood_client,
    data_flood_server,
    ping_batch_then_read,
    ping_flood_client,
    ping_flood_server,
)
from hostile_harness import IMPL, AttackResult, check_echo, check_no_problems, check_rss

pytestmark = pytest.mark.hostile

FIXED_MIB = 8.0
SHARE = 0.25


def check_flood(result: AttackResult) -> None:
    check_rss(result, FLOOD_BOUND_MIB)
    read = result.details["sent_mib"]
    limit = FIXED_MIB + SHARE * read
    assert result.rss_growth_mib is not None
    assert result.rss_growth_mib < limit, (
        f"{result.impl}: memory grew {result.rss_growth_mib} MiB while the peer sent "
        f"{read} MiB: buffered in proportion (limit {limit:.1f} MiB): {result.describe()}"
    )


async def test_ping_flood_server() -> None:
    result = await ping_flood_server(IMPL, FLOOD_SECONDS)
    check_no_problems(result)
    check_flood(result)
    check_echo(result)


async def test_ping_flood_client() -> None:
    result = await ping_flood_client(IMPL, FLOOD_SECONDS)
    check_no_problems(result)
    check_flood(result)


async def test_data_flood_server() -> None:
    result = await data_flood_server(IMPL, FLOOD_SECONDS)
    check_no_problems(result)
    check_flood(result)
    check_echo(result)


async def test_data_flood_client() -> None:
    result = await data_flood_client(IMPL, FLOOD_SECONDS)
    check_no_problems(result)
    check_flood(result)


async def test_ping_batch_then_read() -> None:
    result = await ping_batch_then_read(IMPL)
    check_no_problems(result)
    assert result.details["write_s"] is not None, result.describe()
    assert result.details["echo_s"] is not None, result.describe()
    check_rss(result, FLOOD_BOUND_MIB)
    check_echo(result)
