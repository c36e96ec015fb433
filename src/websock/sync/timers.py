"""One timer thread for every connection of the process: keepalive, close and grace timers.

A thread per timer (``threading.Timer``) would double the threads of a busy server; a
heap served by one daemon thread costs one thread in all. Callbacks run in that thread and
must never block: they queue frames in a core, try a write that cannot block (see
``Connection._write_if_ready``), or shut a socket down, which wakes the threads blocked on
it. The clock is ``time.monotonic`` unless a test replaces :data:`clock`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Timer", "call_later", "clock"]

logger = logging.getLogger("websock.sync")

#: The clock deadlines are measured on (a test may replace it).
clock: Callable[[], float] = time.monotonic


class Timer:
    """A scheduled callback; :meth:`cancel` keeps it from running (if it has not yet)."""

    __slots__ = ("callback", "args", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback. Cancelled entries leave the heap when they come due."""
        self.cancelled = True
        # Drop references now: the callback is usually a bound method, and a cancelled
        # keepalive timer would keep its closed connection alive until ping_interval.
        self.callback = _noop
        self.args = ()


def _noop(*args: Any) -> None:
    pass


class _Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._counter = itertools.count()  # tie-breaker: timers never compare
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(clock() + delay, callback, args)
        with self._cond:
            heapq.heappush(self._heap, (timer.when, next(self._counter), timer))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="websock-timers", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cond.notify()  # the new timer is the earliest: wake up sooner
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    when, _, timer = self._heap[0]
                    delay = when - clock()
                    if delay > 0:
                        self._cond.wait(delay)
                        continue
                    heapq.heappop(self._heap)
                    break
            if timer.cancelled:
                continue
            try:
                timer.callback(*timer.args)
            except Exception:
                # A bug in a callback must not stop the timers of every other connection.
                logger.exception("timer callback %r failed", timer.callback)


_scheduler = _Scheduler()


def call_later(delay: float, callback: Callable[..., object], *args: Any) -> Timer:
    """Run ``callback(*args)`` in the timer thread after ``delay`` seconds."""
    return _scheduler.call_later(delay, callback, *args)
