"""Per-connection loggers: every line a connection logs says which connection it is.

A server with thousands of connections logs "failing connection with 1009" many times; a
line is useful only if it tells which peer did it. Each connection logs through a
:class:`ConnectionLogger` wrapping the logger chosen with ``logger=`` (default
``websock.server`` or ``websock.client``): it prefixes the message with the connection's
short id and its peer's address, and puts the connection in the record as ``websocket``
(``%(websocket)s`` in a format string, or ``record.websocket`` in a filter).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["ConnectionLogger", "LoggerLike", "resolve_logger"]

#: What ``logger=`` accepts: a logger, an adapter, a logger's name, or None (the default).
LoggerLike = logging.Logger | logging.LoggerAdapter[Any] | str | None


def resolve_logger(logger: LoggerLike, default: str) -> logging.Logger | logging.LoggerAdapter[Any]:
    """The logger ``logger=`` designates: itself, the one with that name, or ``default``'s."""
    if logger is None:
        return logging.getLogger(default)
    if isinstance(logger, str):
        return logging.getLogger(logger)
    return logger


class ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logs through ``logger`` with ``[id peer]`` before each message.

    ``connection`` must have ``id`` (a :class:`uuid.UUID`) and ``remote_address``; the
    address is read when a line is logged, so that a connection may log before it is
    known (the adapter is made with the connection).
    """

    def __init__(
        self, logger: logging.Logger | logging.LoggerAdapter[Any], connection: Any
    ) -> None:
        super().__init__(logger, {"websocket": connection})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        assert self.extra is not None
        connection: Any = self.extra["websocket"]
        extra = kwargs.get("extra")
        kwargs["extra"] = dict(self.extra) if extra is None else {**self.extra, **extra}
        return f"[{connection.id.hex[:8]} {_peer(connection)}] {msg}", kwargs


def _peer(connection: Any) -> str:
    try:
        address = connection.remote_address
    except Exception:  # a closed transport may refuse: the line matters more
        address = None
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "-" if not address else str(address)
