"""Helpers for the websock.sync tests: servers in a thread, and a raw blocking peer.

:class:`RawClient` does the opening handshake by hand over a plain socket and then sends
and reads frames one at a time, to check the exact bytes on the wire. Every wait is bounded
by :data:`TIMEOUT`, scaled by ``WEBSOCK_TEST_TIMEOUT_FACTOR`` on slow machines: a stuck test
fails instead of hanging; no test measures a duration.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from websock.protocol.frames import Opcode, serialize_frame
from websock.protocol.handshake import accept_key
from websock.sync import Server, ServerConnection, serve

__all__ = [
    "TIMEOUT",
    "RawClient",
    "RawFrame",
    "RawServer",
    "close_payload",
    "read_client_frame",
    "running_server",
]

#: Bound on every wait in the tests: generous on a loaded machine, short when stuck.
TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)


@contextmanager
def running_server(handler: Callable[[ServerConnection], None], **kwargs: Any) -> Iterator[Server]:
    """A websock.sync server on 127.0.0.1, port 0, serving in a thread; shut down after."""
    server = serve(handler, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "serve_forever() did not return after shutdown()"


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


@dataclass
class RawFrame:
    opcode: int
    payload: bytes
    fin: bool = True


class RawClient:
    """A client that speaks just enough WebSocket to script a test, frame by frame."""

    def __init__(self, port: int, path: str = "/", headers: dict[str, str] | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        self.sock.settimeout(TIMEOUT)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head.decode("latin-1")
        if self.status == 101:
            assert accept_key(key) in self.head

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed during the handshake")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"EOF with {len(self.buffer)} of {n} bytes")
            self.buffer += data
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(
        self, opcode: int, payload: bytes = b"", fin: bool = True, masked: bool = True
    ) -> bytes:
        mask = os.urandom(4) if masked else None
        return serialize_frame(opcode, payload, fin=fin, mask=mask)

    def send(
        self, opcode: int, payload: bytes = b"", fin: bool = True, masked: bool = True
    ) -> None:
        self.send_raw(self.frame(opcode, payload, fin, masked))

    def read_frame(self) -> RawFrame:
        b0, b1 = self._read_exact(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        assert not b1 & 0x80, "a server must not mask its frames"
        return RawFrame(b0 & 0x0F, self._read_exact(length), bool(b0 & 0x80))

    def read_close(self) -> tuple[int, bytes]:
        frame = self.read_frame()
        assert frame.opcode == Opcode.CLOSE, frame
        code = struct.unpack("!H", frame.payload[:2])[0] if frame.payload else 1005
        return code, frame.payload[2:]

    def expect_eof(self) -> None:
        """The server ends TCP (FIN): recv returns b"" within TIMEOUT, no reset."""
        assert not self.buffer, f"unexpected bytes before EOF: {self.buffer!r}"
        data = self.sock.recv(65536)
        assert data == b"", f"expected EOF, got {data!r}"

    def close(self) -> None:
        self.sock.close()


class RawServer:
    """A TCP listener whose connections are handed to ``script(sock, request_head)``, in a
    thread each, after the opening handshake (answered 101, unless ``status`` says else)."""

    def __init__(
        self,
        script: Callable[[socket.socket, bytes], None],
        status: int = 101,
        extra_headers: str = "",
    ) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.status = status
        self.extra_headers = extra_headers
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.settimeout(TIMEOUT)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return
                head += data
            if self.status == 101:
                key = ""
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("sec-websocket-key:"):
                        key = line.split(":", 1)[1].strip()
                sock.sendall(
                    (
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n"
                        f"{self.extra_headers}\r\n"
                    ).encode()
                )
            else:
                sock.sendall(
                    f"HTTP/1.1 {self.status} Nope\r\nContent-Length: 0\r\n"
                    f"{self.extra_headers}\r\n".encode()
                )
            self.script(sock, head)
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)
        finally:
            sock.close()

    def join(self) -> None:
        self.thread.join(TIMEOUT * 2)
        self.listener.close()
        assert not self.thread.is_alive(), "the raw server's script did not finish"
        if self.errors:
            raise self.errors[0]

    def uri(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def read_client_frame(sock: socket.socket) -> RawFrame:
    """Read one frame from a client: it must be masked; return it unmasked."""

    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"EOF with {len(data)} of {n} bytes")
            data += chunk
        return data

    b0, b1 = exact(2)
    assert b1 & 0x80, "a client must mask its frames"
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exact(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exact(8))
    mask = exact(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(exact(length)))
    return RawFrame(b0 & 0x0F, payload, bool(b0 & 0x80))
