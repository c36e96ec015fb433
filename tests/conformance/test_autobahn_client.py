"""websock's client (compliance/client.py) against kosoku's fuzzingserver: asyncio over ws
and wss, websock.sync over ws.

The harness is in conftest.py; compliance/README.md says how to run it by hand and
what each verdict means.
"""

from __future__ import annotations

import pytest


@pytest.mark.conformance
@pytest.mark.parametrize("variant", ["client-ws", "client-wss", "client-sync-ws"])
def test_autobahn_client(autobahn, variant: str) -> None:
    autobahn.run(variant)
