"""A one-shot awaitable that can resume the waiting task without an event-loop round trip.

``await future`` on an :class:`asyncio.Future` resumes the task one loop iteration after
``set_result``: the future schedules the task's wake-up with ``call_soon``, and the loop
runs it only after polling the selector again. For a connection that answers each message
(an echo, a request/response protocol) that costs a whole loop iteration per message: a
second ``epoll_wait`` system call and the loop's bookkeeping, about as much as the
WebSocket work itself.

:class:`Waiter` speaks the protocol asyncio's :class:`~asyncio.Task` uses for any
future-like object (``_asyncio_future_blocking``, ``add_done_callback``, ``result``,
``cancel``, ``get_loop``), so a task can await it, and :meth:`Waiter.wake` can run the
task's wake-up *at once* when called from a protocol callback (``data_received``): the
application's ``recv()`` returns and its ``send()`` writes within the same loop iteration
that read the data, as a callback API would.

Running a task step from inside another task is not allowed (asyncio raises
``RuntimeError``), so the caller decides: inline only where no task is running (see
:func:`can_run_inline`); everywhere else the wake-up goes through ``call_soon`` like a
Future's. Cancellation (``task.cancel()``, timeouts) always goes through ``call_soon``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["Waiter", "can_run_inline"]

_PENDING = 0
_DONE = 1
_CANCELLED = 2

_current_task = asyncio.current_task


def can_run_inline(loop: asyncio.AbstractEventLoop) -> bool:
    """True if a task's step may run now: we are in a loop callback, not inside a task."""
    return _current_task(loop) is None


class Waiter:
    """Completed once, with no value; awaited by at most one task."""

    __slots__ = (
        "_asyncio_future_blocking",
        "_callback",
        "_cancel_message",
        "_context",
        "_loop",
        "_state",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._state = _PENDING
        self._callback: Callable[[Any], object] | None = None
        self._context: contextvars.Context | None = None
        self._cancel_message: Any = None
        # Read by asyncio.Task: True while the awaiting task is blocked on this object.
        self._asyncio_future_blocking = False

    # -------------------------------------------------------- the future-like protocol

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def _cancelled_error(self) -> asyncio.CancelledError:
        # As asyncio.Future does: no args at all when there is no message.
        message = self._cancel_message
        return asyncio.CancelledError() if message is None else asyncio.CancelledError(message)

    def result(self) -> None:
        if self._state == _CANCELLED:
            raise self._cancelled_error()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("result is not ready")

    def exception(self) -> BaseException | None:
        if self._state == _CANCELLED:
            raise self._cancelled_error()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("exception is not set")
        return None

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        if self._state != _PENDING:
            self._loop.call_soon(fn, self, context=context)
            return
        if self._callback is not None:
            raise RuntimeError("a Waiter has a single consumer")
        self._callback = fn
        self._context = context

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if self._callback is not None and self._callback == fn:
            self._callback = None
            self._context = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._cancel_message = msg
        self._schedule()
        return True

    def __await__(self) -> Generator[Any, None, None]:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            yield self
        if self._state == _PENDING:
            raise RuntimeError("await wasn't used with a Waiter")
        return self.result()

    __iter__ = __await__

    # -------------------------------------------------------- completing it

    def wake(self, inline: bool) -> None:
        """Complete the waiter; resume the awaiting task now if ``inline``, else soon.

        ``inline`` requires :func:`can_run_inline` to be true; the task then runs its next
        step before this call returns.
        """
        if self._state != _PENDING:
            return
        self._state = _DONE
        if inline:
            callback = self._callback
            if callback is not None:
                self._callback = None
                context = self._context
                if context is None:
                    callback(self)
                else:
                    context.run(callback, self)
        else:
            self._schedule()

    def _schedule(self) -> None:
        callback = self._callback
        if callback is not None:
            self._callback = None
            self._loop.call_soon(callback, self, context=self._context)
