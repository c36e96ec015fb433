"""The ASGI backend ends TCP as the RFC asks (kosoku does not check it: CONFORMANCE.md):
after the closing handshake, and after failing the connection, the server sends its Close
and then its FIN promptly, never a reset."""

from __future__ import annotations

import base64
import os
import socket
import struct

import pytest
from asgi_harness import WAIT, Recorder, UvicornThread, build_app

from websock.protocol.handshake import accept_key


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with UvicornThread(build_app("starlette", Recorder()), "websock") as running:
        yield running


def open_echo(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), WAIT)
    sock.settimeout(WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "EOF during the opening handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101") and accept_key(key).encode() in head
    assert head.endswith(b"\r\n\r\n")  # nothing after the head: the app sends nothing first
    return sock


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def read_until_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until its FIN; a reset fails the test."""
    data = b""
    while True:
        chunk = sock.recv(65536)  # ConnectionResetError: the RST the test is against
        if not chunk:
            return data
        data += chunk


def test_close_handshake_then_fin(server: UvicornThread) -> None:
    with open_echo(server.port) as sock:
        sock.sendall(masked(0x8, struct.pack("!H", 1000) + b"bye"))
        data = read_until_eof(sock)
    # The Close echoing the code (as the core does: code only), then FIN; nothing else.
    assert data == b"\x88\x02" + struct.pack("!H", 1000)


def test_protocol_violation_close_then_fin(server: UvicornThread) -> None:
    with open_echo(server.port) as sock:
        sock.sendall(b"\x81\x02hi")  # an unmasked client frame: 1002
        data = read_until_eof(sock)
    assert data[0] == 0x88 and struct.unpack("!H", data[2:4])[0] == 1002
