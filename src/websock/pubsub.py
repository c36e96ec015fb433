"""Topics: publish a message to every connection subscribed to a topic, in this process
and, through Redis, in every process on every host.

::

    hub = websock.pubsub.Hub()                      # this process only
    hub = websock.pubsub.Hub(redis_url="redis://127.0.0.1:6379/0")   # every process

    async with hub:                                 # start()/close() the Redis backplane
        async def handler(ws: websock.ServerConnection) -> None:
            async for message in ws:
                hub.subscribe(ws, "news")           # no await
                hub.publish("news", message)        # no await: BroadcastResult

Local fan-out
-------------

:meth:`Hub.publish` hands the message to :func:`websock.asyncio.broadcast.broadcast` with the
topic's subscribers: it is framed (and compressed) once, whatever the number of subscribers,
and a slow consumer gets the broadcast policy (dropped or closed, counted) instead of
delaying the others. Every method but the Redis lifecycle (:meth:`Hub.start`,
:meth:`Hub.close`, :meth:`Hub.sync`) is synchronous; call them from the event loop's thread,
as any connection method.

A connection leaves all its topics when its TCP connection closes (a done callback on its
``connection_lost_waiter``, no task per connection), and a topic without subscribers is
forgotten: the hub holds memory only for topics somebody listens to.

Redis backplane
---------------

With ``redis_url``, a hub joins every other hub using the same Redis server and ``prefix``:

- **Channels**: one Redis pub/sub channel per topic, ``prefix + topic`` (``"websock:news"``).
  The hub SUBSCRIBEs to a topic's channel when its first local subscriber appears and
  UNSUBSCRIBEs when its last one leaves, so a process only receives the topics it serves.
- **Envelope**: what goes through Redis is ``b"WS1"`` + the publishing hub's id (16 bytes,
  a uuid4 per :class:`Hub`) + ``b"t"`` (text) or ``b"b"`` (binary) + the payload (UTF-8 for
  text). A hub delivers its own publishes locally at once and ignores their echo from Redis
  (same id): every subscriber gets a message once. An envelope in another format (another
  program publishing on the channel) is counted in ``stats.malformed`` and ignored, and so
  is text that is not UTF-8.
- **Connections**: two per hub. One only PUBLISHes, in order: publishes from one hub reach
  Redis in the order of :meth:`Hub.publish` calls. The other only (UN)SUBSCRIBEs, PINGs and
  receives: every message of a channel arrives in the order Redis took it.
- **Delivery semantics**: *at most once*, in *per-publisher order*: the messages of one hub
  reach each subscriber in the order they were published, never twice; messages of two hubs
  may interleave differently for subscribers of different processes. A message published
  before another process's SUBSCRIBE reached Redis, or while Redis is unreachable, is lost
  for that process (:meth:`Hub.sync` waits until this hub's subscriptions are in place).
  Redis pub/sub stores nothing: a process that needs every message must resynchronise
  from a store of its own after an outage.

``publish()`` never awaits Redis. It puts the envelope in a bounded outgoing queue
(``max_pending`` messages and ``max_pending_bytes`` bytes: 1024 messages and 16 MiB by
default) that one task drains, PUBLISHing all queued envelopes in one pipelined write and
then reading their replies. When the queue is full, the new envelope is dropped (the queue
keeps its order) and counted in ``stats.backplane_dropped``.

**While Redis is unreachable** (refused, reset, closed, or silent: the subscriber connection
PINGs every ``ping_interval`` seconds of silence and a reply must come within ``timeout``):

- local delivery goes on as before;
- publishes are not queued but dropped for the other processes and counted in
  ``stats.backplane_dropped``, as are the envelopes queued or in flight when the connection
  failed (Redis may or may not have taken those);
- one WARNING on the ``websock.pubsub`` logger when the outage starts (not one per message
  nor per attempt), reconnection attempts with :class:`~websock.reconnect.Backoff`
  (``backoff``: 0.1 s doubling up to 10 s by default), one INFO line when Redis is back,
  with the outage's length and the messages dropped meanwhile;
- once back, the hub SUBSCRIBEs again to every topic with local subscribers.

:meth:`Hub.start` makes a first connection attempt and returns, connected or not: a server
can start while Redis restarts (the WARNING says so, and the hub keeps trying).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal

from .asyncio.broadcast import BroadcastResult, broadcast
from .asyncio.connection import Connection
from .options import ABSENT, _Absent
from .protocol.broadcast import message_payload
from .reconnect import Backoff

__all__ = ["Hub", "HubStats", "DEFAULT_PREFIX", "ENVELOPE_MAGIC", "REDIS_BACKOFF"]

logger = logging.getLogger("websock.pubsub")

#: Default prefix of the Redis channels: topic ``news`` is channel ``websock:news``.
DEFAULT_PREFIX = "websock:"
#: First bytes of every envelope (format version 1).
ENVELOPE_MAGIC = b"WS1"
#: Reconnection delays to Redis: short at first (a restart takes a second), at most 10 s.
REDIS_BACKOFF = Backoff(initial=0.1, maximum=10.0, factor=2.0)

_ORIGIN_SIZE = 16
_HEADER_SIZE = len(ENVELOPE_MAGIC) + _ORIGIN_SIZE + 1
_TEXT = ord("t")
_BINARY = ord("b")
#: Envelopes PUBLISHed in one pipelined write, at most.
_BATCH = 256


@dataclass
class HubStats:
    """Counters of a :class:`Hub`, from its creation (``asdict(hub.stats)`` for a dict).

    Local delivery (messages × connections, as :class:`BroadcastResult` counts them, for
    publishes of this hub and messages received from others): ``delivered`` (queued on a
    connection), ``dropped`` (slow consumers that skipped it), ``closed`` (slow consumers
    closed), ``skipped`` (connections closing or in the middle of a fragmented message).

    Messages: ``published`` (:meth:`Hub.publish` calls), ``forwarded`` (envelopes Redis
    acknowledged), ``backplane_dropped`` (envelopes not forwarded: Redis unreachable,
    outgoing queue full, or in flight when the connection failed), ``received`` (messages
    of other hubs received from Redis), ``malformed`` (envelopes from Redis not understood),
    ``outages`` (times Redis became unreachable, the first failed attempt included).
    """

    published: int = 0
    delivered: int = 0
    dropped: int = 0
    closed: int = 0
    skipped: int = 0
    forwarded: int = 0
    backplane_dropped: int = 0
    received: int = 0
    malformed: int = 0
    outages: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict (for logs and metrics)."""
        return asdict(self)


class _Unreachable(Exception):
    """The Redis connection is dead (no reply within the timeout)."""


class Hub:
    """Topics and their subscribers; optionally joined to other processes through Redis.

    Without ``redis_url``, a hub serves this process only and needs no lifecycle. With it
    (``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS, ``unix://``, as
    redis-py parses it; the ``redis`` extra: ``pip install 'pywebsock[redis]'``), call
    :meth:`start` and :meth:`close`, or use ``async with``.

    ``prefix``: of the Redis channels (hubs talk to each other only with the same prefix).
    ``max_pending`` and ``max_pending_bytes``: bounds of the outgoing queue to Redis.
    ``backoff``: delays between reconnection attempts. ``timeout``: bound on connecting to
    Redis and on each reply. ``ping_interval``: silence after which the subscriber
    connection PINGs Redis to check it is alive.

    ``limit``, ``slow_consumer``, ``on_slow_consumer`` and ``compress`` are passed to every
    :func:`~websock.asyncio.broadcast.broadcast` (default: each connection's server settings).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        # Limits
        max_pending: int = 1024,
        max_pending_bytes: int = 16 * 2**20,
        # Timeouts
        backoff: Backoff = REDIS_BACKOFF,
        timeout: float = 5.0,
        ping_interval: float = 15.0,
        # Broadcast
        compress: bool = True,
        limit: int | None | _Absent = ABSENT,
        slow_consumer: Literal["drop", "close"] | None = None,
        on_slow_consumer: Callable[[Connection], object] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        if max_pending_bytes < 1:
            raise ValueError(f"max_pending_bytes must be >= 1, got {max_pending_bytes!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if not ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0, got {ping_interval!r}")
        #: This hub's id: the origin of its envelopes.
        self.id = uuid.uuid4()
        #: Counters: see :class:`HubStats`.
        self.stats = HubStats()
        self.redis_url = redis_url
        self.prefix = prefix
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.backoff = backoff
        self.timeout = timeout
        self.ping_interval = ping_interval
        self._broadcast_options: dict[str, Any] = {
            "compress": compress,
            "limit": limit,
            "slow_consumer": slow_consumer,
            "on_slow_consumer": on_slow_consumer,
        }
        # Local state: topic -> its subscribers (a dict: ordered, so fan-out order is
        # subscription order); connection -> its topics and its done callback.
        self._topics: dict[str, dict[Connection, None]] = {}
        self._connections: dict[Connection, tuple[set[str], Callable[[Any], None]]] = {}

        self._origin = self.id.bytes
        self._prefix = prefix.encode()
        self._pool: Any = None
        if redis_url is not None:
            self._pool = _connection_pool(
                redis_url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                socket_keepalive=True,
            )
        # Backplane state (meaningful with Redis only).
        self._task: asyncio.Task[None] | None = None
        self._established = False
        self._up = False  # a session is established: publish() queues
        self._down_since: float | None = None  # monotonic start of the current outage
        self._dropped_at_outage = 0
        self._first_attempt: asyncio.Future[None] | None = None
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._pending_bytes = 0
        self._in_flight = 0
        self._pending_event = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._dirty = asyncio.Event()  # the topics changed: (UN)SUBSCRIBE
        self._remote: set[str] = set()  # topics SUBSCRIBEd on the current connection
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._pongs: dict[bytes, list[asyncio.Future[None]]] = {}
        self._tokens = itertools.count()

    def __repr__(self) -> str:
        where = f" redis={self.redis_url!r}" if self.redis_url is not None else ""
        return f"<Hub {self.id}{where} topics={len(self._topics)}>"

    # ------------------------------------------------------------------ topics

    def subscribe(self, ws: Connection, topic: str) -> bool:
        """Subscribe ``ws`` to ``topic``; True if it was not already.

        ``ws`` leaves its topics by itself when its TCP connection closes; subscribing a
        connection already closed does nothing (and returns False).
        """
        if not isinstance(topic, str):
            raise TypeError(f"a topic is a str, got {type(topic).__name__}")
        entry = self._connections.get(ws)
        if entry is None:
            waiter = ws.connection_lost_waiter
            if waiter.done():
                return False
            callback = functools.partial(self._connection_lost, ws)
            waiter.add_done_callback(callback)
            entry = self._connections[ws] = (set(), callback)
        topics = entry[0]
        if topic in topics:
            return False
        topics.add(topic)
        subscribers = self._topics.get(topic)
        if subscribers is None:
            subscribers = self._topics[topic] = {}
            self._dirty.set()
        subscribers[ws] = None
        return True

    def unsubscribe(self, ws: Connection, topic: str | None = None) -> int:
        """Unsubscribe ``ws`` from ``topic``, or from all its topics when None; return how
        many subscriptions ended (0 when there was none)."""
        entry = self._connections.get(ws)
        if entry is None:
            return 0
        topics, callback = entry
        if topic is None:
            leaving = list(topics)
        elif topic in topics:
            leaving = [topic]
        else:
            return 0
        for name in leaving:
            topics.discard(name)
            subscribers = self._topics[name]
            del subscribers[ws]
            if not subscribers:
                del self._topics[name]
                self._dirty.set()
        if not topics:
            del self._connections[ws]
            ws.connection_lost_waiter.remove_done_callback(callback)
        return len(leaving)

    def _connection_lost(self, ws: Connection, _: object) -> None:
        self.unsubscribe(ws)

    def topics(self) -> list[str]:
        """The topics with at least one subscriber in this process."""
        return list(self._topics)

    def subscribers(self, topic: str) -> list[Connection]:
        """The connections of this process subscribed to ``topic``, in subscription order."""
        return list(self._topics.get(topic, ()))

    def subscriptions(self, ws: Connection) -> set[str]:
        """The topics ``ws`` is subscribed to."""
        entry = self._connections.get(ws)
        return set() if entry is None else set(entry[0])

    # ------------------------------------------------------------------ publish

    def publish(
        self,
        topic: str,
        message: str | bytes | bytearray | memoryview,
        *,
        text: bool | None = None,
    ) -> BroadcastResult:
        """Send ``message`` to the subscribers of ``topic`` in every process; return what
        happened in this one.

        ``message``: str is sent as text, bytes-like as binary; ``text`` overrides that as
        for ``send()``. It is encoded once, delivered here at once, and handed to the Redis
        backplane (if any) without waiting: see the module's documentation for the delivery
        semantics and what happens while Redis is unreachable.
        """
        if not isinstance(topic, str):
            raise TypeError(f"a topic is a str, got {type(topic).__name__}")
        payload, is_text = message_payload(message, text, "publish")
        self.stats.published += 1
        result = self._deliver(topic, payload, is_text)
        if self._pool is not None:
            self._forward(topic, payload, is_text)
        return result

    def _deliver(self, topic: str, payload: bytes, is_text: bool) -> BroadcastResult:
        subscribers = self._topics.get(topic)
        if not subscribers:
            return BroadcastResult()
        result = broadcast(subscribers, payload, text=is_text, **self._broadcast_options)
        stats = self.stats
        stats.delivered += result.sent
        stats.dropped += result.dropped
        stats.closed += result.closed
        stats.skipped += result.skipped
        return result

    def _forward(self, topic: str, payload: bytes, is_text: bool) -> None:
        envelope = b"".join((ENVELOPE_MAGIC, self._origin, b"t" if is_text else b"b", payload))
        size = len(envelope)
        if (
            not self._up
            or len(self._pending) >= self.max_pending
            or self._pending_bytes + size > self.max_pending_bytes
        ):
            self.stats.backplane_dropped += 1
            return
        self._pending.append((self._prefix + topic.encode(), envelope))
        self._pending_bytes += size
        self._pending_event.set()
        self._drained.clear()

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        """Whether the Redis backplane is connected (always False without Redis)."""
        return self._up

    async def start(self) -> None:
        """Connect to Redis (if the hub has a ``redis_url``) and keep connected.

        Returns after the first attempt, successful or not: while Redis is unreachable,
        the hub delivers locally, logs a WARNING and keeps trying in the background.
        """
        if self._pool is None or self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._first_attempt = loop.create_future()
        self._task = loop.create_task(self._run(), name=f"websock.pubsub.Hub {self.id}")
        await asyncio.shield(self._first_attempt)

    async def close(self) -> None:
        """Leave Redis: flush the outgoing queue (for at most ``timeout`` seconds while
        connected), then close the connections. Local delivery keeps working."""
        task = self._task
        if task is None:
            return
        if self._up and not self._drained.is_set():
            try:
                await asyncio.wait_for(self._drained.wait(), self.timeout)
            except asyncio.TimeoutError:
                pass
        task.cancel()
        await asyncio.wait([task])  # the task's cancellation is not ours to raise
        self._task = None
        for waiter in self._sync_waiters:
            if not waiter.done():
                waiter.cancel()
        self._sync_waiters.clear()
        if self._pool is not None:
            await self._pool.disconnect()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def sync(self) -> None:
        """Wait until Redis has taken this hub's subscriptions as they are now: after it, a
        message published to one of this process's topics by any hub reaches it.

        Returns at once without Redis. While Redis is unreachable, waits until it is back:
        bound it (``asyncio.wait_for``) where that matters.
        """
        if self._pool is None:
            return
        if self._task is None:
            raise RuntimeError("the hub is not started: await hub.start() first")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append(waiter)
        self._dirty.set()
        await waiter

    # ------------------------------------------------------------------ backplane

    async def _run(self) -> None:
        delays = self.backoff.delays()
        while True:
            self._established = False
            try:
                await self._session()
            except Exception as exc:  # any failure of the session: reconnect
                self._went_down(exc)
            finally:
                self._settle_first_attempt()
            if self._established:
                delays = self.backoff.delays()
            await asyncio.sleep(next(delays))

    def _settle_first_attempt(self) -> None:
        first = self._first_attempt
        if first is not None and not first.done():
            first.set_result(None)

    async def _session(self) -> None:
        subscriber = self._pool.make_connection()
        publisher = self._pool.make_connection()
        tasks: list[asyncio.Task[None]] = []
        try:
            await subscriber.connect()
            await publisher.connect()
            self._came_up()
            self._settle_first_attempt()
            tasks = [
                asyncio.ensure_future(self._receive(subscriber)),
                asyncio.ensure_future(self._subscriptions(subscriber)),
                asyncio.ensure_future(self._send(publisher)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the failure
            raise _Unreachable("a backplane task ended")  # pragma: no cover
        finally:
            self._up = False
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            self._remote.clear()
            # Forget what was queued or in flight: at most once.
            self.stats.backplane_dropped += len(self._pending) + self._in_flight
            self._pending.clear()
            self._pending_bytes = 0
            self._in_flight = 0
            self._pending_event.clear()
            self._drained.set()
            for waiters in self._pongs.values():
                self._sync_waiters.extend(waiters)
            self._pongs.clear()
            for connection in (subscriber, publisher):
                try:
                    await connection.disconnect(nowait=True)
                except Exception:  # pragma: no cover - best effort
                    pass

    def _came_up(self) -> None:
        self._up = True
        self._established = True
        self._dirty.set()  # SUBSCRIBE to every topic with local subscribers
        if self._down_since is not None:
            dropped = self.stats.backplane_dropped - self._dropped_at_outage
            logger.info(
                "Redis backplane %s is back after %.1f s (%d messages not forwarded "
                "meanwhile); subscribing again to %d topics",
                self.redis_url,
                time.monotonic() - self._down_since,
                dropped,
                len(self._topics),
            )
            self._down_since = None
        else:
            logger.debug("Redis backplane %s connected", self.redis_url)

    def _went_down(self, exc: Exception) -> None:
        """Record a failure: a WARNING when an outage starts, DEBUG for each later one."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._dropped_at_outage = self.stats.backplane_dropped
            self.stats.outages += 1
            logger.warning(
                "Redis backplane %s unreachable (%s): local delivery goes on, messages to "
                "other processes are dropped until it is back; reconnecting",
                self.redis_url,
                _describe(exc),
            )
        else:
            logger.debug("Redis backplane %s still unreachable: %s", self.redis_url, _describe(exc))

    async def _subscriptions(self, connection: Any) -> None:
        """(UN)SUBSCRIBE as topics come and go; PING when idle; answer sync() waiters."""
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), self.ping_interval)
            except asyncio.TimeoutError:
                await connection.send_command("PING", check_health=False)
                continue
            self._dirty.clear()
            wanted = self._topics
            remote = self._remote
            added = [topic for topic in wanted if topic not in remote]
            removed = [topic for topic in remote if topic not in wanted]
            if added:
                remote.update(added)
                await connection.send_command(
                    "SUBSCRIBE", *[self._prefix + t.encode() for t in added], check_health=False
                )
            if removed:
                remote.difference_update(removed)
                await connection.send_command(
                    "UNSUBSCRIBE",
                    *[self._prefix + t.encode() for t in removed],
                    check_health=False,
                )
            if self._sync_waiters:
                token = b"websock-sync-%d" % next(self._tokens)
                self._pongs[token] = self._sync_waiters
                self._sync_waiters = []
                await connection.send_command("PING", token, check_health=False)

    async def _receive(self, connection: Any) -> None:
        """Read what the subscriber connection gets: messages, replies, PONGs."""
        silence = self.ping_interval + self.timeout
        prefix_length = len(self._prefix)
        while True:
            reply = await connection.read_response(timeout=silence)
            if reply is None:
                raise _Unreachable(f"no reply from Redis within {silence} s")
            if isinstance(reply, list) and reply:
                kind = reply[0]
                if kind == b"message" and len(reply) == 3:
                    channel = reply[1]
                    if channel[:prefix_length] == self._prefix:
                        self._received(channel[prefix_length:], reply[2])
                    continue
                if kind == b"pong" and len(reply) == 2:
                    self._ponged(reply[1])
                continue
            if isinstance(reply, bytes):  # PING's reply outside subscribed mode
                self._ponged(reply)

    def _ponged(self, token: bytes) -> None:
        for waiter in self._pongs.pop(token, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _received(self, channel: bytes, envelope: bytes) -> None:
        if (
            len(envelope) < _HEADER_SIZE
            or envelope[: len(ENVELOPE_MAGIC)] != ENVELOPE_MAGIC
            or envelope[_HEADER_SIZE - 1] not in (_TEXT, _BINARY)
        ):
            self.stats.malformed += 1
            return
        origin = envelope[len(ENVELOPE_MAGIC) : _HEADER_SIZE - 1]
        if origin == self._origin:
            return  # our own publish: delivered locally already
        is_text = envelope[_HEADER_SIZE - 1] == _TEXT
        payload = envelope[_HEADER_SIZE:]
        try:
            topic = channel.decode()
            if is_text:
                payload.decode()  # checked: broadcast() sends text bytes as they are
        except UnicodeDecodeError:
            self.stats.malformed += 1
            return
        self.stats.received += 1
        try:
            self._deliver(topic, payload, is_text)
        except Exception:  # a bug: it must not cost the Redis connection
            logger.error("internal error delivering a message of topic %r", topic, exc_info=True)

    async def _send(self, connection: Any) -> None:
        """PUBLISH the outgoing queue, in order, in pipelined batches."""
        pending = self._pending
        while True:
            if not pending:
                self._pending_event.clear()
                self._drained.set()
                await self._pending_event.wait()
                continue
            batch = [pending.popleft() for _ in range(min(_BATCH, len(pending)))]
            self._pending_bytes -= sum(len(envelope) for _, envelope in batch)
            self._in_flight = len(batch)
            await connection.send_packed_command(
                connection.pack_commands([("PUBLISH", ch, env) for ch, env in batch]),
                check_health=False,
            )
            for _ in batch:
                reply = await connection.read_response(timeout=self.timeout)
                if reply is None:
                    raise _Unreachable(f"no reply from Redis within {self.timeout} s")
                self._in_flight -= 1
                self.stats.forwarded += 1


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _connection_pool(url: str, **options: Any) -> Any:
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ImportError(
            "the Redis backplane of websock.pubsub.Hub needs redis-py: "
            "pip install 'pywebsock[redis]'"
        ) from exc
    # Options in the URL's query string win over these defaults.
    return redis.asyncio.ConnectionPool.from_url(url, decode_responses=False, **options)
