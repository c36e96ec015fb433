"""Fuzz the permessage-deflate inflater on its own: PerMessageDeflate.decode.

The input is one configuration byte followed by frames:

    c0 bits 0-2  remote_max_window_bits = 8 + value
       bit 3     remote_no_context_takeover
       bits 4-6  message size limit, from MAX_SIZES (None: no limit)
    frame        flags, length, payload
       flags bits 0-1  opcode: CONT, TEXT, BINARY, or a control opcode (bits 6-7: CLOSE,
                       PING, PONG, PING)
             bit 2     FIN
             bits 3-5  RSV1, RSV2, RSV3
       length          one byte, or 0xff and two bytes big-endian

Frames are decoded one after the other, as the connection does, with ``max_size`` the
bytes the current message may still grow by (limit minus what it produced so far). The
first exception ends the input, as it ends a connection.

Invariants checked:

I1  decode raises nothing but ProtocolError: close code 1002 for RSV1 on a control or
    continuation frame, 1007 for corrupt data, PayloadTooBig (1009) past ``max_size``.
I2  A returned frame keeps the opcode, FIN, RSV2 and RSV3, and clears RSV1. A frame that
    is not part of a compressed message (control frame, uncompressed message) comes back
    with the same payload.
I3  A returned payload is at most ``max_size`` bytes; a message never exceeds the limit.
I4  Differential: when every frame of a compressed message decoded, the concatenated
    output equals what zlib gives for the whole message at once (payloads joined, 00 00 ff
    ff appended), from a fresh stream or the previous message's context as the extension
    keeps it.
I5  Memory: after each call zlib holds no unconsumed input and at most 5 bytes of unused
    data; the tracemalloc peak (sampled) stays below PEAK_BASE + 4 x (limit, or what the
    input can inflate to) + 16 x the input length.
"""

from __future__ import annotations

import sys
import zlib

from _common import MemoryCheck, atheris, run

with atheris.instrument_imports(include=["websock"]):
    from websock.exceptions import PayloadTooBig, ProtocolError
    from websock.protocol.extensions.permessage_deflate import PerMessageDeflate
    from websock.protocol.frames import Frame

MAX_SIZES = (None, 0, 5, 1, 10, 1000, 65536, 1 << 20)
CONTROL = (8, 9, 10, 9)
TAIL = b"\x00\x00\xff\xff"
PEAK_BASE = 1024 * 1024
INFLATE_RATIO = 1100


def frames_of(data: bytes) -> list[Frame]:
    out = []
    pos = 1
    end = len(data)
    while pos + 2 <= end:
        flags = data[pos]
        n = data[pos + 1]
        pos += 2
        if n == 0xFF:
            if pos + 2 > end:
                break
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        payload = data[pos : pos + n]
        pos += n
        choice = flags & 3
        opcode = CONTROL[flags >> 6] if choice == 3 else choice
        rsv1, rsv2, rsv3 = bool(flags & 8), bool(flags & 16), bool(flags & 32)
        out.append(Frame(opcode, payload, bool(flags & 4), rsv1, rsv2, rsv3))
    return out


def test_one_input(data: bytes) -> None:
    if not data:
        return
    c0 = data[0]
    wbits = 8 + (c0 & 7)
    limit = MAX_SIZES[(c0 >> 4) & 7]
    ext = PerMessageDeflate(
        remote_no_context_takeover=bool(c0 & 8),
        local_no_context_takeover=False,
        remote_max_window_bits=wbits,
        local_max_window_bits=15,
    )
    memory.start(data)
    ref: zlib._Decompress | None = None  # the reference decompressor, mirroring ext's
    in_message = False  # inside a compressed message (after its first frame)
    open_message = False  # inside any fragmented data message
    framing_ok = True  # the frames so far are a sequence the connection would pass on
    message_size = 0
    message_in: list[bytes] = []
    message_out: list[bytes] = []
    for frame in frames_of(data):
        opcode = frame.opcode
        if opcode < 8:
            # A new message inside one, or a continuation outside one: the connection
            # fails before the extension sees it. Still decoded (I1-I3, I5), not compared.
            if (opcode == 0) != open_message:
                framing_ok = False
            open_message = not frame.fin
        compressed_part = opcode < 8 and (frame.rsv1 if opcode else in_message)
        if opcode in (1, 2):
            message_size = 0
            if frame.rsv1:
                if ext._decoder is None:
                    ref = zlib.decompressobj(-wbits)
                message_in, message_out = [], []
        remaining = None if limit is None else limit - message_size
        try:
            result = ext.decode(frame, max_size=remaining)
        except PayloadTooBig as exc:
            assert compressed_part and remaining is not None, f"{exc} outside a message"
            assert exc.close_code == 1009
            break
        except ProtocolError as exc:
            if frame.rsv1 and (opcode >= 8 or opcode == 0):
                assert exc.close_code == 1002, exc
            else:
                assert exc.close_code == 1007, exc
                assert compressed_part, f"{exc} on a frame outside a compressed message"
            break
        assert type(result) is Frame and type(result.payload) is bytes
        assert result.opcode == opcode and result.fin == frame.fin
        assert not result.rsv1, "RSV1 left set"
        assert (result.rsv2, result.rsv3) == (frame.rsv2, frame.rsv3)
        decoder = ext._decoder
        if decoder is not None:
            assert not decoder.unconsumed_tail, f"zlib holds {len(decoder.unconsumed_tail)} B"
            assert len(decoder.unused_data) <= 5, f"unused_data {decoder.unused_data!r}"
        if not compressed_part:
            assert result.payload == frame.payload, "payload changed outside compression"
            if opcode < 8:
                in_message = False
            continue
        if remaining is not None:
            assert len(result.payload) <= remaining, f"{len(result.payload)} > {remaining}"
        message_size += len(result.payload)
        message_in.append(frame.payload)
        message_out.append(result.payload)
        in_message = not frame.fin
        if frame.fin and framing_ok:
            assert ref is not None
            try:
                expected = ref.decompress(b"".join(message_in) + TAIL)
            except zlib.error as exc:
                raise AssertionError(f"decoded a message zlib rejects: {exc}") from None
            got = b"".join(message_out)
            assert got == expected, f"inflated {len(got)} bytes, zlib {len(expected)}"
            if ref.eof or ext.remote_no_context_takeover:
                assert ext._decoder is None, "stream ended but decoder kept"
            else:
                assert ext._decoder is not None, "context dropped with takeover"
    largest = len(data) * INFLATE_RATIO
    if limit is not None:
        largest = min(largest, limit)
    memory.check(PEAK_BASE + 4 * largest + 16 * len(data), "inflate")
    memory.stop()


memory = MemoryCheck()

if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    run(test_one_input)
