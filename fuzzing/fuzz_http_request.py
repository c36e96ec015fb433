"""Fuzz the server side of the opening handshake: the HTTP request head parser
(HeadReader via ServerHandshake.receive_data), then validate/accept/response_for_error.

The input is 3 configuration bytes followed by the bytes the client sends:

    c0 bits 0-1  max_size (head bytes), from MAX_SIZES
       bits 2-3  max_headers, from MAX_HEADERS
       bit 4     origins allow-list ["https://example.com", None] (no Origin allowed)
       bit 5     origins allow-list ["https://example.com"] (Origin required)
    c1           ServerPerMessageDeflateFactory options (fuzz_connection.negotiate's c2)
    c2           chunking seed (_common.chunk_sizes)

Invariants checked:

I1  receive_data returns None until the head is complete, then the Request (the same
    object on later calls); it raises nothing but InvalidHandshake with status 400, 431
    or 505. After the head, ``trailing`` is exactly the bytes after the first CRLFCRLF.
I2  Before the head is complete the reader never holds max_size bytes or more (431 first);
    a complete head is at most max_size bytes with at most max_headers header lines.
I3  A parsed request serializes (serialize_request) and parses back to an equal request.
I4  accept() raises nothing but InvalidHandshake (400, 403, 405, 426); on success the
    response is a 101 whose Sec-WebSocket-Accept answers the request's key, with at most
    one permessage-deflate extension, a subprotocol we support and the client offered,
    and it serializes and parses back (as a response) to equal headers.
I5  Every InvalidHandshake gets a response from response_for_error that serializes; its
    body is at most MAX_ERROR_TEXT + 4 bytes (peer input is quoted through excerpt()), and
    the exception's text has no control characters (it is logged) and is at most 512
    characters.
I6  Memory: the tracemalloc peak (sampled) stays below 256 KiB + 24 x the input length.
"""

from __future__ import annotations

import base64
import sys

from _common import MemoryCheck, atheris, chunk_sizes, run

with atheris.instrument_imports(include=["websock"]):
    from websock.exceptions import InvalidHandshake
    from websock.protocol.extensions.permessage_deflate import (
        PerMessageDeflate,
        ServerPerMessageDeflateFactory,
    )
    from websock.protocol.handshake import (
        ServerHandshake,
        accept_key,
        parse_subprotocol_header,
    )
    from websock.protocol.http import HeadReader, serialize_request, serialize_response

    try:
        from websock.protocol.handshake import MAX_ERROR_TEXT
    except ImportError:  # older tree: no bound on the error text
        MAX_ERROR_TEXT = 1 << 20

MAX_SIZES = (16384, 64, 256, 1024)
MAX_HEADERS = (128, 0, 2, 8)
SUBPROTOCOLS = ["chat", "superchat"]
ORIGINS = (None, ["https://example.com", None], ["https://example.com"], ["https://example.com"])
_SERVER_CLIENT_BITS = (None, 8, 12, 15)


def server_factory(c: int) -> ServerPerMessageDeflateFactory:
    bits = (c >> 2) & 15
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=bool(c & 1),
        client_no_context_takeover=bool(c & 2),
        server_max_window_bits=bits if bits >= 8 else None,
        client_max_window_bits=_SERVER_CLIENT_BITS[c >> 6],
    )


def check_error(hs: ServerHandshake, exc: InvalidHandshake, statuses: tuple[int, ...]) -> None:
    """I5."""
    assert exc.status in statuses, f"status {exc.status} for {exc!r}"
    text = str(exc)
    assert len(text) <= 512, f"error text of {len(text)} characters"
    assert text.isprintable(), f"control characters in the error text {text!r}"
    response = hs.response_for_error(exc)
    assert response.status == exc.status
    raw = serialize_response(response)
    assert len(response.body) <= MAX_ERROR_TEXT + 4, f"error body of {len(response.body)} B"
    assert raw.endswith(response.body)


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    memory.start(data)
    exercise(data)
    memory.check(256 * 1024 + 24 * len(data), "http_request")
    memory.stop()


def exercise(data: bytes) -> None:
    c0, c1, c2 = data[:3]
    stream = data[3:]
    max_size = MAX_SIZES[c0 & 3]
    max_headers = MAX_HEADERS[(c0 >> 2) & 3]
    hs = ServerHandshake(
        origins=ORIGINS[(c0 >> 4) & 3],
        subprotocols=SUBPROTOCOLS,
        extensions=[server_factory(c1)],
        max_size=max_size,
        max_headers=max_headers,
    )
    request = None
    pos = 0
    for n in chunk_sizes(c2, len(stream)):
        chunk = stream[pos : pos + n]
        pos += n
        try:
            result = hs.receive_data(chunk)
        except InvalidHandshake as exc:
            assert request is None, "raised after the head was complete"
            check_error(hs, exc, (400, 431, 505))
            return
        if request is not None:
            assert result is request, "a second request"
            continue
        if result is None:
            assert len(hs._reader._buf) < max_size, "incomplete head over max_size"
            assert b"\r\n\r\n" not in stream[:pos], "complete head not returned"
            continue
        request = result
        end = stream.find(b"\r\n\r\n") + 4
        assert 4 <= end <= pos, "request returned before its head was complete"
        assert end <= max_size, f"head of {end} bytes accepted, max_size {max_size}"
        assert stream[:end].count(b"\r\n") - 2 <= max_headers, "too many headers accepted"
        # I3: round trip.
        again = HeadReader(max_size=None, max_headers=None)
        assert again.feed(serialize_request(request))
        assert again.parse_request() == request, "request does not round-trip"
    if request is None:
        return
    end = stream.find(b"\r\n\r\n") + 4
    assert hs.trailing == stream[end:], "trailing bytes differ"

    try:
        response = hs.accept(request)
    except InvalidHandshake as exc:
        check_error(hs, exc, (400, 403, 405, 426))
        return
    # I4.
    assert response.status == 101
    key = request.headers["Sec-WebSocket-Key"].strip()
    assert len(base64.b64decode(key, validate=True)) == 16
    assert response.headers["Sec-WebSocket-Accept"] == accept_key(key)
    assert len(hs.extensions) <= 1
    for ext in hs.extensions:
        assert type(ext) is PerMessageDeflate
    if hs.subprotocol is not None:
        assert hs.subprotocol in SUBPROTOCOLS
        offered = parse_subprotocol_header(request.headers.get_all("Sec-WebSocket-Protocol"))
        assert hs.subprotocol in offered
    reader = HeadReader(max_size=None, max_headers=None, kind="response")
    assert reader.feed(serialize_response(response))
    parsed = reader.parse_response()
    assert parsed.status == 101 and parsed.headers == response.headers


memory = MemoryCheck()

if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    run(test_one_input)
