"""Constants of the interop tests, importable by name from any test module (a conftest is not:
several directories have one, and ``from conftest import`` gets whichever came first)."""

from __future__ import annotations

import os

#: Bound on every wait in these tests, scaled by ``WEBSOCK_TEST_TIMEOUT_FACTOR`` on slow
#: machines: a stuck test fails instead of hanging; no test measures a duration.
TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
MiB = 1 << 20
