"""Reconnection policy shared by the asyncio and threading clients.

``async for ws in websock.connect(uri)`` (and ``for ws in websock.sync.reconnecting(uri)``)
opens a fresh connection each time the previous one is over, and retries a failed attempt
after a delay. This module decides, without any I/O: which failures are worth retrying
(:func:`is_transient`), how long to wait (:class:`Backoff`, and a server's ``Retry-After``),
and whether a connection that ended counts as a failure (:func:`ended_abnormally`).

Transient by default: the network refused, reset or timed out, the name did not resolve
(every ``OSError``), the opening handshake timed out, the server answered 5xx or 429, or the
connection ended with 1006, 1011, 1012 or 1013, a proxy reported the server unreachable
(an HTTP proxy's 5xx or 429, a SOCKS network, host or connection error). Permanent: an
invalid URI or proxy URL, a certificate that fails verification, any other HTTP status
(a proxy's 407 included), a handshake the server got wrong. A
``process_exception(exc)`` hook replaces that decision: return None to retry, or the
exception to raise (``exc`` itself, or another one).
"""

from __future__ import annotations

import email.utils
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .exceptions import InvalidHandshake, InvalidProxy, InvalidStatus, InvalidURI, ProxyError
from .protocol.close import CloseCode

__all__ = [
    "Backoff",
    "DEFAULT_BACKOFF",
    "ProcessException",
    "Reconnecting",
    "default_process_exception",
    "ended_abnormally",
    "is_transient",
    "retry_after",
]

#: ``process_exception(exc)``: None to retry, or the exception to raise.
ProcessException = Callable[[Exception], Exception | None]

#: Close codes after which reconnecting is worth it: the connection was lost (1006), the
#: server failed (1011), restarts (1012) or is overloaded (1013).
TRANSIENT_CLOSE_CODES = frozenset(
    {
        CloseCode.ABNORMAL_CLOSURE,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
    }
)

#: Longest Retry-After honoured, in seconds: a server asking for more is waited for this long.
MAX_RETRY_AFTER = 3600.0


def _jitter() -> float:
    """A uniform draw in [0, 1); tests replace it to make delays exact."""
    return random.random()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: the n-th delay is drawn between half and all of
    ``min(maximum, initial * factor ** n)`` (so that clients cut off together do not come
    back together)."""

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 1.618

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"backoff delays must be 0 < initial <= maximum, got {self.initial!r} "
                f"and {self.maximum!r}"
            )
        if not self.factor >= 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor!r}")

    def delays(self) -> Iterator[float]:
        """The delays before each retry, growing until ``maximum``."""
        delay = self.initial
        while True:
            yield delay * (0.5 + 0.5 * _jitter())
            delay = min(self.maximum, delay * self.factor)


DEFAULT_BACKOFF = Backoff()


def is_transient(exc: BaseException) -> bool:
    """Whether retrying after ``exc`` may succeed (the default policy: module docstring)."""
    if isinstance(exc, (InvalidURI, InvalidProxy)):
        return False
    if isinstance(exc, ProxyError):
        return exc.transient  # a 5xx from an HTTP proxy, or a SOCKS "host unreachable"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status
        return status >= 500 or status == 429
    if isinstance(exc, InvalidHandshake):
        return False  # the server's answer was wrong: it will be wrong again
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, (OSError, TimeoutError))


def default_process_exception(exc: Exception) -> Exception | None:
    """None (retry) for a transient failure, else ``exc`` (raise it)."""
    return None if is_transient(exc) else exc


def retry_after(exc: BaseException, now: Callable[[], float] = time.time) -> float | None:
    """The delay a 429 or 5xx response asked for in ``Retry-After`` (seconds or an HTTP
    date), at most ``MAX_RETRY_AFTER``; None when there is none or it is malformed."""
    if not isinstance(exc, InvalidStatus):
        return None
    value = exc.response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - now()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def ended_abnormally(close_code: int | None) -> bool:
    """Whether a connection that ended with ``close_code`` counts as a failure for the
    backoff: a transient close code, or none at all (the stream just ended)."""
    return close_code is None or close_code in TRANSIENT_CLOSE_CODES


class Reconnecting:
    """The decisions of one reconnect loop, for either I/O layer (which sleeps and logs).

    Call :meth:`failed` when an attempt fails (it returns the delay before the next one,
    or raises what ``process_exception`` says to raise), :meth:`opened` when a connection
    opens, and :meth:`ended` when the application is done with it (None: reconnect at
    once; else the delay).
    """

    def __init__(
        self,
        backoff: Backoff,
        process_exception: ProcessException | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff = backoff
        self._decide = process_exception or default_process_exception
        self._clock = clock
        self._delays: Iterator[float] | None = None
        self._opened_at = 0.0

    def failed(self, exc: Exception) -> float:
        """An attempt failed with ``exc``: the delay before the next one, or raise."""
        error = self._decide(exc)
        if error is not None:
            if error is exc:
                raise exc
            raise error from exc
        if self._delays is None:
            self._delays = self._backoff.delays()
        return max(next(self._delays), retry_after(exc) or 0.0)

    def opened(self) -> None:
        self._opened_at = self._clock()

    def ended(self, close_code: int | None) -> float | None:
        """The connection is over: None after a normal close (and the delays start over),
        else the next delay; they also start over after a connection that lasted
        ``backoff.maximum``."""
        if not ended_abnormally(close_code):
            self._delays = None
            return None
        if self._delays is None or self._clock() - self._opened_at >= self._backoff.maximum:
            self._delays = self._backoff.delays()
        return next(self._delays)
