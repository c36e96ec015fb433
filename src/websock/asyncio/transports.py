"""Where TLS transports come from: aiofastnet on asyncio's own loop, else the loop itself.

asyncio's TLS layer (``asyncio.sslproto``) is written in Python: every record read or
written goes through several Python calls and a copy through memory BIOs. aiofastnet
(aio-libs) implements the same transports in Cython over OpenSSL, with the same
``asyncio.Transport`` interface. With it, 64 connections x 4 small messages over TLS went from
~91k to ~130k messages/s, and 1 MiB messages from ~550 to ~750 MB/s (benchmarks/RESULTS.md).

It is used only where it helps and is known to fit:

- for TLS connections (plain TCP is as fast with asyncio's transports, so it stays there);
- on asyncio's own event loops (uvloop has its own compiled TLS transports);
- when the package is installed (a dependency on CPython outside Windows, which has wheels
  for it), and unless ``WEBSOCK_NO_AIOFASTNET=1`` is set, which the test suite uses to run
  the TLS tests on asyncio's transports as well.

TLS transports report some failures to the loop's exception handler rather than to the
protocol, and aiofastnet 1.2.0 reports an EOF during the TLS handshake (a port check that
connects and closes, a client that rejects our certificate) with the exception *class*
``ConnectionResetError`` instead of an instance: asyncio's default handler then fails to
format it and prints ``--- Logging error ---`` with a traceback of its own.
:func:`contain_tls_errors` installs, while a server runs, a handler that turns the network
errors of the server's connections into one INFO line and passes everything else on.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

__all__ = [
    "create_server",
    "create_connection",
    "fast_tls_available",
    "resume_reading",
    "contain_tls_errors",
    "check_loop_kwargs",
]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

aiofastnet: Any
try:
    aiofastnet = importlib.import_module("aiofastnet")
except ImportError:  # pragma: no cover - depends on the platform
    aiofastnet = None


def fast_tls_available(loop: asyncio.AbstractEventLoop) -> bool:
    """True if TLS transports on ``loop`` will come from aiofastnet."""
    return (
        aiofastnet is not None
        and not os.environ.get("WEBSOCK_NO_AIOFASTNET")
        and type(loop).__module__.startswith("asyncio.")
    )


async def create_server(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Any,
    port: int | None,
    **kwargs: Any,
) -> asyncio.Server:
    """``loop.create_server(...)``, through aiofastnet for TLS where available.

    aiofastnet's server is not an ``asyncio.Server`` but has the same API.
    """
    if kwargs.get("ssl") is not None and fast_tls_available(loop):
        server = await aiofastnet.create_server(loop, protocol_factory, host, port, **kwargs)
        return cast(asyncio.Server, server)
    return await loop.create_server(protocol_factory, host, port, **kwargs)


def check_loop_kwargs(function: str, kwargs: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """A typo in a keyword must fail at the call, not when the loop gets it."""
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(
            f"{function}() got unexpected keyword argument(s) {', '.join(unknown)}: neither a "
            f"websock setting nor one of the event loop's ({', '.join(sorted(allowed))})"
        )


async def create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], _P],
    **kwargs: Any,
) -> tuple[asyncio.BaseTransport, _P]:
    """``loop.create_connection(...)``, through aiofastnet for TLS where available."""
    if kwargs.get("ssl") is not None and fast_tls_available(loop):
        result = await aiofastnet.create_connection(loop, protocol_factory, **kwargs)
        return cast("tuple[asyncio.BaseTransport, _P]", result)
    return await loop.create_connection(protocol_factory, **kwargs)


ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

# Errors that a peer causes by itself (a reset, a TLS alert, an EOF or a timeout during the
# handshake): worth an INFO line, never a traceback. asyncio.TimeoutError is listed for
# Python 3.10, where it is not the builtin TimeoutError (an OSError).
_PEER_ERRORS = (OSError, asyncio.TimeoutError)
# Contexts from the TLS layer ("SSL handshake failed", "SSL error in data received" ...).
# Not "Fatal error: protocol.buffer_updated() call failed": an OSError raised by our own
# protocol code is a bug, and keeps its traceback.
_TLS_MESSAGE = re.compile(r"\b(?:SSL|TLS)\b|handshake", re.IGNORECASE)


def _application_protocol(obj: Any) -> Any:
    """The application's protocol behind what a TLS transport put in a context, if found.

    aiofastnet puts its TLS transport in the context (as "transport" and as "protocol"); its
    ``get_protocol()`` is the application's protocol. asyncio's and uvloop's SSLProtocol
    keep it in ``_app_protocol`` (a private attribute, read defensively); the TCP transport
    under an SSLProtocol returns that SSLProtocol from ``get_protocol()``.
    """
    app = getattr(obj, "_app_protocol", None)
    if app is not None:
        return app
    get_protocol = getattr(obj, "get_protocol", None)
    if get_protocol is None:
        return None
    try:
        protocol = get_protocol()
    except Exception:  # a transport of another thread or a closed one: not ours to judge
        return None
    return getattr(protocol, "_app_protocol", None) or protocol


def _describe(exc: BaseException, class_given: bool) -> str:
    if class_given and isinstance(exc, ConnectionResetError):
        # aiofastnet's report of an EOF during the TLS handshake (see the module docstring).
        return "connection closed by the peer"
    return str(exc) or type(exc).__name__


class _TlsErrorFilter:
    """A loop exception handler that claims network errors of registered protocols.

    ``claims`` maps a protocol class to the logger its errors go to, with the number of
    servers that registered it. Everything not claimed goes to the handler that was in
    place before (or the loop's default handler), with an exception class replaced by an
    instance so that that handler can format it.
    """

    def __init__(self, previous: ExceptionHandler | None) -> None:
        self.previous = previous
        self.claims: dict[type, tuple[logging.Logger | logging.LoggerAdapter[Any], int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        class_given = isinstance(exc, type) and issubclass(exc, BaseException)
        if class_given:
            try:
                exc = cast("type[BaseException]", exc)()
            except Exception:
                exc = None
            context = {**context, "exception": exc}
        if (
            isinstance(exc, _PEER_ERRORS)
            and _TLS_MESSAGE.search(str(context.get("message", ""))) is not None
            and self._claim(context, exc, class_given)
        ):
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def _claim(self, context: dict[str, Any], exc: BaseException, class_given: bool) -> bool:
        for key in ("protocol", "transport"):
            obj = context.get(key)
            if obj is None:
                continue
            for candidate in (obj, _application_protocol(obj)):
                for kind, (log, _) in self.claims.items():
                    if isinstance(candidate, kind):
                        self._log(log, context, exc, class_given)
                        return True
        return False

    @staticmethod
    def _log(
        log: logging.Logger | logging.LoggerAdapter[Any],
        context: dict[str, Any],
        exc: BaseException,
        class_given: bool,
    ) -> None:
        peer = None
        for key in ("transport", "protocol"):
            get_extra_info = getattr(context.get(key), "get_extra_info", None)
            if get_extra_info is not None:
                try:
                    peer = get_extra_info("peername")
                except Exception:
                    peer = None
                if peer is not None:
                    break
        message = str(context.get("message", ""))
        reason = _describe(exc, class_given)
        if "handshake" in message.lower():
            log.info("TLS handshake with %s failed: %s", peer, reason)
        else:
            log.info("TLS connection with %s failed: %s: %s", peer, message, reason)


def contain_tls_errors(
    loop: asyncio.AbstractEventLoop,
    protocol_type: type,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> Callable[[], None]:
    """Log network errors that transports report to ``loop`` for ``protocol_type`` at INFO.

    While the returned function has not been called, an error such as a TLS handshake
    that the peer broke off, reported by the transport of a ``protocol_type`` instance to
    the loop's exception handler, becomes one line on ``log`` (peer address and reason)
    instead of an ERROR with a traceback. Everything else reaches the exception handler
    that was set before, unchanged, except that an exception class is replaced by an
    instance (see the module docstring).

    The loop's exception handler is replaced only while at least one caller holds a
    claim; calling the returned function gives the claim up, and the last one puts the
    previous handler back, unless the application replaced ours in the meantime (then
    its handler is left alone).
    """
    current = loop.get_exception_handler()
    if isinstance(current, _TlsErrorFilter):
        handler = current
    else:
        handler = _TlsErrorFilter(current)
        loop.set_exception_handler(handler)
    _, count = handler.claims.get(protocol_type, (log, 0))
    handler.claims[protocol_type] = (log, count + 1)
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        claim = handler.claims.get(protocol_type)
        if claim is not None:
            if claim[1] > 1:
                handler.claims[protocol_type] = (claim[0], claim[1] - 1)
            else:
                del handler.claims[protocol_type]
        if not handler.claims and loop.get_exception_handler() is handler:
            loop.set_exception_handler(handler.previous)

    return release


def resume_reading(transport: asyncio.BaseTransport) -> None:
    """``transport.resume_reading()``, working around aiofastnet 1.2.0 where it falls short.

    aiofastnet's TLS transport reads the socket before it decrypts what its incoming memory
    BIO already holds: records that arrived while reading was paused (a Close behind a
    large message, say) are processed only when more bytes come, which may be never. Its
    ``_retry_ssl_read`` processes them, with the transport's own error handling; it is
    scheduled, as aiofastnet's own resume would, rather than run inside our callback.
    """
    transport.resume_reading()  # type: ignore[attr-defined]
    retry = getattr(transport, "_retry_ssl_read", None)
    if retry is not None and type(transport).__module__.startswith("aiofastnet"):
        asyncio.get_running_loop().call_soon(retry)
