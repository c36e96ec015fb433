"""websock's server under kosoku's fuzzingclient: asyncio over ws and wss, websock.sync
(``serve --sync``) over ws.

The harness is in conftest.py; compliance/README.md says how to run it by hand and
what each verdict means.
"""

from __future__ import annotations

import pytest


@pytest.mark.conformance
@pytest.mark.parametrize("variant", ["server-ws", "server-wss", "server-sync-ws"])
def test_autobahn_server(autobahn, variant: str) -> None:
    autobahn.run(variant)


@pytest.mark.parametrize(
    ("case_id", "behavior", "close", "allow", "passes"),
    [
        ("1.1.1", "OK", "OK", False, True),
        ("7.1.6", "INFORMATIONAL", "INFORMATIONAL", False, True),
        ("7.13.1", "OK", "INFORMATIONAL", False, True),
        ("6.4.1", "NON-STRICT", "OK", False, False),
        ("5.15", "OK", "FAILED", False, False),
        ("7.9.5", "OK", "WRONG CODE", False, False),
        ("7.1.5", "OK", "UNCLEAN", False, False),
        ("9.3.1", "FAILED", "FAILED", True, False),
        ("12.1.1", "UNIMPLEMENTED", "OK", False, False),
        ("12.1.1", "UNIMPLEMENTED", "OK", True, True),
        ("13.7.18", "UNIMPLEMENTED", "INFORMATIONAL", True, True),
        ("1.1.1", "UNIMPLEMENTED", "OK", True, False),
        ("12.1.1", "NON-STRICT", "OK", True, False),
    ],
)
def test_verdict_rule(
    autobahn, case_id: str, behavior: str, close: str, allow: bool, passes: bool
) -> None:
    # NON-STRICT fails; UNIMPLEMENTED passes only in 12.*/13.* and only when allowed.
    assert autobahn.case_passes(case_id, behavior, close, allow_unimplemented=allow) is passes
