"""SharedFrames: one message's frames built once and valid for every connection that
shares them (checked by a real receiving core, with and without permessage-deflate)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock.protocol.broadcast import SharedFrames
from websock.protocol.connection import Connection, Role
from websock.protocol.extensions.permessage_deflate import PerMessageDeflate


def deflate(
    *, no_context_takeover: bool, bits: int = 15, level: int = 1, threshold: int = 0
) -> PerMessageDeflate:
    """A server-side extension: ``no_context_takeover`` is the server's (local) one."""
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=no_context_takeover,
        remote_max_window_bits=15,
        local_max_window_bits=bits,
        compression_level=level,
        compress_threshold=threshold,
    )


def client_for(server_ext: PerMessageDeflate | None) -> Connection:
    """The receiving end (a client) with the mirror of the server's negotiation."""
    if server_ext is None:
        return Connection(Role.CLIENT)
    mirror = PerMessageDeflate(
        remote_no_context_takeover=server_ext.local_no_context_takeover,
        local_no_context_takeover=False,
        remote_max_window_bits=server_ext.local_max_window_bits,
        local_max_window_bits=15,
    )
    return Connection(Role.CLIENT, extensions=[mirror])


def received(server_ext: PerMessageDeflate | None, data: bytes) -> list[object]:
    client = client_for(server_ext)
    client.receive_data(data)
    return list(client.events_received())


def test_plain_frame_is_one_object_for_every_connection() -> None:
    frames = SharedFrames("hello")
    a = Connection(Role.SERVER)
    b = Connection(Role.SERVER, extensions=[deflate(no_context_takeover=False)])
    frame = frames.frame_for(a)
    assert frame == b"\x81\x05hello"
    assert frames.frame_for(b) is frame  # context takeover: shares the uncompressed frame
    assert frames.compressions == 0


def test_compressed_once_per_setting() -> None:
    message = "shared " * 1000
    frames = SharedFrames(message)
    same = [
        Connection(Role.SERVER, extensions=[deflate(no_context_takeover=True)]) for _ in range(5)
    ]
    other = Connection(Role.SERVER, extensions=[deflate(no_context_takeover=True, bits=10)])
    first = frames.frame_for(same[0])
    assert first is not None and first[0] == 0xC1  # FIN, RSV1, text
    assert len(first) < len(message) // 10
    assert all(frames.frame_for(c) is first for c in same)
    second = frames.frame_for(other)
    assert second is not None and second is not first
    assert frames.compressions == 2
    for ext, frame in ((same[0].extensions[0], first), (other.extensions[0], second)):
        assert received(ext, frame) == [message]  # type: ignore[arg-type]


def test_compress_false_and_threshold_send_uncompressed() -> None:
    ext = deflate(no_context_takeover=True, threshold=100)
    server = Connection(Role.SERVER, extensions=[ext])
    assert SharedFrames("short").frame_for(server) == b"\x81\x05short"
    assert SharedFrames("x" * 200, compress=False).frame_for(server)[0] == 0x81  # type: ignore[index]
    big = SharedFrames("x" * 200)
    assert big.frame_for(server)[0] == 0xC1  # type: ignore[index]


def test_clients_cannot_share_frames() -> None:
    assert SharedFrames(b"data").frame_for(Connection(Role.CLIENT)) is None


def test_binary_and_text_override() -> None:
    server = Connection(Role.SERVER)
    assert SharedFrames(b"\x00\x01").frame_for(server) == b"\x82\x02\x00\x01"
    assert SharedFrames(b'{"a":1}', text=True).frame_for(server) == b'\x81\x07{"a":1}'
    assert SharedFrames("caf\xe9", text=False).frame_for(server) == b"\x82\x05caf\xc3\xa9"
    with pytest.raises(TypeError, match="cannot broadcast dict"):
        SharedFrames({"a": 1})  # type: ignore[arg-type]


def test_shared_message_leaves_a_context_takeover_stream_intact() -> None:
    """A connection keeping its compression context gets the uncompressed shared frame
    between its own compressed messages: the peer decodes all of them."""
    ext = deflate(no_context_takeover=False)
    server = Connection(Role.SERVER, extensions=[ext])
    client = client_for(ext)
    server.send_text("own message one " * 50)
    before = b"".join(server.data_to_send())
    shared = SharedFrames("own message one " * 50 + "shared").frame_for(server)
    assert shared is not None and shared[0] == 0x81  # uncompressed
    server.send_text("own message one " * 50 + "after")
    after = b"".join(server.data_to_send())
    assert before[0] == after[0] == 0xC1  # the connection's own messages are compressed
    client.receive_data(before + shared + after)
    assert client.events_received() == [
        "own message one " * 50,
        "own message one " * 50 + "shared",
        "own message one " * 50 + "after",
    ]


@given(st.binary(max_size=3000), st.sampled_from([9, 12, 15]), st.integers(0, 9))
def test_any_payload_round_trips_compressed(payload: bytes, bits: int, level: int) -> None:
    ext = deflate(no_context_takeover=True, bits=bits, level=level)
    frame = SharedFrames(payload).frame_for(Connection(Role.SERVER, extensions=[ext]))
    assert frame is not None
    assert received(ext, frame) == [payload]
