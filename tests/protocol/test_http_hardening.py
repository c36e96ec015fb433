"""Hardening of the HTTP layer against peer input: no interning, bounded error texts."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from websock.exceptions import InvalidHandshake, NegotiationError
from websock.protocol import http
from websock.protocol.handshake import ClientHandshake, ServerHandshake, accept_key
from websock.protocol.http import Headers, HeadReader
from websock.protocol.uri import parse_uri


def parse(data: bytes) -> Headers:
    reader = HeadReader()
    assert reader.feed(data)
    return reader.parse_request().headers


def fresh_copy(text: str) -> str:
    """An equal str that is a distinct object (and so not interned)."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


# ---------------------------------------------------------------- A. no interning


def test_unknown_header_names_are_not_interned() -> None:
    # From Python 3.12 interned strings are immortal: interning names sent by the peer let
    # any client grow the server's memory for good.
    name = "X-Unique-" + os.urandom(8).hex()
    headers = parse(f"GET / HTTP/1.1\r\nHost: a\r\n{name}: v\r\n\r\n".encode())
    parsed_name, _ = headers.items()[1]
    parsed_key = headers._keys[1]
    assert parsed_name == name and parsed_key == name.lower()
    # sys.intern() of an equal string returns the interned object if there is one: here
    # it must not be the parsed one.
    assert sys.intern(fresh_copy(name)) is not parsed_name
    assert sys.intern(fresh_copy(name.lower())) is not parsed_key


def test_unknown_header_names_added_by_the_application_are_not_interned() -> None:
    name = "X-App-" + os.urandom(8).hex()
    headers = Headers()
    headers.add(name, "1")
    headers[name + "-b"] = "2"
    del headers[name + "-b"]
    assert sys.intern(fresh_copy(name.lower())) is not headers._keys[0]


def test_common_header_names_are_shared_between_requests() -> None:
    # The memory benefit interning gave idle connections is kept for the usual names.
    request = (
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nconnection: Upgrade\r\n"
        b"Sec-Websocket-Key: x\r\nUser-Agent: y\r\n\r\n"
    )
    first, second = parse(request), parse(request)
    for (name1, _), (name2, _) in zip(first.items(), second.items(), strict=True):
        assert name1 is name2, name1
    for key1, key2 in zip(first._keys, second._keys, strict=True):
        assert key1 is key2, key1
    # Spellings are preserved.
    assert [n for n, _ in first.items()] == [
        "Host",
        "Upgrade",
        "connection",
        "Sec-Websocket-Key",
        "User-Agent",
    ]
    assert first["sec-websocket-key"] == "x"


def test_rejected_requests_with_unique_names_leave_no_memory_behind() -> None:
    def run(count: int, base: int) -> None:
        for i in range(count):
            names = "".join(f"X-{base + i}-{j}-{'n' * 40}: v\r\n" for j in range(20))
            handshake = ServerHandshake()
            request = handshake.receive_data(f"GET / HTTP/1.1\r\nHost: a\r\n{names}\r\n".encode())
            assert request is not None
            with pytest.raises(InvalidHandshake):
                handshake.accept(request)

    run(50, 0)  # warm up caches
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        run(500, 1000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    # 500 requests x 20 names of ~60 bytes, twice (spelling and lowercase key): ~1.2 MB if
    # anything kept them.
    assert grown < 100_000, grown


RSS_SCRIPT = textwrap.dedent(
    """
    import gc
    from websock.exceptions import InvalidHandshake
    from websock.protocol.handshake import ServerHandshake

    def rss_kib():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def run(count, base):
        for i in range(count):
            names = "".join(f"X-{base + i}-{j:03d}-{'a' * 110}: v\\r\\n" for j in range(100))
            handshake = ServerHandshake()
            request = handshake.receive_data(
                f"GET / HTTP/1.1\\r\\nHost: a\\r\\n{names}\\r\\n".encode()
            )
            try:
                handshake.accept(request)
            except InvalidHandshake as exc:
                handshake.response_for_error(exc)

    run(50, 0)
    gc.collect()
    before = rss_kib()
    run(2000, 100)
    gc.collect()
    print(rss_kib() - before)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_rss_after_2000_rejected_requests_with_unique_names() -> None:
    # On Python 3.12+, where interned strings are immortal, this grew by ~80 MB (~400 MB
    # for 10,000 requests).
    # Elsewhere it checks that nothing else keeps the names.
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    grown_kib = int(result.stdout.strip())
    assert grown_kib < 16 * 1024, f"RSS grew by {grown_kib} KiB"


# ---------------------------------------------------------------- C. bounded error texts


def test_excerpt_cuts_and_escapes() -> None:
    excerpt, limit = http.excerpt, http.EXCERPT_LENGTH
    assert excerpt("short") == "short"
    assert excerpt("a" * limit) == "a" * limit
    assert excerpt("a" * 8192) == "a" * limit + "..."
    assert excerpt("log\nforged\r\x1b[2J\x00\x7f\x85\u2028") == (
        "log\\nforged\\r\\x1b[2J\\x00\\x7f\\x85\\u2028"
    )
    assert excerpt("tab\there", limit=3) == "tab..."
    assert excerpt("caf\xe9 \u2603") == "caf\xe9 \u2603"


def test_405_body_does_not_repeat_a_long_method() -> None:
    method = "M" * 8192
    handshake = ServerHandshake()
    request = handshake.receive_data(
        f"{method} / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".encode()
    )
    assert request is not None
    with pytest.raises(InvalidHandshake) as info:
        handshake.accept(request)
    assert info.value.status == 405
    assert len(str(info.value)) < 200
    response = handshake.response_for_error(info.value)
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
    assert len(response.body) < 200
    assert response.body == (b"unsupported method " + b"M" * 64 + b"...: expected GET\n")


def test_error_bodies_are_bounded_whatever_the_message() -> None:
    # An extension factory may quote a whole offer in its error: the body stays short.
    handshake = ServerHandshake()
    response = handshake.response_for_error(
        InvalidHandshake("bad parameter " + "v" * 10000 + "\x1b[31m", 400)
    )
    assert len(response.body) <= 300
    assert b"\x1b" not in response.body
    assert response.headers["Content-Length"] == str(len(response.body))


def test_client_errors_quote_server_input_briefly() -> None:
    uri = parse_uri("ws://example.com/")
    handshake = ClientHandshake(uri, subprotocols=["chat"])
    handshake.data_to_send()
    chosen = "p" * 5000
    with pytest.raises(NegotiationError) as info:
        handshake.receive_data(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(handshake.key)}\r\n"
                f"Sec-WebSocket-Protocol: {chosen}\r\n\r\n"
            ).encode()
        )
    assert len(str(info.value)) < 200

    handshake = ClientHandshake(uri)
    handshake.data_to_send()
    with pytest.raises(NegotiationError) as info:
        handshake.receive_data(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(handshake.key)}\r\n"
                f"Sec-WebSocket-Extensions: {'x' * 5000}\r\n\r\n"
            ).encode()
        )
    assert len(str(info.value)) < 200
