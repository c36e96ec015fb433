"""X-Forwarded-For, believed only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock.protocol.forwarded import TrustedProxies, forwarded_client
from websock.protocol.http import Headers


def headers(*values: str) -> Headers:
    result = Headers()
    for value in values:
        result.add("X-Forwarded-For", value)
    return result


TRUSTED = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "values", "client"),
    [
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", [], None),
        ("127.0.0.1", [""], None),
        ("192.0.2.1", ["203.0.113.7"], None),  # the peer is not a trusted proxy
        ("127.0.0.1", ["203.0.113.7, 10.1.2.3"], "203.0.113.7"),  # a trusted hop skipped
        ("127.0.0.1", ["198.51.100.9, 203.0.113.7"], "203.0.113.7"),  # injected on the left
        ("127.0.0.1", ["198.51.100.9", "203.0.113.7"], "203.0.113.7"),  # two header lines
        ("127.0.0.1", ["10.0.0.5, 10.0.0.6"], "10.0.0.5"),  # all trusted: the leftmost
        ("127.0.0.1", ["203.0.113.7:4711"], "203.0.113.7"),
        ("127.0.0.1", ["[2001:db8::1]:4711"], "2001:db8::1"),
        ("::1", ["2001:DB8::1"], "2001:db8::1"),
        ("::ffff:10.0.0.1", ["203.0.113.7"], "203.0.113.7"),  # a v4-mapped trusted peer
        ("127.0.0.1", ["unknown"], None),
        ("127.0.0.1", ["_hidden"], None),
        (None, ["203.0.113.7"], None),
    ],
)
def test_forwarded_client(peer: str | None, values: list[str], client: str | None) -> None:
    assert forwarded_client(peer, headers(*values), TRUSTED) == client


def test_everyone_trusted_and_plain_lists() -> None:
    assert forwarded_client("192.0.2.1", headers("203.0.113.7"), ["*"]) == "203.0.113.7"
    assert forwarded_client("10.9.9.9", headers("203.0.113.7"), ["10.0.0.0/8"]) == "203.0.113.7"


def test_bad_entries() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies(["proxy.example"])


@given(st.text(max_size=80))
def test_any_header_value_gives_an_address_or_none(value: str) -> None:
    try:
        forwarded = headers(value)
    except ValueError:
        return  # not a valid header value to begin with
    result = forwarded_client("127.0.0.1", forwarded, TRUSTED)
    assert result is None or isinstance(result, str)
