"""Every knob of ``serve()`` and ``connect()``, in one typed, validated, frozen object.

Both I/O layers (:mod:`websock.asyncio`, :mod:`websock.sync`) and both roles take their
settings from :class:`Options`: the defaults are defined here, once, each with its reason,
and :meth:`Options.__post_init__` validates them once, when ``serve()``/``connect()`` is
called, so that a bad value fails where it was written rather than on the first connection.

No I/O imports here: the asyncio and sync layers both import this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .protocol.extensions.base import ClientExtensionFactory, ServerExtensionFactory
from .protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from .protocol.handshake import USER_AGENT, HeadersLike
from .protocol.http import MAX_HEAD_SIZE, MAX_HEADERS

__all__ = [
    "Options",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_WRITE_LIMIT",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "CLOSE_GRACE",
]

# Defaults, each with its reason.

#: The byte bound of the receive queue when ``max_queue`` gives only a message count: 1 MiB,
#: the default message size limit, so that a connection whose application stalls holds at
#: most about 2 MiB of received messages (the queue plus the last message delivered).
DEFAULT_MAX_QUEUE_BYTES = 1 << 20
#: 16 messages (websockets' value) and 1 MiB: enough to absorb a burst while the handler
#: works, small enough that a stalled handler holds at most 1 MiB plus one message before the
#: core stops parsing and reading pauses (docs/dos-budget.md).
DEFAULT_MAX_QUEUE: tuple[int | None, int | None] = (16, DEFAULT_MAX_QUEUE_BYTES)
#: 64 KiB high-water mark: a few TCP windows; send() waits beyond it, so a slow reader cannot
#: make us buffer without bound (asyncio's default is the same).
DEFAULT_WRITE_LIMIT = 65536
#: 10 s for the opening handshake and for the closing handshake: long enough for a slow
#: mobile link, short enough to free resources held by a dead or hostile peer.
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Keepalive: a ping every 20 s keeps NAT and proxy mappings alive (most drop idle TCP after
#: 30-60 s); a peer that does not answer within 20 s is considered dead.
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
#: After the server ends TCP (FIN after its Close), it drains what the peer still sends for
#: at most this long (and at most close_timeout): a well-behaved peer closes its side within
#: a round trip of our FIN.
CLOSE_GRACE = 1.0

Compression = Literal["deflate"] | None | Sequence[Any]


def _check_size(name: str, value: object, minimum: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or None, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The settings of a server or a client, for either I/O layer.

    Built by ``serve()`` and ``connect()`` from their keyword arguments (see their
    docstrings for what each means); exposed as ``server.options`` and
    ``connection.options``. Fields that concern one role only are ignored by the other.
    """

    # Limits
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int | None = None
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS
    max_queue: int | tuple[int | None, int | None] | None = DEFAULT_MAX_QUEUE
    write_limit: int | tuple[int, int | None] = DEFAULT_WRITE_LIMIT
    max_handshake_size: int | None = MAX_HEAD_SIZE
    max_headers: int | None = MAX_HEADERS
    # Timeouts (seconds; None disables)
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT
    # Negotiation (both roles)
    compression: Compression = "deflate"
    subprotocols: Sequence[str] | None = None
    # Server only
    origins: Sequence[str | None] | None = None
    process_request: Callable[..., Any] | None = None
    max_connections: int | None = None
    server_header: str | None = USER_AGENT
    # Client only
    origin: str | None = None
    additional_headers: HeadersLike | None = None
    user_agent: str | None = USER_AGENT

    def __post_init__(self) -> None:
        _check_size("max_message_size", self.max_message_size)
        _check_size("max_frame_size", self.max_frame_size)
        _check_size("max_fragments", self.max_fragments, 1)
        _check_size("max_handshake_size", self.max_handshake_size, 1)
        _check_size("max_headers", self.max_headers, 1)
        _check_size("max_connections", self.max_connections, 1)
        for name in ("open_timeout", "close_timeout", "ping_interval", "ping_timeout"):
            _check_seconds(name, getattr(self, name))
        messages, size = self.queue_bounds
        if messages is not None and messages < 1:
            raise ValueError("max_queue must be >= 1 message, or None")
        if size is not None and size < 1:
            raise ValueError("the byte bound of max_queue must be >= 1, or None")
        high, low = self.write_marks
        if high < 0 or low < 0 or low > high:
            raise ValueError(f"write_limit must be high >= low >= 0, got {self.write_limit!r}")
        compression = self.compression
        if isinstance(compression, str) and compression != "deflate":
            raise ValueError(f"unsupported compression {compression!r}: use 'deflate' or None")

    def replace(self, **changes: Any) -> Options:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def queue_bounds(self) -> tuple[int | None, int | None]:
        """``max_queue`` as (messages, bytes); an int keeps the 1 MiB byte bound."""
        max_queue = self.max_queue
        if max_queue is None:
            return None, None
        if isinstance(max_queue, int):
            return max_queue, DEFAULT_MAX_QUEUE_BYTES
        return max_queue

    @property
    def write_marks(self) -> tuple[int, int]:
        """``write_limit`` as (high, low); the low-water mark defaults to a quarter."""
        limit = self.write_limit
        if isinstance(limit, int):
            return limit, limit // 4
        high, low = limit
        return high, high // 4 if low is None else low

    def server_extensions(self) -> list[ServerExtensionFactory]:
        """The extension factories a server negotiates with."""
        compression = self.compression
        if compression is None:
            return []
        if compression == "deflate":
            return [ServerPerMessageDeflateFactory()]
        return list(compression)

    def client_extensions(self) -> list[ClientExtensionFactory]:
        """The extension factories a client offers."""
        compression = self.compression
        if compression is None:
            return []
        if compression == "deflate":
            return [ClientPerMessageDeflateFactory()]
        return list(compression)
