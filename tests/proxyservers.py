"""Real proxy servers on loopback, for the client's proxy tests.

Each server runs as a child process on a free port of 127.0.0.1, with its configuration and
log in a directory of its own (so parallel pytest-xdist workers never share anything):

* :func:`start_tinyproxy`: an HTTP proxy (tinyproxy), CONNECT allowed to any port,
  optionally with Basic authentication;
* :func:`start_https_proxy`: the same behind TLS (socat terminating TLS in front of a
  tinyproxy), with the :class:`ssl.SSLContext` a client needs to trust it;
* :func:`start_socks5`: a SOCKS server (dante), without authentication or with
  username/password authentication (RFC 1929) of a dedicated system user;
* :func:`closed_port`: a loopback port where nothing listens (connection refused).

The ``start_*`` functions are context managers yielding a :class:`ProxyServer`; the
fixtures of the same names (``tinyproxy``, ``tinyproxy_auth``, ``https_proxy``,
``https_proxy_auth``, ``socks5_proxy``, ``socks5_proxy_auth``) start one per test, so the
log of a fixture's proxy only holds that test's traffic. A missing program skips the test,
naming the Debian package to install.

Module-importable like ``rawpeer``: ``from proxyservers import ...`` (``tests/`` is on
``sys.path`` through ``tests/conftest.py``). The fixtures are visible to a test module that
declares ``pytest_plugins = ["proxyservers"]``, or to every test once ``tests/conftest.py``
does.

What the proxies log, as parsed by :meth:`ProxyServer.connects`:

* tinyproxy logs every request line as it reads it, *before* authenticating it or
  connecting upstream (``Request (file descriptor 5): CONNECT 127.0.0.1:8765 HTTP/1.1``):
  its ``connects()`` lists every CONNECT it *received*, answered 200, 407 or 500 alike;
  the line is written (unbuffered) before the answer, so a client that got the answer can
  read it at once;
* dante logs a passed session once it has connected to the target
  (``pass(1): tcp/connect [: 127.0.0.1.40000 127.0.0.1.1080 -> 127.0.0.1.41000
  127.0.0.1.8765``, the client prefixed ``username%wssocks@`` when authenticated): its
  ``connects()`` lists the targets of *established* connections only, the addresses it
  connected to (a host name sent for remote resolution appears resolved). Another process
  than the one answering the client writes it: use :meth:`ProxyServer.wait_for_connect`;
* socat (the TLS front of the HTTPS proxy) does not parse the tunnelled requests: the
  HTTPS proxy's ``connects()`` are those of its tinyproxy.

tinyproxy 1.11.1 with BasicAuth answers a CONNECT without ``Proxy-Authorization`` with
``407 Proxy Authentication Required`` (``Proxy-Authenticate: Basic realm="Tinyproxy"``) but
one with wrong credentials with ``401 Unauthorized`` (``WWW-Authenticate``); a refused
target is ``500 Unable to connect``; success is ``HTTP/1.0 200 Connection established``.

SOCKS versions through dante: SOCKS5 with IP addresses or host names (``socks5://`` and
``socks5h://`` both work) and SOCKS4 with an IPv4 address (without authentication only).
SOCKS4a (a host name in a SOCKS4 request) is NOT supported by dante 1.4: it connects to
0.0.0.1 literally and fails (the client gets "request rejected or failed").

Credentials: tinyproxy's ``BasicAuth`` only accepts ``[-A-Za-z0-9._]`` in user names and
passwords (a syntax error otherwise), so :data:`TINYPROXY_AUTH` needs no percent-encoding;
the SOCKS password :data:`SOCKS_AUTH` is a system password and has characters that do
(``:``, space, ``@``, ``%``, ``/``).

PYTEST_DONT_REWRITE: imported by test modules before pytest registers it as a plugin.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme

from serverprocess import (
    POLL,
    STARTUP_TIMEOUT,
    launch_listening,
    private_directory,
    require_program,
    stop_process_group,
)

__all__ = [
    "STARTUP_TIMEOUT",
    "TINYPROXY_AUTH",
    "SOCKS_AUTH",
    "ProxyServer",
    "closed_port",
    "start_tinyproxy",
    "start_https_proxy",
    "start_socks5",
    "proxy_ca",
    "tinyproxy",
    "tinyproxy_auth",
    "https_proxy",
    "https_proxy_auth",
    "socks5_proxy",
    "socks5_proxy_auth",
]

_SKIP_NOTE = "; scripts/test does when run as root"

#: Basic credentials of ``tinyproxy_auth`` (tinyproxy allows only ``[-A-Za-z0-9._]``).
TINYPROXY_AUTH = ("alice", "s3cret-p.ss")
#: System user and password of ``socks5_proxy_auth``: the password needs percent-encoding
#: in a URL (``pw%3A%20s%40cks%25%2Fx``).
SOCKS_AUTH = ("wssocks", "pw: s@cks%/x")

_TINYPROXY_CREDENTIAL = re.compile(r"[-A-Za-z0-9._]+")
_TINYPROXY_CONNECT = re.compile(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP/")
_DANTE_CONNECT = re.compile(r"pass\(\d+\): tcp/connect \[: \S+ \S+ -> \S+ (\S+)")


def _tinyproxy_connects(text: str) -> list[str]:
    return _TINYPROXY_CONNECT.findall(text)


def _dante_connects(text: str) -> list[str]:
    # Dante writes addresses as "ip.port": 127.0.0.1.8765, ::1.8765.
    targets = []
    for address in _DANTE_CONNECT.findall(text):
        host, _, port = address.rpartition(".")
        targets.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return targets


@dataclass
class ProxyServer:
    """A running proxy: where it listens, its credentials, and what it logged."""

    #: URL scheme: ``http``, ``https`` or ``socks5``.
    scheme: str
    host: str
    port: int
    #: ``(user, password)`` the proxy requires, or None.
    auth: tuple[str, str] | None
    process: subprocess.Popen[bytes] = field(repr=False)
    #: The proxy's own log file (tinyproxy's LogFile, dante's logoutput, socat's stderr).
    log_path: Path
    directory: Path = field(repr=False)
    _connects: Callable[[str], list[str]] = field(repr=False)
    #: For the HTTPS proxy: the tinyproxy behind the TLS front.
    upstream: ProxyServer | None = field(default=None, repr=False)
    #: For the HTTPS proxy: a client context trusting its certificate (valid for
    #: ``127.0.0.1`` and ``localhost``).
    client_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """``scheme://[user:password@]127.0.0.1:PORT``, credentials percent-encoded."""
        return self.url_as(self.scheme)

    def url_as(self, scheme: str) -> str:
        """:attr:`url` with another scheme, e.g. ``socks5h`` or ``socks4``."""
        userinfo = ""
        if self.auth is not None:
            user, password = self.auth
            userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{scheme}://{userinfo}{self.host}:{self.port}"

    def log(self) -> str:
        """The proxy's log so far (each of these programs writes it unbuffered)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def connects(self) -> list[str]:
        """The ``host:port`` targets tunnelled through this proxy so far, in order.

        tinyproxy: every CONNECT received (even if refused with 407 or 500); dante: every
        connection established; HTTPS proxy: those of its tinyproxy.
        """
        if self.upstream is not None:
            return self.upstream.connects()
        return self._connects(self.log())

    def wait_for_connect(self, target: str, timeout: float = STARTUP_TIMEOUT) -> list[str]:
        """Wait until ``target`` (``"host:port"``) is in :meth:`connects`; return them."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.connects()
            if target in targets:
                return targets
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{target} not among the CONNECTs of {self.url} after {timeout} s: "
                    f"{targets}\n--- log:\n{self.log()}"
                )
            time.sleep(POLL)


# Ports.

_reserved: list[socket.socket] = []


@atexit.register
def _release_reserved() -> None:
    while _reserved:
        _reserved.pop().close()


def closed_port() -> int:
    """A port of 127.0.0.1 where nothing listens: connecting is refused.

    The port stays bound (never listening) for the life of the process, so that nothing
    else gets it meanwhile.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _reserved.append(sock)
    return int(sock.getsockname()[1])


# tinyproxy.


@contextlib.contextmanager
def start_tinyproxy(
    auth: tuple[str, str] | None = None, directory: Path | None = None
) -> Iterator[ProxyServer]:
    """An HTTP proxy on 127.0.0.1, CONNECT to any port, Basic ``auth`` if given.

    It runs as the current user (tinyproxy only warns that no ``User`` is configured),
    which keeps its log writable in a private temporary directory.
    """
    program = require_program("tinyproxy", "tinyproxy", _SKIP_NOTE)
    if auth is not None and not all(_TINYPROXY_CREDENTIAL.fullmatch(part) for part in auth):
        raise ValueError(f"tinyproxy's BasicAuth only accepts [-A-Za-z0-9._]: {auth!r}")
    with private_directory(directory, "tinyproxy-") as path:
        log_path = path / "tinyproxy.log"

        def command(port: int) -> list[str]:
            # No ConnectPort line: CONNECT is allowed to every port (the Debian
            # configuration restricts it to 443 and 563, but this one replaces it).
            lines = [
                "Listen 127.0.0.1",
                f"Port {port}",
                "Timeout 60",
                f'LogFile "{log_path}"',
                f'PidFile "{path / "tinyproxy.pid"}"',
                "LogLevel Info",
                "MaxClients 100",
                "Allow 127.0.0.1",
                "DisableViaHeader Yes",
            ]
            if auth is not None:
                lines.append(f"BasicAuth {auth[0]} {auth[1]}")
            config = path / f"tinyproxy-{port}.conf"
            config.write_text("\n".join(lines) + "\n")
            log_path.unlink(missing_ok=True)
            return [program, "-d", "-c", str(config)]

        process, port = launch_listening("tinyproxy", path, log_path, command)
        try:
            yield ProxyServer(
                "http", "127.0.0.1", port, auth, process, log_path, path, _tinyproxy_connects
            )
        finally:
            stop_process_group(process)


# HTTPS proxy: socat terminating TLS in front of a tinyproxy.


@contextlib.contextmanager
def start_https_proxy(
    upstream: ProxyServer, ca: trustme.CA, directory: Path | None = None
) -> Iterator[ProxyServer]:
    """TLS on 127.0.0.1 in front of ``upstream`` (a tinyproxy): an HTTPS proxy.

    Its certificate, issued by ``ca``, is valid for ``127.0.0.1`` and ``localhost``; its
    URL has ``upstream``'s credentials; ``client_context`` trusts ``ca``.
    """
    program = require_program("socat", "socat", _SKIP_NOTE)
    with private_directory(directory, "https-proxy-") as path:
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        chain = path / "proxy-chain.pem"
        key = path / "proxy-key.pem"
        chain.write_bytes(b"".join(blob.bytes() for blob in certificate.cert_chain_pems))
        certificate.private_key_pem.write_to_path(str(key))
        log_path = path / "socat.log"

        def command(port: int) -> list[str]:
            return [
                program,
                "-d",
                "-d",
                f"-lf{log_path}",
                f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay,"
                f"cert={chain},key={key},verify=0",
                f"TCP:127.0.0.1:{upstream.port},nodelay",
            ]

        process, port = launch_listening("socat", path, log_path, command)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(context)
        try:
            yield ProxyServer(
                "https",
                "127.0.0.1",
                port,
                upstream.auth,
                process,
                log_path,
                path,
                _tinyproxy_connects,
                upstream=upstream,
                client_context=context,
            )
        finally:
            stop_process_group(process)


# dante.

_users_ready: set[tuple[str, str]] = set()


def _ensure_system_user(user: str, password: str) -> None:
    """Create ``user`` if missing and set its password; skip the test if impossible."""
    if (user, password) in _users_ready:
        return
    how = (
        f"useradd --system --no-create-home --shell /usr/sbin/nologin {user} && "
        f"echo '{user}:{password}' | chpasswd"
    )
    if os.geteuid() != 0:
        pytest.skip(
            f"SOCKS username authentication checks system users, and dante reads their "
            f"passwords as root: run as root (this creates the user: {how})"
        )
    useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
    chpasswd = shutil.which("chpasswd", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if useradd is None or chpasswd is None:
        pytest.skip(f"useradd or chpasswd missing (package passwd): cannot run: {how}")
    # pytest-xdist workers each come here: useradd and chpasswd fail on a locked
    # /etc/passwd or /etc/shadow, so one at a time.
    with open(os.path.join(tempfile.gettempdir(), "websock-proxyservers-user.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(user)
        except KeyError:
            created = subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                capture_output=True,
                text=True,
                timeout=STARTUP_TIMEOUT,
            )
            if created.returncode != 0:
                pytest.skip(f"cannot create the system user {user}: {created.stderr.strip()}")
        changed = subprocess.run(
            [chpasswd],
            input=f"{user}:{password}\n",
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
        )
        if changed.returncode != 0:
            pytest.skip(f"cannot set the password of {user}: {changed.stderr.strip()}")
    _users_ready.add((user, password))


@contextlib.contextmanager
def start_socks5(
    auth: tuple[str, str] | None = None, directory: Path | None = None
) -> Iterator[ProxyServer]:
    """A SOCKS5 (and SOCKS4) proxy on 127.0.0.1 (dante), CONNECT only.

    With ``auth``, only username/password authentication is accepted, against the system
    user ``auth[0]``, created (as root) if missing, its password set to ``auth[1]``.
    """
    program = require_program("danted", "dante-server", _SKIP_NOTE)
    if auth is not None:
        _ensure_system_user(*auth)
    with private_directory(directory, "dante-") as path:
        log_path = path / "dante.log"
        method = "username" if auth is not None else "none"
        if os.geteuid() == 0:
            users = ["user.privileged: root", "user.unprivileged: nobody"]
        else:
            users = []  # dante runs as the current user, without switching

        def command(port: int) -> list[str]:
            rules = "\n".join(
                [
                    f"logoutput: {log_path}",
                    f"internal: 127.0.0.1 port = {port}",
                    "external: 127.0.0.1",
                    "clientmethod: none",
                    f"socksmethod: {method}",
                    *users,
                    "client pass {",
                    "    from: 127.0.0.0/8 to: 0.0.0.0/0",
                    "    log: connect disconnect error",
                    "}",
                    "socks pass {",
                    "    from: 127.0.0.0/8 to: 0.0.0.0/0",
                    "    command: connect",
                    "    log: connect disconnect error",
                    "}",
                ]
            )
            config = path / f"dante-{port}.conf"
            config.write_text(rules + "\n")
            log_path.unlink(missing_ok=True)
            # -N 1: one mother process; no -D: in the foreground.
            return [program, "-f", str(config), "-N", "1", "-p", str(path / f"dante-{port}.pid")]

        process, port = launch_listening("dante", path, log_path, command)
        try:
            yield ProxyServer(
                "socks5", "127.0.0.1", port, auth, process, log_path, path, _dante_connects
            )
        finally:
            stop_process_group(process)


# Fixtures.


#: The environment variables that choose a proxy (websock.protocol.proxy), in both cases.
PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
) + ("REQUEST_METHOD",)


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from an environment that sets no proxy (the machine's must not leak in)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def proxy_ca() -> trustme.CA:
    """The authority of the HTTPS proxies' certificates (not the servers' ``ca``)."""
    return trustme.CA()


@pytest.fixture
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    with start_tinyproxy(directory=tmp_path_factory.mktemp("tinyproxy")) as proxy:
        yield proxy


@pytest.fixture
def tinyproxy_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    with start_tinyproxy(TINYPROXY_AUTH, tmp_path_factory.mktemp("tinyproxy")) as proxy:
        yield proxy


@pytest.fixture
def https_proxy(
    tinyproxy: ProxyServer, proxy_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyServer]:
    with start_https_proxy(tinyproxy, proxy_ca, tmp_path_factory.mktemp("https")) as proxy:
        yield proxy


@pytest.fixture
def https_proxy_auth(
    tinyproxy_auth: ProxyServer, proxy_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyServer]:
    with start_https_proxy(tinyproxy_auth, proxy_ca, tmp_path_factory.mktemp("https")) as proxy:
        yield proxy


@pytest.fixture
def socks5_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    with start_socks5(directory=tmp_path_factory.mktemp("dante")) as proxy:
        yield proxy


@pytest.fixture
def socks5_proxy_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    with start_socks5(SOCKS_AUTH, tmp_path_factory.mktemp("dante")) as proxy:
        yield proxy
