"""ASGI servers on websock: a uvicorn WebSocket backend.

::

    import uvicorn
    from websock.asgi import WebSocketProtocol

    uvicorn.run(app, ws=WebSocketProtocol)  # FastAPI, Starlette or any ASGI app

uvicorn parses HTTP and hands each WebSocket upgrade request to
:class:`WebSocketProtocol`, which runs the rest of the connection on websock's sans-I/O core
(``websock.protocol``). Install with ``pip install 'pywebsock[asgi]'``.
"""

from __future__ import annotations

try:
    import uvicorn  # noqa: F401  (checked here: the error below names the extra)
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError(
        "websock.asgi is a uvicorn WebSocket backend and needs uvicorn: "
        "pip install 'pywebsock[asgi]'"
    ) from None

from .protocol import WebSocketProtocol  # noqa: E402

__all__ = ["WebSocketProtocol"]
