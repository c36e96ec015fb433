"""SOCKS proxies through python-socks (the ``pywebsock[socks]`` extra), for both I/O layers.

python-socks speaks SOCKS4, SOCKS4a, SOCKS5 and SOCKS5h and hands back a connected socket
to the destination; this module loads it with a clear error when it is missing, builds its
arguments from a parsed :class:`~websock.protocol.proxy.Proxy`, and turns its failures
into websock's exceptions.
"""

from __future__ import annotations

from typing import Any

from .exceptions import ProxyError
from .protocol.proxy import Proxy

__all__ = ["python_socks", "proxy_arguments", "socks_errors", "socks_error"]

# SOCKS5 replies (RFC 1928 section 6) that may pass: general failure, network or host
# unreachable, connection refused, TTL expired. The others (not allowed by the ruleset,
# command or address type not supported) will be the same next time.
_TRANSIENT_SOCKS5_REPLIES = frozenset({1, 3, 4, 5, 6})


def python_socks() -> Any:
    """The python_socks package; ImportError naming the extra when it is not installed."""
    try:
        import python_socks
    except ImportError:
        raise ImportError(
            "SOCKS proxies need python-socks: pip install 'pywebsock[socks]'"
        ) from None
    return python_socks


def socks_errors() -> tuple[type[Exception], ...]:
    """The exceptions python-socks raises for a failed tunnel (to catch, then pass to
    :func:`socks_error`)."""
    module = python_socks()
    return (module.ProxyError, module.ProxyConnectionError, module.ProxyTimeoutError)


def proxy_arguments(proxy: Proxy) -> dict[str, Any]:
    """The keyword arguments of python-socks' ``Proxy(...)`` for ``proxy``."""
    proxy_type = python_socks().ProxyType
    return {
        "proxy_type": proxy_type.SOCKS5 if proxy.scheme.startswith("socks5") else proxy_type.SOCKS4,
        "host": proxy.host,
        "port": proxy.port,
        "username": proxy.username,
        "password": proxy.password,
        # socks5h and socks4a: the proxy resolves the server's name (curl's meaning).
        "rdns": proxy.remote_dns,
    }


def socks_error(exc: Exception, proxy: Proxy) -> Exception:
    """The exception to raise for a failure python-socks reported.

    A refused or failed connection to the proxy itself stays an :class:`OSError` (a
    timeout a :class:`TimeoutError`): the network failed, as without a proxy. A SOCKS
    reply refusing the tunnel, a failed authentication or an answer that is not SOCKS
    becomes :class:`~websock.exceptions.ProxyError`.
    """
    errors = python_socks()
    if not isinstance(exc, errors.ProxyError):  # a connection error or timeout
        return exc
    code = exc.error_code
    if code is None:  # no reply code: failed authentication, or not a SOCKS answer
        return ProxyError(f"SOCKS proxy {proxy}: {exc}")
    transient = proxy.scheme.startswith("socks5") and code in _TRANSIENT_SOCKS5_REPLIES
    return ProxyError(f"SOCKS proxy {proxy} refused the tunnel: {exc}", transient=transient)
