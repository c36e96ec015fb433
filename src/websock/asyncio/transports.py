"""Where TLS transports come from: aiofastnet on asyncio's own loop, else the loop itself.

asyncio's TLS layer (``asyncio.sslproto``) is written in Python: every record read or
written goes through several Python calls and a copy through memory BIOs. aiofastnet
(aio-libs) implements the same transports in Cython over OpenSSL, with the same
``asyncio.Transport`` interface. With it, 64 connections x 4 small messages over TLS went from
~91k to ~130k messages/s, and 1 MiB messages from ~550 to ~750 MB/s (benchmarks/RESULTS.md).

It is used only where it helps and is known to fit:

- for TLS connections (plain TCP is as fast with asyncio's transports, so it stays there);
- on asyncio's own event loops (uvloop has its own compiled TLS transports);
- when the package is installed (a dependency on CPython outside Windows, which has wheels
  for it), and unless ``WEBSOCK_NO_AIOFASTNET=1`` is set, which the test suite uses to run
  the TLS tests on asyncio's transports as well.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["create_server", "create_connection", "fast_tls_available"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

aiofastnet: Any
try:
    aiofastnet = importlib.import_module("aiofastnet")
except ImportError:  # pragma: no cover - depends on the platform
    aiofastnet = None


def fast_tls_available(loop: asyncio.AbstractEventLoop) -> bool:
    """True if TLS transports on ``loop`` will come from aiofastnet."""
    return (
        aiofastnet is not None
        and not os.environ.get("WEBSOCK_NO_AIOFASTNET")
        and type(loop).__module__.startswith("asyncio.")
    )


async def create_server(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Any,
    port: int | None,
    **kwargs: Any,
) -> asyncio.Server:
    """``loop.create_server(...)``, through aiofastnet for TLS where available.

    aiofastnet's server is not an ``asyncio.Server`` but has the same API.
    """
    if kwargs.get("ssl") is not None and fast_tls_available(loop):
        server = await aiofastnet.create_server(loop, protocol_factory, host, port, **kwargs)
        return cast(asyncio.Server, server)
    return await loop.create_server(protocol_factory, host, port, **kwargs)


async def create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], _P],
    **kwargs: Any,
) -> tuple[asyncio.BaseTransport, _P]:
    """``loop.create_connection(...)``, through aiofastnet for TLS where available."""
    if kwargs.get("ssl") is not None and fast_tls_available(loop):
        result = await aiofastnet.create_connection(loop, protocol_factory, **kwargs)
        return cast("tuple[asyncio.BaseTransport, _P]", result)
    return await loop.create_connection(protocol_factory, **kwargs)
