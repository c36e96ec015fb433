"""A real nginx on loopback terminating TLS in front of websock servers, for tests/test_nginx.py.

:func:`start_nginx` runs nginx as a foreground child process (``nginx -p DIR -c
DIR/nginx.conf -e DIR/error.log -g 'daemon off;'``, one worker) on a free port of 127.0.0.1,
with everything it writes (pid file, error and access logs, temporary paths) in a directory
of its own, so parallel pytest-xdist workers never share anything. Its configuration is the
recipe of docs/deploy-nginx.md (:func:`nginx_config`): TLS with a certificate issued by a
test CA for ``127.0.0.1`` and ``localhost``, then HTTP/1.1 with the Upgrade headers to an
``upstream`` of one or more plain ``ws://`` websock servers.

:func:`start_websock_serve` runs ``python -m websock serve --plain --port 0 ...`` (the echo
server of the command line) and reads the port from its "listening" line.

Both are context managers; every wait is bounded (:data:`STARTUP_TIMEOUT`), and each process
runs in a session of its own so that stopping it (SIGTERM, then SIGKILL) reaches its
children too (nginx's worker). A missing nginx skips the test, naming the Debian package.

Module-importable like ``proxyservers``: ``from nginxserver import ...`` (``tests/`` is on
``sys.path`` through ``tests/conftest.py``).

PYTEST_DONT_REWRITE: imported by test modules before pytest could register it as a plugin.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trustme

import websock
from serverprocess import (
    POLL,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    launch_listening,
    private_directory,
    require_program,
    stop_process_group,
)

__all__ = [
    "STARTUP_TIMEOUT",
    "Nginx",
    "WebsockServe",
    "nginx_config",
    "start_nginx",
    "start_websock_serve",
]

_LISTENING = re.compile(r"echo server listening on ws://[^/]+:(\d+)/")


# nginx.


def nginx_config(
    *,
    port: int,
    upstreams: Sequence[tuple[str, int]],
    certfile: Path,
    keyfile: Path,
    directory: Path,
    read_timeout: str = "1h",
    user: str | None = None,
) -> str:
    """The nginx.conf of docs/deploy-nginx.md, with every path inside ``directory``.

    ``user``: the ``user`` directive (nginx running as root would otherwise switch its
    worker to ``nobody``, who cannot enter a private temporary directory); None: omitted.
    """
    servers = "\n".join(f"        server {host}:{p};" for host, p in upstreams)
    user_line = f"user {user};\n" if user is not None else ""
    return f"""\
{user_line}worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;

events {{
    worker_connections 256;
}}

http {{
    default_type application/octet-stream;
    client_body_temp_path {directory / "client_body"};
    proxy_temp_path {directory / "proxy"};
    fastcgi_temp_path {directory / "fastcgi"};
    uwsgi_temp_path {directory / "uwsgi"};
    scgi_temp_path {directory / "scgi"};
    log_format websock '$remote_addr "$request" $status upgrade=$http_upgrade '
                       'upstream=$upstream_addr upstream_status=$upstream_status '
                       'bytes=$bytes_sent time=$request_time';
    access_log {directory / "access.log"} websock;

    # "Connection: upgrade" when the client asks for an upgrade, "close" otherwise.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream websock {{
{servers}
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;

        ssl_certificate     {certfile};
        ssl_certificate_key {keyfile};
        ssl_protocols       TLSv1.2 TLSv1.3;

        location / {{
            proxy_pass http://websock;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout {read_timeout};
            proxy_send_timeout {read_timeout};
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """A running nginx: where it listens, how to trust it, what it logged."""

    host: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    directory: Path = field(repr=False)
    #: A client context trusting the test CA (the certificate is valid for ``127.0.0.1``
    #: and ``localhost``).
    client_context: ssl.SSLContext = field(repr=False)

    def uri(self, path: str = "/") -> str:
        return f"wss://{self.host}:{self.port}{path}"

    @property
    def config(self) -> str:
        return (self.directory / "nginx.conf").read_text()

    def error_log(self) -> str:
        return _read(self.directory / "error.log")

    def access_log(self) -> str:
        """The access log so far: nginx writes a line when the connection ends."""
        return _read(self.directory / "access.log")

    def wait_for_access(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Wait until an access log line matches ``pattern`` (nginx logs a WebSocket
        connection once both sides are closed, a moment after the client saw the end)."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.access_log())
            if match is not None:
                return match
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no {pattern!r} in nginx's access log after {timeout} s:\n"
                    f"{self.access_log()}\n--- error log:\n{self.error_log()}"
                )
            time.sleep(POLL)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def start_nginx(
    upstreams: Sequence[tuple[str, int]] | int,
    ca: trustme.CA,
    directory: Path | None = None,
    *,
    read_timeout: str = "1h",
) -> Iterator[Nginx]:
    """nginx on 127.0.0.1 terminating TLS for ``upstreams`` (a port of 127.0.0.1, or
    ``(host, port)`` pairs: several servers behind one ``upstream`` block)."""
    program = require_program("nginx", "nginx")
    if isinstance(upstreams, int):
        upstreams = [("127.0.0.1", upstreams)]
    with private_directory(directory, "nginx-") as path:
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        certfile = path / "chain.pem"
        keyfile = path / "key.pem"
        certfile.write_bytes(b"".join(blob.bytes() for blob in certificate.cert_chain_pems))
        certificate.private_key_pem.write_to_path(str(keyfile))
        config_path = path / "nginx.conf"
        user = "root" if os.geteuid() == 0 else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(context)
        error_log = path / "error.log"

        def command(port: int) -> list[str]:
            config_path.write_text(
                nginx_config(
                    port=port,
                    upstreams=upstreams,
                    certfile=certfile,
                    keyfile=keyfile,
                    directory=path,
                    read_timeout=read_timeout,
                    user=user,
                )
            )
            return [
                program,
                "-p",
                str(path),
                "-c",
                str(config_path),
                "-e",
                str(error_log),
                "-g",
                "daemon off;",
            ]

        # A port taken by someone else between choosing it and nginx's bind(): nginx exits
        # ("Address already in use"); launch_listening() tries another port, twice.
        process, port = launch_listening("nginx", path, error_log, command)
        try:
            yield Nginx("127.0.0.1", port, process, path, context)
        finally:
            stop_process_group(process)


# websock serve.


@dataclass
class WebsockServe:
    """A running ``python -m websock serve --plain`` and what it printed so far."""

    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    lines: list[str] = field(default_factory=list)

    def finish(self, timeout: float = STOP_TIMEOUT) -> tuple[int, str, str]:
        """Wait (bounded) for the exit; return (status, rest of stdout, stderr)."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out.decode(), err.decode()


def _read_line(process: subprocess.Popen[bytes], deadline: float, so_far: list[str]) -> str:
    stdout = process.stdout
    assert stdout is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"websock serve printed no listening line; so far: {so_far}")
            # One byte at a time: a buffered readline() could block on a partial line.
            byte = os.read(stdout.fileno(), 1)
            if not byte:
                raise AssertionError(f"websock serve ended its output; so far: {so_far}")
            line += byte
    return line.decode(errors="replace")


@contextlib.contextmanager
def start_websock_serve(*args: str) -> Iterator[WebsockServe]:
    """``python -m websock serve --plain --host 127.0.0.1 --port 0 *args``, listening.

    The child imports the same websock as this process (its directory first on PYTHONPATH).
    """
    source = str(Path(websock.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": source if not path else f"{source}{os.pathsep}{path}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "websock",
            "serve",
            "--plain",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            lines.append(_read_line(process, deadline, lines))
            match = _LISTENING.search(lines[-1])
            if match:
                break
        yield WebsockServe(int(match.group(1)), process, lines)
    finally:
        if process.poll() is None:
            stop_process_group(process)
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            process.communicate(timeout=STOP_TIMEOUT)
