"""The asyncio WebSocket server: :func:`serve`, :class:`Server`, :class:`ServerConnection`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import ssl as ssl_module
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal

from ..connection_logger import ConnectionLogger, LoggerLike, resolve_logger
from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidState
from ..options import (
    DEFAULT_BROADCAST_LIMIT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_STREAMING_SIZE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Options,
)
from ..protocol import connection as core
from ..protocol.extensions.base import ServerExtensionFactory
from ..protocol.forwarded import TrustedProxies, client_address
from ..protocol.handshake import MAX_ERROR_TEXT, USER_AGENT, ServerHandshake
from ..protocol.http import MAX_HEAD_SIZE, MAX_HEADERS, Headers, Request, Response, excerpt
from . import transports
from .connection import Connection

__all__ = [
    "unix_serve",
    "serve",
    "Server",
    "ServerConnection",
    "Handler",
    "ProcessRequest",
    # Defined in websock.options; re-exported for the code that imports them from here.
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_WRITE_LIMIT",
]

logger = logging.getLogger("websock.server")

Handler = Callable[["ServerConnection"], Awaitable[None]]
#: ``select_subprotocol(connection, offered)``: one of the offered subprotocols, or None.
SelectSubprotocol = Callable[["ServerConnection", list[str]], "str | None"]
#: ``process_response(connection, request, response)``: None, or a Response to send instead.
ProcessResponse = Callable[
    ["ServerConnection", Request, Response], "Response | None | Awaitable[Response | None]"
]
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | None | Awaitable[Response | None]"
]

# The defaults of serve()'s arguments are defined, with their reasons, in websock.options.
# max_connections="auto": 90% of the soft limit on open files (RLIMIT_NOFILE) when serve()
# is called, keeping at least 32 descriptors for everything else. File descriptors, not
# memory, are what runs out first: an idle connection costs ~7 KiB of Python objects (plus
# kernel socket buffers), 10,000 of them ~70 MB, while the soft limit is often 1,024. Past
# that limit accept() fails with EMFILE: asyncio logs an error, stops accepting for a
# second, and every new client, good or bad, waits in the listen backlog until it times
# out. Below it, the server answers 503 at once and the connections it holds keep working.
# The tenth kept back is for the listening sockets, the application's own files and
# connections, and the sockets accepted only to be answered 503. The limit follows the one
# the operator configured (ulimit -n, LimitNOFILE=) rather than a fixed number that would
# be too high for a 1,024 limit and too low for a large server; unlimited (None) where
# there is no such limit (Windows, RLIM_INFINITY). Pass a number or None to choose.
MAX_CONNECTIONS_RESERVE = 32
# Retry-After on a 503 for max_connections: WebSocket connections are long-lived, so a full
# server rarely has a free slot within a second; a short hint would only multiply retries
# against it (clients should add jitter; browsers ignore the header anyway).
REFUSED_RETRY_AFTER = 5
# A connection refused with 503 is closed once its request head has arrived (closing with
# unread data makes the kernel send RST, which can destroy the response in flight), or
# after this many seconds (at most open_timeout) if it does not come.
REFUSED_LINGER = 1.0


def default_max_connections() -> int | None:
    """The limit ``max_connections="auto"`` stands for, from RLIMIT_NOFILE (see above)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(1, soft - max(MAX_CONNECTIONS_RESERVE, soft // 10))


class ServerConnection(Connection):
    """A connection accepted by the server; the handler receives it.

    ``request`` is the client's opening request (``path``, ``query``, ``headers``) and
    ``response_headers`` the headers to add to our 101 response: a ``process_request`` hook
    may add to them (for example a cookie).
    """

    __slots__ = (
        "_accepted_at",
        "_admitted",
        "_handler_task",
        "_handshake",
        "_open_timer",
        "_refused",
        "id",
        "request",
        "response",
        "response_headers",
        "server",
    )

    def __init__(self, server: Server) -> None:
        options = server.options
        #: A random id, in each line this connection logs (its first 8 hex digits).
        self.id = uuid.uuid4()
        super().__init__(core.Role.SERVER, options, ConnectionLogger(server.logger, self))
        self.server = server
        self.request: Request | None = None
        self.response: Response | None = None
        self.response_headers = Headers()
        self._handshake = ServerHandshake(
            origins=options.origins,
            subprotocols=options.subprotocols,
            extensions=server._extensions,
            max_size=options.max_handshake_size,
            max_headers=options.max_headers,
            server_header=options.server_header,
        )
        self._open_timer: asyncio.TimerHandle | None = None
        # The protocol factory runs when TCP is accepted, before any TLS handshake:
        # open_timeout counts from here, so it bounds TCP, TLS and the upgrade together.
        self._accepted_at = self.loop.time()
        self._handler_task: asyncio.Task[None] | None = None
        self._admitted = False  # counted in server._open_count until connection_lost()
        self._refused = False  # answered 503: over max_connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.server._admit(self):
            self._refuse()
            return
        self._admitted = True
        self.server._connections.add(self)
        timeout = self.options.open_timeout
        if timeout is not None:
            self._open_timer = self.loop.call_at(self._accepted_at + timeout, self._open_timed_out)

    def _refuse(self) -> None:
        """Answer 503 at once, without reading the request; close once it has arrived."""
        assert self.transport is not None
        handshake = self._handshake
        response = handshake.reject(
            503,
            "server at capacity: try again later\n",
            {"Retry-After": str(REFUSED_RETRY_AFTER)},
        )
        self._refused = True
        self.response = response
        handshake.send_response(response)
        # Only the response now: the end of TCP that follows it (b"") waits for the request
        # head, or REFUSED_LINGER (_refused_close), lest unread data turn our FIN into RST.
        for chunk in handshake.data_to_send():
            if chunk:
                self.transport.write(chunk)
        linger = REFUSED_LINGER
        timeout = self.options.open_timeout
        if timeout is not None:
            linger = min(linger, timeout)
        self._open_timer = self.loop.call_later(linger, self._refused_close)

    def _refused_data(self, data: bytes) -> None:
        """Read (and drop) the refused client's request, then close: see REFUSED_LINGER."""
        if self._open_timer is None:
            return  # already closing
        try:
            if self._handshake.receive_data(data) is None:
                return  # the head is not complete yet
        except InvalidHandshake:
            pass  # malformed or too large: nothing more worth waiting for
        self._refused_close()

    def _refused_close(self) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        self._close_tcp()

    def _open_timed_out(self) -> None:
        if self.protocol is None and not self._lost and self.transport is not None:
            self.logger.info("opening handshake timed out: closing TCP connection")
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
        if self._admitted:
            # Before waking anyone up (connection_lost_waiter): the slot is free now.
            self._admitted = False
            self.server._release()
        super().connection_lost(exc)
        if self._handler_task is None or self._handler_task.done():
            self.server._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.protocol is not None:
            self._receive(data)
            return
        if self._refused:
            self._refused_data(data)
            return
        if self.request is not None:
            # An async process_request hook is running and reading is paused; keep any
            # bytes that still arrive with the first frames (the handshake's trailing data).
            self._handshake.receive_data(data)
            return
        try:
            request = self._handshake.receive_data(data)
            if request is None:
                return
            self.request = request
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        hook = self.options.process_request
        if hook is None:
            self._accept()
            return
        # The hook runs before the upgrade is validated, so that it can answer plain HTTP
        # requests (a health check); _accept() validates when the hook returns None.
        try:
            result = hook(self, request)
        except Exception as exc:
            self._hook_failed("process_request", exc)
            return
        self._then(result, "process_request", self._after_hook)

    def _then(
        self,
        result: Response | None | Awaitable[Response | None],
        name: str,
        after: Callable[[Response | None], None],
    ) -> None:
        """Go on with a hook's result: at once, or (awaitable) once it is ready, reading
        paused meanwhile."""
        if inspect.isawaitable(result):
            assert self.transport is not None
            self.transport.pause_reading()
            self._handler_task = self.loop.create_task(self._await_hook(result, name, after))
        else:
            after(result)

    async def _await_hook(
        self,
        result: Awaitable[Response | None],
        name: str,
        after: Callable[[Response | None], None],
    ) -> None:
        try:
            response = await result
        except Exception as exc:
            self._hook_failed(name, exc)
            return
        except asyncio.CancelledError:
            # Server shutdown gave up on the hook: drop the connection.
            self._abort_transport()
            raise
        finally:
            self._handler_task = None
            if self._lost:
                # connection_lost() left the bookkeeping to us while the hook ran.
                self.server._connections.discard(self)
        if self._lost:
            return
        after(response)
        if self.protocol is not None and not self._lost:
            # Resume only now: bytes read from here on reach the open connection.
            # Through _apply_reading: the trailing bytes may have filled the queue already.
            self._apply_reading()

    def _hook_failed(self, name: str, exc: Exception) -> None:
        """A hook raised: log it (with its traceback) and answer 500."""
        self.logger.error(
            "%s hook raised %s: %s; answering 500",
            name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        self._send_response(self._response_500())

    def _response_500(self) -> Response:
        return self._handshake.reject(500, "internal server error\n")

    def _after_hook(self, response: Response | None) -> None:
        if response is None:
            self._accept()
            return
        if not isinstance(response, Response):
            self.logger.error(
                "process_request returned %s, not a Response or None; answering 500",
                type(response).__name__,
            )
            response = self._response_500()
        self._send_response(response)

    @property
    def client_address(self) -> Any:
        """The client's address: ``remote_address``, unless the server trusts the peer as a
        reverse proxy (``trusted_proxies``) and the request says who its client was in
        ``X-Forwarded-For``: then ``(client_ip, 0)`` (the client's port is not forwarded)."""
        return client_address(self.remote_address, self.request, self.server._trusted_proxies)

    def respond(
        self, status: int, text: str = "", headers: Mapping[str, str] | None = None
    ) -> Response:
        """Build an HTTP response for ``process_request`` to return instead of upgrading.

        ``status`` must be a final HTTP status, from 200 to 599 (a 1xx is not an answer):
        anything else raises :class:`ValueError`, so the hook fails where the mistake is and
        the client gets a 500.
        """
        if self.protocol is not None:
            raise InvalidState(
                "respond() is for process_request and process_response, before the upgrade"
            )
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status!r} for respond(): must be 200-599")
        return self._handshake.reject(status, text, headers)

    def _reject(self, exc: InvalidHandshake) -> None:
        self.logger.info(
            "rejected opening handshake from %s: %d %s",
            self.remote_address,
            exc.status,
            excerpt(str(exc), MAX_ERROR_TEXT),
        )
        self._send_response(self._handshake.response_for_error(exc))

    def _send_response(self, response: Response) -> None:
        """Answer the request with ``response`` instead of upgrading; TCP ends after it."""
        handshake = self._handshake
        try:
            handshake.send_response(response)
        except (ValueError, TypeError) as exc:
            # A response built by the application (process_request) that HTTP cannot carry.
            self.logger.error(
                "invalid HTTP response to %s: %s; answering 500", self.remote_address, exc
            )
            response = self._response_500()
            handshake.send_response(response)
        self.response = response
        self._write_handshake(handshake.data_to_send())

    def _write_handshake(self, out: list[bytes]) -> None:
        """Write the handshake's bytes; ``b""`` (after a refusal) ends TCP as after a Close:
        FIN once the response is written, then what the client still sends is drained."""
        transport = self.transport
        if transport is None or self._lost:
            return
        for chunk in out:
            if chunk:
                transport.write(chunk)
            else:
                self._close_tcp()
                return

    def _accept(self) -> None:
        assert self.request is not None and self.transport is not None
        hook = self.options.select_subprotocol
        try:
            response = self._handshake.accept(
                self.request,
                extra_headers=self.response_headers,
                select_subprotocol=None if hook is None else partial(hook, self),
            )
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        except Exception as exc:  # the select_subprotocol hook failed
            self.logger.error(
                "select_subprotocol hook failed (%s: %s); answering 500",
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            self._send_response(self._response_500())
            return
        process_response = self.options.process_response
        if process_response is None:
            self._upgrade(response)
            return
        try:
            result = process_response(self, self.request, response)
        except Exception as exc:
            self._hook_failed("process_response", exc)
            return
        self._then(result, "process_response", partial(self._after_response_hook, response))

    def _after_response_hook(self, built: Response, returned: Response | None) -> None:
        """process_response returned: None keeps our 101 (which it may have changed in
        place), a 101 replaces it, any other status refuses the upgrade."""
        if returned is None:
            self._upgrade(built)
        elif not isinstance(returned, Response):
            self.logger.error(
                "process_response returned %s, not a Response or None; answering 500",
                type(returned).__name__,
            )
            self._send_response(self._response_500())
        elif returned.status != 101:
            self._send_response(returned)
        else:
            self._upgrade(returned)

    def _upgrade(self, response: Response) -> None:
        """Send the 101 and open the connection: the handler starts."""
        handshake = self._handshake
        try:
            # A hook may have put what HTTP cannot carry in the response (or its headers).
            handshake.send_response(response)
        except (ValueError, TypeError) as exc:
            self.logger.error(
                "invalid 101 response to %s: %s; answering 500", self.remote_address, exc
            )
            self._send_response(self._response_500())
            return
        if self._open_timer is not None:
            self._open_timer.cancel()
        self.response = response
        # The handshake state (head buffer, parser) is no longer needed: free it.
        del self._handshake
        self.subprotocol = handshake.subprotocol
        self._write_handshake(handshake.data_to_send())
        if self.server._closing:
            # The server started shutting down during the handshake.
            self._open(handshake.extensions, b"")
            assert self.protocol is not None
            self.protocol.send_close(1001, "server shutting down")
            self._flush()
            self._start_close_timer()
            return
        self._open(handshake.extensions, handshake.trailing)
        coro = self.server._handler(self)
        task: asyncio.Task[None] = self.loop.create_task(coro)  # type: ignore[arg-type]
        task.add_done_callback(self._handler_done)
        self._handler_task = task

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        """Close the connection once the handler returned (1000) or failed (1011).

        A done-callback rather than a wrapper coroutine: one coroutine frame less per
        connection for its whole life.
        """
        error = None if task.cancelled() else task.exception()
        protocol = self.protocol
        if error is not None and not isinstance(error, ConnectionClosed):
            self.logger.error("connection handler failed", exc_info=error)
        if not self._lost and protocol is not None:
            if protocol.terminal_pending:
                # The peer's Close or a violation waits behind messages the handler left:
                # answer it (its code, or 1002/1007/1009), not with 1000 or 1011.
                self._act_on_terminal()
                self._expect_peer_close()
            elif not protocol.close_expected():
                # A closing handshake, not a failure: the peer did nothing wrong, and its
                # Close is still read (past a queue the handler left full).
                failed = error is not None and not isinstance(error, ConnectionClosed)
                protocol.send_close(1011 if failed else 1000)  # no details on the wire
                self._flush()
                self._expect_peer_close()
            self._start_close_timer()
        if self._lost:
            self.server._connections.discard(self)


class Server:
    """A listening WebSocket server. Created by :func:`serve`.

    :attr:`options` holds the settings given to :func:`serve`; ``max_connections`` is the
    limit in force (None: unlimited) and :attr:`rejected_connections` counts the connections
    refused with 503 because of it.
    """

    def __init__(self, handler: Handler, options: Options) -> None:
        self._handler = handler
        #: The settings of the server and of its connections (see
        #: :class:`~websock.options.Options`); ``max_connections="auto"`` is resolved.
        self.options = options
        #: Where the server logs (``logger=``); its connections log through a
        #: :class:`~websock.connection_logger.ConnectionLogger` wrapping it.
        self.logger = resolve_logger(options.logger, "websock.server")
        self._trusted_proxies = (
            None if options.trusted_proxies is None else TrustedProxies(options.trusted_proxies)
        )
        # Built once and shared by every connection, as negotiation does not change them.
        self._extensions: list[ServerExtensionFactory] = options.server_extensions()
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._closed = asyncio.get_running_loop().create_future()
        # TCP (and TLS) connections admitted and not yet lost, opening handshakes included:
        # what max_connections limits. Not len(_connections), which also keeps connections
        # whose handler is still running after TCP closed.
        self._open_count = 0
        self._rejected = 0
        self._next_capacity_warning = 0.0
        self._release_tls_errors: Callable[[], None] | None = None

    @property
    def max_connections(self) -> int | None:
        """The most TCP connections served at once (None: no limit); see :func:`serve`."""
        return self.options.max_connections

    @property
    def rejected_connections(self) -> int:
        """How many connections were answered 503 because ``max_connections`` was reached."""
        return self._rejected

    def _admit(self, conn: ServerConnection) -> bool:
        limit = self.max_connections
        if limit is None or self._open_count < limit:
            self._open_count += 1
            return True
        self._rejected += 1
        self.logger.debug(
            "refused connection from %s: max_connections reached", conn.remote_address
        )
        now = conn.loop.time()
        if now >= self._next_capacity_warning:
            # At most once a minute: a full server refuses every new connection.
            self._next_capacity_warning = now + 60.0
            self.logger.warning(
                "max_connections (%d) reached: answering new connections 503 (%d refused so far)",
                limit,
                self._rejected,
            )
        return False

    def _release(self) -> None:
        self._open_count -= 1

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections currently open (or opening)."""
        return set(self._connections)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket (handy with ``port=0``)."""
        return int(self.sockets[0].getsockname()[1])

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on (as :meth:`asyncio.Server.get_loop`)."""
        return self._closed.get_loop()

    def is_serving(self) -> bool:
        """True while the server accepts connections: from ``serve()`` until :meth:`close`."""
        return self._server is not None and not self._closing and self._server.is_serving()

    async def start_serving(self) -> None:
        """Nothing to do: ``serve()`` starts accepting at once. Kept for websockets' and
        asyncio's API (``await server.start_serving()`` is harmless)."""

    async def _start(
        self,
        host: str | Sequence[str] | None,
        port: int | None,
        kwargs: dict[str, Any],
        unix_path: str | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.options.open_timeout
        if kwargs.get("ssl") is not None and timeout is not None:
            # connection_made() comes after the TLS handshake, so the open timer starts
            # only then: bound the TLS handshake by open_timeout too (asyncio's default
            # is 60 s, during which a silent client holds a socket).
            kwargs = {"ssl_handshake_timeout": timeout, **kwargs}
        if kwargs.get("ssl") is not None:
            # Failed TLS handshakes are reported to the loop's exception handler, by some
            # transports as a traceback that cannot even be formatted: one INFO line each.
            self._release_tls_errors = transports.contain_tls_errors(
                loop, ServerConnection, self.logger
            )
        try:
            if unix_path is not None:
                self._server = await loop.create_unix_server(
                    lambda: ServerConnection(self), unix_path, **kwargs
                )
            else:
                self._server = await transports.create_server(
                    loop, lambda: ServerConnection(self), host, port, **kwargs
                )
        except BaseException:
            self._stop_containing_tls_errors()
            raise

    def _stop_containing_tls_errors(self) -> None:
        if self._release_tls_errors is not None:
            self._release_tls_errors()
            self._release_tls_errors = None

    def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, send Close ``code`` to every connection, and finish in the background.

        Await :meth:`wait_closed` for the end: it comes when every closing handshake is done
        or its close_timeout ran out, and every handler has returned.
        """
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        asyncio.get_running_loop().create_task(self._close_connections(code, reason))

    async def _close_connections(self, code: int, reason: str) -> None:
        conns = list(self._connections)
        for conn in conns:
            if conn.protocol is None:
                if conn.transport is not None and conn.request is None:
                    conn.transport.close()
        await asyncio.gather(
            *(conn.close(code, reason) for conn in conns if conn.protocol is not None),
            return_exceptions=True,
        )
        tasks = [c._handler_task for c in conns if c._handler_task is not None]
        if tasks:
            timeout = self.options.close_timeout
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._server is not None:
            await self._server.wait_closed()
        # Only now: TLS handshakes accepted before close() may still be failing until here.
        self._stop_containing_tls_errors()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until cancelled (e.g. by Ctrl-C), then close gracefully with 1001."""
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class serve:  # noqa: N801 - used like a function: `async with serve(...)` / `await serve(...)`
    """Start a WebSocket server calling ``handler(connection)`` for each connection.

    Use ``async with serve(handler, host, port) as server: await server.serve_forever()``,
    or ``server = await serve(...)`` and later ``server.close(); await server.wait_closed()``.

    Arguments beyond ``host`` and ``port`` are keyword-only:

    - ``ssl``: an :class:`ssl.SSLContext` to serve wss://.
    - ``sock``: an already bound listening socket instead of host/port.
    - ``origins``: allowed Origin values (None in the list allows no Origin); others get 403.
    - ``subprotocols``: subprotocols we speak, picked in the client's order of preference.
    - ``process_request``: ``hook(connection, request)``, sync or async, called before the
      upgrade, and before the request is validated as one, so that it can answer plain
      HTTP requests (a health check); return a :class:`Response`
      (``connection.respond(401, "...")``) to answer instead of upgrading, or None to
      continue; it may add to ``connection.response_headers``.
    - ``process_response``: ``hook(connection, request, response)``, sync or async, called
      with our 101 before it is sent: change it in place (headers) and return None, or
      return a Response to send instead (a 101, or a refusal such as
      ``connection.respond(403, ...)``); a failure answers 500.
    - ``select_subprotocol``: ``hook(connection, offered)`` (a plain function) returns one
      of the subprotocols the client offered, or None for none, instead of the first
      offered one found in ``subprotocols``; raising :class:`NegotiationError` answers 400,
      any other failure (or a subprotocol that was not offered) 500.
    - ``compression``: ``"deflate"`` (default: permessage-deflate when the client offers
      it), None to turn it off, or a list of extension factories
      (e.g. ``[ServerPerMessageDeflateFactory(compression_level=1)]``).
    - Limits: ``max_message_size`` (default 1 MiB after decompression; None = unlimited;
      exceeding it closes with 1009), ``max_frame_size`` (None: bounded by the message
      size), ``max_fragments`` (frames per message, 262,144; beyond: 1009),
      ``max_queue`` (received messages buffered before reading pauses: ``(messages,
      bytes)``, default ``(16, 1 MiB)``; an int sets the count and keeps 1 MiB; the core
      stops parsing, so compressed messages stay compressed, until the application
      consumes the queue down to a quarter),
      ``write_limit`` (write buffer high-water mark in bytes, or ``(high, low)``; 64 KiB),
      ``max_handshake_size`` (request head bytes, 16 KiB; beyond it: 431),
      ``max_headers`` (128).
    - Timeouts (seconds, None to disable): ``open_timeout`` (10), ``close_timeout`` (10),
      ``ping_interval`` (20) and ``ping_timeout`` (20): a peer that leaves a keepalive
      ping unanswered is closed with 1011.
    - ``max_connections``: the most TCP connections served at once, those still in the
      opening handshake included (not those still in the TLS handshake, which the server
      does not see yet; ``open_timeout`` bounds that). Beyond it a new connection is
      answered ``503 Service Unavailable`` with ``Retry-After: 5``, closed cleanly, and
      counted in :attr:`Server.rejected_connections`; the others are not disturbed.
      ``"auto"`` (default): 90% of the soft limit on open files (``ulimit -n``) when
      ``serve()`` is called, so that the server answers 503 rather than run out of file
      descriptors and stop accepting (unlimited where there is no such limit); an int
      sets it; None: no limit. An idle connection costs about 7 KiB besides its socket.
    - ``server_header``: the Server header value, None to omit it.
    - ``trusted_proxies``: addresses or CIDR ranges (or ``"*"``) of reverse proxies whose
      ``X-Forwarded-For`` header is believed: ``ws.client_address`` then gives the
      client's address instead of the proxy's (``remote_address`` stays the TCP peer).
      None (default): the header is ignored.
    - ``logger``: where the server and its connections log (a logger, an adapter or a
      name; default ``websock.server``); each connection's lines start with its ``id``
      and peer address.
    - ``max_streaming_size``: the size limit of a message read with ``recv_streaming()``
      (1 GiB; None = unlimited), instead of ``max_message_size``; ``streaming=True``
      receives every message in pieces from the first one (see ``recv_streaming()``).
    - :func:`websock.broadcast` settings: ``broadcast_limit`` (1 MiB: a connection with
      more output than this not yet taken by the kernel is a slow consumer) and
      ``slow_consumer`` (``"drop"``: skip the message for it, counted; ``"close"``: close
      it with 1013 so that it reconnects and resynchronises).
    - Any other keyword argument goes to :meth:`loop.create_server` (``reuse_port``,
      ``backlog``, ``family``, ``ssl_handshake_timeout``...), as in websockets; a name that
      is neither raises :class:`TypeError` at the call.

    The settings are validated when ``serve()`` is called (a bad value raises
    :class:`ValueError` there) and kept, as an :class:`~websock.options.Options`, in
    :attr:`Server.options` and in each connection's ``options``.

    Over TLS, a handshake that fails (the client rejects our certificate, a port check
    connects and closes) is logged on ``websock.server`` at INFO, with the peer's address,
    where the transport reports it (aiofastnet's does; asyncio's and uvloop's drop such
    errors silently). The loop's exception handler is wrapped for this while the server
    runs; whatever does not concern the server's connections goes to the previous one.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        process_request: ProcessRequest | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        process_response: ProcessResponse | None = None,
        compression: Literal["deflate"] | None | Sequence[ServerExtensionFactory] = "deflate",
        # Limits
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        max_streaming_size: int | None = DEFAULT_MAX_STREAMING_SIZE,
        streaming: bool = False,
        max_queue: int | tuple[int | None, int | None] | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int | None] = DEFAULT_WRITE_LIMIT,
        max_handshake_size: int | None = MAX_HEAD_SIZE,
        max_headers: int | None = MAX_HEADERS,
        # Timeouts
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        max_connections: int | None | Literal["auto"] = "auto",
        server_header: str | None = USER_AGENT,
        logger: LoggerLike = None,
        trusted_proxies: Sequence[str] | None = None,
        # Broadcast (websock.broadcast)
        broadcast_limit: int | None = DEFAULT_BROADCAST_LIMIT,
        slow_consumer: Literal["drop", "close"] = "drop",
        **create_server_kwargs: Any,
    ) -> None:
        # Every protocol setting in one validated object: a bad value raises ValueError here,
        # not on the first connection. ssl, sock, host, port and create_server_kwargs are
        # not part of it: they are I/O resources of this listener (a socket, a context
        # holding keys, loop arguments), while Options holds protocol settings only, which
        # either I/O layer can share and which replace() can copy freely.
        self._options = Options.from_arguments(locals())
        self._handler = handler
        self._host = host
        self._port = port
        transports.check_loop_kwargs("serve", create_server_kwargs, _CREATE_SERVER_ARGS)
        self._kwargs: dict[str, Any] = dict(create_server_kwargs)
        if ssl is not None:
            self._kwargs["ssl"] = ssl
        if sock is not None:
            self._kwargs["sock"] = sock
        self._server: Server | None = None
        self._unix_path: str | None = None

    async def _create(self) -> Server:
        server = Server(self._handler, self._options)
        await server._start(self._host, self._port, self._kwargs, self._unix_path)
        self._server = server
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._create().__await__()

    async def __aenter__(self) -> Server:
        return await self._create()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


# The keyword arguments of loop.create_server that serve() passes through: the others are
# serve()'s own (host, port, ssl, sock) or fixed by it (the protocol factory).
_CREATE_SERVER_ARGS = frozenset(
    {
        "family",
        "flags",
        "backlog",
        "reuse_address",
        "reuse_port",
        "keep_alive",
        "ssl_handshake_timeout",
        "ssl_shutdown_timeout",
        "start_serving",
    }
)


class unix_serve(serve):
    """:func:`serve` on a Unix socket at ``path`` (created, a stale one replaced) instead
    of TCP: ``async with unix_serve(handler, "/run/app.sock") as server``. The other
    arguments are serve()'s (``ssl`` included); a reverse proxy on the same host can reach
    it without a TCP port."""

    def __init__(self, handler: Handler, path: str, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._unix_path = path
