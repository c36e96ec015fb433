"""Fuzz the client side of the opening handshake: the HTTP response head parser and the
response checks (ClientHandshake.receive_data), then the negotiated extension in use.

The client connects to ws://example.com/chat with Sec-WebSocket-Key KEY (RFC 6455's
example: a seed response can carry the right Sec-WebSocket-Accept), subprotocols
["chat", "superchat"] and a ClientPerMessageDeflateFactory. The input is 3 configuration
bytes followed by the bytes the server sends:

    c0 bits 0-1  max_size (head bytes), from MAX_SIZES
       bits 2-3  max_headers, from MAX_HEADERS
    c1           ClientPerMessageDeflateFactory options (fuzz_connection.negotiate's c1)
    c2           chunking seed (_common.chunk_sizes)

Invariants checked:

I1  receive_data returns None until the head is complete; then it returns the Response
    (the same object on later calls, with their bytes appended to ``trailing``) or raises
    InvalidStatus (``status`` is the response's, not 101), NegotiationError or
    InvalidHandshake (400 or 431), and raises that same exception object on every later
    call. Nothing else is raised.
I2  On success: status 101, at most one extension, a PerMessageDeflate whose window bits
    are 8-15, a subprotocol among those offered (or None); ``trailing`` is exactly the
    bytes after the first CRLFCRLF.
I3  The negotiated extension works: a message compressed by a server-side PerMessageDeflate
    mirroring ours round-trips through a client Connection, and the reverse.
I4  The exception's text has no control characters and is at most 512 characters (it is
    logged and may be shown).
I5  Memory: the tracemalloc peak (sampled) stays below 1 MiB + 24 x the input length (the
    round trip of I3 costs two zlib compressors).
"""

from __future__ import annotations

import sys

from _common import MemoryCheck, atheris, chunk_sizes, known_bug, run

with atheris.instrument_imports(include=["websock"]):
    from websock.exceptions import InvalidHandshake, InvalidStatus, NegotiationError
    from websock.protocol.connection import Connection, Role
    from websock.protocol.extensions.permessage_deflate import (
        ClientPerMessageDeflateFactory,
        PerMessageDeflate,
    )
    from websock.protocol.handshake import ClientHandshake
    from websock.protocol.uri import parse_uri

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
URI = parse_uri("ws://example.com/chat")
MAX_SIZES = (16384, 64, 256, 1024)
MAX_HEADERS = (128, 0, 2, 8)
SUBPROTOCOLS = ["chat", "superchat"]
_CLIENT_BITS = (None, True, 10, 8)
MESSAGE = "compressible " * 20


def client_factory(c: int) -> ClientPerMessageDeflateFactory:
    smwb = c >> 4
    return ClientPerMessageDeflateFactory(
        server_no_context_takeover=bool(c & 1),
        client_no_context_takeover=bool(c & 2),
        client_max_window_bits=_CLIENT_BITS[(c >> 2) & 3],
        server_max_window_bits=smwb if smwb >= 8 else None,
    )


def check_text(exc: Exception) -> None:
    text = str(exc)
    if known_bug("error-text") and (len(text) > 512 or not text.isprintable()):
        return  # known bug (README): the reason phrase and offer parameters are not excerpted
    assert len(text) <= 512, f"error text of {len(text)} characters"
    assert text.isprintable(), f"control characters in the error text {text!r}"


def round_trip(ours: PerMessageDeflate) -> None:
    """I3: the server's mirror of our extension, both ways through Connections."""
    theirs = PerMessageDeflate(
        remote_no_context_takeover=ours.local_no_context_takeover,
        local_no_context_takeover=ours.remote_no_context_takeover,
        remote_max_window_bits=ours.local_max_window_bits,
        local_max_window_bits=ours.remote_max_window_bits,
    )
    client = Connection(Role.CLIENT, extensions=[ours])
    server = Connection(Role.SERVER, extensions=[theirs])
    for _ in range(2):  # twice: context takeover, if any
        server.send_text(MESSAGE)
        for chunk in server.data_to_send():
            client.receive_data(chunk)
        assert client.events_received() == [MESSAGE], "server -> client round trip"
        client.send_text(MESSAGE)
        for chunk in client.data_to_send():
            server.receive_data(chunk)
        assert server.events_received() == [MESSAGE], "client -> server round trip"


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    memory.start(data)
    exercise(data)
    memory.check(1024 * 1024 + 24 * len(data), "http_response")
    memory.stop()


def exercise(data: bytes) -> None:
    c0, c1, c2 = data[:3]
    stream = data[3:]
    max_size = MAX_SIZES[c0 & 3]
    hs = ClientHandshake(
        URI,
        subprotocols=SUBPROTOCOLS,
        extensions=[client_factory(c1)],
        key=KEY,
        max_size=max_size,
        max_headers=MAX_HEADERS[(c0 >> 2) & 3],
    )
    response = None
    error: Exception | None = None
    pos = 0
    for n in chunk_sizes(c2, len(stream)):
        chunk = stream[pos : pos + n]
        pos += n
        try:
            result = hs.receive_data(chunk)
        except InvalidStatus as exc:
            assert error is None or exc is error, "a different exception"
            assert exc.status == exc.response.status != 101
            error = exc
            continue
        except NegotiationError as exc:
            assert error is None or exc is error, "a different exception"
            error = exc
            continue
        except InvalidHandshake as exc:
            assert error is None or exc is error, "a different exception"
            assert exc.status in (400, 431), exc.status
            error = exc
            continue
        assert error is None, "no exception after an exception"
        if result is None:
            assert response is None
            assert len(hs._reader._buf) < max_size, "incomplete head over max_size"
            continue
        assert response is None or result is response, "a second response"
        response = result
    if error is not None:
        check_text(error)
        return
    if response is None:
        return
    assert response.status == 101
    end = stream.find(b"\r\n\r\n") + 4
    assert end >= 4 and hs.trailing == stream[end:], "trailing bytes differ"
    assert hs.subprotocol is None or hs.subprotocol in SUBPROTOCOLS
    assert len(hs.extensions) <= 1
    for ext in hs.extensions:
        assert type(ext) is PerMessageDeflate
        assert 8 <= ext.remote_max_window_bits <= 15 and 8 <= ext.local_max_window_bits <= 15
        round_trip(ext)


memory = MemoryCheck()

if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    run(test_one_input)
