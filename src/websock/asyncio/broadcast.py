"""``websock.broadcast()``: one message to many connections, encoded once, never blocking.

Each connection that can take it gets the same bytes object
(:class:`~websock.protocol.broadcast.SharedFrames`: one uncompressed frame for all, one
compressed frame per setting for connections without context takeover); the others (client
connections, whose frames are masked one by one) get the message sent as ``send()`` would.

No await: the frame is queued on each connection and written as the event loop allows.
That is what makes a slow consumer a danger, and the policy necessary. A connection whose
unsent output (the transport's buffer plus what is queued in the connection) is above its
bound is a **slow consumer**: it gets the policy instead of the message:

- ``"drop"`` (default): the message is skipped for it, and counted. The connection stays open
  and gets the next messages once it has caught up: its stream has gaps.
- ``"close"``: it is closed with 1013 (try again later), so that a client that needs every
  message reconnects and resynchronises; its Close waits behind what is already queued,
  within ``close_timeout``.

So a stalled subscriber costs at most its bound plus one message of memory, and never
delays the others. The bound is ``broadcast_limit`` (``serve()``'s, 1 MiB by default, per
connection) unless the call gives one; the policy is ``slow_consumer`` (``serve()``'s)
unless the call gives one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from ..options import ABSENT, _Absent
from ..protocol.broadcast import SharedFrames
from ..protocol.close import CloseCode
from .connection import BROADCAST_SENT, BROADCAST_SKIPPED, Connection

__all__ = ["broadcast", "BroadcastResult", "SLOW_CONSUMER_REASON"]

#: The close reason sent to a slow consumer under the "close" policy.
SLOW_CONSUMER_REASON = "slow consumer: too much output not yet received"

# Close tasks of slow consumers, kept referenced until they finish (asyncio only keeps a
# weak reference to tasks).
_closing: set[asyncio.Task[None]] = set()


@dataclass
class BroadcastResult:
    """What :func:`broadcast` did: ``sent`` (queued on the connection), ``dropped`` (slow
    consumers that skipped it under "drop"), ``closed`` (slow consumers closed under
    "close"), ``skipped`` (connections not open, closing, or in the middle of sending a
    fragmented message, which another message cannot interrupt), ``compressions`` (how many
    times the message was deflated)."""

    sent: int = 0
    dropped: int = 0
    closed: int = 0
    skipped: int = 0
    compressions: int = 0


def broadcast(
    connections: Iterable[Connection],
    message: str | bytes | bytearray | memoryview,
    *,
    text: bool | None = None,
    compress: bool = True,
    limit: int | None | _Absent = ABSENT,
    slow_consumer: Literal["drop", "close"] | None = None,
    on_slow_consumer: Callable[[Connection], object] | None = None,
) -> BroadcastResult:
    """Send ``message`` to every open connection in ``connections``; return the counts.

    ``message`` is str (text) or bytes-like (binary); ``text`` and ``compress`` mean what
    they mean for ``send()``. Never blocks and never raises for a connection's state: a
    connection that cannot take the message is counted, not an error.

    A connection with more than ``limit`` bytes of output not yet taken by the kernel
    (default: its server's ``broadcast_limit``; None: no limit) is a slow consumer and gets
    the ``slow_consumer`` policy (default: its server's, ``"drop"`` unless set): ``"drop"``
    skips the message for it; ``"close"`` closes it with 1013. ``on_slow_consumer(ws)`` is
    called for each, before the policy applies (to log it, or count it per client).

    Call it from the event loop's thread (a handler, a task), as any connection method.
    """
    if slow_consumer is not None and slow_consumer not in ("drop", "close"):
        raise ValueError(f"slow_consumer must be 'drop' or 'close', got {slow_consumer!r}")
    if not isinstance(limit, _Absent) and limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit!r}")
    frames = SharedFrames(message, text=text, compress=compress)
    result = BroadcastResult()
    sent = 0
    for ws in connections:
        options = ws.options
        bound = options.broadcast_limit if isinstance(limit, _Absent) else limit
        outcome = ws._broadcast(frames, bound)
        if outcome == BROADCAST_SENT:
            sent += 1
        elif outcome == BROADCAST_SKIPPED:
            result.skipped += 1
        else:
            if on_slow_consumer is not None:
                on_slow_consumer(ws)
            if (slow_consumer or options.slow_consumer) == "close":
                _close_slow_consumer(ws)
                result.closed += 1
            else:
                result.dropped += 1
    result.sent = sent
    result.compressions = frames.compressions
    return result


def _close_slow_consumer(ws: Connection) -> None:
    task = ws.loop.create_task(ws.close(CloseCode.TRY_AGAIN_LATER, SLOW_CONSUMER_REASON))
    _closing.add(task)
    task.add_done_callback(_closing.discard)
