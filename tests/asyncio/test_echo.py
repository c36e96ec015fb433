"""Round trips between our client and our server, over ws:// and wss://."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rawpeer import TIMEOUT, echo

import websock
from websock import ConnectionClosedError, ConnectionClosedOK

MiB = 1 << 20


async def test_text_and_binary(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        async with running.connect() as ws:
            await ws.send("héllo")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "héllo"
            await ws.send(b"\x00\xff")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\xff"
            await ws.send(bytearray(b"ba"))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"ba"
            await ws.send(memoryview(b"mv"))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"mv"
            await ws.send("")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == ""
            await ws.send(b"")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b""


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_largest_message_under_default_limit(
    start_server: Any, secure: bool, compression: Any
) -> None:
    payload = bytes(range(256)) * (MiB // 256)
    payload = payload[:-1]  # 1 MiB - 1 byte
    async with start_server(echo, secure=secure, compression=compression) as running:
        async with running.connect(compression=compression) as ws:
            await ws.send(payload)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == payload
            text = "é" * (MiB // 2 - 1)  # 1 MiB - 2 bytes of UTF-8
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text


async def test_16_mib_with_raised_limit(start_server: Any, secure: bool) -> None:
    payload = (bytes(range(251)) * (16 * MiB // 251 + 1))[: 16 * MiB]
    limit = 16 * MiB
    async with start_server(echo, secure=secure, max_message_size=limit) as running:
        async with running.connect(max_message_size=limit, compression=None) as ws:
            await ws.send(payload)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT * 2) == payload


async def test_fragmented_send_from_list(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        async with running.connect() as ws:
            await ws.send(["ab", "cd", "é"])
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "abcdé"
            await ws.send([b"ab", bytearray(b"cd"), memoryview(b"ef")])
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"abcdef"
            await ws.send([])  # nothing is sent
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after"


async def test_fragmented_send_from_async_generator(start_server: Any, secure: bool) -> None:
    async def fragments() -> AsyncIterator[bytes]:
        for i in range(10):
            yield bytes([i]) * 1000
            await asyncio.sleep(0)

    async with start_server(echo, secure=secure) as running:
        async with running.connect() as ws:
            await ws.send(fragments())
            expected = b"".join(bytes([i]) * 1000 for i in range(10))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == expected


async def test_mixed_fragment_types_raise(start_server: Any) -> None:
    async with start_server(echo) as running:
        async with running.connect() as ws:
            # Caught before any frame went out: the connection is still usable.
            with pytest.raises(TypeError):
                await ws.send(["a", b"b"])
            await ws.send("ok")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ok"
            # Caught after the first fragment went out: the half-sent message cannot be
            # completed, so the connection is failed with 1011.
            with pytest.raises(TypeError):
                await ws.send(["a", "b", b"c"])
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.sent is not None and info.value.sent.code == 1011


async def test_async_for_ends_on_normal_close(start_server: Any, secure: bool) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        for i in range(3):
            await ws.send(str(i))
        await ws.close()

    async with start_server(handler, secure=secure) as running:
        async with running.connect() as ws:
            received = [m async for m in ws]
            assert received == ["0", "1", "2"]
            assert ws.close_code == 1000
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1000
            assert info.value.rcvd_then_sent is True


async def test_recv_raises_closed_error_with_code(start_server: Any, secure: bool) -> None:
    async def handler(ws: websock.ServerConnection) -> None:
        await ws.close(4001, "custom")

    async with start_server(handler, secure=secure) as running:
        async with running.connect() as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.code == 4001
            assert info.value.reason == "custom"
            assert info.value.sent is not None and info.value.sent.code == 4001
            # async for re-raises the error instead of ending quietly.
            with pytest.raises(ConnectionClosedError):
                async for _ in ws:
                    pass
            assert ws.close_code == 4001
            assert ws.close_reason == "custom"


async def test_client_close_code_reaches_handler(start_server: Any, secure: bool) -> None:
    seen: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        try:
            await ws.recv()
        except BaseException as exc:
            seen.set_result(exc)
            raise

    async with start_server(handler, secure=secure) as running:
        async with running.connect() as ws:
            await ws.close(1001, "bye")
            assert ws.state is websock.protocol.connection.State.CLOSED
        exc = await asyncio.wait_for(seen, TIMEOUT)
        assert isinstance(exc, ConnectionClosedOK)
        assert exc.code == 1001 and exc.reason == "bye"
        assert exc.rcvd_then_sent is True


async def test_send_after_close_raises(start_server: Any) -> None:
    async with start_server(echo) as running:
        async with running.connect() as ws:
            await ws.close()
            with pytest.raises(ConnectionClosedOK):
                await ws.send("late")
            with pytest.raises(ConnectionClosedOK):
                await ws.ping()
            await ws.close()  # idempotent


async def test_ping_returns_latency(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        async with running.connect() as ws:
            latency = await asyncio.wait_for(ws.ping(), TIMEOUT)
            assert isinstance(latency, float) and 0 <= latency < TIMEOUT
            latency = await asyncio.wait_for(ws.ping("payload"), TIMEOUT)
            assert 0 <= latency < TIMEOUT
            # Two pings in flight: both complete.
            results = await asyncio.wait_for(asyncio.gather(ws.ping(b"a"), ws.ping(b"b")), TIMEOUT)
            assert all(r >= 0 for r in results)


async def test_server_ping(start_server: Any) -> None:
    latencies: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        latencies.set_result(await ws.ping())
        await ws.recv()

    async with start_server(handler) as running:
        async with running.connect() as ws:
            # The client answers pings without the application reading.
            assert await asyncio.wait_for(latencies, TIMEOUT) >= 0
            await ws.send("done")


async def test_subprotocol_negotiation(start_server: Any, secure: bool) -> None:
    chosen: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        if not chosen.done():
            chosen.set_result(ws.subprotocol)
        await ws.recv()

    async with start_server(handler, secure=secure, subprotocols=["chat", "superchat"]) as running:
        async with running.connect(subprotocols=["superchat", "chat"]) as ws:
            assert ws.subprotocol == "superchat"
            assert await asyncio.wait_for(chosen, TIMEOUT) == "superchat"
        async with running.connect(subprotocols=["other"]) as ws:
            assert ws.subprotocol is None
        async with running.connect() as ws:
            assert ws.subprotocol is None


async def test_request_path_query_headers_and_addresses(start_server: Any, secure: bool) -> None:
    seen: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    async def handler(ws: websock.ServerConnection) -> None:
        assert ws.request is not None
        seen.set_result(
            (
                ws.request.path,
                ws.request.query,
                ws.request.headers.get("X-Test"),
                ws.remote_address,
                ws.local_address,
            )
        )
        await ws.recv()

    async with start_server(handler, secure=secure) as running:
        async with running.connect("/feed/a?x=1&y=2", additional_headers={"X-Test": "yes"}) as ws:
            path, query, header, remote, local = await asyncio.wait_for(seen, TIMEOUT)
            assert path == "/feed/a?x=1&y=2"
            assert query == {"x": ["1"], "y": ["2"]}
            assert header == "yes"
            assert remote == ws.local_address
            assert local == ws.remote_address
            assert ws.remote_address == ("127.0.0.1", running.port)


async def test_compression_negotiated(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        async with running.connect() as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            assert [e.name for e in ws.extensions] == ["permessage-deflate"]
            message = "compressible " * 10000
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
        async with running.connect(compression=None) as ws:
            assert ws.extensions == []
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_many_messages_in_order(start_server: Any, secure: bool) -> None:
    async with start_server(echo, secure=secure) as running:
        async with running.connect() as ws:

            async def sender() -> None:
                for i in range(500):
                    await ws.send(f"m{i}")

            task = asyncio.create_task(sender())
            for i in range(500):
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"m{i}"
            await task
