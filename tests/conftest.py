"""Suite-wide settings: the event loop under test, and no proxy from the environment.

The clients take their proxy from ``http_proxy``/``https_proxy``/``all_proxy`` by default, as
curl does. A machine that sets them (a CI runner reaching its package registry through a
proxy, say) would send every loopback test connection there: the suite clears them at start,
for itself and the processes it starts; the proxy tests set them where they test them.

``WEBSOCK_TEST_LOOP=uvloop`` runs every asyncio test on uvloop instead of asyncio's own
loop (scripts/test does one such run of the integration and interop tests), since uvloop's
transports differ from asyncio's in ways a protocol can trip over.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

# Real proxy servers (tinyproxy, dante, a TLS front) as fixtures: tests/proxyservers.py.
pytest_plugins = ["proxyservers"]

for _name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)

if os.environ.get("WEBSOCK_TEST_LOOP") == "uvloop":
    import uvloop

    def pytest_asyncio_loop_factories(
        config: Any, item: Any
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        return {"uvloop": uvloop.new_event_loop}
