"""Raw threaded TCP echo server: a thread per connection, recv() then sendall(). The
floor for any threading WebSocket server (the "sync" row): no framing, and no second
thread per connection, so no hand-off between threads per message."""

import argparse
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402


def echo(sock: socket.socket) -> None:
    with sock:
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass  # reset by the generator: the connection is over either way


def main(args: argparse.Namespace) -> None:
    listener = socket.create_server((args.host, args.port), backlog=128)
    context = bc.server_ssl(args)
    bc.ready(args.port)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            # The TLS handshake in the connection's thread, not in the accepting one.
            def serve_tls(raw: socket.socket = sock) -> None:
                try:
                    tls = context.wrap_socket(raw, server_side=True)
                except OSError:
                    raw.close()
                    return
                echo(tls)

            threading.Thread(target=serve_tls, daemon=True).start()
        else:
            threading.Thread(target=echo, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    bc.server_main(__doc__ or "", main)
