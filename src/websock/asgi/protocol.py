"""A uvicorn WebSocket protocol class running ASGI applications on websock's core.

``uvicorn.run(app, ws=WebSocketProtocol)`` (or ``uvicorn.Config(app, ws=...)``): uvicorn
parses the HTTP request; when it is an upgrade to WebSocket, its HTTP protocol builds a
:class:`WebSocketProtocol` with ``(config, server_state, app_state)``, calls
``connection_made(transport)`` and ``data_received(head)`` with the request head it
re-serialized, and hands the transport over to it (``transport.set_protocol``). From there
this class implements the ASGI WebSocket interface (spec 2.4, with the
``websocket.http.response`` extension) by driving websock's sans-I/O objects through their
documented contract (docs/sans-io.md):

* :class:`~websock.protocol.handshake.ServerHandshake` validates the request and negotiates
  permessage-deflate as soon as the head arrives (an invalid request is answered 400/426/...
  without calling the application), then builds the 101, the 403 (``websocket.close``
  before accepting), the 500 (an application error before accepting) or the application's
  own response (``websocket.http.response.start`` / ``.body``);
* :class:`~websock.protocol.connection.Connection` does the rest: framing, UTF-8, limits
  (``ws_max_size`` is its ``max_message_size``), Pongs, the closing handshake and its
  policy, when TCP ends.

uvicorn's settings honoured: ``ws_max_size``, ``ws_max_queue`` (received messages waiting
for the application; when it is full the core holds the rest of the input and reading
stops), ``ws_ping_interval`` / ``ws_ping_timeout`` (keepalive: a Ping every interval; no
Pong within the timeout closes with 1011), ``ws_per_message_deflate``, ``root_path``,
``server_state.default_headers`` (Server, Date and ``--header`` values on every response),
``server_state.connections`` and ``tasks`` (graceful shutdown), the ``uvicorn.error``
logger. Proxy headers are applied by uvicorn's middleware around the application.

Where this backend deliberately differs from uvicorn's own:

* An application that raises after accepting closes the connection with 1011, and one
  that returns without closing closes it with 1000: the client always gets a closing
  handshake (uvicorn's backends drop TCP, which the client sees as 1006).
* ``shutdown()`` (server exit) sends Close 1012 and waits for the client's Close for at most
  a second (``CLOSE_GRACE``) rather than dropping TCP right after the Close.
* A connection lost without a closing handshake gives ``websocket.disconnect`` code 1006.
* A peer's protocol violation is answered by the core with its close code (1002, 1007,
  1009...) and the application receives ``websocket.disconnect`` with that code.
* Text is validated incrementally (Autobahn 6.4.x strict) and the peer's Close is answered
  only after the application has taken the messages that preceded it (its replies go out
  first).

Speed: no task and no future per message. Reads go into one buffer per event loop
(``asyncio.BufferedProtocol``); a message that arrives while the application waits in
``receive()`` resumes its task at once, inside the read callback (websock's
:class:`~websock.asyncio.waiter.Waiter`), so its reply is written in the same loop
iteration; replies to a batch of messages read together go out in one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import weakref
from collections import deque
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from ..asyncio.waiter import Waiter, can_run_inline
from ..exceptions import InvalidHandshake, InvalidState
from ..options import CLOSE_GRACE
from ..protocol import connection as core
from ..protocol.close import CloseCode
from ..protocol.extensions.base import ServerExtensionFactory
from ..protocol.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from ..protocol.handshake import ServerHandshake, parse_subprotocol_header
from ..protocol.http import Headers, Request, Response

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["WebSocketProtocol", "CLOSE_TIMEOUT"]

#: Seconds to wait for the client's Close after ours (and for the end of TCP): uvicorn has
#: no setting for it; its own backends use 10 s too.
CLOSE_TIMEOUT = 10.0

# ASGI messages are dicts; uvicorn's TypedDicts add nothing checkable here.
Message = dict[str, Any]

_logger = logging.getLogger("uvicorn.error")

# Received bytes go into one buffer per event loop (see websock.asyncio.connection: a read
# is handled completely before the loop reads again, and the core keeps no reference).
_BUFFER_SIZE = 256 * 1024
_COPY_READS_UP_TO = 4096
_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)

# Writes are corked while received messages wait for the application, up to this many bytes.
_CORK_LIMIT = 65536
# Before Python 3.12 writelines() joins its arguments; large chunks are written apart.
_WRITELINES_JOINS = sys.version_info < (3, 12)
_LARGE_WRITE = 262144

# Where the opening handshake stands.
_HANDSHAKE = 0  # request received, the application has not answered
_RESPONDING = 1  # the application started its own HTTP response (websocket.http.response)
_OPEN = 2  # accepted: the WebSocket connection runs
_REFUSED = 3  # an HTTP response other than 101 was sent

_str = str
_bytes = bytes


def _read_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    buffer = _buffers.get(loop)
    if buffer is None:
        buffer = _buffers[loop] = memoryview(bytearray(_BUFFER_SIZE))
    return buffer


def _write_chunks(transport: asyncio.Transport, out: list[bytes]) -> None:
    if len(out) == 1:
        transport.write(out[0])
    elif not _WRITELINES_JOINS:
        transport.writelines(out)
    else:
        small: list[bytes] = []
        for chunk in out:
            if len(chunk) >= _LARGE_WRITE:
                if small:
                    transport.write(b"".join(small))
                    small = []
                transport.write(chunk)
            else:
                small.append(chunk)
        if small:
            transport.write(b"".join(small))


def _header_list(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in raw]


def _with_headers(base: Headers, extra: list[tuple[str, str]]) -> None:
    """Add ``extra`` to ``base``; a name in ``extra`` replaces ``base``'s fields of that name
    (a Server or Date header from the application wins over uvicorn's defaults)."""
    names = {name.lower() for name, _ in extra}
    for name in list(base):
        if name.lower() in names:
            del base[name]
    for name, value in extra:
        base.add(name, value)


class WebSocketProtocol(asyncio.BufferedProtocol):
    """uvicorn's WebSocket protocol interface, implemented on websock.

    Pass the class to uvicorn: ``uvicorn.run(app, ws=WebSocketProtocol)``. uvicorn builds
    one per upgrade request; applications see the standard ASGI ``websocket`` scope and
    messages. See the module documentation for the settings honoured and the behaviour.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_running_loop()
        self.logger = _logger
        self.root_path = config.root_path
        self.app_state = app_state
        self.connections: set[Any] = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}

        factories: list[ServerExtensionFactory] = []
        if config.ws_per_message_deflate:
            factories.append(ServerPerMessageDeflateFactory())
        self._handshake: ServerHandshake | None = ServerHandshake(
            extensions=factories, server_header=None
        )
        self._stage = _HANDSHAKE
        self._response: Response | None = None  # the 101, built when the request arrived
        self._denial: tuple[int, list[tuple[str, str]]] | None = None
        self._denial_body: list[bytes] = []
        self.conn: core.Connection | None = None

        # The application's side.
        self._connect_delivered = False
        self._messages: deque[str | bytes] = deque()
        self._waiter: Waiter | None = None
        self._disconnect: Message | None = None  # what receive() returns once drained
        self._app_closed = False  # the application sent websocket.close (or returned)

        # Flow control.
        self._max_queue: int | None = config.ws_max_queue or None
        self._low_queue = 0 if self._max_queue is None else self._max_queue // 4
        self._reading_paused = False
        self._resume_handle: asyncio.Handle | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._corked = 0
        self._flush_handle: asyncio.Handle | None = None
        self._read_buffer = _read_buffer(self.loop)
        self._reading_direct = False

        # Ending.
        self._lost = False
        self._shutting_down = False
        self._draining = False  # TCP is ending: input is dropped
        self._close_timer: asyncio.TimerHandle | None = None
        self._terminal_timer: asyncio.TimerHandle | None = None

        # Keepalive.
        self._ping_interval = config.ws_ping_interval
        self._ping_timeout = config.ws_ping_timeout
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The HTTP protocol hands the upgraded connection over (before its head)."""
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%s - WebSocket connection made", self._peer())

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""

    def get_buffer(self, sizehint: int) -> memoryview:
        """asyncio.BufferedProtocol: where the next read goes."""
        conn = self.conn
        if conn is not None:
            direct = conn.receive_buffer()  # the rest of a large message, in place
            if direct is not None:
                self._reading_direct = True
                return direct
        self._reading_direct = False
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """asyncio.BufferedProtocol: ``nbytes`` were read into the buffer."""
        if self._draining:
            return
        conn = self.conn
        if conn is None:
            self.data_received(self._read_buffer[:nbytes].tobytes())
            return
        try:
            if self._messages or self._app_closed:
                self._set_room(conn)
            else:
                conn.set_receive_room(self._max_queue, None)
            if self._reading_direct:
                self._reading_direct = False
                conn.buffer_received(nbytes)
            elif nbytes > _COPY_READS_UP_TO:
                conn.receive_data(self._read_buffer[:nbytes])
            else:
                conn.receive_data(self._read_buffer[:nbytes].tobytes())
            self._process(conn, inline=True)
        except Exception as exc:
            self._internal_error(exc)

    def data_received(self, data: bytes) -> None:
        """Bytes received: the request head from uvicorn, or (without buffered reads) frames."""
        if self._draining:
            return
        conn = self.conn
        if conn is not None:
            try:
                self._set_room(conn)
                conn.receive_data(data)
                self._process(conn, inline=True)
            except Exception as exc:
                self._internal_error(exc)
            return
        handshake = self._handshake
        if handshake is None or self._stage != _HANDSHAKE or self.scope:
            return  # refused, or waiting for the application: nothing is read meanwhile
        try:
            request = handshake.receive_data(data)
            if request is None:
                return
            self._response = handshake.accept(request)
        except InvalidHandshake as exc:
            self.logger.info(
                '%s - "WebSocket" %d invalid handshake: %s', self._peer(), exc.status, exc
            )
            self._refuse(handshake.response_for_error(exc))
            return
        # Nothing more is read until the application accepts: no frame is parsed before
        # the 101, and a client cannot make us buffer while the application decides.
        self._pause_transport()
        self._start_app(request)

    def eof_received(self) -> bool | None:
        """The client ended its side: answer what is pending; the transport then closes."""
        conn = self.conn
        if conn is not None and not self._draining:
            if conn.terminal_pending:
                self._act_on_terminal()
            self._flush_now()
            conn.receive_eof()
            self._dispatch(conn.events_received(), inline=False)
            if not conn.receiving_held:
                self._ended_without_close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """TCP is gone: the application gets websocket.disconnect (1006 without a Close)."""
        self._lost = True
        self.connections.discard(self)
        for handle in (
            self._close_timer,
            self._terminal_timer,
            self._ping_timer,
            self._pong_timer,
            self._flush_handle,
            self._resume_handle,
        ):
            if handle is not None:
                handle.cancel()
        self._ping_timer = self._pong_timer = self._flush_handle = self._resume_handle = None
        conn = self.conn
        if conn is not None:
            conn.receive_eof()
            if not conn.receiving_held:
                self._ended_without_close()
        else:
            self._set_disconnect(CloseCode.ABNORMAL_CLOSURE)
        self._wake(inline=False)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%s - WebSocket connection lost", self._peer())

    def pause_writing(self) -> None:
        """The transport's write buffer is above its high-water mark."""
        self._write_paused = True
        if self.conn is not None:
            self.conn.pause_writing()

    def resume_writing(self) -> None:
        """The transport's write buffer is below its low-water mark."""
        self._write_paused = False
        if self.conn is not None:
            self.conn.resume_writing()
            self._flush_now()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def shutdown(self) -> None:
        """uvicorn is exiting: Close 1012 (Service Restart), or 500 before the accept."""
        self._shutting_down = True
        self._stop_keepalive()
        if self._lost:
            return
        conn = self.conn
        if conn is None:
            if self._stage == _HANDSHAKE:
                self._set_disconnect(CloseCode.SERVICE_RESTART)
                self._refuse_500()
            self._wake(inline=False)
            if not self.transport.is_closing():
                self.transport.close()
            return
        if conn.close_sent is not None:
            self.transport.close()  # the closing handshake is under way: end it now
            return
        self._set_disconnect(CloseCode.SERVICE_RESTART)
        try:
            conn.send_close(CloseCode.SERVICE_RESTART)
        except InvalidState:  # the stream ended meanwhile
            pass
        self._flush_now()
        self._read_after_close()
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self.loop.call_later(CLOSE_GRACE, self._abort)
        self._wake(inline=False)

    # ------------------------------------------------------------ the opening handshake

    def _start_app(self, request: Request) -> None:
        target = request.target
        raw_path, _, query = target.partition("?")
        root = self.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root,
            "path": root + unquote(raw_path),
            "raw_path": root.encode() + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.items()
            ],
            "subprotocols": parse_subprotocol_header(
                request.headers.get_all("Sec-WebSocket-Protocol")
            ),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        task = self.loop.create_task(self._run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            self._app_done()
        except BaseException as exc:
            self.logger.error("Exception in ASGI application", exc_info=exc)
            self._app_failed()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned %r.", result)
            self._app_done()

    def _log_response(self, status: int | str) -> None:
        self.logger.info(
            '%s - "WebSocket %s" %s',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            status,
        )

    def _base_headers(self) -> Headers:
        return Headers(_header_list(self.default_headers))

    def _refuse(self, response: Response) -> None:
        """Send an HTTP response other than 101; TCP ends after it."""
        handshake = self._handshake
        assert handshake is not None
        self._stage = _REFUSED
        self._set_disconnect(CloseCode.ABNORMAL_CLOSURE)
        defaults = self._base_headers()
        _with_headers(defaults, response.headers.items())
        response.headers = defaults
        handshake.send_response(response)
        self._write(handshake.data_to_send())
        self._handshake = None

    def _refuse_500(self) -> None:
        handshake = self._handshake
        if handshake is not None and self._stage == _HANDSHAKE:
            self._refuse(handshake.reject(500, "Internal Server Error"))

    def _accept(self, message: Message) -> None:
        handshake = self._handshake
        response = self._response
        assert handshake is not None and response is not None
        headers = self._base_headers()
        _with_headers(headers, _header_list(message.get("headers") or ()))
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        _with_headers(headers, response.headers.items())
        response.headers = headers
        if self._lost or self.transport.is_closing():
            raise ClientDisconnected()
        handshake.send_response(response)
        out = handshake.data_to_send()
        self._log_response(101)
        self._stage = _OPEN
        conn = self.conn = core.Connection(
            core.Role.SERVER,
            extensions=handshake.extensions,
            max_message_size=self.config.ws_max_size,
        )
        if self._write_paused:
            conn.pause_writing()
        trailing = handshake.trailing
        self._handshake = None
        _write_chunks(self.transport, out)
        self._start_keepalive()
        if trailing:
            self.data_received(trailing)
        self._resume_transport()

    def _send_denial(self) -> None:
        handshake = self._handshake
        assert handshake is not None and self._denial is not None
        status, headers = self._denial
        body = b"".join(self._denial_body)
        response_headers = Headers(headers)
        if "Content-Length" not in response_headers and "Transfer-Encoding" not in response_headers:
            response_headers["Content-Length"] = str(len(body))
        if "Connection" not in response_headers:
            response_headers["Connection"] = "close"
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        self._refuse(Response(status, reason, response_headers, body))

    # ------------------------------------------------------------ ASGI receive / send

    async def receive(self) -> Message:
        """ASGI ``receive``: websocket.connect, then websocket.receive messages, then
        websocket.disconnect (again on every later call)."""
        while True:
            messages = self._messages
            if messages:
                message = messages.popleft()
                if self._reading_paused and len(messages) <= self._low_queue:
                    self._schedule_resume()
                if type(message) is _str:
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
            if not self._connect_delivered:
                self._connect_delivered = True
                return {"type": "websocket.connect"}
            conn = self.conn
            if conn is not None:
                if conn.terminal_pending:
                    # Every message before the peer's Close (or violation) was taken.
                    self._act_on_terminal()
                if conn.receiving_held:
                    self._schedule_resume()
                elif self._disconnect is not None:
                    return dict(self._disconnect)
            elif self._disconnect is not None:
                return dict(self._disconnect)
            if self._waiter is not None:
                raise RuntimeError(
                    "receive() is already waiting in another task: call it from one task"
                )
            waiter = Waiter(self.loop)
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    async def send(self, message: Message) -> None:
        """ASGI ``send``: websocket.accept / .close / .http.response.*, then websocket.send
        and websocket.close. Raises ``ClientDisconnected`` (an OSError: Starlette turns it
        into WebSocketDisconnect) once the connection is gone."""
        kind = message["type"]
        conn = self.conn
        if conn is not None and kind == "websocket.send":
            if self._lost or self._app_closed:
                if self._lost:
                    raise ClientDisconnected()
                raise RuntimeError("websocket.send after websocket.close: nothing may follow")
            data = message.get("bytes")
            try:
                if data is not None:
                    conn.send_binary(data)
                else:
                    data = message.get("text")
                    if data is None:
                        raise TypeError("websocket.send needs 'bytes' or 'text'")
                    conn.send_text(data)
            except InvalidState:
                raise ClientDisconnected() from None
            self._flush(len(data))
            if self._write_paused:
                await self._drain()
            return
        if self._lost and self._stage != _RESPONDING:
            raise ClientDisconnected()
        stage = self._stage
        if stage == _OPEN:
            if kind == "websocket.close":
                self._close_from_app(message)
                return
            raise RuntimeError(
                f"expected ASGI message 'websocket.send' or 'websocket.close', got {kind!r}"
            )
        if stage == _HANDSHAKE:
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                self._log_response(403)
                assert self._handshake is not None
                self._refuse(self._handshake.reject(403))
                return
            if kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status <= 599:
                    raise RuntimeError(f"invalid HTTP status {status} in the response")
                self._log_response(status)
                headers = self._base_headers()
                _with_headers(headers, _header_list(message.get("headers") or ()))
                self._denial = (status, headers.items())
                self._stage = _RESPONDING
                return
            raise RuntimeError(
                "expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', got {kind!r}"
            )
        if stage == _RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"expected ASGI message 'websocket.http.response.body', got {kind!r}"
                )
            self._denial_body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                if self._lost:
                    raise ClientDisconnected()
                self._send_denial()
            return
        if self._shutting_down or self.transport.is_closing():
            raise ClientDisconnected()
        raise RuntimeError(f"unexpected ASGI message {kind!r}: the response was sent already")

    def _close_from_app(self, message: Message) -> None:
        conn = self.conn
        assert conn is not None
        code = message.get("code") or CloseCode.NORMAL_CLOSURE
        reason = message.get("reason") or ""
        if self._app_closed:
            raise RuntimeError("websocket.close sent twice")
        if conn.close_sent is None and conn.state is not core.State.CLOSED:
            conn.send_close(code, reason)  # ValueError for a code that may not be sent
            self._set_disconnect(code, reason)
        self._app_closed = True
        self._messages.clear()
        self._flush_now()
        self._read_after_close()
        self._start_close_timer()

    def _app_done(self) -> None:
        """The application returned (or let ClientDisconnected out)."""
        if self._lost:
            return
        stage = self._stage
        if stage == _HANDSHAKE:
            self.logger.error("ASGI callable returned without accepting or refusing the WebSocket")
            self._refuse_500()
        elif stage == _RESPONDING:
            self.logger.error("ASGI callable returned without completing its HTTP response")
            self._abort()
        elif stage == _OPEN:
            conn = self.conn
            assert conn is not None
            self._app_closed = True
            self._messages.clear()
            if conn.terminal_pending:
                self._act_on_terminal()
            elif conn.close_sent is None and conn.state is not core.State.CLOSED:
                conn.send_close(CloseCode.NORMAL_CLOSURE)
                self._set_disconnect(CloseCode.NORMAL_CLOSURE)
            self._flush_now()
            self._read_after_close()
            self._start_close_timer()

    def _app_failed(self) -> None:
        """The application raised: 500 before the accept, Close 1011 after it."""
        if self._lost:
            return
        stage = self._stage
        if stage == _HANDSHAKE:
            self._refuse_500()
        elif stage == _RESPONDING:
            self._abort()
        elif stage == _OPEN:
            conn = self.conn
            assert conn is not None
            self._app_closed = True
            self._messages.clear()
            self._set_disconnect(CloseCode.INTERNAL_ERROR)
            if conn.close_sent is None:
                conn.fail(CloseCode.INTERNAL_ERROR)
            self._flush_now()
            self._read_after_close()
            self._start_close_timer()

    # ------------------------------------------------------------ receiving

    def _set_room(self, conn: core.Connection) -> None:
        if self._app_closed:
            conn.set_receive_room(None, None)  # read on to the peer's Close; drop messages
            return
        max_queue = self._max_queue
        conn.set_receive_room(
            None if max_queue is None else max(max_queue - len(self._messages), 0), None
        )

    def _process(self, conn: core.Connection, inline: bool) -> None:
        events = conn.events_received()
        if events:
            self._dispatch(events, inline)
        if conn.receiving_held and not self._reading_paused:
            self._reading_paused = True
            self._pause_transport()
        if inline and (self._messages or self._disconnect is not None):
            # The application's task runs its step now: its replies are written when it
            # has taken every message (see _flush), before this callback returns.
            self._wake(inline=True)
        self._flush()

    def _dispatch(self, events: list[core.Event], inline: bool) -> None:
        messages = self._messages
        app_closed = self._app_closed
        terminal = False
        for event in events:
            kind = type(event)
            if kind is _str or kind is _bytes:
                if not app_closed:
                    messages.append(event)  # type: ignore[arg-type]
            elif kind is core.Pong:
                payload = self._ping_payload
                if payload is not None and payload in event.acknowledged:  # type: ignore[union-attr]
                    self._pong_received()
            elif kind is core.CloseReceived:
                close = event.close  # type: ignore[union-attr]
                self._set_disconnect(close.code, close.reason)
                terminal = True
            elif kind is core.ProtocolViolation:
                error = event.error  # type: ignore[union-attr]
                self.logger.info(
                    "%s - WebSocket protocol error, closing with %d: %s",
                    self._peer(),
                    error.close_code,
                    error,
                )
                self._set_disconnect(error.close_code, str(error))
                terminal = True
        if terminal:
            if not messages:
                self._act_on_terminal()
            elif self._terminal_timer is None:
                # The application has CLOSE_TIMEOUT to take the messages before the Close.
                self._terminal_timer = self.loop.call_later(CLOSE_TIMEOUT, self._act_on_terminal)
        if not inline and (messages or self._disconnect is not None):
            self._wake(inline=False)

    def _act_on_terminal(self) -> None:
        """Answer the peer's Close or violation (docs/sans-io.md, terminal events)."""
        timer = self._terminal_timer
        if timer is not None:
            timer.cancel()
            self._terminal_timer = None
        conn = self.conn
        if conn is None:
            return
        conn.messages_consumed()
        self._flush_now()
        self._read_after_close()
        self._start_close_timer()
        self._wake(inline=False)

    def _ended_without_close(self) -> None:
        self._set_disconnect(CloseCode.ABNORMAL_CLOSURE)

    def _set_disconnect(self, code: int, reason: str = "") -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": int(code), "reason": reason}

    def _wake(self, inline: bool) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.wake(inline and can_run_inline(self.loop))

    def _schedule_resume(self) -> None:
        # In a callback of its own: held input parsed batch after batch while the
        # application consumes each batch inline would starve the other connections.
        if self._resume_handle is None:
            self._resume_handle = self.loop.call_soon(self._resume_receiving)

    def _resume_receiving(self) -> None:
        self._resume_handle = None
        conn = self.conn
        if conn is None:
            return
        try:
            if conn.receiving_held:
                self._set_room(conn)
                self._process(conn, inline=False)
            if self._lost and not conn.receiving_held:
                self._ended_without_close()
        except Exception as exc:
            self._internal_error(exc)
        if self._reading_paused and not conn.receiving_held:
            self._reading_paused = False
            self._resume_transport()
        self._wake(inline=False)

    def _read_after_close(self) -> None:
        """Read on after our Close (or after failing): the peer's Close, or its EOF."""
        conn = self.conn
        if conn is not None and conn.receiving_held and not self._lost:
            self._set_room(conn)
            self._process(conn, inline=False)
        if self._reading_paused:
            self._reading_paused = False
            self._resume_transport()

    def _pause_transport(self) -> None:
        transport = self.transport
        if not self._lost and not transport.is_closing() and transport.is_reading():
            transport.pause_reading()

    def _resume_transport(self) -> None:
        transport = self.transport
        if not self._lost and not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()

    def _internal_error(self, exc: Exception) -> None:
        """A bug in websock while handling input: Close 1011, details in the log only."""
        self.logger.error("websock internal error: closing with 1011", exc_info=exc)
        self._set_disconnect(CloseCode.INTERNAL_ERROR)
        try:
            assert self.conn is not None
            self.conn.fail(CloseCode.INTERNAL_ERROR)
            self._flush_now()
        except Exception:
            self._abort()
        self._start_close_timer()
        self._wake(inline=False)

    # ------------------------------------------------------------ writing

    def _flush(self, size: int = 0) -> None:
        """Write what the core queued; corked while received messages wait for the app,
        which is likely to answer them in the same step (one write for the batch)."""
        if self._messages and not self._lost:
            self._corked += size
            if self._corked < _CORK_LIMIT:
                if self._flush_handle is None:
                    self._flush_handle = self.loop.call_soon(self._flush_now)
                return
        self._flush_now()

    def _flush_now(self) -> None:
        self._corked = 0
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self._flush_handle = None
        conn = self.conn
        if conn is not None:
            out = conn.data_to_send()
            if out:
                self._write(out)

    def _write(self, out: list[bytes]) -> None:
        if self._lost or self._draining:
            return
        transport = self.transport
        for i, chunk in enumerate(out):
            if not chunk:  # the core says: end TCP now, after what precedes
                if i:
                    _write_chunks(transport, out[:i])
                self._end_tcp()
                return
        _write_chunks(transport, out)

    async def _drain(self) -> None:
        if self._write_paused and not self._lost:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    # ------------------------------------------------------------ ending

    def _end_tcp(self) -> None:
        """The server ends TCP (RFC 6455 7.1.1): at once when the peer's Close arrived (or
        for an HTTP refusal), else FIN and read-and-drop until the peer's EOF, for at most
        CLOSE_GRACE, so that unread data never turns our Close into a reset."""
        if self._draining or self._lost:
            return
        self._draining = True
        self._stop_keepalive()
        transport = self.transport
        conn = self.conn
        grace = CLOSE_GRACE
        if conn is None or conn.close_rcvd is not None or not transport.can_write_eof():
            transport.close()
            grace = CLOSE_TIMEOUT  # a slow reader still gets what was written
        else:
            transport.write_eof()
            if self._reading_paused or not transport.is_reading():
                self._reading_paused = False
                transport.resume_reading()
        deadline = self.loop.time() + CLOSE_TIMEOUT
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self.loop.call_later(grace, self._close_expired, deadline)

    def _close_expired(self, deadline: float) -> None:
        if self._lost:
            return
        if self.transport.get_write_buffer_size() and self.loop.time() < deadline:
            self._close_timer = self.loop.call_later(CLOSE_GRACE, self._close_expired, deadline)
            return
        self._abort()

    def _start_close_timer(self) -> None:
        if self._close_timer is None and not self._lost:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        self._close_timer = None
        if not self._lost:
            self.transport.abort()

    # ------------------------------------------------------------ keepalive

    def _start_keepalive(self) -> None:
        interval = self._ping_interval
        if interval is not None and interval > 0:
            self._ping_timer = self.loop.call_later(interval, self._keepalive_ping)

    def _stop_keepalive(self) -> None:
        for handle in (self._ping_timer, self._pong_timer):
            if handle is not None:
                handle.cancel()
        self._ping_timer = self._pong_timer = None
        self._ping_payload = None

    def _keepalive_ping(self) -> None:
        self._ping_timer = None
        conn = self.conn
        if conn is None or self._lost or self._draining or conn.close_expected():
            return
        payload = os.urandom(4)
        conn.send_ping(payload)
        self._ping_payload = payload
        self._ping_sent_at = self.loop.time()
        self._flush_now()
        timeout = self._ping_timeout
        if timeout is not None and timeout > 0:
            self._pong_timer = self.loop.call_later(timeout, self._keepalive_expired)
        else:
            self._start_keepalive()

    def _pong_received(self) -> None:
        self._ping_payload = None
        pong_timer = self._pong_timer
        if pong_timer is None:
            return  # no timeout: the next Ping is scheduled already
        pong_timer.cancel()
        self._pong_timer = None
        interval = self._ping_interval
        assert interval is not None
        delay = max(0.0, self._ping_sent_at + interval - self.loop.time())
        self._ping_timer = self.loop.call_later(delay, self._keepalive_ping)

    def _keepalive_expired(self) -> None:
        self._pong_timer = None
        self._ping_payload = None
        conn = self.conn
        if conn is None or self._lost or conn.close_expected():
            return
        self.logger.info(
            "%s - WebSocket keepalive: no Pong within %ss, closing with 1011",
            self._peer(),
            self._ping_timeout,
        )
        self._set_disconnect(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._flush_now()
        self._wake(inline=False)
