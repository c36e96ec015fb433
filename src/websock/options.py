"""Every knob of ``serve()`` and ``connect()``, in one typed, validated, frozen object.

Both I/O layers (:mod:`websock.asyncio`, :mod:`websock.sync`) and both roles take their
settings from :class:`Options`: the defaults are defined here, once, each with its reason,
and ``Options.__post_init__`` validates them once, when ``serve()``/``connect()`` is
called, so that a bad value fails where it was written rather than on the first connection.

No I/O imports here: the asyncio and sync layers both import this module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .connection_logger import LoggerLike
from .protocol.connection import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_STREAMING_SIZE,
)
from .protocol.extensions.base import ClientExtensionFactory, ServerExtensionFactory
from .protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from .protocol.forwarded import TrustedProxies
from .protocol.handshake import USER_AGENT, ClientHandshake, HeadersLike
from .protocol.http import MAX_HEAD_SIZE, MAX_HEADERS, Headers
from .protocol.proxy import Proxy, ProxyConnect
from .protocol.uri import WebSocketURI
from .reconnect import DEFAULT_BACKOFF, Backoff, ProcessException

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
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_STREAMING_SIZE",
    "DEFAULT_BROADCAST_LIMIT",
    "SLOW_CONSUMER_POLICIES",
    "default_max_connections",
    "thread_limit",
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
#: Redirects a client follows in one opening handshake: browsers and curl stop at 20 and
#: 50; a WebSocket endpoint that needs more than a couple is misconfigured.
DEFAULT_MAX_REDIRECTS = 10


#: A connection with more than this many bytes of output not yet taken by the kernel is a
#: slow consumer for broadcast(): 1 MiB, a second of a 1 MB/s feed, far more than a reading
#: client lags on a working network, and one default-size message (max_message_size): a
#: stalled subscriber holds at most this plus one message of the server's memory. For large
#: fan-outs, lower it: 10,000 stalled subscribers may hold up to 10 GiB with the default.
DEFAULT_BROADCAST_LIMIT = 1 << 20
#: What broadcast() does to a slow consumer: skip the message for it ("drop", counted), or
#: close it with 1013 (try again later) so that it reconnects and resynchronises ("close").
SLOW_CONSUMER_POLICIES = ("drop", "close")

#: max_connections="auto" keeps this many file descriptors (or a tenth of the limit, if
#: more) for everything else: see websock.asyncio.server for the reasoning.
MAX_CONNECTIONS_RESERVE = 32

Compression = Literal["deflate"] | None | Sequence[Any]


class _Absent:
    """The type of :data:`ABSENT`."""

    def __repr__(self) -> str:
        return "ABSENT"


#: The default of an alias argument: tells "not given" from any value, None included.
ABSENT = _Absent()


def user_agent_alias(user_agent: str | None, user_agent_header: str | None | _Absent) -> str | None:
    """``user_agent``, or websockets' name for it, ``user_agent_header``, if that was given
    (both at once is a mistake: TypeError)."""
    if isinstance(user_agent_header, _Absent):
        return user_agent
    if user_agent != USER_AGENT:
        raise TypeError("give user_agent or user_agent_header (its websockets name), not both")
    return user_agent_header


def default_max_connections(threads_per_connection: int = 0) -> int | None:
    """The limit ``max_connections="auto"`` stands for: 90% of the soft limit on open
    files (RLIMIT_NOFILE), keeping at least 32 descriptors; None where there is no limit.

    With ``threads_per_connection`` (the threading server: 2), also at most 90% of the
    threads this process may start (:func:`thread_limit`) divided by it: threads run out
    long before descriptors on a machine with a high ``ulimit -n``.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    limits: list[int] = []
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft > 0:
        limits.append(max(1, soft - max(MAX_CONNECTIONS_RESERVE, soft // 10)))
    if threads_per_connection > 0:
        threads = thread_limit()
        if threads is not None:
            limits.append(max(1, threads * 9 // 10 // threads_per_connection))
    return min(limits) if limits else None


def thread_limit() -> int | None:
    """How many threads (and processes) Linux lets this process start, at most: the least
    of ``kernel.pid_max``, ``kernel.threads-max``, ``ulimit -u``, the cgroup's ``pids.max``
    and a sixth of ``vm.max_map_count`` (each thread maps its stack and guard page, and
    Python adds a few maps per thread). None where none of them is known."""
    limits: list[int] = []
    for path, divisor in (
        ("/proc/sys/kernel/pid_max", 1),
        ("/proc/sys/kernel/threads-max", 1),
        ("/sys/fs/cgroup/pids.max", 1),  # cgroup v2; "max" means none
        ("/proc/sys/vm/max_map_count", 6),
    ):
        value = _read_int(path)
        if value is not None and value > 0:
            limits.append(value // divisor)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - not Linux
        pass
    return min(limits) if limits else None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as file:
            return int(file.read().strip())
    except (OSError, ValueError):  # absent, unreadable, or "max"
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def _check_pair(name: str, value: object) -> None:
    """``value``, when not an int, must be a (first, second) pair: a tuple or a list."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return
    raise ValueError(f"{name} must be an int or a pair of two, got {value!r}")


def _check_header_value(name: str, header: str, value: object) -> None:
    """A header value we send on every handshake: checked now rather than per connection."""
    if value is None:
        return
    try:
        Headers().add(header, value)  # type: ignore[arg-type]  # checked right here
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The settings of a server or a client, for either I/O layer.

    Built by ``serve()`` and ``connect()`` from their keyword arguments (see their
    docstrings for what each means); exposed as ``server.options`` and
    ``connection.options``. Fields that concern one role only are ignored by the other.
    Frozen and keyword-only; :meth:`replace` derives a modified copy. Every value is checked
    at construction: a bad one raises :class:`ValueError` naming the field.

    Only protocol settings live here. Where and how to reach the network (``ssl``,
    ``sock``, ``host``, ``port``, ``server_hostname``, the event loop's arguments) stay
    arguments of ``serve()``/``connect()``: they are I/O resources (an open socket, a context
    holding private keys, event loop arguments) that differ between the I/O layers and must
    not be copied around with the settings.
    """

    # Limits
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int | None = None
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS
    max_streaming_size: int | None = DEFAULT_MAX_STREAMING_SIZE
    # True: streaming from the first message on (recv_streaming() may take a first message
    # larger than max_message_size, which can arrive before the application's first call).
    streaming: bool = False
    max_queue: int | tuple[int | None, int | None] | None = DEFAULT_MAX_QUEUE
    write_limit: int | tuple[int, int | None] = DEFAULT_WRITE_LIMIT
    max_handshake_size: int | None = MAX_HEAD_SIZE
    max_headers: int | None = MAX_HEADERS
    # Timeouts (seconds; None disables)
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT
    # Logging (both roles): a logger, an adapter, a logger's name, or None for
    # "websock.server" / "websock.client"; each connection wraps it (connection_logger).
    logger: LoggerLike = None
    # Negotiation (both roles)
    compression: Compression = "deflate"
    subprotocols: Sequence[str] | None = None
    # Server only
    origins: Sequence[str | None] | None = None
    process_request: Callable[..., Any] | None = None
    select_subprotocol: Callable[..., Any] | None = None
    process_response: Callable[..., Any] | None = None
    max_connections: int | None = None
    trusted_proxies: Sequence[str] | None = None
    broadcast_limit: int | None = DEFAULT_BROADCAST_LIMIT
    slow_consumer: Literal["drop", "close"] = "drop"
    server_header: str | None = USER_AGENT
    # Client only
    origin: str | None = None
    additional_headers: HeadersLike | None = None
    user_agent: str | None = USER_AGENT
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    backoff: Backoff = DEFAULT_BACKOFF
    process_exception: ProcessException | None = None

    def __post_init__(self) -> None:
        _check_size("max_message_size", self.max_message_size)
        _check_size("max_frame_size", self.max_frame_size)
        _check_size("max_fragments", self.max_fragments, 1)
        _check_size("max_streaming_size", self.max_streaming_size)
        if not isinstance(self.streaming, bool):
            raise ValueError(f"streaming must be True or False, got {self.streaming!r}")
        _check_size("max_handshake_size", self.max_handshake_size, 1)
        _check_size("max_headers", self.max_headers, 1)
        _check_size("max_connections", self.max_connections, 1)
        _check_size("broadcast_limit", self.broadcast_limit)
        if self.trusted_proxies is not None:
            if isinstance(self.trusted_proxies, str):
                raise ValueError("trusted_proxies must be a list of addresses, not a string")
            TrustedProxies(self.trusted_proxies)  # raises ValueError for a bad entry
        if self.slow_consumer not in SLOW_CONSUMER_POLICIES:
            raise ValueError(f"slow_consumer must be 'drop' or 'close', got {self.slow_consumer!r}")
        if not _is_int(self.max_redirects) or self.max_redirects < 0:
            raise ValueError(f"max_redirects must be an int >= 0, got {self.max_redirects!r}")
        for name in ("open_timeout", "close_timeout", "ping_interval", "ping_timeout"):
            _check_seconds(name, getattr(self, name))
        if not _is_int(self.max_queue) and self.max_queue is not None:
            _check_pair("max_queue", self.max_queue)
        messages, size = self.queue_bounds
        _check_size("max_queue (messages)", messages, 1)
        _check_size("max_queue (bytes)", size, 1)
        if not _is_int(self.write_limit):
            _check_pair("write_limit", self.write_limit)
            high, low = self.write_limit  # type: ignore[misc]  # a pair, as just checked
            if high is None:  # the low-water mark may be None (a quarter), not this one
                raise ValueError("write_limit (high-water mark) must be an int >= 0, got None")
            _check_size("write_limit (high-water mark)", high)
            _check_size("write_limit (low-water mark)", low)
        high, low = self.write_marks
        if high < 0 or low > high:
            raise ValueError(f"write_limit must be high >= low >= 0, got {self.write_limit!r}")
        compression = self.compression
        if isinstance(compression, str) and compression != "deflate":
            raise ValueError(f"unsupported compression {compression!r}: use 'deflate' or None")
        _check_header_value("server_header", "Server", self.server_header)
        _check_header_value("user_agent", "User-Agent", self.user_agent)
        if not isinstance(self.backoff, Backoff):
            raise TypeError(f"backoff must be a websock.Backoff, got {self.backoff!r}")
        logger = self.logger
        if logger is not None and not isinstance(
            logger, (str, logging.Logger, logging.LoggerAdapter)
        ):
            raise TypeError(
                f"logger must be a logging.Logger, an adapter or a name, got {logger!r}"
            )
        if self.process_exception is not None and not callable(self.process_exception):
            raise TypeError("process_exception must be callable: exc -> None or an exception")

    @classmethod
    def from_arguments(
        cls, arguments: Mapping[str, Any], *, threads_per_connection: int = 0
    ) -> Options:
        """The Options of a ``serve()`` or ``connect()`` call, from its arguments (its
        ``locals()``): every field of Options found there, by name, validated.

        The keyword lists of serve() and connect() stay explicit (signatures that editors
        and the API reference show); this keeps them from being spelled a second time.
        ``max_connections="auto"`` is resolved here, from the limits in force now
        (:func:`default_max_connections`, given ``threads_per_connection``).
        """
        values = {name: arguments[name] for name in _FIELD_NAMES if name in arguments}
        max_connections = values.get("max_connections")
        if isinstance(max_connections, str):
            if max_connections != "auto":
                raise ValueError(
                    f"max_connections must be an int >= 1, None or 'auto', got {max_connections!r}"
                )
            values["max_connections"] = default_max_connections(threads_per_connection)
        return cls(**values)

    def client_handshake(
        self, uri: WebSocketURI, extra_headers: HeadersLike | None
    ) -> ClientHandshake:
        """The opening handshake of one client attempt at ``uri`` with these settings
        (``extra_headers``: ``additional_headers``, less what a redirect dropped)."""
        return ClientHandshake(
            uri,
            origin=self.origin,
            subprotocols=self.subprotocols,
            extensions=self.client_extensions(),
            extra_headers=extra_headers,
            user_agent=self.user_agent,
            max_size=self.max_handshake_size,
            max_headers=self.max_headers,
        )

    def proxy_connect(self, proxy: Proxy, host: str, port: int) -> ProxyConnect:
        """The CONNECT exchange with an HTTP(S) proxy for one attempt: our User-Agent, and
        the proxy's answer held to ``max_handshake_size`` and ``max_headers`` as a server's."""
        return ProxyConnect(
            proxy,
            host,
            port,
            user_agent=self.user_agent,
            max_size=self.max_handshake_size,
            max_headers=self.max_headers,
        )

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
        messages, size = max_queue  # a list is accepted too
        return messages, size

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


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Options))
