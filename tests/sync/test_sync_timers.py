"""The sync layer's single timer thread: order, cancellation, isolation of failures."""

from __future__ import annotations

import threading

import pytest
from syncpeer import TIMEOUT

from websock.sync import timers


def test_callbacks_run_in_deadline_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    done = threading.Event()
    # The clock stands still while the timers are set, so that their deadlines are 10 ms
    # apart however long the calls take on a loaded machine.
    now = timers.clock()
    monkeypatch.setattr(timers, "clock", lambda: now)
    timers.call_later(0.03, ran.append, "third")
    timers.call_later(0.01, ran.append, "first")
    timers.call_later(0.02, ran.append, "second")
    timers.call_later(0.04, done.set)
    monkeypatch.undo()
    assert done.wait(TIMEOUT)
    assert ran == ["first", "second", "third"]


def test_cancelled_timer_does_not_run() -> None:
    ran: list[str] = []
    done = threading.Event()
    timer = timers.call_later(0.01, ran.append, "cancelled")
    timer.cancel()
    assert timer.args == ()  # references dropped at once
    timers.call_later(0.02, done.set)
    assert done.wait(TIMEOUT)
    assert ran == []


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    timers.call_later(0, boom)
    timers.call_later(0.01, done.set)
    assert done.wait(TIMEOUT)
    assert any("boom" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_an_earlier_timer_wakes_the_thread() -> None:
    """A timer due before the one the thread sleeps on runs first, not after it."""
    ran: list[str] = []
    done = threading.Event()
    late = timers.call_later(TIMEOUT * 10, ran.append, "late")
    timers.call_later(0.01, done.set)
    assert done.wait(TIMEOUT)
    late.cancel()
    assert ran == []
