"""Write the seed corpora under fuzzing/corpus/ (run from anywhere; deterministic).

    .venv/bin/python fuzzing/make_corpus.py

The files are committed; rerun this after changing an input layout. Frames are built here
from RFC 6455 directly (not with websock's serializer), compressed messages with zlib raw
deflate and their trailing 00 00 ff ff removed (RFC 7692 section 7.2.1).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
MASK = b"\x37\xfa\x21\x3d"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key, also fuzz_http_response's
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ACCEPT = base64.b64encode(hashlib.sha1((KEY + GUID).encode()).digest()).decode()


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame; ``length`` overrides the announced payload length (truncated frames)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not masked:
        return head + payload
    body = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))
    return head + MASK + body


def deflate(messages: list[bytes], wbits: int = 15, finish: bool = False) -> list[bytes]:
    """Compress messages with context takeover, each without its 00 00 ff ff tail."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -max(wbits, 9))
    out = []
    for message in messages:
        if finish:
            data = comp.compress(message) + comp.flush(zlib.Z_FINISH)
            comp = zlib.compressobj(6, zlib.DEFLATED, -max(wbits, 9))
            out.append(data)
        else:
            data = comp.compress(message) + comp.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(b"\x00\x00\xff\xff")
            out.append(data[:-4])
    return out


def write(name: str, files: dict[str, bytes]) -> None:
    folder = CORPUS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for fname, content in files.items():
        (folder / fname).write_bytes(content)
    print(f"{name}: {len(files)} files, {sum(map(len, files.values()))} bytes")


# ---------------------------------------------------------------------- connection


def connection_streams(masked: bool, compressed: bool, wbits: int) -> dict[str, bytes]:
    """Peer byte streams; the compressed ones assume permessage-deflate with ``wbits``."""

    def f(*args: object, **kwargs: object) -> bytes:
        return frame(*args, masked=masked, **kwargs)  # type: ignore[arg-type]

    close_1000 = f(8, struct.pack("!H", 1000) + b"bye")
    s: dict[str, bytes] = {
        "text": f(1, b"Hello, world"),
        "binary": f(2, bytes(range(40))),
        "empty_text": f(1, b""),
        "utf8_text": f(1, "h\u00e9llo \u20ac \U0001f600".encode()),
        "fragmented": f(1, b"Hel", fin=False)
        + f(9, b"ping!")
        + f(0, b"lo", fin=False)
        + f(0, b"", fin=False)
        + f(0, b" world"),
        "fragmented_utf8_split": f(1, "\u20ac".encode()[:2], fin=False)
        + f(0, "\u20ac".encode()[2:]),
        "ping_pong": f(9, b"") + f(9, b"x" * 125) + f(10, b"pong"),
        "close_1000": close_1000,
        "close_empty": f(8, b""),
        "close_4000_reason": f(8, struct.pack("!H", 4000) + "r\u00e9ason".encode()),
        "close_one_byte": f(8, b"\x03"),
        "close_1005": f(8, struct.pack("!H", 1005)),
        "close_bad_utf8": f(8, struct.pack("!H", 1000) + b"\xff\xfe"),
        "len126": f(2, bytes(200)),
        "len127_truncated": f(2, bytes(300), length=70000),
        "len126_text_truncated": f(1, b"a" * 100, length=1000),
        "bad_utf8": f(1, b"abc\xed\xa0\x80def"),
        "bad_utf8_fragment": f(1, b"ok", fin=False) + f(0, b"\xc3"),
        "rsv2": f(1, b"x", rsv=0x20),
        "opcode_3": f(3, b"x"),
        "control_fragmented": f(9, b"x", fin=False),
        "control_too_long": f(9, bytes(126)),
        "cont_without_message": f(0, b"x"),
        "data_inside_fragmented": f(1, b"a", fin=False) + f(2, b"b"),
        "msb_length": struct.pack("!BBQ", 0x82, 0xFF if masked else 0x7F, 1 << 63) + MASK,
        "message_then_close_then_more": f(1, b"first")
        + close_1000
        + f(1, b"late")
        + f(9, b"late ping"),
        "violation_then_close": f(1, b"\xff") + f(2, b"x" * 10) + close_1000,
        "wrong_masking": frame(1, b"hi", masked=not masked),
        "many_small": b"".join(f(2, bytes([i])) for i in range(60)),
        "mixed": f(1, b"a" * 130)
        + f(9, b"p")
        + f(2, b"b", fin=False)
        + f(10, b"")
        + f(0, b"c")
        + close_1000,
    }
    if compressed:
        one, two, three = deflate([b"Hello, hello, hello!", b"Hello again", b'{"k": 1}'], wbits)
        whole = deflate([b"fragmented compressed message " * 4], wbits)[0]
        bomb = deflate([bytes(150_000)], wbits)[0]
        final = deflate([b"ends with BFINAL"], wbits, finish=True)[0]
        s.update(
            {
                "z_text": f(1, one, rsv=0x40),
                "z_context_takeover": f(1, one, rsv=0x40)
                + f(2, two, rsv=0x40)
                + f(1, three, rsv=0x40),
                "z_fragmented": f(1, whole[:5], rsv=0x40, fin=False)
                + f(9, b"p")
                + f(0, whole[5:20], fin=False)
                + f(0, whole[20:]),
                "z_uncompressed_between": f(1, one, rsv=0x40)
                + f(1, b"plain")
                + f(2, two, rsv=0x40),
                "z_bomb": f(2, bomb, rsv=0x40),
                "z_bfinal": f(1, final, rsv=0x40) + f(1, final + b"\x00", rsv=0x40),
                "z_empty": f(1, b"\x00", rsv=0x40) + f(1, b"", rsv=0x40),
                "z_rsv1_on_cont": f(1, one[:3], rsv=0x40, fin=False) + f(0, one[3:], rsv=0x40),
                "z_rsv1_on_ping": f(9, b"x", rsv=0x40),
                "z_corrupt": f(1, b"\xff\xff\xff\xff", rsv=0x40),
                "z_trailing_garbage": f(1, final + b"garbage", rsv=0x40),
                "z_bad_utf8": f(1, deflate([b"ok \xff"], wbits)[0], rsv=0x40),
            }
        )
    return s


def connection_corpus() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    # (name, c1, c2, window bits the peer compresses with)
    deflate_configs = [
        # client offers client_max_window_bits; server answers plainly: 15 bits, takeover.
        ("z15", 1 << 2, 0, 15),
        # no context takeover both ways, server window 9, client window 8.
        ("z9", 3 | (1 << 2) | (9 << 4), 3 | (9 << 2) | (1 << 6), 9),
    ]
    for role, masked in ((0, True), (1, False)):
        rname = "server" if role == 0 else "client"
        for name, stream in connection_streams(masked, False, 15).items():
            for seed in (0, 1):
                c0 = role | (0x80 if seed else 0)
                c4 = 0xC6 if seed else 0  # queue of 2 messages / 1 byte, close, pause
                files[f"{rname}_{name}_{seed}"] = bytes([c0, 0, 0, seed, c4]) + stream
        for zname, c1, c2, wbits in deflate_configs:
            # The client's window bits: what a server peer's messages use (remote for us as
            # client is the server's window: 15, or 9 in z9); as server we inflate the
            # client's window (15, or 8 in z9).
            peer_bits = wbits if role == 1 else (15 if zname == "z15" else 8)
            for name, stream in connection_streams(masked, True, peer_bits).items():
                if not name.startswith("z_") and name not in ("text", "fragmented", "mixed"):
                    continue
                for seed, limit in ((0, 0), (2, 6)):
                    c0 = role | 2 | (limit << 2) | 0x80
                    c4 = 0x1F if seed else 0  # queue of 16 / 1 MiB, max_fragments 1
                    head = bytes([c0, c1, c2, seed, c4])
                    files[f"{rname}_{zname}_{name}_{seed}"] = head + stream
    # Limits: max_message_size 1 (index 2), 125 (3), max_frame_size 125 (index 2).
    for role, masked in ((0, True), (1, False)):
        s = connection_streams(masked, False, 15)
        files[f"limit_msg_{role}"] = bytes([role | (3 << 2) | 0x80, 0, 0, 3, 0]) + s["len126"]
        files[f"limit_frame_{role}"] = bytes([role | (2 << 5), 0, 0, 0, 0]) + s["mixed"]
        files[f"limit_one_{role}"] = bytes([role | (2 << 2), 0, 0, 1, 0]) + s["fragmented"]
        files[f"limit_fragments_{role}"] = bytes([role, 0, 0, 1, 0x20]) + s["fragmented"]
        files[f"queue_{role}"] = bytes([role | 0x80, 0, 0, 1, 0x85]) + s["many_small"]
    return files


# ---------------------------------------------------------------------- inflate


def inflate_frame(opcode_choice: int, payload: bytes, *, fin: bool = True, rsv1: bool) -> bytes:
    """A frame in fuzz_inflate's layout: flags, length (1 or 3 bytes), payload."""
    flags = opcode_choice | (4 if fin else 0) | (8 if rsv1 else 0)
    n = len(payload)
    length = bytes([n]) if n < 255 else b"\xff" + struct.pack("!H", n)
    return bytes([flags]) + length + payload


def inflate_corpus() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for wbits in (15, 9, 8):
        a, b, c = deflate([b"Hello, hello, hello!", b"Hello again, hello", b"x" * 300], wbits)
        fresh = deflate([b"fresh stream " * 10], wbits)[0]
        final = deflate([b"BFINAL"], wbits, finish=True)[0]
        bomb = deflate([bytes(200_000)], wbits)[0]
        cfg = wbits - 8
        streams = {
            "one": inflate_frame(1, a, rsv1=True),
            "takeover": inflate_frame(1, a, rsv1=True)
            + inflate_frame(2, b, rsv1=True)
            + inflate_frame(1, c, rsv1=True),
            "fragments": inflate_frame(1, fresh[:3], fin=False, rsv1=True)
            + inflate_frame(3, b"ping", rsv1=False)
            + inflate_frame(0, fresh[3:10], fin=False, rsv1=False)
            + inflate_frame(0, fresh[10:], rsv1=False),
            "plain_between": inflate_frame(1, a, rsv1=True)
            + inflate_frame(2, b"raw", rsv1=False)
            + inflate_frame(1, b, rsv1=True),
            "bfinal": inflate_frame(1, final, rsv1=True) + inflate_frame(1, final, rsv1=True),
            "bfinal_00": inflate_frame(2, final + b"\x00", rsv1=True),
            "bomb": inflate_frame(2, bomb, rsv1=True),
            "corrupt": inflate_frame(2, b"\xff" * 8, rsv1=True),
            "rsv1_cont": inflate_frame(1, a[:2], fin=False, rsv1=True)
            + inflate_frame(0, a[2:], rsv1=True),
            "rsv1_control": inflate_frame(3, b"x", rsv1=True),
            "empty": inflate_frame(1, b"", rsv1=True) + inflate_frame(1, b"\x00", rsv1=True),
        }
        for name, stream in streams.items():
            for limit in (0, 3, 4):  # max_size None, 1, 10
                files[f"w{wbits}_{name}_{limit}"] = bytes([cfg | (limit << 4)]) + stream
            files[f"w{wbits}_{name}_nct"] = bytes([cfg | 8 | (5 << 4)]) + stream
    return files


# ---------------------------------------------------------------------- HTTP

REQUEST = (
    "GET /chat?x=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
)


def request_corpus() -> dict[str, bytes]:
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    heads = {
        "minimal": REQUEST + "\r\n",
        "full": REQUEST
        + "Origin: https://example.com\r\n"
        + "Sec-WebSocket-Protocol: chat, superchat\r\n"
        + ext
        + "User-Agent: fuzz\r\n\r\n",
        "deflate_params": REQUEST
        + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
        + 'client_no_context_takeover; server_max_window_bits=10; client_max_window_bits="9",'
        + " permessage-deflate, x-webkit-deflate-frame\r\n\r\n",
        "deflate_bad": REQUEST
        + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=07\r\n\r\n",
        "frames_after": REQUEST + "\r\n" + "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
        "post": REQUEST.replace("GET", "POST") + "\r\n",
        "http10": REQUEST.replace("HTTP/1.1", "HTTP/1.0") + "\r\n",
        "bad_version": REQUEST.replace("HTTP/1.1", "HTTP/x") + "\r\n",
        "absolute_target": REQUEST.replace("/chat?x=1", "http://example.com/") + "\r\n",
        "no_upgrade": REQUEST.replace("Upgrade: websocket\r\n", "") + "\r\n",
        "upgrade_list": REQUEST.replace("Upgrade: websocket", "Upgrade: h2c, WebSocket/13")
        + "\r\n",
        "connection_list": REQUEST.replace("Connection: Upgrade", "Connection: keep-alive, upgrade")
        + "\r\n",
        "version_8": REQUEST.replace("Version: 13", "Version: 8") + "\r\n",
        "bad_key": REQUEST.replace(KEY, "not base64!") + "\r\n",
        "short_key": REQUEST.replace(KEY, "AAAA") + "\r\n",
        "two_keys": REQUEST + f"Sec-WebSocket-Key: {KEY}\r\n\r\n",
        "bare_lf": REQUEST.replace("\r\nHost", "\nHost") + "\r\n",
        "bare_cr": REQUEST.replace("Host: example.com", "Host: exa\rmple.com") + "\r\n",
        "folding": REQUEST + " folded\r\n\r\n",
        "no_colon": REQUEST + "NoColon\r\n\r\n",
        "bad_name": REQUEST + "Bad Name: x\r\n\r\n",
        "ctl_value": REQUEST + "X: a\x01b\r\n\r\n",
        "obs_text": REQUEST + "X: caf\xe9\r\n\r\n",
        "empty_host": REQUEST.replace("example.com", "") + "\r\n",
        "empty": "\r\n\r\n",
        "quoted_ext": REQUEST
        + 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits="1\\0"\r\n\r\n',
    }
    files = {}
    for name, head in heads.items():
        raw = head.encode("latin-1")
        files[name] = bytes([0, 0x2B, 0]) + raw  # defaults; server: no takeover, 10 bits
        files[f"{name}_chunked"] = bytes([0x10, 0x01, 3]) + raw  # origins checked, 1-16 B reads
    files["limit_size"] = bytes([2, 0, 0]) + heads["full"].encode()  # max_size 256
    files["origin_required"] = bytes([0x20, 0, 0]) + heads["minimal"].encode()
    files["origin_required_ok"] = bytes([0x20, 0, 1]) + heads["full"].encode()
    files["limit_headers"] = bytes([2 << 2, 0, 1]) + heads["full"].encode()  # max_headers 2
    return files


RESPONSE = (
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    f"Sec-WebSocket-Accept: {ACCEPT}\r\n"
)


def response_corpus() -> dict[str, bytes]:
    heads = {
        "minimal": RESPONSE + "\r\n",
        "subprotocol": RESPONSE + "Sec-WebSocket-Protocol: chat\r\n\r\n",
        "subprotocol_unknown": RESPONSE + "Sec-WebSocket-Protocol: other\r\n\r\n",
        "subprotocol_two": RESPONSE + "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
        "deflate": RESPONSE + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        "deflate_params": RESPONSE
        + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
        + "client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8\r\n\r\n",
        "deflate_twice": RESPONSE
        + "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n\r\n",
        "unknown_ext": RESPONSE + "Sec-WebSocket-Extensions: x-foo\r\n\r\n",
        "deflate_value_on_flag": RESPONSE
        + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover=1\r\n\r\n",
        "deflate_bits_without_value": RESPONSE
        + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        "deflate_bits_over_offer": RESPONSE
        + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n\r\n",
        "status_403_c1_reason": "HTTP/1.1 403 Forbidden \x9b31m\r\n\r\n",
        "frames_after": RESPONSE + "\r\n" + "\x81\x05Hello",
        "wrong_accept": RESPONSE.replace(ACCEPT, "AAAA") + "\r\n",
        "no_upgrade": RESPONSE.replace("Upgrade: websocket\r\n", "") + "\r\n",
        "status_200": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        "status_403_no_reason": "HTTP/1.1 403\r\n\r\n",
        "status_bad": "HTTP/1.1 1x1 Switching\r\n\r\n",
        "status_999": "HTTP/1.1 999 Nope\r\n\r\n",
        "http10": RESPONSE.replace("HTTP/1.1", "HTTP/1.0") + "\r\n",
        "bare_lf": RESPONSE.replace("\r\nUpgrade", "\nUpgrade") + "\r\n",
        "reason_ctl": "HTTP/1.1 101 Swi\x01tching\r\n\r\n",
    }
    files = {}
    for name, head in heads.items():
        raw = head.encode("latin-1")
        files[name] = bytes([0, 0x04, 0]) + raw  # client offers client_max_window_bits
        files[f"{name}_chunked"] = bytes([0, 0x00, 1]) + raw
    files["limit_size"] = bytes([2, 4, 0]) + heads["deflate_params"].encode()
    # The client offers server_max_window_bits=10 (c1 bits 4-7) and client_max_window_bits.
    files["offer_bits_10"] = bytes([0, 0xA4, 0]) + heads["deflate_bits_over_offer"].encode()
    return files


def close_corpus() -> dict[str, bytes]:
    return {
        "empty": b"",
        "one_byte": b"\x03",
        "1000": struct.pack("!H", 1000),
        "1000_reason": struct.pack("!H", 1000) + b"bye",
        "1005": struct.pack("!H", 1005),
        "1004": struct.pack("!H", 1004),
        "2999": struct.pack("!H", 2999),
        "3000": struct.pack("!H", 3000),
        "4999_utf8": struct.pack("!H", 4999) + "\u00e9\u20ac\U0001f600".encode(),
        "5000": struct.pack("!H", 5000),
        "bad_utf8": struct.pack("!H", 1001) + b"\xed\xa0\x80",
        "long_reason": struct.pack("!H", 1000) + b"r" * 123,
        "too_long_reason": struct.pack("!H", 1000) + b"r" * 124,
    }


def masking_corpus() -> dict[str, bytes]:
    return {
        "empty": MASK,
        "short": MASK + b"\x01abc",
        "long": MASK + b"\x02" + bytes(range(256)) * 4,
        "offset3": MASK + b"\x03" + b"x" * 33,
    }


if __name__ == "__main__":
    write("connection", connection_corpus())
    write("inflate", inflate_corpus())
    write("http_request", request_corpus())
    write("http_response", response_corpus())
    write("close", close_corpus())
    write("masking", masking_corpus())
