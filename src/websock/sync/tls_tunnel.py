"""TLS inside TLS for websock.sync: wss:// through an https:// proxy.

The connection to an HTTPS proxy is an :class:`ssl.SSLSocket`; after CONNECT, the server's
TLS must run inside it. :meth:`ssl.SSLContext.wrap_socket` cannot wrap an SSLSocket, so the
inner TLS is an :class:`ssl.SSLObject` over memory BIOs, pumped through the outer socket:
:class:`TLSTunnelSocket` gives it the socket methods websock.sync uses (``recv_into``,
``recv``, ``sendall``, ``settimeout``, ``fileno``, ``pending``, ``getpeername``...).

Threads: websock.sync reads in one thread while others send. OpenSSL objects must not be
used by two threads at once, so every call on the inner SSLObject holds ``_tls_lock``; the
outer socket's blocking reads and writes happen outside it (a reader waiting for data never
blocks a sender). ``_write_lock`` keeps the records of concurrent writers in order: what the
inner TLS produced is written to the proxy before the next writer encrypts.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

__all__ = ["TLSTunnelSocket"]

# Bytes read from the outer TLS connection at a time.
_READ_SIZE = 65536


class TLSTunnelSocket:
    """A TLS connection (to the server) inside another (``outer``, to the proxy)."""

    def __init__(self, outer: ssl.SSLSocket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._outer = outer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._tls_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._eof = False
        # Bytes decrypted by pending() (to tell whether a read would wait), served first.
        self._plain = bytearray()

    # ------------------------------------------------------------------ TLS plumbing

    def do_handshake(self) -> None:
        """The inner TLS handshake (the outer socket's timeout applies to each read)."""
        while True:
            with self._tls_lock:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
            self._flush()
            if done:
                return
            if not self._fill():
                raise ConnectionError("connection closed during the TLS handshake")

    def _flush(self) -> None:
        """Write what the inner TLS produced (records, alerts) to the outer connection."""
        with self._write_lock:
            with self._tls_lock:
                data = self._outgoing.read()
            if data:
                self._outer.sendall(data)

    def _fill(self) -> bool:
        """Read from the outer connection into the inner TLS; False at EOF."""
        data = self._outer.recv(_READ_SIZE)
        with self._tls_lock:
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
                self._eof = True
        return bool(data)

    # ------------------------------------------------------------------ socket API

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        """Read decrypted bytes into ``buffer``; 0 at the end of the stream."""
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        with self._read_lock:  # one reader at a time (websock.sync has one anyway)
            plain = self._plain
            if plain:
                n = min(size, len(plain))
                view[:n] = plain[:n]
                del plain[:n]
                return n
            while True:
                n, wanted = self._decrypt(view[:size])
                if not wanted:
                    return n
                if self._eof or not self._fill():
                    return 0

    def _decrypt(self, view: memoryview) -> tuple[int, bool]:
        """Decrypt into ``view``: (bytes, whether more input is needed first)."""
        with self._tls_lock:
            try:
                # With a buffer, read() returns a count (typeshed says bytes).
                n: int = self._tls.read(len(view), view)  # type: ignore[assignment]
                wanted = False
            except ssl.SSLWantReadError:
                n, wanted = 0, True
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or TCP's end
                n, wanted = 0, False
            pending_out = self._outgoing.pending
        if pending_out:
            self._flush()  # TLS 1.3 post-handshake replies
        return n, wanted

    def recv(self, size: int) -> bytes:
        buffer = bytearray(size)
        n = self.recv_into(buffer)
        return bytes(buffer[:n])

    def sendall(self, data: Any) -> None:
        """Encrypt ``data`` and write it (whole) to the outer connection."""
        with self._write_lock:
            with self._tls_lock:
                self._tls.write(data)
                out = self._outgoing.read()
            self._outer.sendall(out)

    def send(self, data: Any, flags: int = 0) -> int:
        self.sendall(data)
        return len(data)

    def pending(self) -> int:
        """Decrypted bytes that a read returns without waiting for the network.

        Called by the thread whose turn it is to read (websock.sync's read turn), before it
        polls the socket: what the outer TLS already holds is moved in and decrypted here,
        so that a partial record never passes for data (the read would then wait)."""
        if not self._plain:
            outer = self._outer.pending()
            if outer:
                data = self._outer.recv(outer)  # held by the outer TLS: does not wait
                with self._tls_lock:
                    self._incoming.write(data)
            with self._tls_lock:
                ready = self._incoming.pending or self._tls.pending()
            if ready:
                chunk = bytearray(_READ_SIZE)
                n, _ = self._decrypt(memoryview(chunk))
                self._plain += chunk[:n]
        with self._tls_lock:
            return len(self._plain) + self._tls.pending()

    def shutdown_tcp(self, how: int) -> None:
        """End TCP to the proxy (as ``socket.socket.shutdown`` on a plain socket)."""
        socket.socket.shutdown(self._outer, how)

    def close(self) -> None:
        self._outer.close()

    def fileno(self) -> int:
        return self._outer.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self._outer.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._outer.gettimeout()

    def setsockopt(self, *args: Any) -> None:
        self._outer.setsockopt(*args)

    def getpeername(self) -> Any:
        return self._outer.getpeername()

    def getsockname(self) -> Any:
        return self._outer.getsockname()

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The server's certificate (not the proxy's)."""
        return self._tls.getpeercert(binary_form)

    def version(self) -> str | None:
        return self._tls.version()
