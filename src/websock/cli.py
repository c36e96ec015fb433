"""Command line: ``websock serve`` (an echo server) and ``websock connect URI`` (a client).

``python -m websock serve`` serves wss:// on 127.0.0.1:8443 with a development certificate
made on first use and kept in the user's cache directory (the path of its CA file is printed,
so clients can trust it); ``--certfile/--keyfile`` use a real certificate, ``--plain``
serves ws://. ``--sync`` runs the same echo server on the threading layer
(:mod:`websock.sync`, a thread per connection) instead of asyncio, with the same options.
``--workers N`` (Linux) runs N asyncio servers in as many processes sharing the port
(:mod:`websock.workers`); the default, 1, serves in this process as before.

``python -m websock chat`` serves the rooms demo of :mod:`websock.chat`: a page at ``/``
and WebSocket rooms at ``/room/<name>``, with the same TLS default as ``serve``; ``--redis
URL`` joins its workers (and other hosts) through Redis, which ``--workers N`` needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import __version__
from .asyncio.client import ClientConnection, connect
from .asyncio.server import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    ServerConnection,
    serve,
)
from .exceptions import ConnectionClosed, WebSocketError
from .protocol.close import Close, CloseCode
from .protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .protocol.extensions.permessage_deflate import (
    DEFAULT_COMPRESSION_LEVEL,
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

if TYPE_CHECKING:
    # websock.sync is imported only by `serve --sync`: the asyncio commands don't pay for it.
    from .sync import ServerConnection as SyncServerConnection

__all__ = ["main", "dev_certificate"]

log = logging.getLogger("websock.cli")

# Exit statuses: 2 for a usage error (argparse's convention: bad option, unusable --cafile),
# 1 when the connection failed or ended abnormally, 0 after a normal close.
EXIT_USAGE = 2
EXIT_FAILURE = 1
# Close codes after which `websock connect` exits 0: a normal closure, the server going
# away, and a Close frame without a code (1005), which RFC 6455 allows for a normal close.
NORMAL_CLOSE_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)
# Longest peer text (an HTTP reason phrase, an error message) printed in one line.
MAX_PRINTED = 200


class UsageError(Exception):
    """A command line option that cannot be used: one line on stderr, exit status 2."""


def _queue(text: str) -> tuple[int | None, int | None] | None:
    """Parse --max-queue: 'MESSAGES[,BYTES]' (BYTES with a K/M/G suffix), or 'none'."""
    if text.strip().lower() in ("none", "unlimited"):
        return None
    count, _, size = text.partition(",")
    try:
        messages: int | None = int(count) if count.strip().lower() != "none" else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid queue bound {text!r}: use MESSAGES[,BYTES], e.g. 16,1M"
        ) from None
    if messages is not None and messages < 1:
        raise argparse.ArgumentTypeError("the queue must hold at least 1 message")
    nbytes = _size(size) if size else DEFAULT_MAX_QUEUE[1]
    if nbytes == 0:
        raise argparse.ArgumentTypeError("the queue's byte bound must be at least 1")
    return (messages, nbytes)


def _size(text: str) -> int | None:
    """Parse a size: bytes, or with a K/M/G suffix (powers of 1024); 'none' = unlimited."""
    text = text.strip().lower()
    if text in ("none", "unlimited", "0"):
        return None if text != "0" else 0
    factor = 1
    for suffix, mult in (("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)):
        if text.endswith(suffix) or text.endswith(suffix + "ib"):
            factor = mult
            text = text[: -len(suffix)] if text.endswith(suffix) else text[: -len(suffix) - 2]
            break
    try:
        value = int(text) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (try 1048576, 64K or 16M)"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("a size cannot be negative")
    return value


def _seconds(text: str) -> float | None:
    """Parse a duration in seconds; 0 (or 'none', 'off') turns the timer off."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return value or None


def _max_connections(text: str) -> int | None | Literal["auto"]:
    """Parse --max-connections: a number >= 1, 'auto' (from the open files limit) or 'none'."""
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    if text in ("none", "unlimited"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number of connections: {text!r} (a number, 'auto' or 'none')"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1 connection, or 'none' for no limit")
    return value


def _workers(text: str) -> int:
    """Parse --workers: a number >= 1, or 'auto' (one per usable core)."""
    from .workers import _resolve_workers

    text = text.strip().lower()
    try:
        return _resolve_workers("auto" if text == "auto" else int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number of workers: {text!r} (a number >= 1, or 'auto')"
        ) from None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "websock" / "dev-cert"


def dev_certificate(directory: Path | None = None) -> tuple[Path, Path, Path]:
    """Return (ca.pem, cert.pem, key.pem) of a development certificate for localhost.

    Made once with ``trustme`` (``pip install 'pywebsock[dev-cert]'``) and reused, so a client
    that trusts ``ca.pem`` keeps working across restarts. Valid for localhost, 127.0.0.1
    and ::1. For development only: the CA's key sits beside it.
    """
    directory = directory or _cache_dir()
    ca, cert, key = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    if ca.exists() and cert.exists() and key.exists():
        return ca, cert, key
    try:
        import trustme
    except ImportError:
        raise SystemExit(
            "websock serve: a development certificate needs trustme: "
            "pip install 'pywebsock[dev-cert]' (or pass --certfile/--keyfile, or --plain)"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="websock development CA")
    issued = authority.issue_cert("localhost", "127.0.0.1", "::1")
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    return ca, cert, key


def _printable(text: str) -> str:
    """Escape control characters so peer data cannot drive the terminal."""
    return "".join(c if c.isprintable() or c in "\t" else repr(c)[1:-1] for c in text)


def _brief(text: object) -> str:
    """Peer-controlled text for a one-line message: control characters escaped, cut short."""
    line = _printable(str(text))
    return line if len(line) <= MAX_PRINTED else line[:MAX_PRINTED] + "..."


def _client_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of ``websock connect``; UsageError if --cafile cannot be used."""
    if not args.uri.startswith("wss:") and args.cafile is None:
        return None
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except ssl.SSLError as exc:
        # A file that exists but holds no usable PEM certificate (DER, a key, garbage).
        raise UsageError(
            f"--cafile {args.cafile}: no PEM CA certificate in it ({exc.reason or exc})"
        ) from None
    except OSError as exc:  # missing, a directory, unreadable
        raise UsageError(f"--cafile {args.cafile}: {(exc.strerror or str(exc)).lower()}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def _server_context(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, str]:
    """The TLS context of ``websock serve`` (None with --plain) and the URI scheme."""
    if args.plain:
        return None, "ws"
    if args.certfile:
        certfile, keyfile = args.certfile, args.keyfile
    else:
        ca, cert, key = dev_certificate()
        certfile, keyfile = str(cert), str(key)
        print(f"development certificate: CA file for clients: {ca}", flush=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context, "wss"


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``serve`` from the command line: both I/O layers take the
    same ones, so ``--sync`` honours every option of the asyncio server."""
    compression: list[ServerPerMessageDeflateFactory] | None = None
    if not args.no_compression:
        compression = [ServerPerMessageDeflateFactory(compression_level=args.compression_level)]
    return {
        "compression": compression,
        "max_message_size": args.max_message_size,
        "max_frame_size": args.max_frame_size,
        "max_fragments": args.max_fragments,
        "max_queue": args.max_queue,
        "open_timeout": args.open_timeout,
        "close_timeout": args.close_timeout,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "max_connections": args.max_connections,
    }


def _listening_line(args: argparse.Namespace, scheme: str, port: int, layer: str) -> str:
    host = args.host if ":" not in args.host else f"[{args.host}]"
    return f"websock {__version__} echo server{layer} listening on {scheme}://{host}:{port}/"


async def _run_server(args: argparse.Namespace) -> None:
    context, scheme = _server_context(args)
    server = await serve(_echo, args.host, args.port, ssl=context, **_server_options(args))
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    # Before announcing the address: a supervisor that signals us as soon as it reads the
    # line must get a graceful shutdown, not the default action of the signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop)
    print(_listening_line(args, scheme, server.port, ""), flush=True)
    await stop
    print("shutting down: closing connections with 1001", flush=True)
    server.close()
    await server.wait_closed()


def _run_workers(args: argparse.Namespace) -> int:
    """``websock serve --workers N``: N echo servers in N processes on one port.

    The listening line is printed once every worker listens, with the number of workers;
    SIGINT/SIGTERM close every connection with 1001 in every worker, then exit 0.
    """
    context, scheme = _server_context(args)

    def ready(port: int) -> None:
        line = _listening_line(args, scheme, port, "")
        print(f"{line} ({args.workers} workers)", flush=True)

    return _run("serve", _echo, args, ready, ssl=context, **_server_options(args))


def _run(
    command: str,
    handler: Any,
    args: argparse.Namespace,
    ready: Any,
    lifespan: Any = None,
    **serve_kwargs: Any,
) -> int:
    """websock.run() for a command, its failures turned into a line on stderr and an
    exit status (1: the server failed; 2: --workers cannot be honoured here)."""
    from .workers import WorkersFailed, run

    try:
        run(
            handler,
            args.host,
            args.port,
            workers=args.workers,
            lifespan=lifespan,
            on_ready=ready,
            **serve_kwargs,
        )
    except WorkersFailed as exc:
        print(f"websock {command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except NotImplementedError as exc:
        print(f"websock {command}: --workers: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"websock {command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _run_chat(args: argparse.Namespace) -> int:
    """``websock chat``: the rooms demo (websock.chat) in one process or ``--workers N``."""
    from .chat import ChatApp

    if args.workers > 1 and args.redis is None:
        print(
            f"websock chat: --workers {args.workers} needs --redis URL: without a Redis "
            "backplane, clients of different workers would not see each other's messages "
            "(or use --workers 1)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.redis is not None:
        from .pubsub import Hub

        try:
            Hub(args.redis)  # checks the URL and that redis-py is installed; connects later
        except (ImportError, ValueError) as exc:
            print(f"websock chat: --redis: {exc}", file=sys.stderr)
            return EXIT_USAGE
    context, scheme = _server_context(args)
    app = ChatApp(redis_url=args.redis, max_message_size=args.max_message_size)

    def ready(port: int) -> None:
        host = args.host if ":" not in args.host else f"[{args.host}]"
        workers = f" ({args.workers} workers)" if args.workers > 1 else ""
        redis = f", rooms shared through {args.redis}" if args.redis else ""
        print(
            f"websock {__version__} chat listening on {scheme}://{host}:{port}/{workers}{redis}",
            flush=True,
        )

    return _run(
        "chat", app.handler, args, ready, lifespan=app.lifespan, ssl=context, **app.serve_options()
    )


def _sync_echo(ws: SyncServerConnection) -> None:
    for message in ws:
        ws.send(message)


def _run_sync_server(args: argparse.Namespace) -> int:
    """``websock serve --sync``: the echo server on websock.sync, a thread per connection.

    serve_forever() runs in a thread of its own and the main thread waits for SIGINT or
    SIGTERM, then calls shutdown() itself: the signal handler only sets an event, so the
    graceful close (up to close_timeout) never runs inside a handler that interrupted
    whatever the main thread was doing.
    """
    from .sync import serve as sync_serve

    context, scheme = _server_context(args)
    server = sync_serve(_sync_echo, args.host, args.port, ssl=context, **_server_options(args))
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    # Before announcing the address, as for asyncio: a supervisor that signals us as soon
    # as it reads the line must get a graceful shutdown.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    failed: list[BaseException] = []

    def accept() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:
            failed.append(exc)
        finally:
            stop.set()  # serve_forever() failed: shut down too

    acceptor = threading.Thread(target=accept, name="websock-accept", daemon=True)
    try:
        acceptor.start()
        print(_listening_line(args, scheme, server.port, " (sync)"), flush=True)
        # Returns when a handler sets the event: on POSIX a lock wait is interrupted by a
        # signal, the handler runs in this (main) thread, and the wait then sees the event.
        stop.wait()
        print("shutting down: closing connections with 1001", flush=True)
        server.shutdown()
        acceptor.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        log.error("the accept loop failed", exc_info=failed[0])
        return EXIT_FAILURE
    return 0


async def _run_client(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    """Run ``websock connect``; return the exit status (see EXIT_FAILURE, NORMAL_CLOSE_CODES)."""
    if not args.uri.startswith("wss:"):
        context = None  # --cafile was checked, but TLS is not used
    compression = None if args.no_compression else [ClientPerMessageDeflateFactory()]
    try:
        ws = await connect(
            args.uri,
            ssl=context,
            compression=compression,
            max_message_size=args.max_message_size,
        )
    except ssl.SSLCertVerificationError as exc:
        # Some TLS transports raise it without a message.
        why = exc.verify_message or str(exc) or "the server's certificate is not trusted"
        print(f"TLS certificate verification failed: {_brief(why)}", file=sys.stderr)
        print("hint: --cafile CA.pem to trust a development CA, or --insecure", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, WebSocketError, TimeoutError) as exc:
        print(f"could not connect: {_brief(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"connected to {args.uri} (Ctrl-D to close)", file=sys.stderr, flush=True)
    lines = _stdin_lines(asyncio.get_running_loop())

    async def read_stdin() -> None:
        try:
            while (line := await lines.get()) is not None:
                await ws.send(line.rstrip("\n"))
            await ws.close()
        except ConnectionClosed:
            pass  # print_messages() reports it

    closed: ConnectionClosed | None = None

    async def print_messages() -> None:
        nonlocal closed
        try:
            async for message in ws:
                if isinstance(message, str):
                    print(f"< {_printable(message)}", flush=True)
                else:
                    print(f"< ({len(message)} bytes) {message[:64].hex()}", flush=True)
        except ConnectionClosed as exc:  # not a normal close (those end the loop quietly)
            closed = exc  # reported once, below

    sender = asyncio.ensure_future(read_stdin())
    try:
        await print_messages()
    finally:
        sender.cancel()
        await ws.close()
    print(f"connection closed: {_close_summary(ws, closed)}", file=sys.stderr)
    if closed is not None:
        return EXIT_FAILURE
    return 0 if ws.close_code in NORMAL_CLOSE_CODES else EXIT_FAILURE


def _close_summary(ws: ClientConnection, error: ConnectionClosed | None) -> str:
    """Close code, its meaning and the reason: the peer's, else ours if the peer sent none."""
    if error is None:
        code, reason, note = ws.close_code or CloseCode.ABNORMAL_CLOSURE, ws.close_reason, ""
    else:
        code, reason = error.code, error.reason
        # We failed the connection (a message too big, invalid data ...): after that nothing
        # from the peer is read, its Close included (RFC 6455 7.1.7), so the code is ours.
        note = " (sent by this client)" if error.rcvd is None and error.sent else ""
    return f"{Close(code, _brief(reason or ''))}{note}"


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines of stdin as they come, then None at EOF, read by a daemon thread.

    Not ``run_in_executor``: asyncio.run() waits for executor threads at exit, so a
    readline() blocked on an open stdin would keep the client alive after the server closed.
    A daemon thread works for terminals, pipes and files alike.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def read() -> None:
        try:
            for line in iter(sys.stdin.readline, ""):
                put(line)
        except (OSError, ValueError):
            pass
        put(None)

    threading.Thread(target=read, name="websock-stdin", daemon=True).start()
    return queue


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="websock", description="WebSocket echo server, client and chat demo."
    )
    parser.add_argument(
        "--version",
        action=_PrintVersion,
        nargs=0,
        help="show the version and whether the C accelerator is on, and exit",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "serve", help="run an echo server (wss with a development certificate by default)"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument(
        "--port", type=int, default=None, help="port (default 8443 for wss, 8080 with --plain)"
    )
    s.add_argument("--plain", action="store_true", help="serve ws:// without TLS")
    s.add_argument(
        "--sync",
        action="store_true",
        help="run on websock.sync (a thread per connection) instead of asyncio; "
        "every other option works the same",
    )
    s.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="processes serving the port together (Linux, SO_REUSEPORT); a worker that dies "
        "is restarted; 'auto' = one per core (default 1: this process alone)",
    )
    s.add_argument(
        "--certfile", help="PEM certificate chain (with --keyfile) instead of the development one"
    )
    s.add_argument("--keyfile", help="PEM private key for --certfile")
    s.add_argument(
        "--max-message-size",
        type=_size,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest message accepted, after decompression (default 1M; 'none' = no limit)",
    )
    s.add_argument(
        "--max-frame-size",
        type=_size,
        default=None,
        help="largest frame accepted (default: bounded by --max-message-size)",
    )
    s.add_argument(
        "--max-fragments",
        type=_size,
        default=DEFAULT_MAX_FRAGMENTS,
        help="most frames in one message (default 262144; 'none' = no limit)",
    )
    s.add_argument(
        "--max-queue",
        type=_queue,
        default=DEFAULT_MAX_QUEUE,
        help="received messages buffered before reading pauses: MESSAGES[,BYTES] "
        "(default 16,1M; 'none' = no limit)",
    )
    s.add_argument(
        "--open-timeout",
        type=_seconds,
        default=DEFAULT_OPEN_TIMEOUT,
        help="seconds, 0 = off (default 10)",
    )
    s.add_argument(
        "--close-timeout",
        type=_seconds,
        default=DEFAULT_CLOSE_TIMEOUT,
        help="seconds, 0 = off (default 10)",
    )
    s.add_argument(
        "--ping-interval",
        type=_seconds,
        default=DEFAULT_PING_INTERVAL,
        help="seconds, 0 = off (default 20)",
    )
    s.add_argument(
        "--ping-timeout",
        type=_seconds,
        default=DEFAULT_PING_TIMEOUT,
        help="seconds, 0 = off (default 20)",
    )
    s.add_argument(
        "--max-connections",
        type=_max_connections,
        default="auto",
        metavar="N",
        help="connections served at once; beyond, new ones get 503 (default 'auto': 90%% of "
        "the open files limit, ulimit -n; 'none' = no limit)",
    )
    s.add_argument("--no-compression", action="store_true", help="turn permessage-deflate off")
    s.add_argument(
        "--compression-level",
        type=int,
        default=DEFAULT_COMPRESSION_LEVEL,
        choices=range(0, 10),
        metavar="0-9",
        help=f"zlib level for permessage-deflate (default {DEFAULT_COMPRESSION_LEVEL})",
    )

    h = sub.add_parser(
        "chat",
        help="run the chat demo: a page at / and rooms at /room/<name> "
        "(wss with a development certificate by default)",
    )
    h.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    h.add_argument(
        "--port", type=int, default=None, help="port (default 8443 for wss, 8080 with --plain)"
    )
    h.add_argument("--plain", action="store_true", help="serve http:// and ws:// without TLS")
    h.add_argument(
        "--certfile", help="PEM certificate chain (with --keyfile) instead of the development one"
    )
    h.add_argument("--keyfile", help="PEM private key for --certfile")
    h.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="processes serving the port together (Linux); more than 1 needs --redis "
        "(default 1; 'auto' = one per core)",
    )
    h.add_argument(
        "--redis",
        metavar="URL",
        help="share the rooms between workers and hosts through Redis "
        "(redis://host:port/db; needs pip install 'pywebsock[redis]')",
    )
    h.add_argument(
        "--max-message-size",
        type=_size,
        default="4K",  # websock.chat.DEFAULT_MAX_MESSAGE_SIZE (argparse converts it)
        help="largest chat message; bigger ones close the connection with 1009 (default 4K)",
    )

    a = sub.add_parser(
        "asgi",
        help="run an ASGI application (FastAPI, Starlette) on uvicorn with websock's backend",
        description="uvicorn.run(APP, ws=websock.asgi.WebSocketProtocol, ...): the "
        "application's WebSocket connections run on websock (needs pywebsock[asgi]).",
    )
    a.add_argument("app", help="the application as module:attribute (e.g. main:app)")
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    a.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    a.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1)")
    a.add_argument("--ssl-certfile", help="PEM certificate chain: serve wss:// and https://")
    a.add_argument("--ssl-keyfile", help="PEM private key of --ssl-certfile")
    a.add_argument(
        "--ws-max-size", type=_size, default="16M", help="largest message (uvicorn's default 16M)"
    )
    a.add_argument(
        "--ws-ping-interval", type=float, default=20.0, help="keepalive ping interval, s (20)"
    )
    a.add_argument("--ws-ping-timeout", type=float, default=20.0, help="keepalive timeout, s (20)")
    a.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (uvicorn's setting)",
    )
    a.add_argument(
        "--forwarded-allow-ips", default="127.0.0.1", help="proxies to trust (127.0.0.1)"
    )

    c = sub.add_parser("connect", help="interactive client: stdin lines out, messages in")
    c.add_argument("uri", help="ws:// or wss:// URI")
    c.add_argument("--cafile", help="PEM file of CAs to trust (e.g. the development CA)")
    c.add_argument("--insecure", action="store_true", help="do not verify the server's certificate")
    c.add_argument("--max-message-size", type=_size, default=DEFAULT_MAX_MESSAGE_SIZE)
    c.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    return parser


def _run_asgi(args: argparse.Namespace) -> int:
    """``websock asgi module:app``: uvicorn with websock's WebSocket backend."""
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("websock asgi: --ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return EXIT_USAGE
    try:
        import uvicorn

        from .asgi import WebSocketProtocol
    except ImportError as exc:
        print(f"websock asgi: {exc}", file=sys.stderr)
        return EXIT_USAGE
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ws=WebSocketProtocol,  # type: ignore[arg-type]  # a BufferedProtocol, as uvicorn allows
        ws_max_size=args.ws_max_size,
        ws_ping_interval=args.ws_ping_interval,
        ws_ping_timeout=args.ws_ping_timeout,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0


class _PrintVersion(argparse.Action):
    """``--version``, printed as it is (argparse's own action wraps long lines)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(_version())
        parser.exit()


def _version() -> str:
    """``websock X.Y.Z (pywebsock; C accelerator: on|off; Python 3.N.M)``."""
    import platform

    from .protocol.frames import ACCELERATED

    if ACCELERATED:
        accelerator = "on"
    elif os.environ.get("WEBSOCK_PURE_PYTHON"):
        accelerator = "off (WEBSOCK_PURE_PYTHON is set)"
    else:
        accelerator = "off (not built: pure Python)"
    return (
        f"websock {__version__} (distribution pywebsock; C accelerator: {accelerator}; "
        f"Python {platform.python_version()})"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``websock`` and ``python -m websock``."""
    args = _parser().parse_args(argv)
    level = (
        logging.WARNING
        if args.verbose == 0
        else logging.INFO
        if args.verbose == 1
        else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "asgi":
        return _run_asgi(args)
    if args.command == "chat":
        if bool(args.certfile) != bool(args.keyfile):
            print("websock chat: --certfile and --keyfile go together", file=sys.stderr)
            return EXIT_USAGE
        if args.port is None:
            args.port = 8080 if args.plain else 8443
        return _run_chat(args)
    if args.command == "serve":
        if bool(args.certfile) != bool(args.keyfile):
            print("websock serve: --certfile and --keyfile go together", file=sys.stderr)
            return 2
        if args.port is None:
            args.port = 8080 if args.plain else 8443
        if args.sync and args.workers > 1:
            print(
                "websock serve: --workers needs the asyncio server: drop --sync "
                "(or use --workers 1)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            if args.workers > 1:
                return _run_workers(args)
            if args.sync:
                return _run_sync_server(args)
            asyncio.run(_run_server(args))
        except OSError as exc:
            print(f"websock serve: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        context = _client_context(args)
    except UsageError as exc:
        print(f"websock: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run_client(args, context))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
