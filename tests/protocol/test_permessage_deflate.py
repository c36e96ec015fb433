"""Tests for websock.protocol.extensions.permessage_deflate (RFC 7692)."""

from __future__ import annotations

import random
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from websock.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from websock.protocol.extensions.base import Extension, ExtensionParameter
from websock.protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websock.protocol.frames import Frame, Opcode

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
PING, PONG, CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE

SNCT = ("server_no_context_takeover", None)
CNCT = ("client_no_context_takeover", None)


def smwb(value: str | None) -> ExtensionParameter:
    return ("server_max_window_bits", value)


def cmwb(value: str | None = None) -> ExtensionParameter:
    return ("client_max_window_bits", value)


def make(
    *,
    remote_nct: bool = False,
    local_nct: bool = False,
    remote_bits: int = 15,
    local_bits: int = 15,
    threshold: int = 0,
    level: int = 1,
) -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=remote_nct,
        local_no_context_takeover=local_nct,
        remote_max_window_bits=remote_bits,
        local_max_window_bits=local_bits,
        compression_level=level,
        compress_threshold=threshold,
    )


def settings_of(ext: PerMessageDeflate) -> tuple[bool, bool, int, int]:
    return (
        ext.remote_no_context_takeover,
        ext.local_no_context_takeover,
        ext.remote_max_window_bits,
        ext.local_max_window_bits,
    )


def decode_message(
    ext: PerMessageDeflate, frames: list[Frame], max_size: int | None = None
) -> bytes:
    """Decode frames as the connection does: max_size shrinks as the message grows."""
    out = b""
    for frame in frames:
        remaining = None if max_size is None else max_size - len(out)
        out += ext.decode(frame, max_size=remaining).payload
    return out


def encode_message(
    ext: PerMessageDeflate, data: bytes, opcode: int = BINARY, pieces: int = 1
) -> list[Frame]:
    step = max(1, -(-len(data) // pieces))
    chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    frames = []
    for i, chunk in enumerate(chunks):
        frames.append(ext.encode(Frame(opcode if i == 0 else CONT, chunk, i == len(chunks) - 1)))
    return frames


# Negotiation: server.


class TestServerNegotiation:
    @pytest.mark.parametrize(
        ("factory_kwargs", "offer", "response", "expected"),
        [
            # (remote_nct, local_nct, remote_bits, local_bits) of the server's extension.
            ({}, [], [], (False, False, 15, 15)),
            ({}, [SNCT], [SNCT], (False, True, 15, 15)),
            # The client's hint is not relied on unless the response says it.
            ({}, [CNCT], [], (False, False, 15, 15)),
            ({"client_no_context_takeover": True}, [CNCT], [CNCT], (True, False, 15, 15)),
            ({"client_no_context_takeover": True}, [], [CNCT], (True, False, 15, 15)),
            ({"server_no_context_takeover": True}, [], [SNCT], (False, True, 15, 15)),
            ({}, [smwb("10")], [smwb("10")], (False, False, 15, 10)),
            ({}, [smwb("8")], [smwb("8")], (False, False, 15, 8)),
            ({"server_max_window_bits": 12}, [smwb("10")], [smwb("10")], (False, False, 15, 10)),
            ({"server_max_window_bits": 9}, [smwb("10")], [smwb("9")], (False, False, 15, 9)),
            ({"server_max_window_bits": 12}, [], [smwb("12")], (False, False, 15, 12)),
            ({}, [cmwb()], [], (False, False, 15, 15)),
            ({}, [cmwb("11")], [cmwb("11")], (False, False, 11, 15)),
            ({"client_max_window_bits": 10}, [cmwb()], [cmwb("10")], (False, False, 10, 15)),
            ({"client_max_window_bits": 10}, [cmwb("11")], [cmwb("10")], (False, False, 10, 15)),
            ({"client_max_window_bits": 12}, [cmwb("11")], [cmwb("11")], (False, False, 11, 15)),
            (
                {},
                [CNCT, cmwb(), SNCT, smwb("9")],
                [SNCT, smwb("9")],
                (False, True, 15, 9),
            ),
            (
                {
                    "server_no_context_takeover": True,
                    "client_no_context_takeover": True,
                    "server_max_window_bits": 11,
                    "client_max_window_bits": 12,
                },
                [cmwb("13"), smwb("10")],
                [SNCT, CNCT, smwb("10"), cmwb("12")],
                (True, True, 12, 10),
            ),
        ],
    )
    def test_accept(
        self,
        factory_kwargs: dict[str, object],
        offer: list[ExtensionParameter],
        response: list[ExtensionParameter],
        expected: tuple[bool, bool, int, int],
    ) -> None:
        factory = ServerPerMessageDeflateFactory(**factory_kwargs)  # type: ignore[arg-type]
        result = factory.process_offer(offer, [])
        assert result is not None
        params, ext = result
        assert params == response
        assert settings_of(ext) == expected

    @pytest.mark.parametrize(
        "offer",
        [
            [("unknown", None)],
            [("server_max_window_bit", "10")],
            [SNCT, SNCT],
            [CNCT, CNCT],
            [smwb("10"), smwb("10")],
            [cmwb(), cmwb("10")],
            [("server_no_context_takeover", "1")],
            [("client_no_context_takeover", "")],
            [smwb(None)],
            *(
                [smwb(v)]
                for v in ["7", "16", "08", "+9", " 9", "9 ", "9.0", "", "abc", "0x9", "-9"]
            ),
            *([cmwb(v)] for v in ["7", "16", "010", "+10", "", "1e1", "١٠"]),
        ],
    )
    def test_decline_invalid_offer(self, offer: list[ExtensionParameter]) -> None:
        assert ServerPerMessageDeflateFactory().process_offer(offer, []) is None

    def test_decline_when_client_window_cannot_be_limited(self) -> None:
        factory = ServerPerMessageDeflateFactory(client_max_window_bits=10)
        assert factory.process_offer([], []) is None
        assert factory.process_offer([CNCT, smwb("12")], []) is None

    def test_decline_when_already_accepted(self) -> None:
        factory = ServerPerMessageDeflateFactory()
        accepted = factory.process_offer([], [])
        assert accepted is not None
        assert factory.process_offer([], [accepted[1]]) is None

    def test_first_offer_invalid_second_accepted(self) -> None:
        factory = ServerPerMessageDeflateFactory()
        offers: list[list[ExtensionParameter]] = [[smwb("16")], [SNCT, SNCT], [cmwb("10")], []]
        accepted: list[Extension] = []
        responses = []
        for offer in offers:
            result = factory.process_offer(offer, accepted)
            if result is not None:
                responses.append(result[0])
                accepted.append(result[1])
        # The two invalid offers are declined; the third is accepted and the fourth then
        # declined, permessage-deflate being accepted already.
        assert responses == [[cmwb("10")]]
        assert len(accepted) == 1

    @pytest.mark.parametrize(
        "offer",
        [
            # Offers the Autobahn 12.x/13.x fuzzing client sends (kosoku's defaults).
            [CNCT, cmwb()],
            [CNCT, cmwb(), SNCT],
            [CNCT, cmwb(), smwb("9")],
            [CNCT, cmwb(), smwb("15")],
            [CNCT, cmwb(), SNCT, smwb("9")],
            [CNCT, cmwb(), SNCT, smwb("15")],
        ],
    )
    def test_autobahn_offers(self, offer: list[ExtensionParameter]) -> None:
        result = ServerPerMessageDeflateFactory().process_offer(offer, [])
        assert result is not None
        params, ext = result
        assert (SNCT in offer) == (SNCT in params) == ext.local_no_context_takeover
        for name, value in offer:
            if name == "server_max_window_bits":
                assert smwb(value) in params
                assert value is not None and ext.local_max_window_bits == int(value)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"server_max_window_bits": 7},
            {"server_max_window_bits": 16},
            {"client_max_window_bits": True},
            {"compression_level": 10},
            {"mem_level": 0},
            {"compress_threshold": -1},
        ],
    )
    def test_invalid_configuration(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            ServerPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]


# Negotiation: client.


class TestClientNegotiation:
    @pytest.mark.parametrize(
        ("kwargs", "offer"),
        [
            ({}, [cmwb()]),
            ({"client_max_window_bits": None}, []),
            ({"client_max_window_bits": False}, []),
            ({"client_max_window_bits": 10}, [cmwb("10")]),
            ({"client_no_context_takeover": True}, [CNCT, cmwb()]),
            (
                {
                    "server_no_context_takeover": True,
                    "client_no_context_takeover": True,
                    "server_max_window_bits": 12,
                    "client_max_window_bits": 11,
                },
                [SNCT, CNCT, smwb("12"), cmwb("11")],
            ),
        ],
    )
    def test_offer(self, kwargs: dict[str, object], offer: list[ExtensionParameter]) -> None:
        # These cases spell out client_no_context_takeover; the default is tested below.
        kwargs = {"client_no_context_takeover": False, **kwargs}
        assert ClientPerMessageDeflateFactory(**kwargs).offer() == offer  # type: ignore[arg-type]

    def test_default_offer(self) -> None:
        # Like autobahn-python: lets Autobahn 13.2/13.5/13.6 request no context takeover.
        assert ClientPerMessageDeflateFactory().offer() == [CNCT, cmwb()]

    @pytest.mark.parametrize(
        ("kwargs", "response", "expected"),
        [
            # (remote_nct, local_nct, remote_bits, local_bits) of the client's extension.
            ({}, [], (False, False, 15, 15)),
            ({}, [SNCT], (True, False, 15, 15)),
            ({"server_no_context_takeover": True}, [SNCT], (True, False, 15, 15)),
            ({}, [CNCT], (False, True, 15, 15)),
            # Offering client_no_context_takeover binds us even if the server is silent.
            ({"client_no_context_takeover": True}, [], (False, True, 15, 15)),
            ({}, [smwb("12")], (False, False, 12, 15)),
            ({"server_max_window_bits": 10}, [smwb("10")], (False, False, 10, 15)),
            ({"server_max_window_bits": 10}, [smwb("8")], (False, False, 8, 15)),
            ({}, [cmwb("9")], (False, False, 15, 9)),
            ({"client_max_window_bits": 10}, [], (False, False, 15, 10)),
            ({"client_max_window_bits": 10}, [cmwb("9")], (False, False, 15, 9)),
            # The server may ignore our value; we still stick to it.
            ({"client_max_window_bits": 10}, [cmwb("12")], (False, False, 15, 10)),
            ({}, [SNCT, CNCT, smwb("9"), cmwb("9")], (True, True, 9, 9)),
        ],
    )
    def test_accept_response(
        self,
        kwargs: dict[str, object],
        response: list[ExtensionParameter],
        expected: tuple[bool, bool, int, int],
    ) -> None:
        kwargs = {"client_no_context_takeover": False, **kwargs}
        factory = ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
        assert settings_of(factory.process_response(response, [])) == expected

    @pytest.mark.parametrize(
        ("kwargs", "response", "message"),
        [
            ({}, [("unknown", None)], "unknown"),
            ({}, [SNCT, SNCT], "duplicate"),
            ({}, [smwb("10"), smwb("11")], "duplicate"),
            ({}, [("server_no_context_takeover", "x")], "takes no value"),
            ({}, [("client_no_context_takeover", "1")], "takes no value"),
            ({}, [smwb(None)], "needs a value"),
            ({}, [cmwb(None)], "needs a value"),
            ({}, [smwb("16")], "invalid"),
            ({}, [smwb("07")], "invalid"),
            ({}, [cmwb("7")], "invalid"),
            ({"server_no_context_takeover": True}, [], "server_no_context_takeover"),
            ({"server_max_window_bits": 10}, [], "server_max_window_bits=10"),
            ({"server_max_window_bits": 10}, [smwb("11")], "exceeds"),
            ({"client_max_window_bits": None}, [cmwb("10")], "did not offer"),
            ({"client_max_window_bits": False}, [cmwb("10")], "did not offer"),
        ],
    )
    def test_reject_response(
        self, kwargs: dict[str, object], response: list[ExtensionParameter], message: str
    ) -> None:
        factory = ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(NegotiationError, match=message):
            factory.process_response(response, [])

    def test_reject_second_acceptance(self) -> None:
        factory = ClientPerMessageDeflateFactory()
        first = factory.process_response([], [])
        with pytest.raises(NegotiationError, match="twice"):
            factory.process_response([], [first])

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"server_max_window_bits": 7},
            {"client_max_window_bits": 16},
            {"client_max_window_bits": "10"},
            {"compression_level": -2},
            {"mem_level": 10},
            {"compress_threshold": -5},
        ],
    )
    def test_invalid_configuration(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]


def negotiate(
    client: ClientPerMessageDeflateFactory, server: ServerPerMessageDeflateFactory
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    result = server.process_offer(client.offer(), [])
    assert result is not None
    response, server_ext = result
    return client.process_response(response, []), server_ext


CLIENT_CONFIGS = [
    {},
    {"client_no_context_takeover": True},
    {"server_no_context_takeover": True},
    {"server_max_window_bits": 9, "client_max_window_bits": 8},
    {"client_max_window_bits": 10, "server_max_window_bits": 8},
    {"client_max_window_bits": None},
]
SERVER_CONFIGS = [
    {},
    {"client_no_context_takeover": True, "server_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 9},
]


@pytest.mark.parametrize("client_kwargs", CLIENT_CONFIGS)
@pytest.mark.parametrize("server_kwargs", SERVER_CONFIGS)
def test_negotiated_pair_agrees(
    client_kwargs: dict[str, object], server_kwargs: dict[str, object]
) -> None:
    server = ServerPerMessageDeflateFactory(compress_threshold=0, **server_kwargs)  # type: ignore[arg-type]
    client = ClientPerMessageDeflateFactory(compress_threshold=0, **client_kwargs)  # type: ignore[arg-type]
    result = server.process_offer(client.offer(), [])
    if result is None:
        assert "client_max_window_bits" in server_kwargs and client_kwargs.get(
            "client_max_window_bits", True
        ) in (None, False)
        return
    client_ext = client.process_response(result[0], [])
    server_ext = result[1]
    # Each side's decompressor can read what the other side's compressor writes.
    assert client_ext.local_max_window_bits <= server_ext.remote_max_window_bits
    assert server_ext.local_max_window_bits <= client_ext.remote_max_window_bits
    assert server_ext.local_no_context_takeover or not client_ext.remote_no_context_takeover
    assert client_ext.local_no_context_takeover or not server_ext.remote_no_context_takeover
    messages = [b"Hello, world! " * n for n in (0, 1, 5, 50, 500)] + [bytes(range(256)) * 40]
    for sender, receiver in ((client_ext, server_ext), (server_ext, client_ext)):
        for pieces in (1, 3):
            for data in messages:
                assert decode_message(receiver, encode_message(sender, data, pieces=pieces)) == data


# RFC 7692 section 7.2.3 examples, byte for byte.


class TestRFCExamples:
    def test_hello(self) -> None:  # 7.2.3.1
        frame = make().encode(Frame(TEXT, b"Hello"))
        assert frame == Frame(TEXT, bytes.fromhex("f248cdc9c90700"), True, True)
        assert make().decode(frame, max_size=None) == Frame(TEXT, b"Hello")

    def test_hello_fragmented(self) -> None:  # 7.2.3.1, second example
        ext = make()
        frames = [
            Frame(TEXT, bytes.fromhex("f248cd"), False, True),
            Frame(CONT, bytes.fromhex("c9c90700"), True, False),
        ]
        assert decode_message(ext, frames) == b"Hello"

    def test_sharing_window(self) -> None:  # 7.2.3.2
        sender, receiver = make(), make()
        first = sender.encode(Frame(TEXT, b"Hello"))
        second = sender.encode(Frame(TEXT, b"Hello"))
        assert first.payload == bytes.fromhex("f248cdc9c90700")
        assert second.payload == bytes.fromhex("f200110000")
        assert receiver.decode(first, max_size=None).payload == b"Hello"
        assert receiver.decode(second, max_size=None).payload == b"Hello"

    def test_no_context_takeover_sender(self) -> None:
        sender = make(local_nct=True)
        for _ in range(3):
            assert sender.encode(Frame(TEXT, b"Hello")).payload == bytes.fromhex("f248cdc9c90700")

    def test_no_context_takeover_receiver(self) -> None:
        # Without context takeover the receiver forgets the window: a back reference into
        # the previous message is corrupt data.
        receiver = make(remote_nct=True)
        assert (
            receiver.decode(
                Frame(TEXT, bytes.fromhex("f248cdc9c90700"), True, True), max_size=None
            ).payload
            == b"Hello"
        )
        with pytest.raises(ProtocolError) as exc_info:
            receiver.decode(Frame(TEXT, bytes.fromhex("f200110000"), True, True), max_size=None)
        assert exc_info.value.close_code == 1007

    def test_no_compression_block(self) -> None:  # 7.2.3.3
        frame = Frame(TEXT, bytes.fromhex("000500faff48656c6c6f00"), True, True)
        assert make().decode(frame, max_size=None).payload == b"Hello"

    @pytest.mark.parametrize("payload", ["f348cdc9c9070000", "f348cdc9c90700"])
    def test_bfinal(self, payload: str) -> None:  # 7.2.3.4
        receiver = make()
        for _ in range(2):  # the next message starts a new deflate stream
            frame = Frame(TEXT, bytes.fromhex(payload), True, True)
            assert receiver.decode(frame, max_size=None).payload == b"Hello"

    def test_bfinal_fragmented(self) -> None:
        receiver = make()
        frames = [
            Frame(TEXT, bytes.fromhex("f348cdc9c90700"), False, True),
            Frame(CONT, b"\x00", False),
            Frame(CONT, b"", True),
        ]
        assert decode_message(receiver, frames) == b"Hello"

    @pytest.mark.parametrize(
        "frames",
        [
            [Frame(TEXT, bytes.fromhex("f348cdc9c9070001"), True, True)],
            [Frame(TEXT, bytes.fromhex("f348cdc9c90700") + b"junk", True, True)],
            [
                Frame(TEXT, bytes.fromhex("f348cdc9c90700"), False, True),
                Frame(CONT, b"more data", True),
            ],
        ],
    )
    def test_data_after_bfinal(self, frames: list[Frame]) -> None:
        with pytest.raises(ProtocolError) as exc_info:
            decode_message(make(), frames)
        assert exc_info.value.close_code == 1007

    def test_two_blocks(self) -> None:  # 7.2.3.5
        frame = Frame(TEXT, bytes.fromhex("f24805000000ffffcac9c90700"), True, True)
        assert make().decode(frame, max_size=None).payload == b"Hello"

    def test_empty_message(self) -> None:  # 7.2.3.6
        sender = make()
        frame = sender.encode(Frame(BINARY, b""))
        assert frame == Frame(BINARY, b"\x00", True, True)
        assert make().decode(frame, max_size=None) == Frame(BINARY, b"")

    def test_empty_final_fragment(self) -> None:  # 7.2.3.6
        sender, receiver = make(), make()
        first = sender.encode(Frame(TEXT, b"Hello", False))
        last = sender.encode(Frame(CONT, b"", True))
        assert first.rsv1 and not last.rsv1
        assert first.payload.endswith(b"\x00\x00\xff\xff")  # kept: mid-message
        assert last.payload == b"\x00"
        assert decode_message(receiver, [first, last]) == b"Hello"

    def test_empty_fragments_in_a_row(self) -> None:
        sender, receiver = make(), make()
        frames = [
            sender.encode(Frame(TEXT, b"", False)),
            sender.encode(Frame(CONT, b"", False)),
            sender.encode(Frame(CONT, b"", True)),
        ]
        assert frames[-1].payload == b"\x00"
        assert decode_message(receiver, frames) == b""
        # The streams stay in step for the next message.
        assert decode_message(receiver, encode_message(sender, b"next")) == b"next"


# Round trips.


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(
        st.one_of(st.binary(max_size=3000), st.text(max_size=500).map(str.encode)),
        max_size=12,
    ),
    local_nct=st.booleans(),
    bits=st.integers(8, 15),
    pieces=st.integers(1, 4),
    level=st.sampled_from([0, 1, 6, 9]),
)
def test_round_trip(
    messages: list[bytes], local_nct: bool, bits: int, pieces: int, level: int
) -> None:
    sender = make(local_nct=local_nct, local_bits=bits, level=level)
    receiver = make(remote_nct=local_nct, remote_bits=bits)
    for data in messages:
        frames = encode_message(sender, data, pieces=pieces)
        assert frames[0].rsv1 and not any(f.rsv1 for f in frames[1:])
        assert decode_message(receiver, frames, max_size=len(data)) == data


@pytest.mark.parametrize("local_nct", [False, True])
def test_many_messages_both_roles(local_nct: bool) -> None:
    client, server = negotiate(
        ClientPerMessageDeflateFactory(client_no_context_takeover=local_nct, compress_threshold=0),
        ServerPerMessageDeflateFactory(server_no_context_takeover=local_nct, compress_threshold=0),
    )
    sizes = []
    for i in range(300):
        data = b'{"id": %d, "user": "user%d", "ok": true}' % (i, i % 7)
        for sender, receiver in ((client, server), (server, client)):
            frames = encode_message(sender, data, opcode=TEXT)
            sizes.append(len(frames[0].payload))
            assert decode_message(receiver, frames) == data
    # Context takeover shrinks repeated structure far more.
    assert (sum(sizes) / len(sizes) < 20) is not local_nct


def test_control_frames_between_fragments() -> None:
    sender, receiver = make(), make()
    data = b"fragmented payload " * 100
    frames = encode_message(sender, data, opcode=TEXT, pieces=3)
    controls = [Frame(PING, b"ping"), Frame(PONG, b""), Frame(CLOSE, b"\x03\xe8")]
    for control in controls:
        assert sender.encode(control) is control
    out = b""
    for frame, control in zip(frames, controls, strict=True):
        out += receiver.decode(frame, max_size=None).payload
        assert receiver.decode(control, max_size=None) is control
    assert out == data


def test_rsv2_rsv3_preserved() -> None:
    sender, receiver = make(), make()
    frame = sender.encode(Frame(BINARY, b"data", True, False, True, True))
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (True, True, True)
    assert receiver.decode(frame, max_size=None) == Frame(BINARY, b"data", True, False, True, True)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_rsv1_on_control_frame(opcode: Opcode) -> None:
    with pytest.raises(ProtocolError, match="control frame") as exc_info:
        make().decode(Frame(opcode, b"", True, True), max_size=None)
    assert exc_info.value.close_code == 1002


@pytest.mark.parametrize("first_rsv1", [False, True])
def test_rsv1_on_continuation_frame(first_rsv1: bool) -> None:
    ext = make()
    first = Frame(TEXT, bytes.fromhex("f248cd") if first_rsv1 else b"He", False, first_rsv1)
    ext.decode(first, max_size=None)
    with pytest.raises(ProtocolError, match="continuation") as exc_info:
        ext.decode(Frame(CONT, b"\x00", True, True), max_size=None)
    assert exc_info.value.close_code == 1002


def test_uncompressed_message_passes_through() -> None:
    ext = make()
    frames = [Frame(TEXT, b"plain ", False), Frame(CONT, b"text", True)]
    for frame in frames:
        assert ext.decode(frame, max_size=None) is frame
    # A compressed message after it still works.
    assert (
        ext.decode(Frame(TEXT, bytes.fromhex("f248cdc9c90700"), True, True), max_size=5).payload
        == b"Hello"
    )


def test_per_message_opt_out() -> None:
    """The connection sends a message raw by not calling encode() for it."""
    sender, receiver = make(), make()
    messages = [b"compressed " * 10, b"sent raw " * 10, b"compressed " * 10]
    wire = encode_message(sender, messages[0], pieces=2)
    wire += [Frame(BINARY, messages[1][:20], False), Frame(CONT, messages[1][20:], True)]
    wire += encode_message(sender, messages[2], pieces=2)
    received = []
    out = b""
    for frame in wire:
        out += receiver.decode(frame, max_size=None).payload
        if frame.fin:
            received.append(out)
            out = b""
    assert received == messages


@pytest.mark.parametrize(
    ("data", "compressed"),
    [(b"", False), (b"x" * 31, False), (b"x" * 32, True), (b"x" * 1000, True)],
)
def test_threshold(data: bytes, compressed: bool) -> None:
    ext = make(threshold=32)
    frame = Frame(TEXT, data)
    out = ext.encode(frame)
    assert (out is not frame) is compressed is out.rsv1
    assert make().decode(out, max_size=None).payload == data


def test_threshold_fragmented_message_always_compressed() -> None:
    sender, receiver = make(threshold=32), make()
    frames = [sender.encode(Frame(TEXT, b"ab", False)), sender.encode(Frame(CONT, b"c", True))]
    assert frames[0].rsv1
    assert decode_message(receiver, frames) == b"abc"
    # A short message after a compressed one goes raw, and its state does not leak.
    short = Frame(TEXT, b"short")
    assert sender.encode(short) is short


def test_threshold_uncompressed_continuations() -> None:
    sender = make(threshold=32)
    sender.encode(Frame(TEXT, b"short"))
    cont = Frame(CONT, b"stray")
    assert sender.encode(cont) is cont  # no message being compressed


def test_default_threshold() -> None:
    ext = PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )
    assert ext.compress_threshold == 0
    assert ext.compression_level == 1
    assert ext.mem_level == 8
    # Every message is compressed by default, even a 1-byte one.
    assert ext.encode(Frame(TEXT, b"x")).rsv1
    assert "remote_max_window_bits=15" in repr(ext)


@pytest.mark.parametrize("invalid", [7, 16, True, "15"])
def test_invalid_window_bits(invalid: object) -> None:
    with pytest.raises(ValueError, match="from 8 to 15"):
        make(local_bits=invalid)  # type: ignore[arg-type]


# Window bits 8.


def test_window_bits_8_compressor_fits_256_byte_window() -> None:
    # zlib cannot compress with an 8-bit raw window; we use 9, whose distances stay
    # within 250 bytes, so a strict 8-bit inflater reads everything.
    sender = make(local_bits=8, level=9)
    pattern = bytes(range(200)) + bytes(range(250, 0, -1))  # repeats at distance 450
    data = b"".join(pattern[i:] + pattern[:i] for i in range(0, 450, 37)) * 3
    data += b"abcdefgh" * 40 + bytes(range(256)) * 4  # repeats at distance 8 and 256
    for _ in range(3):
        frame = sender.encode(Frame(BINARY, data))
        inflater = zlib.decompressobj(-8)
        assert inflater.decompress(frame.payload + b"\x00\x00\xff\xff") == data


def test_window_bits_8_decompressor() -> None:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -9)
    data = b"0123456789" * 100
    payload = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    receiver = make(remote_bits=8)
    assert receiver.decode(Frame(BINARY, payload[:-4], True, True), max_size=None).payload == data


# Corrupt data and size limits.


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x07garbage", b"\x02\x00\x00\x00"])
def test_corrupt_data(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid compressed data") as exc_info:
        make().decode(Frame(BINARY, payload, True, True), max_size=None)
    assert exc_info.value.close_code == 1007


def test_peer_exceeds_window() -> None:
    # The peer promised a 9-bit window, then refers 1000 bytes back into the previous
    # message. (Within one message zlib reads back into its output buffer and does not
    # notice; across messages only the window is left.)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = random.Random(0).randbytes(1000)
    receiver = make(remote_bits=9)
    first = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert receiver.decode(Frame(BINARY, first[:-4], True, True), max_size=None).payload == data
    second = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert len(second) < 100  # one back reference
    with pytest.raises(ProtocolError) as exc_info:
        receiver.decode(Frame(BINARY, second[:-4], True, True), max_size=None)
    assert exc_info.value.close_code == 1007


def bomb(chunks: int) -> bytes:
    """A raw deflate stream of ``chunks`` MiB of zeros, about 1 KiB per MiB."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor has forgotten everything: the same input gives
    # the same bytes, so the stream is ``chunk`` repeated.
    assert deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH) == chunk
    return chunk * chunks


def test_bomb_stream_is_what_it_claims() -> None:
    data = bomb(4)
    assert len(data) < 5000
    assert make().decode(Frame(BINARY, data[:-4], True, True), max_size=None).payload == bytes(
        4 << 20
    )


def test_bomb_small_frame() -> None:
    payload = bomb(1)[:-4]  # ~1 KiB that inflates to 1 MiB
    assert len(payload) < 1100
    with pytest.raises(PayloadTooBig, match="65536") as exc_info:
        make().decode(Frame(BINARY, payload, True, True), max_size=65536)
    assert exc_info.value.close_code == 1009


def test_bomb_one_gibibyte() -> None:
    payload = bomb(1024)[:-4]  # ~1 MiB that inflates to 1 GiB
    assert len(payload) < 1100 << 10
    frame = Frame(BINARY, payload, True, True)
    ext = make()
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(PayloadTooBig):
            ext.decode(frame, max_size=1 << 20)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    # Nothing near 1 GiB: the payload copied with its tail and zlib's copy of the
    # unconsumed input (~1 MiB each), the output in blocks then joined (2 x max_size),
    # and zlib's state.
    assert peak < 5 << 20


class RecordingDecompressor:
    """Wraps a zlib decompressor and records how much each call produced."""

    def __init__(self) -> None:
        self._inner = zlib.decompressobj(-15)
        self.produced: list[int] = []

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._inner.decompress(data, max_length)
        self.produced.append(len(out))
        return out

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.mark.parametrize("limit", [0, 1, 1000, 65535, 1 << 20])
def test_output_never_exceeds_max_size_plus_one(limit: int) -> None:
    ext = make()
    recorder = RecordingDecompressor()
    ext._decoder = recorder  # type: ignore[assignment]
    with pytest.raises(PayloadTooBig):
        ext.decode(Frame(BINARY, bomb(2)[:-4], True, True), max_size=limit)
    assert recorder.produced == [limit + 1]
    assert ext._decoder is None  # dropped, with the input zlib had not consumed


@pytest.mark.parametrize("limit", [1000, 4999, 5000])
def test_max_size_across_fragments(limit: int) -> None:
    sender = make()
    data = bytes(5000)
    frames = encode_message(sender, data, pieces=5)
    if limit < len(data):
        with pytest.raises(PayloadTooBig):
            decode_message(make(), frames, max_size=limit)
    else:
        assert decode_message(make(), frames, max_size=limit) == data


def test_max_size_exact_with_held_back_output() -> None:
    # Frame boundaries inside a long match: the limit must count everything zlib could
    # already produce from the frames so far, whatever it keeps pending.
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = b"a" * 100_000
    stream = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    stream = stream[:-4]
    for cut in range(1, len(stream)):
        frames = [Frame(BINARY, stream[:cut], False, True), Frame(CONT, stream[cut:], True)]
        assert decode_message(make(), frames, max_size=len(data)) == data
        with pytest.raises(PayloadTooBig):
            decode_message(make(), frames, max_size=len(data) - 1)


# Layering.


def test_no_io_imports() -> None:
    # The sans-I/O core imports no I/O, not even indirectly through its own modules.
    import ast

    import websock.protocol.extensions.permessage_deflate as module

    assert module.__file__ is not None
    with open(module.__file__, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "collections", "zlib"}
