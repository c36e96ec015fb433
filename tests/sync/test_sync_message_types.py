"""websock.sync: send(text=...), recv(decode=...) and latency, as in the asyncio layer."""

from __future__ import annotations

import pytest
from syncpeer import TIMEOUT, RawClient, running_server

from websock.protocol.frames import Opcode
from websock.sync import ServerConnection, connect


def test_send_text_flag_picks_the_frame_type() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send(b'{"a": 1}', text=True)
        ws.send("caf\xe9", text=False)
        ws.send([b"frag", "ment"], text=True)
        ws.recv(timeout=TIMEOUT)

    with running_server(handler) as server:
        peer = RawClient(server.port)
        frames = [peer.read_frame() for _ in range(4)]
        assert [(f.opcode, f.payload) for f in frames] == [
            (Opcode.TEXT, b'{"a": 1}'),
            (Opcode.BINARY, "caf\xe9".encode()),
            (Opcode.TEXT, b"frag"),
            (Opcode.CONT, b"ment"),
        ]
        peer.close()


def test_recv_decode_and_latency() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send("text \xe9")
        ws.send(b"binary \xc3\xa9")
        ws.send(b"\xff")
        for message in ws:
            ws.send(message)

    with (
        running_server(handler) as server,
        connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws,
    ):
        assert ws.recv(timeout=TIMEOUT, decode=False) == "text \xe9".encode()
        assert ws.recv(timeout=TIMEOUT, decode=True) == "binary \xe9"
        with pytest.raises(UnicodeDecodeError):
            ws.recv(timeout=TIMEOUT, decode=True)
        assert ws.latency == 0.0
        rtt = ws.ping(timeout=TIMEOUT)
        assert ws.latency == rtt > 0
