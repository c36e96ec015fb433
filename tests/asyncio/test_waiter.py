"""websock.asyncio.waiter: the one-shot awaitable that recv() waits on.

The unit tests drive a Waiter with a real task on the running loop and observe what runs
when through a log the task appends to: an inline wake-up runs the task's next step before
``wake()`` returns, any other wake-up (and every cancellation) goes through ``call_soon``.
The integration tests at the end check what the inline wake-up is for: a server handler
resumed from the read callback answers every message of a burst, in order, and messages
that arrive while the handler awaits something else wait for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from rawpeer import TIMEOUT, RawClient, close_payload, echo

import websock
from websock.asyncio.waiter import Waiter, can_run_inline
from websock.protocol.frames import Opcode

T = TypeVar("T")

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def in_callback(fn: Callable[[], T]) -> T:
    """Run ``fn`` from a plain loop callback (no task running) and return what it returns."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result.set_result(fn())
        except BaseException as exc:  # handed to the test, which re-raises it
            result.set_exception(exc)

    loop.call_soon(run)
    return await asyncio.wait_for(result, TIMEOUT)


async def blocked_on(waiter: Waiter, log: list[object]) -> asyncio.Task[None]:
    """A task that is waiting on ``waiter`` when this returns; it logs how it resumed."""
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def consumer() -> None:
        started.set_result(None)
        try:
            await waiter
        except asyncio.CancelledError as exc:
            log.append(("cancelled", exc.args))
            raise
        log.append("resumed")

    task = asyncio.create_task(consumer())
    await asyncio.wait_for(started, TIMEOUT)
    assert not task.done()
    return task


async def finish(task: asyncio.Task[Any]) -> None:
    """Wait (bounded) until ``task`` is done, however it ends."""
    done, _ = await asyncio.wait([task], timeout=TIMEOUT)
    assert task in done, "the task was never resumed"


# ---------------------------------------------------------------------- waking


async def test_inline_wake_runs_the_task_before_returning() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    log: list[object] = []
    task = await blocked_on(waiter, log)

    def wake() -> tuple[list[object], bool]:
        waiter.wake(True)
        return list(log), task.done()

    assert await in_callback(wake) == (["resumed"], True)


async def test_wake_not_inline_runs_the_task_on_the_next_iteration() -> None:
    loop = asyncio.get_running_loop()
    waiter = Waiter(loop)
    log: list[object] = []
    task = await blocked_on(waiter, log)

    def wake() -> list[object]:
        loop.call_soon(log.append, "queued before")
        waiter.wake(False)
        loop.call_soon(log.append, "queued after")
        return list(log)

    # Nothing ran during wake(); the task's step was queued like any call_soon callback.
    assert await in_callback(wake) == []
    await finish(task)
    assert log == ["queued before", "resumed", "queued after"]


async def test_wake_not_inline_from_a_task() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    log: list[object] = []
    task = await blocked_on(waiter, log)
    waiter.wake(False)
    assert log == []
    await finish(task)
    assert log == ["resumed"]
    assert task.result() is None


async def test_plain_callback_woken_inline_or_soon() -> None:
    loop = asyncio.get_running_loop()
    calls: list[object] = []
    inline = Waiter(loop)
    inline.add_done_callback(calls.append)

    def wake() -> list[object]:
        inline.wake(True)
        return list(calls)

    assert await in_callback(wake) == [inline]

    soon = Waiter(loop)
    done: asyncio.Future[Waiter] = loop.create_future()
    soon.add_done_callback(done.set_result)
    soon.wake(False)
    assert not done.done()
    assert await asyncio.wait_for(done, TIMEOUT) is soon


async def test_wake_after_done_is_a_no_op() -> None:
    loop = asyncio.get_running_loop()
    waiter = Waiter(loop)
    log: list[object] = []
    task = await blocked_on(waiter, log)

    def wake_twice() -> list[object]:
        waiter.wake(False)
        waiter.wake(True)  # already woken: must not run the task's step a second time
        waiter.wake(False)
        return list(log)

    assert await in_callback(wake_twice) == []
    await finish(task)
    assert log == ["resumed"]
    assert waiter.done() and not waiter.cancelled()
    assert waiter.cancel() is False  # too late to cancel
    assert not waiter.cancelled()


async def test_wake_after_cancel_is_a_no_op() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    log: list[object] = []
    task = await blocked_on(waiter, log)

    def cancel_then_wake() -> list[object]:
        task.cancel("cancelled first")
        waiter.wake(True)  # must neither run the task inline nor undo the cancellation
        return list(log)

    assert await in_callback(cancel_then_wake) == []
    await finish(task)
    assert task.cancelled()
    assert log == [("cancelled", ("cancelled first",))]
    assert waiter.cancelled()


# ---------------------------------------------------------------------- cancelling


async def test_task_cancel_resumes_with_cancelled_error_soon() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    log: list[object] = []
    task = await blocked_on(waiter, log)
    assert task.cancel("stop")
    # The waiter is cancelled at once; the task resumes through call_soon, not inline.
    assert waiter.cancelled() and waiter.done()
    assert log == []
    await finish(task)
    assert task.cancelled()
    # The message reaches the awaiting coroutine.
    assert log == [("cancelled", ("stop",))]
    with pytest.raises(asyncio.CancelledError) as info:
        waiter.result()
    assert info.value.args == ("stop",)


async def test_wait_for_timeout_cancels_the_waiter() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    log: list[object] = []

    async def consumer() -> None:
        try:
            await waiter
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(consumer(), 0.01)
    assert log == ["cancelled"]
    assert waiter.cancelled()
    # Nothing can wake it any more.
    waiter.wake(False)
    assert waiter.cancelled()


async def test_cancel_without_message_like_a_future() -> None:
    """No message, no args: ``str(exc)`` is empty, as for a cancelled asyncio.Future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    future.cancel()
    with pytest.raises(asyncio.CancelledError) as expected:
        future.result()
    waiter = Waiter(loop)
    log: list[object] = []
    task = await blocked_on(waiter, log)
    task.cancel()
    await finish(task)
    assert log == [("cancelled", expected.value.args)]
    with pytest.raises(asyncio.CancelledError) as info:
        waiter.result()
    assert info.value.args == expected.value.args == ()


async def test_waiter_cancelled_directly_passes_its_message() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    log: list[object] = []
    task = await blocked_on(waiter, log)
    assert waiter.cancel("connection closed") is True
    assert waiter.cancel("again") is False
    assert log == []
    await finish(task)
    assert log == [("cancelled", ("connection closed",))]
    assert task.cancelled()


# ---------------------------------------------------------------------- contextvars


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "soon"])
async def test_task_context_is_kept(inline: bool) -> None:
    waiter = Waiter(asyncio.get_running_loop())
    seen: list[str] = []
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def consumer() -> None:
        var.set("task")
        started.set_result(None)
        await waiter
        seen.append(var.get())
        var.set("task, after")

    task = asyncio.create_task(consumer())
    await asyncio.wait_for(started, TIMEOUT)

    def wake() -> str:
        waiter.wake(inline)
        # The task's context was entered for its step only, and left.
        return var.get()

    assert await in_callback(wake) == "unset"
    await finish(task)
    assert seen == ["task"]
    assert var.get() == "unset"


async def test_done_callback_runs_in_the_given_context() -> None:
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    context.run(var.set, "given")
    for wake_first in (False, True):
        waiter = Waiter(loop)
        seen: asyncio.Future[str] = loop.create_future()

        def callback(_: Waiter, seen: asyncio.Future[str] = seen) -> None:
            seen.set_result(var.get())

        if wake_first:
            waiter.wake(False)
        waiter.add_done_callback(callback, context=context)
        if not wake_first:
            waiter.wake(False)
        assert not seen.done()
        assert await asyncio.wait_for(seen, TIMEOUT) == "given"


# ---------------------------------------------------------------------- can_run_inline


async def test_can_run_inline_only_outside_tasks() -> None:
    loop = asyncio.get_running_loop()
    assert not can_run_inline(loop)  # this test runs in a task
    assert await in_callback(lambda: can_run_inline(loop)) is True

    async def other_task() -> bool:
        return can_run_inline(loop)

    assert await asyncio.wait_for(asyncio.create_task(other_task()), TIMEOUT) is False


# ---------------------------------------------------------------------- the future-like API


async def test_states() -> None:
    loop = asyncio.get_running_loop()
    waiter = Waiter(loop)
    assert waiter.get_loop() is loop
    assert asyncio.isfuture(waiter)  # what ensure_future(), wait() and gather() check
    assert not waiter.done() and not waiter.cancelled()
    with pytest.raises(asyncio.InvalidStateError):
        waiter.result()
    with pytest.raises(asyncio.InvalidStateError):
        waiter.exception()

    waiter.wake(False)
    assert waiter.done() and not waiter.cancelled()
    assert waiter.result() is None
    assert waiter.exception() is None

    cancelled = Waiter(loop)
    assert cancelled.cancel("why")
    assert cancelled.done() and cancelled.cancelled()
    for method in (cancelled.result, cancelled.exception):
        with pytest.raises(asyncio.CancelledError) as info:
            method()
        assert info.value.args == ("why",)


async def test_await_a_waiter_that_is_already_done() -> None:
    loop = asyncio.get_running_loop()
    done = Waiter(loop)
    done.wake(False)
    # Awaiting a done waiter does not suspend: a generator that returns at once.
    gen = done.__await__()
    with pytest.raises(StopIteration):
        gen.send(None)
    await done  # returns at once
    cancelled = Waiter(loop)
    cancelled.cancel("gone")
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_await_without_a_task_is_refused() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    gen = waiter.__await__()
    assert gen.send(None) is waiter  # what a Task receives, and then waits on
    with pytest.raises(RuntimeError, match="await wasn't used"):
        gen.send(None)


async def test_a_single_consumer() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    calls: list[object] = []
    waiter.add_done_callback(calls.append)
    with pytest.raises(RuntimeError, match="single consumer"):
        waiter.add_done_callback(calls.append)
    assert waiter.remove_done_callback(calls.append) == 1
    assert waiter.remove_done_callback(calls.append) == 0
    # Once removed, the slot is free again, and the removed callback is not called.
    other: list[object] = []
    waiter.add_done_callback(other.append)
    await in_callback(lambda: waiter.wake(True))
    assert calls == [] and other == [waiter]


# ---------------------------------------------------------------------- connections


def burst(count: int) -> list[tuple[int, bytes]]:
    """(opcode, payload) of ``count`` messages: text and binary, of several sizes."""
    messages: list[tuple[int, bytes]] = []
    for i in range(count):
        if i % 3 == 0:
            messages.append((Opcode.TEXT, f"message {i} é".encode()))
        elif i % 3 == 1:
            messages.append((Opcode.BINARY, bytes([i % 256]) * (i * 37 % 300)))
        else:
            messages.append((Opcode.BINARY, bytes(range(256)) * (1 + i % 5)))
    return messages


async def close_raw(client: RawClient) -> None:
    """Do the closing handshake from the raw client; the server answers and ends TCP."""
    client.send_frame(Opcode.CLOSE, close_payload(1000))
    frame = await client.read_frame()
    assert frame.opcode == Opcode.CLOSE and frame.close_code == 1000
    await client.read_eof()


@pytest.mark.parametrize("count", [1, 2, 50, 300])
async def test_burst_in_one_write_is_echoed_in_order(
    start_server: Any, secure: bool, count: int
) -> None:
    messages = burst(count)
    async with start_server(echo, secure=secure) as running:
        client = await RawClient.connect(running.port, ssl_context=running.client_ssl)
        try:
            client.send_raw(b"".join(client.frame_bytes(op, payload) for op, payload in messages))
            for opcode, payload in messages:
                frame = await client.read_frame()
                assert (frame.opcode, frame.payload, frame.fin, frame.masked) == (
                    opcode,
                    payload,
                    True,
                    False,
                )
            await close_raw(client)
        finally:
            await client.aclose()


async def test_handler_resumes_inside_the_read_callback(start_server: Any, secure: bool) -> None:
    """The point of the inline wake-up: recv() returns within the read that brought the
    message, not one loop iteration later (seen from the handler's call stack)."""
    stacks: list[set[str]] = []

    async def handler(ws: websock.ServerConnection) -> None:
        await ws.send("ready")
        async for message in ws:
            stacks.append({frame.name for frame in traceback.extract_stack()})
            await ws.send(message)

    messages = burst(10)
    async with start_server(handler, secure=secure) as running:
        client = await RawClient.connect(running.port, ssl_context=running.client_ssl)
        try:
            assert (await client.read_frame()).payload == b"ready"
            # The handler is now waiting in recv().
            client.send_raw(b"".join(client.frame_bytes(op, payload) for op, payload in messages))
            for _, payload in messages:
                assert (await client.read_frame()).payload == payload
            await close_raw(client)
        finally:
            await client.aclose()
    assert len(stacks) == len(messages)
    assert "buffer_updated" in stacks[0] and "wake" in stacks[0], stacks[0]


async def test_messages_arriving_while_the_handler_awaits_something_else(
    start_server: Any, secure: bool
) -> None:
    """No recv() is waiting when they arrive: they are queued, and all delivered later."""
    gate = asyncio.Event()
    first, second = burst(10), burst(12)  # fewer than max_queue: reading is not paused

    async def handler(ws: websock.ServerConnection) -> None:
        received = 0
        async for message in ws:
            await ws.send(message)
            received += 1
            if received == len(first):
                await gate.wait()

    def frames(messages: list[tuple[int, bytes]]) -> bytes:
        return b"".join(client.frame_bytes(op, payload) for op, payload in messages)

    async with start_server(handler, secure=secure) as running:
        client = await RawClient.connect(running.port, ssl_context=running.client_ssl)
        try:
            client.send_raw(frames(first))
            for _, payload in first:
                assert (await client.read_frame()).payload == payload
            # The handler now waits on the gate, not in recv().
            client.send_raw(frames(second))
            # The Pong comes back once the server has parsed everything sent before the Ping.
            client.send_frame(Opcode.PING, b"sync")
            pong = await client.read_frame()
            assert (pong.opcode, pong.payload) == (Opcode.PONG, b"sync")
            gate.set()
            for _, payload in second:
                assert (await client.read_frame()).payload == payload
            await close_raw(client)
        finally:
            await client.aclose()


async def test_recv_timing_out_leaves_the_connection_usable(start_server: Any) -> None:
    async with start_server(echo) as running:
        async with running.connect() as ws:
            for _ in range(3):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.01)
            task = asyncio.create_task(ws.recv())
            await ws.send("after")
            assert await asyncio.wait_for(task, TIMEOUT) == "after"
            await ws.send("again")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "again"
