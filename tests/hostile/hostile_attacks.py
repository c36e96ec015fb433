"""The attacks, each a coroutine returning an :class:`AttackResult` for one implementation.

The tests (test_hostile_*.py) assert on the results; scripts/attack_table.py runs the same
coroutines against websock and websockets and tabulates them. Every attack starts its own
server process (see hostile_harness.Session), so memory and stderr are its own.

Sizes and durations are keyword arguments with the defaults the tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import ssl
import time
from typing import Any

from hostile_harness import (
    IMPL,
    MIB,
    THREADED,
    AttackResult,
    ClientProcess,
    CliServerProcess,
    Deflater,
    HostileServer,
    PeerReset,
    RawConn,
    RssMonitor,
    Session,
    close_payload,
    frame,
    negotiated_wbits,
    raise_nofile,
    random_mask,
    upgrade_request,
    wait_until,
)

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@functools.lru_cache(maxsize=16)
def zeros_compressed(size: int, wbits: int) -> bytes:
    """``size`` zero bytes as one permessage-deflate message (fresh context)."""
    return Deflater(wbits, takeover=False).compress_zeros(size)


async def _close_and_end(
    raw: RawConn, result: AttackResult, timeout: float = 5.0, *, reply: bool = True
) -> None:
    """Read until the server's Close, answer it, then read until TCP ends.

    Records close_code, ending ('fin', 'rst', 'timeout') and, in details, the seconds from
    our reading the Close to the end of TCP.
    """
    start = time.monotonic()
    try:
        close, _ = await raw.read_close(timeout, answer_pings=True)
    except PeerReset:
        result.ending = "rst"
        result.outcome = "RST, no Close"
        return
    except asyncio.TimeoutError:
        result.ending = "open"
        result.outcome = f"no Close within {timeout:g} s"
        return
    if close is None:
        result.ending = "fin"
        result.outcome = "FIN without Close"
        return
    got_close = time.monotonic()
    result.close_code = close.code
    result.details["close_after_s"] = round(got_close - start, 3)
    if reply and not raw.eof:
        await raw.send(frame(CLOSE, close.payload[:2], mask=random_mask()), timeout=1)
    result.ending = await raw.read_to_end(timeout)
    fin_delay = time.monotonic() - got_close
    result.details["end_after_close_s"] = round(fin_delay, 3)
    end = {"fin": "FIN", "rst": "RST", "timeout": "no FIN"}[result.ending]
    result.outcome = f"Close {close.code}, {end} after {fin_delay:.2f} s"


# --------------------------------------------------------------------------- 1, 2: floods


#: A flood lasts up to this long, and ends early once the target is over the memory bound
#: (it has failed) or has stopped reading from the flooding peer for STALL seconds (it can
#: no longer be made to buffer more).
FLOOD_SECONDS = 10.0
FLOOD_BOUND_MIB = 64.0
STALL = 2.0


def _flood_outcome(result: AttackResult, raw: RawConn, sent: int, who: str) -> None:
    result.details["sent_mib"] = round(sent / MIB, 1)
    result.details["flood_end"] = raw.flood_end
    result.ending = "closed" if raw.peer_gone() else "open"
    how = {
        "stalled": f"then {who} stopped reading",
        "stop": "then over the memory bound",
        "deadline": "until the end",
        "closed": "then the connection was closed",
    }[raw.flood_end]
    result.outcome = f"{who} read {sent / MIB:.0f} MiB, {how}; connection {result.ending}"


async def _flood_server(
    attack: str, impl: str, chunk: bytes, duration: float, bound: float
) -> AttackResult:
    async with Session(attack, impl) as s:
        raw = await s.connect_raw(rcvbuf=4096)
        await raw.handshake()
        s.start_probes()
        sent = await raw.flood(
            chunk, duration, stall=STALL, stop=lambda: s.monitor.current_growth() > bound
        )
        result = await s.finish()
        _flood_outcome(result, raw, sent, "the server")
    return result


async def ping_flood_server(
    impl: str = IMPL, duration: float = FLOOD_SECONDS, bound: float = FLOOD_BOUND_MIB
) -> AttackResult:
    """Pings as fast as the server reads them, from a peer that never reads its Pongs."""
    chunk = b"".join(frame(PING, os.urandom(125), mask=random_mask()) for _ in range(512))
    return await _flood_server("ping flood, peer never reads", impl, chunk, duration, bound)


async def data_flood_server(
    impl: str = IMPL, duration: float = FLOOD_SECONDS, bound: float = FLOOD_BOUND_MIB
) -> AttackResult:
    """16 KiB messages as fast as the server reads them; their echoes are never read."""
    chunk = b"".join(frame(BINARY, os.urandom(16384), mask=random_mask()) for _ in range(64))
    return await _flood_server("data flood, peer never reads", impl, chunk, duration, bound)


async def ping_batch_then_read(
    impl: str = IMPL, pings: int = 300_000, timeout: float = 15.0
) -> AttackResult:
    """A peer that writes ``pings`` Pings (39 MB for 300,000) and a message before it reads
    anything, as a client writing a batch does: the server must keep reading while the
    peer does not read its Pongs (one Pong may answer many Pings), or both wait for each
    other; then it echoes the message. Records ``write_s`` and ``echo_s`` in details."""
    async with Session(f"{pings:,} Pings and a message, then read", impl) as s:
        result = s.result
        raw = await s.connect_raw(rcvbuf=4096)
        await raw.handshake()
        mask = random_mask()
        batch = frame(PING, b"p" * 125, mask=mask) * pings + frame(TEXT, b"end of batch", mask=mask)
        s.start_probes()
        start = time.monotonic()
        wrote = await raw.send(batch, timeout=timeout)
        write_s = time.monotonic() - start
        echo_s = None
        if wrote:
            deadline = time.monotonic() + timeout
            with contextlib.suppress(PeerReset, asyncio.TimeoutError):
                while True:
                    f = await raw.read_frame(max(0.0, deadline - time.monotonic()))
                    if f is None or f.opcode == CLOSE:
                        result.close_code = None if f is None else f.code
                        break
                    if f.opcode == TEXT:
                        echo_s = time.monotonic() - start
                        break
        result.details["write_s"] = round(write_s, 2) if wrote else None
        result.details["echo_s"] = None if echo_s is None else round(echo_s, 2)
        await s.finish()
        if not wrote:
            result.outcome = (
                f"the peer could not write its batch within {timeout:g} s: "
                "the server stopped reading"
            )
        elif echo_s is None:
            result.outcome = f"batch written in {write_s:.1f} s; no echo"
            if result.close_code is not None:
                result.outcome += f" (Close {result.close_code})"
        else:
            result.outcome = f"batch written in {write_s:.1f} s; echoed after {echo_s:.1f} s"
    return result


async def _client_role(
    attack: str, impl: str, mode: str, chunk: bytes, duration: float, bound: float
) -> AttackResult:
    result = AttackResult(attack, impl)
    server = HostileServer()
    client: ClientProcess | None = None
    try:
        accepting = asyncio.ensure_future(server.accept(rcvbuf=4096))
        client = await asyncio.to_thread(
            ClientProcess, impl, f"ws://127.0.0.1:{server.port}/", mode
        )
        raw = await asyncio.wait_for(accepting, 10)
        monitor = RssMonitor(client.pid)
        sent = await raw.flood(
            chunk, duration, stall=STALL, stop=lambda: monitor.current_growth() > bound
        )
        alive = client.alive()
        monitor.stop()
        result.rss_growth_mib = round(monitor.growth, 1)
        _flood_outcome(result, raw, sent, "the client")
        if not alive:
            result.outcome += "; client exited"
    finally:
        server.close()
        if client is not None:
            await asyncio.to_thread(client.stop, signal.SIGTERM, 5.0)
            result.problems = client.problems()
            if result.problems:
                result.details["stderr"] = client.stderr_text()[-4000:]
            client.cleanup()
    return result


async def ping_flood_client(
    impl: str = IMPL, duration: float = FLOOD_SECONDS, bound: float = FLOOD_BOUND_MIB
) -> AttackResult:
    """A hostile server floods the client with Pings and never reads the Pongs."""
    chunk = b"".join(frame(PING, os.urandom(125), mask=None) for _ in range(512))
    return await _client_role("ping flood (client role)", impl, "recv", chunk, duration, bound)


async def data_flood_client(
    impl: str = IMPL, duration: float = FLOOD_SECONDS, bound: float = FLOOD_BOUND_MIB
) -> AttackResult:
    """A hostile server floods an echoing client with messages and never reads the echoes."""
    chunk = b"".join(frame(BINARY, os.urandom(16384), mask=None) for _ in range(64))
    return await _client_role("data flood (client role)", impl, "echo", chunk, duration, bound)


# --------------------------------------------------------------------------- 3, 4: deflate


async def _deflate_conn(s: Session) -> tuple[RawConn, int | None]:
    raw = await s.connect_raw(rcvbuf=65536)
    headers = await raw.handshake(extensions=DEFLATE_OFFER)
    return raw, negotiated_wbits(headers)


async def compressed_batch(
    impl: str = IMPL,
    connections: int = 1,
    messages: int = 300,
    size: int = 1_000_000,
    observe: float = 4.0,
) -> AttackResult:
    """``messages`` compressed messages, each inflating to ``size`` bytes, in one write."""
    name = f"{messages} x {size // 1000} kB deflated messages in one write"
    if connections > 1:
        name += f", {connections} connections"
    async with Session(name, impl) as s:
        conns = [await _deflate_conn(s) for _ in range(connections)]
        result = s.result
        if any(wbits is None for _, wbits in conns):
            result.outcome = "permessage-deflate not negotiated"
            await s.finish()
            return result
        batches = []
        for _, wbits in conns:
            assert wbits is not None
            payload = zeros_compressed(size, wbits)
            batches.append(
                b"".join(
                    frame(BINARY, payload, rsv1=True, mask=random_mask()) for _ in range(messages)
                )
            )
        s.start_probes()
        start = time.monotonic()
        sends = [
            raw.send(batch, timeout=observe) for (raw, _), batch in zip(conns, batches, strict=True)
        ]
        await asyncio.gather(*sends)
        left = observe - (time.monotonic() - start)
        if left > 0:
            await asyncio.sleep(left)  # the attack runs while memory is sampled
        await s.finish()
        closed = sum(raw.peer_gone() for raw, _ in conns)
        result.details["batch_kib"] = round(len(batches[0]) / 1024)
        result.ending = "closed" if closed else "open"
        result.outcome = f"{closed}/{connections} connections closed by the server"
    return result


async def deflate_bomb(impl: str = IMPL, variant: str = "frame") -> AttackResult:
    """A message inflating far beyond max_message_size (1 MiB): expect Close 1009.

    ``frame``: 64 MiB of zeros in one frame; ``fragments``: the same in 64 frames;
    ``takeover``: a 600 kB message, then one of 4 MiB compressed against the shared window.
    """
    async with Session(f"deflate bomb ({variant})", impl) as s:
        raw, wbits = await _deflate_conn(s)
        result = s.result
        if wbits is None:
            result.outcome = "permessage-deflate not negotiated"
            await s.finish()
            return result
        s.start_probes()
        if variant == "frame":
            payload = zeros_compressed(64 * MIB, wbits)
            await raw.send(frame(BINARY, payload, rsv1=True, mask=random_mask()), timeout=5)
        elif variant == "fragments":
            payload = zeros_compressed(64 * MIB, wbits)
            step = len(payload) // 64 + 1
            pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
            data = b"".join(
                frame(
                    BINARY if i == 0 else CONT,
                    piece,
                    fin=i == len(pieces) - 1,
                    rsv1=i == 0,
                    mask=random_mask(),
                )
                for i, piece in enumerate(pieces)
            )
            await raw.send(data, timeout=5)
        elif variant == "takeover":
            deflater = Deflater(wbits, takeover=True)
            first = deflater.compress_zeros(600_000)
            await raw.send(frame(BINARY, first, rsv1=True, mask=random_mask()))
            echo = await raw.read_frame(5)
            result.details["first_message"] = (
                "echoed" if echo is not None and echo.opcode == BINARY else repr(echo)
            )
            second = deflater.compress_zeros(4 * MIB)
            result.details["second_wire_bytes"] = len(second)
            await raw.send(frame(BINARY, second, rsv1=True, mask=random_mask()), timeout=5)
        else:
            raise ValueError(variant)
        await _close_and_end(raw, result)
        await s.finish()
    return result


# --------------------------------------------------------------------------- 5: fragments


async def many_fragments(impl: str = IMPL, count: int = 1_000_000) -> AttackResult:
    """One binary message in ``count`` one-byte fragments: bounded memory; 1009 past
    ``max_fragments`` (262,144 by default) where the server has that bound."""
    async with Session(f"{count:,} one-byte fragments", impl) as s:
        result = s.result
        result.details["max_fragments"] = (
            "supported" if s.server.max_fragments_supported else "unsupported"
        )
        raw = await s.connect_raw()
        await raw.handshake()
        mask = random_mask()
        byte = bytes([0x61 ^ mask[0]])
        first = bytes([BINARY, 0x81]) + mask + byte
        middle = bytes([CONT, 0x81]) + mask + byte
        last = bytes([0x80 | CONT, 0x81]) + mask + byte
        s.start_probes()
        start = time.monotonic()

        async def write() -> None:
            if not await raw.send(first):
                return
            left = count - 2
            block = middle * 100_000
            while left > 0:
                n = min(left, 100_000)
                if not await raw.send(block if n == 100_000 else middle * n, timeout=30):
                    return
                left -= n
            await raw.send(last)

        writer = asyncio.ensure_future(write())
        try:
            frame_in = await raw.read_frame(60)
        except (PeerReset, asyncio.TimeoutError) as exc:
            frame_in = None
            result.outcome = f"no answer ({type(exc).__name__})"
        result.details["answer_after_s"] = round(time.monotonic() - start, 2)
        if frame_in is not None and frame_in.opcode == CLOSE:
            result.close_code = frame_in.code
            # Put the Close back in the buffer for _close_and_end to read it.
            raw.buf[:0] = frame(CLOSE, frame_in.payload, mask=None)
            writer.cancel()
            await _close_and_end(raw, result)
        elif frame_in is not None:
            result.outcome = f"message accepted: echo of {len(frame_in.payload):,} bytes"
            result.ending = "open"
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await s.finish()
    return result


# --------------------------------------------------------------------------- 6: slowloris


async def _drip(raw: RawConn, data: bytes, interval: float, limit: float) -> None:
    """Send ``data`` one byte per ``interval`` for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    for i in range(len(data)):
        if time.monotonic() >= deadline or raw.eof:
            return
        if not await raw.send(data[i : i + 1], timeout=1):
            return
        await asyncio.sleep(interval)


def client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello record)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


async def slowloris(
    impl: str = IMPL, variant: str = "partial-head", open_timeout: float = 2.0
) -> AttackResult:
    """A connection that never completes its opening: the server must drop it after
    open_timeout. Variants: ``partial-head`` (a byte per 100 ms), ``silent`` (TCP only),
    ``tls-silent`` and ``tls-partial-hello`` (a wss server; nothing, or half a ClientHello).
    """
    tls = variant.startswith("tls")
    async with Session(f"slowloris ({variant})", impl, tls=tls, open_timeout=open_timeout) as s:
        result = s.result
        raw = await s.connect_raw()
        s.start_probes()
        start = time.monotonic()
        limit = open_timeout + 8
        drip = None
        if variant == "partial-head":
            request, _ = upgrade_request()
            drip = asyncio.ensure_future(_drip(raw, request[:-4], 0.1, limit))
        elif variant == "tls-partial-hello":
            hello = client_hello()
            await raw.send(hello[: len(hello) // 2])
        result.ending = await raw.read_to_end(limit)
        elapsed = time.monotonic() - start
        if drip is not None:
            drip.cancel()
            await asyncio.gather(drip, return_exceptions=True)
        result.details["closed_after_s"] = round(elapsed, 2)
        result.details["open_timeout"] = open_timeout
        if result.ending == "timeout":
            result.outcome = f"still open after {elapsed:.1f} s"
        else:
            result.outcome = f"{result.ending.upper()} after {elapsed:.2f} s"
        raw.close()
        freed = await wait_until(lambda: s.server.sockets() <= s.base_sockets, 3.0)
        result.details["socket_freed"] = freed is not None
        await s.finish()
    return result


async def slowloris_mass(
    impl: str = IMPL, connections: int = 500, open_timeout: float = 2.0
) -> AttackResult:
    """``connections`` slow peers at once (half silent, half sending a byte per 100 ms):
    the good client is still served, every one is dropped after open_timeout, and the
    server's sockets and memory return to their baseline."""
    raise_nofile(connections + 1024)
    async with Session(
        f"slowloris x {connections} (silent + partial heads)", impl, open_timeout=open_timeout
    ) as s:
        result = s.result
        request, _ = upgrade_request()
        raws = await asyncio.gather(*(RawConn.open(s.server.port) for _ in range(connections)))
        s.raw.extend(raws)
        s.start_probes()
        start = time.monotonic()
        limit = open_timeout + 8
        drips = [
            asyncio.ensure_future(_drip(raw, request[:-4], 0.1, limit))
            for raw in raws[: connections // 2]
        ]
        endings = await asyncio.gather(*(raw.read_to_end(limit) for raw in raws))
        elapsed = time.monotonic() - start
        for drip in drips:
            drip.cancel()
        await asyncio.gather(*drips, return_exceptions=True)
        for raw in raws:
            raw.close()
        freed = await wait_until(lambda: s.server.sockets() <= s.base_sockets, 3.0)
        await s.finish()
        result.rss_after_mib = round(s.monitor.current_growth(), 1)
        open_left = sum(e == "timeout" for e in endings)
        result.ending = "timeout" if open_left else "fin"
        result.details.update(
            all_closed_after_s=round(elapsed, 2),
            still_open=open_left,
            rst=sum(e == "rst" for e in endings),
            sockets_freed=freed is not None,
        )
        result.outcome = (
            f"{connections - open_left}/{connections} dropped within {elapsed:.1f} s"
            + ("" if freed is not None else "; server sockets not freed")
        )
    return result


# --------------------------------------------------------------------------- 7: headers


def _abusive_heads(case: str) -> list[tuple[str, bytes]]:
    """(label, request head) pairs for one case of header abuse."""
    ok, _ = upgrade_request()
    base = ok[:-2]  # without the final blank line: headers can be appended
    if case == "many-headers":
        return [("2000 headers", base + b"X: 1\r\n" * 2000 + b"\r\n")]
    if case == "oversize-head":
        return [("64 KiB header", base + b"X-Big: " + b"a" * 65536 + b"\r\n\r\n")]
    if case == "huge-extension-offer":
        offer = ", ".join(
            ["permessage-deflate; client_max_window_bits; server_max_window_bits=15"] * 190
        )
        many = b"".join(
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9; "
            b"server_no_context_takeover, x-foo; a=1; b; c=2\r\n"
            for _ in range(100)
        )
        return [
            (
                "one 13 KB extension offer",
                base + f"Sec-WebSocket-Extensions: {offer}\r\n\r\n".encode(),
            ),
            ("100 extension headers", base + many + b"\r\n"),
        ]
    if case == "many-subprotocols":
        tokens = ", ".join(f"p{i}" for i in range(2000))
        many = b"".join(f"Sec-WebSocket-Protocol: q{i}, r{i}\r\n".encode() for i in range(100))
        return [
            (
                "2000 subprotocol tokens",
                base + f"Sec-WebSocket-Protocol: {tokens}\r\n\r\n".encode(),
            ),
            ("100 subprotocol headers", base + many + b"\r\n"),
        ]
    if case == "control-chars":
        return [
            ("NUL in value", base + b"X-A: a\x00b\r\n\r\n"),
            ("CR in value", base + b"X-A: a\rb\r\n\r\n"),
            ("LF in value", base + b"X-A: a\nb\r\n\r\n"),
            ("NUL in name", base + b"X-\x00A: b\r\n\r\n"),
            ("CR in name", base + b"X-\rA: b\r\n\r\n"),
            ("LF in name", base + b"X-\nA: b\r\n\r\n"),
            ("NUL in request target", ok.replace(b"GET / ", b"GET /\x00 ", 1)),
        ]
    raise ValueError(case)


async def header_abuse(impl: str = IMPL, case: str = "many-headers") -> AttackResult:
    """Abusive opening requests; each gets an HTTP status (or a connection end), recorded
    in ``details['statuses']`` as {label: status} (0: no response before the end)."""
    async with Session(f"header abuse ({case})", impl) as s:
        result = s.result
        statuses: dict[str, int | str] = {}
        times: dict[str, float] = {}
        endings: dict[str, str] = {}
        s.start_probes()
        for label, head in _abusive_heads(case):
            raw = await s.connect_raw()
            start = time.monotonic()
            await raw.send(head, timeout=5)
            try:
                status, _ = await raw.read_head(5)
                statuses[label] = status
                endings[label] = await raw.read_to_end(3) if status != 101 else "open"
            except PeerReset:
                statuses[label] = "rst"
            except asyncio.TimeoutError:
                statuses[label] = "timeout"
            except ConnectionError:
                statuses[label] = "eof"
            times[label] = round(time.monotonic() - start, 3)
            raw.close()
        await s.finish()
        result.details["statuses"] = statuses
        result.details["seconds"] = times
        result.details["endings"] = endings
        result.outcome = ", ".join(
            f"{label}: {status}"
            + (f" + {endings[label].upper()}" if endings.get(label, "open") != "open" else "")
            for label, status in statuses.items()
        )
    return result


async def unique_header_names(
    impl: str = IMPL, requests: int = 10_000, names: int = 100, concurrency: int = 32
) -> AttackResult:
    """``requests`` upgrades, each with ``names`` header names never seen before; after
    they end, the server's RSS must be back near its baseline (no interning leak)."""
    async with Session(f"unique header names x {requests:,} requests", impl) as s:
        result = s.result
        nonce = os.urandom(4).hex()
        statuses: dict[int | str, int] = {}
        counter = iter(range(requests))

        async def worker() -> None:
            for i in counter:
                extra = [(f"X-{nonce}-{i}-{j}", "1") for j in range(names)]
                head, _ = upgrade_request(extra=extra)
                status: int | str
                try:
                    raw = await RawConn.open(s.server.port)
                except (OSError, asyncio.TimeoutError):
                    statuses["connect failed"] = statuses.get("connect failed", 0) + 1
                    continue
                try:
                    await raw.send(head, timeout=5)
                    status, _ = await raw.read_head(5)
                except (PeerReset, asyncio.TimeoutError, ConnectionError) as exc:
                    status = type(exc).__name__
                finally:
                    raw.close()
                statuses[status] = statuses.get(status, 0) + 1

        s.start_probes()
        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.details["seconds"] = round(time.monotonic() - start, 1)
        freed = await wait_until(lambda: s.server.sockets() <= s.base_sockets, 5.0)
        await s.finish()
        result.rss_after_mib = round(s.monitor.current_growth(), 1)
        result.details["statuses"] = statuses
        result.details["sockets_freed"] = freed is not None
        result.outcome = (
            f"{statuses.get(101, 0):,}/{requests:,} upgraded; RSS after "
            f"{result.rss_after_mib:.1f} MiB over baseline"
        )
    return result


# --------------------------------------------------------------------------- 8: bad Close


def _bad_close_bytes(case: str) -> bytes:
    if case == "length-126":
        # A control frame announcing 126 bytes (RFC 6455 5.5: at most 125).
        return frame(CLOSE, close_payload(1000, b"a" * 124), mask=random_mask())
    if case == "code-999":
        return frame(CLOSE, close_payload(999), mask=random_mask())
    if case == "bad-utf8-reason":
        return frame(CLOSE, close_payload(1000, b"bye \xff\xfe"), mask=random_mask())
    if case == "mid-frame-utf8":
        # 1,000 bytes of text, invalid UTF-8 at byte 3, sent in full, then our Close.
        payload = b"abc\xff" + b"a" * 996
        return frame(TEXT, payload, mask=random_mask()) + frame(
            CLOSE, close_payload(1000), mask=random_mask()
        )
    raise ValueError(case)


EXPECTED_CLOSE = {
    "length-126": 1002,
    "code-999": 1002,
    "bad-utf8-reason": 1007,
    "mid-frame-utf8": 1007,
    "mid-frame-utf8-split": 1007,
    "junk-after-close": 1002,
}


async def invalid_close(impl: str = IMPL, case: str = "code-999") -> AttackResult:
    """A bad Close (or a bad frame followed by a good Close): the server's Close with
    1002/1007, then its FIN at once (the peer's Close has arrived), never an RST."""
    async with Session(f"invalid Close ({case})", impl) as s:
        result = s.result
        raw = await s.connect_raw()
        await raw.handshake()
        s.start_probes()
        if case == "mid-frame-utf8-split":
            # The frame's header and first 4 bytes (invalid at byte 3); once the server's
            # Close has arrived, the other 996 bytes and our Close.
            payload = b"abc\xff" + b"a" * 996
            data = frame(TEXT, payload, mask=random_mask())
            await raw.send(data[: len(data) - 996])
            try:
                close, _ = await raw.read_close(3.0)
            except (PeerReset, asyncio.TimeoutError) as exc:
                close = None
                result.details["first_part"] = type(exc).__name__
            if close is not None:
                raw.buf[:0] = frame(CLOSE, close.payload, mask=None)
            await raw.send(
                data[len(data) - 996 :] + frame(CLOSE, close_payload(1000), mask=random_mask())
            )
        elif case == "junk-after-close":
            # A bad Close and, in the same write, 1 MiB more that the server has no reason
            # to read; we read only 0.3 s later, as a slow peer would. A server that closes
            # its socket with unread input makes the kernel send RST, which destroys the
            # Close still waiting in our receive buffer: it must half-close and drain.
            junk = frame(BINARY, bytes(1 << 20), mask=random_mask())
            await raw.send(_bad_close_bytes("code-999") + junk, timeout=1)
            await asyncio.sleep(0.3)  # a slow reader, on purpose
        else:
            await raw.send(_bad_close_bytes(case))
        # The peer (us) already sent its Close: no reply.
        await _close_and_end(raw, result, timeout=3.0, reply=False)
        await s.finish()
    return result


# --------------------------------------------------------------------------- 9: keepalive


async def dead_peer(
    impl: str = IMPL, ping_interval: float = 1.0, ping_timeout: float = 1.0, give_up: float = 13.0
) -> AttackResult:
    """A peer that completes the handshake, then neither reads nor sends: with keepalive,
    the server must free it within ping_interval + ping_timeout (+1 s), not close_timeout."""
    async with Session(
        "dead peer under keepalive", impl, ping_interval=ping_interval, ping_timeout=ping_timeout
    ) as s:
        result = s.result
        raw = await s.connect_raw(rcvbuf=4096)
        await raw.handshake()
        base = s.base_sockets  # counted before the dead peer connected
        s.start_probes()
        freed = await wait_until(lambda: s.server.sockets() <= base, give_up)
        result.details["peer_saw_end"] = raw.peer_gone()
        await s.finish()
        if freed is None:
            result.ending = "open"
            result.outcome = f"still held after {give_up:g} s"
        else:
            result.ending = "freed"
            result.outcome = f"freed after {freed:.2f} s"
        result.details["freed_after_s"] = None if freed is None else round(freed, 2)
        result.details["bound_s"] = ping_interval + ping_timeout + 1
    return result


async def slow_upload(
    impl: str = IMPL,
    size: int = 200_000,
    rate: int = 100_000,
    ping_interval: float = 0.2,
    ping_timeout: float = 0.3,
) -> AttackResult:
    """One ``size``-byte frame uploaded at ``rate`` bytes/s; keepalive pings cannot be
    answered mid-frame, but the bytes arriving prove the peer alive: the server must not
    close with 1011, and must echo the message."""
    async with Session(
        f"slow upload ({size // 1000} kB at {rate // 1000} kB/s), keepalive {ping_interval}"
        f"/{ping_timeout} s",
        impl,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    ) as s:
        result = s.result
        raw = await s.connect_raw()
        await raw.handshake()
        payload = os.urandom(size)
        data = frame(BINARY, payload, mask=random_mask())
        s.start_probes()
        pending_pings: list[bytes] = []
        uploading = True
        outcome: dict[str, Any] = {}

        async def read() -> None:
            while True:
                f = await raw.read_frame(30)
                if f is None:
                    outcome["end"] = "EOF"
                    return
                if f.opcode == PING:
                    if uploading:
                        pending_pings.append(f.payload)
                    else:
                        await raw.send(frame(PONG, f.payload, mask=random_mask()))
                elif f.opcode == CLOSE:
                    outcome["close"] = f.code
                    return
                elif f.opcode == BINARY:
                    outcome["echo"] = f.payload == payload
                    return

        reader = asyncio.ensure_future(read())
        start = time.monotonic()
        step = rate // 10
        for i in range(0, len(data), step):
            if reader.done() or not await raw.send(data[i : i + step], timeout=2):
                break
            await asyncio.sleep(0.1)  # pacing: this peer is slow on purpose
        uploading = False
        for ping in pending_pings:
            await raw.send(frame(PONG, ping, mask=random_mask()))
        try:
            await asyncio.wait_for(reader, 5)
        except (asyncio.TimeoutError, PeerReset) as exc:
            outcome["end"] = type(exc).__name__
        result.details["upload_s"] = round(time.monotonic() - start, 2)
        await s.finish()
        if "close" in outcome:
            result.close_code = outcome["close"]
            result.outcome = f"closed with {outcome['close']} during the upload"
        elif outcome.get("echo"):
            result.outcome = "echoed, not closed"
        else:
            result.outcome = f"no echo: {outcome}"
        result.details.update(outcome)
    return result


async def keepalive_busy(
    impl: str = IMPL,
    reserve_fds: int = 1100,
    ping_interval: float = 0.5,
    ping_timeout: float = 0.5,
    duration: float = 4.0,
) -> AttackResult:
    """Keepalive on a busy server: its connections get descriptors above 1023 (it holds
    ``reserve_fds`` others), where select() fails; the good client, which answers every
    Ping, is probed for ``duration`` seconds and must not be closed."""
    async with Session(
        f"keepalive {ping_interval}/{ping_timeout} s, descriptors above {reserve_fds}",
        impl,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        reserve_fds=reserve_fds,
    ) as s:
        result = s.result
        s.start_probes()
        await asyncio.sleep(duration)  # the attack: time for several keepalive rounds
        await s.finish()
        assert s.good is not None
        result.close_code = s.good.ws.close_code
        result.ending = "open" if result.close_code is None else "closed"
        result.outcome = (
            "not closed" if result.close_code is None else f"closed with {result.close_code}"
        )
    return result


# --------------------------------------------------------------------------- 10: shutdown


#: 10,000 by default; 2,000 against websock-sync, whose two threads per connection would make
#: 10,000 idle connections 20,000 threads: most of Linux's default pid_max (32,768, shared by
#: every process of the machine) and, at ~5.5 memory maps per connection, close to the default
#: vm.max_map_count (65,530). WEBSOCK_HOSTILE_IDLE_CONNS overrides either.
IDLE_CONNECTIONS = int(
    os.environ.get("WEBSOCK_HOSTILE_IDLE_CONNS", "2000" if THREADED else "10000")
)


async def shutdown_idle(
    impl: str = IMPL,
    connections: int = IDLE_CONNECTIONS,
    *,
    exit_wait: float = 60.0,
    **knobs: Any,
) -> AttackResult:
    """``connections`` idle WebSocket connections, then SIGTERM: each gets Close 1001.

    ``knobs`` go to server.py (e.g. ``sync_shutdown="handler"``); the server must exit
    within ``exit_wait`` seconds of the last Close. Also recorded, in details: the server's
    threads and RSS per idle connection, and its most threads while it shuts down.
    """
    raise_nofile(connections + 1024)
    name = f"{connections:,} idle connections, then SIGTERM"
    if knobs:
        name += " (" + ", ".join(f"{key}={value}" for key, value in knobs.items()) + ")"
    # No keepalive: these peers are idle, not dead, and do not answer pings.
    async with Session(name, impl, ping_interval=0, **knobs) as s:
        result = s.result
        threads_before = s.server.threads() or 0
        gate = asyncio.Semaphore(256)

        async def open_one() -> RawConn | None:
            async with gate:
                try:
                    raw = await RawConn.open(s.server.port, rcvbuf=8192, sndbuf=8192)
                except (OSError, asyncio.TimeoutError):
                    return None
                try:
                    await raw.handshake(timeout=10)
                except (OSError, asyncio.TimeoutError, PeerReset):
                    raw.abort()
                    return None
                return raw

        start = time.monotonic()
        opened = await asyncio.gather(*(open_one() for _ in range(connections)))
        raws = [raw for raw in opened if raw is not None]
        s.raw.extend(raws)
        result.details["open_s"] = round(time.monotonic() - start, 1)
        result.details["opened"] = len(raws)
        # What each idle connection costs the server (a thread-per-connection server shows
        # its threads here; the RSS is over the baseline taken with the good client only).
        threads = s.server.threads()
        growth = s.monitor.current_growth()
        result.details["threads"] = threads
        if raws and threads is not None:
            result.details["threads_per_conn"] = round((threads - threads_before) / len(raws), 2)
            result.details["rss_per_conn_kib"] = round(growth * 1024 / len(raws), 1)
        await s.finish()  # good client checked while connections piled up; RSS recorded
        if s.good is not None:
            await s.good.close()
            s.good = None

        async def await_close(raw: RawConn) -> tuple[int | None, str]:
            try:
                close, _ = await raw.read_close(60)
            except PeerReset:
                return None, "rst"
            except asyncio.TimeoutError:
                return None, "timeout"
            if close is None:
                return None, "fin"
            await raw.send(frame(CLOSE, close.payload[:2], mask=random_mask()), timeout=5)
            return close.code, await raw.read_to_end(10)

        peak = [threads or 0]

        async def sample_threads() -> None:
            while True:
                count = s.server.threads()
                if count is None:
                    return
                peak[0] = max(peak[0], count)
                await asyncio.sleep(0.02)

        sampler = asyncio.ensure_future(sample_threads())
        start = time.monotonic()
        s.server.proc.send_signal(signal.SIGTERM)
        outcomes = await asyncio.gather(*(await_close(raw) for raw in raws))
        closes_s = time.monotonic() - start
        exited = await asyncio.to_thread(s.server.stop, signal.SIGTERM, exit_wait)
        exit_s = time.monotonic() - start
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        result.details["threads_shutdown_peak"] = peak[0]
        got_1001 = sum(code == 1001 for code, _ in outcomes)
        result.close_code = 1001 if got_1001 == len(raws) and raws else None
        result.details.update(
            got_1001=got_1001,
            codes={
                str(c): sum(code == c for code, _ in outcomes) for c in {c for c, _ in outcomes}
            },
            endings={e: sum(end == e for _, end in outcomes) for e in {e for _, e in outcomes}},
            closes_s=round(closes_s, 1),
            exit_s=round(exit_s, 1),
            exit_code=exited,
        )
        result.ending = "fin" if all(end == "fin" for _, end in outcomes) else "mixed"
        result.outcome = f"{got_1001:,}/{len(raws):,} got 1001 within {closes_s:.1f} s; " + (
            "server did not exit" if exited is None else f"server exited after {exit_s:.1f} s"
        )
        if "rss_per_conn_kib" in result.details:
            result.outcome += (
                f"; idle: {result.details['rss_per_conn_kib']:g} KiB and "
                f"{result.details['threads_per_conn']:g} threads per connection, "
                f"{peak[0]:,} threads at most while shutting down"
            )
    return result


async def cli_shutdown(impl: str = "websock", connections: int = 200) -> AttackResult:
    """``python -m websock serve --plain``: SIGTERM closes every connection with 1001."""
    result = AttackResult(f"CLI: {connections} connections, then SIGTERM", impl)
    if impl != "websock":
        result.outcome = "n/a (websock's command line)"
        return result
    server = await asyncio.to_thread(CliServerProcess, "--ping-interval", "0")
    raws: list[RawConn] = []
    try:
        for _ in range(connections):
            raw = await RawConn.open(server.port)
            raws.append(raw)
            await raw.handshake()

        async def await_close(raw: RawConn) -> int | None:
            try:
                close, _ = await raw.read_close(20)
            except (PeerReset, asyncio.TimeoutError):
                return None
            if close is None:
                return None
            await raw.send(frame(CLOSE, close.payload[:2], mask=random_mask()), timeout=5)
            return close.code

        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(await_close(raw) for raw in raws))
        exit_code = await asyncio.to_thread(server.stop, signal.SIGTERM, 20.0)
        got_1001 = sum(code == 1001 for code in codes)
        result.close_code = 1001 if got_1001 == connections else None
        result.details.update(got_1001=got_1001, exit_code=exit_code)
        result.outcome = (
            f"{got_1001}/{connections} got 1001; exited with {exit_code} "
            f"after {time.monotonic() - start:.1f} s"
        )
    finally:
        for raw in raws:
            raw.abort()
        server.stop(signal.SIGKILL, 5)
        result.problems = server.problems()
        if result.problems:
            result.details["stderr"] = server.stderr_text()[-4000:]
        server.cleanup()
    return result


# --------------------------------------------------------------------------- 12: refusals


#: How long a refused connection may wait for its request head (websock's REFUSED_LINGER),
#: and how long the server drains after its FIN (CLOSE_GRACE).
REFUSED_LINGER = 1.0
CLOSE_GRACE = 1.0
#: The CPU time the server may use in a quiet 2 s window after the attack (a thread spinning
#: on a closed socket uses most of a core).
QUIET_WINDOW = 2.0

REFUSAL_CASES = ("400-trickle", "503", "503-trickle", "503-fin")


async def refusal_linger(
    impl: str = IMPL, case: str = "400-trickle", limit: float = 8.0
) -> AttackResult:
    """A connection the server refuses, which then lingers; the server must end it and
    free its socket within a bound whatever the peer does, and go quiet afterwards.

    ``400-trickle``: a request with NUL in a header value (answered 4xx), then a byte every
    0.2 s. With the server full (``max_connections=2``: the good client and one more): ``503``
    a complete request; ``503-trickle`` part of a head, then a byte every 0.2 s; ``503-fin``
    part of a head, then FIN. Records the status (None: no response), ``freed_after_s`` (when
    the server's socket count is back to what it was before this connection) and
    ``quiet_cpu_s`` (the server's CPU time in a quiet 2 s window after the attack).
    """
    capacity = case.startswith("503")
    knobs: dict[str, Any] = {"max_connections": 2} if capacity else {}
    async with Session(f"refused connection ({case})", impl, **knobs) as s:
        result = s.result
        if capacity:
            hold = await s.connect_raw()
            await hold.handshake()  # with the good client, the server is full
        base = s.server.sockets()
        s.start_probes()
        raw = await s.connect_raw()
        request, _ = upgrade_request()
        if case == "400-trickle":
            first = request[:-2] + b"X-A: a\x00b\r\n\r\n"
        elif case == "503":
            first = request
        elif case in ("503-trickle", "503-fin"):
            first = request[:20]
        else:
            raise ValueError(case)
        await raw.send(first, timeout=2)
        if case == "503-fin":
            with contextlib.suppress(OSError):
                raw.sock.shutdown(socket.SHUT_WR)
        status: list[int | str | None] = [None]

        async def read() -> None:
            try:
                code, _ = await raw.read_head(limit)
                status[0] = code
                await raw.read_to_end(limit)
            except PeerReset:
                status[0] = status[0] or "rst"
            except (asyncio.TimeoutError, ConnectionError):
                pass

        async def trickle() -> None:
            if not case.endswith("trickle"):
                return
            while True:
                await asyncio.sleep(0.2)  # pacing: this peer is slow on purpose
                if not await raw.send(b"x", timeout=1):
                    return  # the server closed its socket: our byte met its RST

        tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(trickle())]
        # Once the server holds the connection (unless it was over before we could see it).
        await wait_until(lambda: s.server.sockets() > base, 1.0, interval=0.01)
        freed = await wait_until(lambda: s.server.sockets() <= base, limit)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raw.close()
        await s.finish()
        before = s.server.cpu()
        await asyncio.sleep(QUIET_WINDOW)
        after = s.server.cpu()
        quiet = None if before is None or after is None else round(after - before, 2)
        result.details.update(
            status=status[0],
            freed_after_s=None if freed is None else round(freed, 2),
            quiet_cpu_s=quiet,
        )
        result.ending = "open" if freed is None else "freed"
        answer = "no response" if status[0] is None else str(status[0])
        end = f"still held after {limit:g} s" if freed is None else f"freed after {freed:.2f} s"
        result.outcome = f"{answer}; {end}; {quiet} s CPU in the next {QUIET_WINDOW:g} s"
    return result
