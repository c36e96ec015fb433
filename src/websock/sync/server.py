"""The threading WebSocket server: :func:`serve`, :class:`Server`, :class:`ServerConnection`.

A thread per connection runs the opening handshake and then the application's handler;
a reader thread per connection feeds the core (see connection.py). The accepting loop
runs in the thread that calls :meth:`Server.serve_forever`.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl as ssl_module
import stat
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal

from ..connection_logger import ConnectionLogger, LoggerLike, resolve_logger
from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidState
from ..options import (
    CLOSE_GRACE,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_STREAMING_SIZE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Options,
)
from ..protocol import connection as core
from ..protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.extensions.base import ServerExtensionFactory
from ..protocol.forwarded import TrustedProxies, client_address
from ..protocol.handshake import MAX_ERROR_TEXT, USER_AGENT, ServerHandshake
from ..protocol.http import MAX_HEAD_SIZE, MAX_HEADERS, Headers, Request, Response, excerpt
from . import timers
from .connection import Connection, read_head

__all__ = ["unix_serve", "serve", "Server", "ServerConnection", "Handler", "ProcessRequest"]

logger = logging.getLogger("websock.server")

Handler = Callable[["ServerConnection"], None]
ProcessRequest = Callable[["ServerConnection", Request], "Response | None"]
#: ``process_response(connection, request, response)``: None, or a Response to send instead.
ProcessResponse = Callable[["ServerConnection", Request, Response], "Response | None"]
#: ``select_subprotocol(connection, offered)``: one of the offered subprotocols, or None.
SelectSubprotocol = Callable[["ServerConnection", list[str]], "str | None"]

# A connection refused with 503 (max_connections) keeps the same Retry-After as the
# asyncio server: WebSocket connections are long-lived, so a full server rarely has a free
# slot within seconds.
REFUSED_RETRY_AFTER = 5


class ServerConnection(Connection):
    """A connection accepted by the server; the handler receives it.

    ``request`` is the client's opening request (``path``, ``query``, ``headers``) and
    ``response_headers`` the headers to add to our 101 response: a ``process_request`` hook
    may add to them (for example a cookie).
    """

    def __init__(
        self, sock: socket.socket, server: Server, open_deadline: float | None = None
    ) -> None:
        #: A random id, in each line this connection logs (its first 8 hex digits).
        self.id = uuid.uuid4()
        super().__init__(sock, server.options, ConnectionLogger(server.logger, self))
        self.server = server
        # When the opening handshake must be done: open_timeout after TCP was accepted, so
        # that it bounds TCP, TLS and the upgrade together.
        self._open_deadline = open_deadline
        self.request: Request | None = None
        self.response: Response | None = None
        self.response_headers = Headers()
        options = server.options
        self._handshake = ServerHandshake(
            origins=options.origins,
            subprotocols=options.subprotocols,
            extensions=options.server_extensions(),
            max_size=options.max_handshake_size,
            max_headers=options.max_headers,
            server_header=options.server_header,
        )

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

        ``status`` must be a final HTTP status, from 200 to 599: anything else raises
        :class:`ValueError`, so the hook fails where the mistake is and the client gets 500.
        """
        if hasattr(self, "protocol"):
            raise InvalidState("respond() is for process_request, before the upgrade")
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status!r} for respond(): must be 200-599")
        return self._handshake.reject(status, text, headers)

    # ------------------------------------------------------------------ opening handshake

    def _handshake_and_run(self) -> None:
        """Run the opening handshake, then the handler, then the closing handshake."""
        if not self._read_request():
            return
        request = self.request
        assert request is not None
        handshake = self._handshake
        response: Response | None = None
        hook = self.options.process_request
        if hook is not None:
            # Before the upgrade is validated, so that it can answer plain HTTP requests
            # (a health check); accept() validates when the hook returns None.
            try:
                response = hook(self, request)
            except Exception as exc:
                self.logger.error(
                    "process_request hook raised %s: %s; answering 500",
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                response = handshake.reject(500, "internal server error\n")
            if response is not None and not isinstance(response, Response):
                self.logger.error(
                    "process_request returned %s, not a Response or None; answering 500",
                    type(response).__name__,
                )
                response = handshake.reject(500, "internal server error\n")
        if response is None:
            select = self.options.select_subprotocol
            try:
                response = handshake.accept(
                    request,
                    extra_headers=self.response_headers,
                    select_subprotocol=None if select is None else partial(select, self),
                )
            except InvalidHandshake as exc:
                self._log_rejection(exc)
                response = handshake.response_for_error(exc)
            except Exception as exc:  # the select_subprotocol hook failed
                self.logger.error(
                    "select_subprotocol hook failed (%s: %s); answering 500",
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                response = handshake.reject(500, "internal server error\n")
            else:
                response = self._process_response(request, response)
        if not self._send_response(response):
            return
        # Upgraded. From here on the socket blocks without a timeout: the reader thread
        # waits for frames as long as the connection lives (keepalive bounds silence).
        self.socket.settimeout(None)
        del self._handshake  # its buffers are no longer needed
        try:
            self._open(
                core.Role.SERVER, handshake.subprotocol, handshake.extensions, handshake.trailing
            )
        except RuntimeError as exc:  # "can't start new thread": out of threads
            # The client has its 101: close the WebSocket way (1011), not with a bare FIN.
            self.logger.error("cannot start a reader thread (%s): closing with 1011", exc)
            self.protocol.fail(1011)
            try:
                self.socket.sendall(b"".join(self.protocol.data_to_send()))
            except OSError:
                pass
            self._linger_close()
            return
        if self.server._shutting_down:
            self.close(1001, "server shutting down")
            return
        self._run_handler()

    def _read_request(self) -> bool:
        """Read the request head within open_timeout; answer errors. True if one arrived."""
        handshake = self._handshake
        sock = self.socket
        try:
            try:
                self.request = read_head(sock, handshake.receive_data, self._open_deadline)
            except InvalidHandshake as exc:
                self._log_rejection(exc)
                self._send_response(handshake.response_for_error(exc))
                return False
            if self.request is None:  # the client left
                sock.close()
                return False
        except TimeoutError:
            self.logger.info("opening handshake timed out: closing TCP connection")
            sock.close()
            return False
        except OSError:
            sock.close()
            return False
        return True

    def _log_rejection(self, exc: InvalidHandshake) -> None:
        self.logger.info(
            "rejected opening handshake from %s: %d %s",
            self.remote_address,
            exc.status,
            excerpt(str(exc), MAX_ERROR_TEXT),
        )

    def _process_response(self, request: Request, response: Response) -> Response:
        """Run the process_response hook on our 101: None keeps it (changed in place, maybe),
        a Response replaces it (another status refuses the upgrade), a failure gives 500."""
        hook = self.options.process_response
        if hook is None:
            return response
        try:
            returned = hook(self, request, response)
        except Exception as exc:
            self.logger.error(
                "process_response hook raised %s: %s; answering 500",
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            return self._handshake.reject(500, "internal server error\n")
        if returned is None:
            return response
        if not isinstance(returned, Response):
            self.logger.error(
                "process_response returned %s, not a Response or None; answering 500",
                type(returned).__name__,
            )
            return self._handshake.reject(500, "internal server error\n")
        return returned

    def _send_response(self, response: Response) -> bool:
        """Write ``response``; after a refusal, end TCP. True if the connection upgraded."""
        handshake = self._handshake
        try:
            handshake.send_response(response)
        except (ValueError, TypeError) as exc:
            # A response built by the application (process_request) that HTTP cannot carry.
            self.logger.error(
                "invalid HTTP response to %s: %s; answering 500", self.remote_address, exc
            )
            response = handshake.reject(500, "internal server error\n")
            handshake.send_response(response)
        self.response = response
        sock = self.socket
        try:
            for chunk in handshake.data_to_send():
                if chunk:
                    sock.sendall(chunk)
                else:
                    self._linger_close()
                    return False
        except OSError:
            sock.close()
            return False
        return response.status == 101

    def _linger_close(self) -> None:
        """End TCP after an HTTP response: FIN, then read and drop until the client's EOF
        (at most CLOSE_GRACE), so that closing never resets the response in flight."""
        sock = self.socket
        try:
            socket.socket.shutdown(sock, socket.SHUT_WR)
            # A head that never completes: everything is read and dropped until EOF.
            read_head(sock, lambda data: None, timers.clock() + CLOSE_GRACE)
        except OSError:  # TimeoutError included: the grace is over
            pass
        finally:
            sock.close()

    def _refuse(self) -> None:
        """Answer 503 (max_connections reached) and close."""
        self._read_request_quietly()
        response = self._handshake.reject(
            503,
            "server at capacity: try again later\n",
            {"Retry-After": str(REFUSED_RETRY_AFTER)},
        )
        self._send_response(response)

    def _read_request_quietly(self) -> None:
        # Read the request (bounded by CLOSE_GRACE) so that closing does not reset the 503.
        try:
            read_head(self.socket, self._handshake.receive_data, timers.clock() + CLOSE_GRACE)
        except (OSError, InvalidHandshake):
            pass

    # ------------------------------------------------------------------ handler

    def _run_handler(self) -> None:
        """Call the handler; when it returns, close with 1000 (1011 if it raised)."""
        failed = False
        try:
            self.server._handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            self.logger.error("connection handler failed", exc_info=True)
            failed = True
        # A closing handshake, not a failure: the peer did nothing wrong. A Close or a
        # violation that waits behind messages the handler left decides the code instead.
        self.close(1011 if failed else 1000)


class Server:
    """A listening WebSocket server running each connection in a thread. See :func:`serve`.

    :meth:`serve_forever` accepts connections until :meth:`shutdown`, which closes every
    connection with 1001 and waits for their handlers (at most close_timeout).
    """

    def __init__(
        self,
        handler: Handler,
        sock: socket.socket,
        options: Options,
        ssl: ssl_module.SSLContext | None,
    ) -> None:
        self._handler = handler
        #: The listening socket.
        self.socket = sock
        #: The settings every connection runs with.
        self.options = options
        #: Where the server logs (``logger=``); its connections log through a
        #: :class:`~websock.connection_logger.ConnectionLogger` wrapping it.
        self.logger = resolve_logger(options.logger, "websock.server")
        self._trusted_proxies = (
            None if options.trusted_proxies is None else TrustedProxies(options.trusted_proxies)
        )
        self._ssl = ssl
        self._connections: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._open_count = 0
        self._rejected = 0
        self._shutting_down = False
        self._stopped = threading.Event()
        self._serving: int | None = None  # the thread running serve_forever()
        # serve_forever() waits on the listening socket and this pipe: shutdown() writes a
        # byte to wake it (closing a socket does not wake a thread blocked on it).
        self._wake_r, self._wake_w = socket.socketpair()
        #: The most TCP connections served at once (None: no limit).
        self.max_connections = options.max_connections

    @property
    def port(self) -> int:
        """The port of the listening socket (handy with ``port=0``)."""
        return int(self.socket.getsockname()[1])

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections currently open (or opening)."""
        with self._lock:
            return set(self._connections)

    @property
    def rejected_connections(self) -> int:
        """How many connections were answered 503 because ``max_connections`` was reached."""
        return self._rejected

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` is called (from another thread, or a
        signal handler); a thread per connection runs the handshake and the handler."""
        self._serving = threading.get_ident()
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._shutting_down:
                    for key, _ in selector.select():
                        if key.fileobj is self._wake_r or self._shutting_down:
                            break
                        try:
                            raw, _ = self.socket.accept()
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError as exc:
                            # EMFILE and the like: log and go on, the listener still works.
                            self.logger.error("accept() failed: %s", exc)
                            continue
                        self._start_connection(raw)
            finally:
                self._stopped.set()
                if self._shutting_down:
                    self._wake_r.close()
                    self._wake_w.close()

    def _start_connection(self, raw: socket.socket) -> None:
        raw.setblocking(True)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket), or already reset
        timeout = self.options.open_timeout
        deadline = None if timeout is None else timers.clock() + timeout
        thread = threading.Thread(target=self._run_connection, args=(raw, deadline), daemon=True)
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": pid_max, threads-max, ...
            with self._lock:
                self._threads.discard(thread)
            self.logger.error("cannot start a thread for a new connection (%s): dropping it", exc)
            raw.close()

    def _run_connection(self, raw: socket.socket, deadline: float | None) -> None:
        """A connection's thread: TLS, the opening handshake (both done by ``deadline``:
        open_timeout after accept), then the handler."""
        sock: socket.socket = raw
        try:
            if self._ssl is not None:
                raw.settimeout(None if deadline is None else max(0.0, deadline - timers.clock()))
                try:
                    sock = self._ssl.wrap_socket(raw, server_side=True)
                except (OSError, ssl_module.SSLError) as exc:
                    self.logger.info("TLS handshake failed: %s", exc)
                    raw.close()
                    return
            conn = ServerConnection(sock, self, deadline)
            with self._lock:
                admitted = self.max_connections is None or self._open_count < self.max_connections
                if admitted:
                    self._open_count += 1
                    self._connections.add(conn)
                else:
                    self._rejected += 1
            if not admitted:
                self.logger.debug("refused connection: max_connections reached")
                conn._refuse()
                return
            try:
                conn._handshake_and_run()
            finally:
                with self._lock:
                    self._open_count -= 1
                    self._connections.discard(conn)
        except Exception:
            self.logger.error("unexpected error in connection thread", exc_info=True)
            sock.close()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with ``code``, and wait for the handlers.

        Waits at most close_timeout for the closing handshakes and the handlers; handler
        threads still running after that are left to finish on their own (daemon threads:
        Python does not kill threads).
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        in_serve_forever = self._serving == threading.get_ident()
        if not in_serve_forever:  # (in a signal handler, serve_forever is below us)
            self._stopped.wait(1.0)  # serve_forever() may never have been called
        self.socket.close()
        conns = [conn for conn in self.connections if hasattr(conn, "protocol")]
        for conn in conns:
            conn._close_nowait(code, reason)
        timeout = self.options.close_timeout
        deadline = None if timeout is None else timers.clock() + timeout + CLOSE_GRACE
        for conn in conns:
            remaining = None if deadline is None else max(0.0, deadline - timers.clock())
            conn._closed.wait(remaining)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            remaining = None if deadline is None else max(0.0, deadline - timers.clock())
            thread.join(remaining)
        if not self._stopped.is_set() and not in_serve_forever:
            self._wake_r.close()
            self._wake_w.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(
    handler: Handler,
    host: str | None = None,
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
    backlog: int = 128,
) -> Server:
    """Listen on ``host``:``port`` and return a :class:`Server` calling ``handler(connection)``
    in a thread for each connection.

    Use ``with serve(handler, host, port) as server: server.serve_forever()``; call
    ``server.shutdown()`` from another thread (or a signal handler) to stop: it closes every
    connection with 1001. The handler returning closes its connection with 1000 (1011 if
    it raised).

    The keyword arguments mean what they mean for :func:`websock.asyncio.server.serve`
    (limits, timeouts, ``origins``, ``subprotocols``, ``compression``, ``max_connections``,
    ``server_header``); ``process_request(connection, request)`` is a plain function.
    ``write_limit`` is accepted for symmetry and has no effect: a blocking ``send`` waits
    for the kernel's socket buffer, which bounds what is buffered. ``backlog`` is the
    listen queue.
    """
    # "auto" counts threads too: two per connection (the handler's and a reader).
    options = Options.from_arguments(locals(), threads_per_connection=2)
    if sock is None:
        if port is None:
            raise ValueError("serve() needs a port (0 picks a free one), or sock=")
        sock = socket.create_server((host or "", port), backlog=backlog, reuse_port=False)
    return Server(handler, sock, options, ssl)


def unix_serve(handler: Handler, path: str, *, backlog: int = 128, **kwargs: Any) -> Server:
    """:func:`serve` on a Unix socket at ``path`` (created; a stale socket file there is
    replaced) instead of TCP. The other arguments are serve()'s."""
    if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
        os.unlink(path)  # left by a previous run; binding would fail with EADDRINUSE
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return serve(handler, sock=sock, **kwargs)
