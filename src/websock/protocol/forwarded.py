"""The client's address behind reverse proxies: ``X-Forwarded-For``, trusted only from
proxies the server was told to trust.

A reverse proxy (nginx, a load balancer) connects to the server itself: the TCP peer is the
proxy. It tells who its client was in ``X-Forwarded-For: client, proxy1, proxy2`` (each hop
appends the address it received the connection from). Anybody can send that header, so it
is believed only when the TCP peer is a trusted proxy, and then read from the right: each
address that is itself a trusted proxy is skipped, and the first one that is not is the
client (the "rightmost untrusted" rule: a client cannot inject an address by sending the
header itself, since its own address is appended after whatever it sent).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from .http import Headers, Request

__all__ = ["TrustedProxies", "client_address", "forwarded_client"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of trusted proxy addresses: IP addresses, CIDR ranges, or ``"*"`` (every peer:
    only when nothing but the proxy can reach the server, e.g. a Unix socket or a private
    network). Raise :class:`ValueError` for an entry that is neither."""

    __slots__ = ("_all", "_networks")

    def __init__(self, entries: Iterable[str]) -> None:
        self._all = False
        networks: list[_Network] = []
        for entry in entries:
            if entry == "*":
                self._all = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address, a CIDR range or '*'"
                ) from None
        self._networks: tuple[_Network, ...] = tuple(networks)

    def __contains__(self, host: object) -> bool:
        if self._all:
            return True
        if not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host.strip().strip("[]"))
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1
        if mapped is not None:
            address = mapped
        return any(address in network for network in self._networks)


def forwarded_client(
    peer_host: str | None, headers: Headers, trusted: TrustedProxies | Sequence[str]
) -> str | None:
    """The client's address according to ``X-Forwarded-For``, or None when the header is
    absent, empty or not to be believed (the TCP peer ``peer_host`` is not trusted)."""
    if not isinstance(trusted, TrustedProxies):
        trusted = TrustedProxies(trusted)
    if peer_host is None or peer_host not in trusted:
        return None
    hops: list[str] = []
    for value in headers.get_all("X-Forwarded-For"):
        hops.extend(part.strip() for part in value.split(","))
    for hop in reversed(hops):
        if not hop:
            continue
        if hop not in trusted:
            return _valid_host(hop)
    # Every hop is a trusted proxy: the leftmost is as close to the client as we know.
    for hop in hops:
        if hop:
            return _valid_host(hop)
    return None


def client_address(
    remote_address: Any, request: Request | None, trusted: TrustedProxies | None
) -> Any:
    """A server connection's ``client_address``: ``remote_address`` (the TCP peer), unless
    ``trusted`` proxies are configured, the peer is one of them and the ``request`` names
    its client in ``X-Forwarded-For``: then ``(client_ip, 0)`` (no port is forwarded)."""
    if trusted is None or request is None:
        return remote_address
    peer = remote_address[0] if isinstance(remote_address, tuple) and remote_address else None
    client = forwarded_client(peer, request.headers, trusted)
    return remote_address if client is None else (client, 0)


def _valid_host(hop: str) -> str | None:
    """An IP address (a proxy may append ``:port``, or brackets for IPv6), else None."""
    candidate = hop
    if candidate.startswith("["):
        candidate = candidate[1:].partition("]")[0]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None  # "unknown", an obfuscated identifier (RFC 7239): no address
