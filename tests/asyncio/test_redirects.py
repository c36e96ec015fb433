"""The client follows HTTP redirects: chains, credentials across origins, loops, wss to ws."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from rawpeer import TIMEOUT

import websock
from websock import InvalidHandshake, InvalidStatus, InvalidURI
from websock.protocol.http import Request, Response
from websock.protocol.uri import Redirects, parse_uri, redirect_target, strip_credentials

Route = Callable[[websock.ServerConnection, Request], "Response | None"]


async def greet(ws: websock.ServerConnection) -> None:
    await ws.send(ws.request.path if ws.request else "?")
    await ws.recv()


def routes(table: dict[str, tuple[int, str]], seen: list[tuple[str, dict[str, str]]]) -> Route:
    """process_request answering redirects from a table of path -> (status, Location)."""

    def route(ws: websock.ServerConnection, request: Request) -> Response | None:
        seen.append((request.path, dict(request.headers)))
        if request.path in table:
            status, location = table[request.path]
            return ws.respond(status, "moved\n", {"Location": location})
        return None

    return route


async def test_follows_a_chain_of_redirects() -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    table = {"/old": (301, "/older"), "/older": (307, "/new?x=1")}
    async with websock.serve(greet, "127.0.0.1", 0, process_request=routes(table, seen)) as server:
        async with websock.connect(f"ws://127.0.0.1:{server.port}/old") as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "/new?x=1"
    assert [path for path, _ in seen] == ["/old", "/older", "/new?x=1"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed(status: int) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    table = {"/a": (status, "/b")}
    async with websock.serve(greet, "127.0.0.1", 0, process_request=routes(table, seen)) as server:
        async with websock.connect(f"ws://127.0.0.1:{server.port}/a") as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "/b"


async def test_credentials_stay_within_the_origin() -> None:
    seen_a: list[tuple[str, dict[str, str]]] = []
    seen_b: list[tuple[str, dict[str, str]]] = []
    secrets = {"Authorization": "Bearer s3cret", "Cookie": "session=1", "X-Keep": "kept"}
    async with websock.serve(greet, "127.0.0.1", 0, process_request=routes({}, seen_b)) as b:
        # localhost vs 127.0.0.1 and another port: another origin.
        table = {"/same": (302, "/cross"), "/cross": (302, f"ws://localhost:{b.port}/there")}
        async with websock.serve(greet, "127.0.0.1", 0, process_request=routes(table, seen_a)) as a:
            uri = f"ws://user:pw@127.0.0.1:{a.port}/same"
            async with websock.connect(uri, additional_headers=secrets) as ws:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "/there"
    # Same origin: everything follows (the URI's user info becomes Basic authorization,
    # replaced by the explicit Authorization header).
    assert [path for path, _ in seen_a] == ["/same", "/cross"]
    for _, headers in seen_a:
        assert headers["Authorization"] == "Bearer s3cret" and headers["Cookie"] == "session=1"
    # Another origin: credentials are dropped on the wire, other headers kept.
    ((path, headers),) = seen_b
    assert path == "/there"
    assert "Authorization" not in headers and "Cookie" not in headers
    assert headers["X-Keep"] == "kept"


async def test_redirect_loop_is_a_clear_error() -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    table = {"/a": (302, "/b"), "/b": (302, "/a")}
    async with websock.serve(greet, "127.0.0.1", 0, process_request=routes(table, seen)) as server:
        with pytest.raises(InvalidHandshake, match="redirect loop") as info:
            await websock.connect(f"ws://127.0.0.1:{server.port}/a")
        assert isinstance(info.value.__cause__, InvalidStatus)
    assert [path for path, _ in seen] == ["/a", "/b"]


async def test_max_redirects() -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    table = {"/1": (302, "/2"), "/2": (302, "/3")}
    async with websock.serve(greet, "127.0.0.1", 0, process_request=routes(table, seen)) as server:
        uri = f"ws://127.0.0.1:{server.port}/1"
        with pytest.raises(InvalidHandshake, match="too many redirects"):
            await websock.connect(uri, max_redirects=1)
        with pytest.raises(InvalidStatus) as info:
            await websock.connect(uri, max_redirects=0)  # 0: not followed, as before
        assert info.value.response.status == 302
        async with websock.connect(uri, max_redirects=2) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "/3"


async def test_wss_to_ws_is_refused(start_server: Any) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    table = {"/secure": (301, "ws://127.0.0.1:9/plain")}
    async with start_server(greet, secure=True, process_request=routes(table, seen)) as running:
        with pytest.raises(InvalidURI, match="wss:// to ws://"):
            await running.connect("/secure")


def test_redirect_target_resolution() -> None:
    base = parse_uri("ws://u:p@example.org:8080/a/b?q=1")
    assert redirect_target(base, "c").resource_name == "/a/c"
    assert redirect_target(base, "/x?y=2").resource_name == "/x?y=2"
    same = redirect_target(base, "/x")
    assert same.user_info == ("u", "p")  # same origin: user info follows
    other = redirect_target(base, "https://other.example/z")
    assert (other.secure, other.host, other.port, other.user_info) == (
        True,
        "other.example",
        443,
        None,
    )
    assert redirect_target(base, "http://example.org:8080/w").secure is False
    with pytest.raises(InvalidURI, match="Location"):
        redirect_target(base, None)
    with pytest.raises(InvalidURI):
        redirect_target(base, "ftp://example.org/")
    secure = parse_uri("wss://example.org/")
    with pytest.raises(InvalidURI, match="refused"):
        redirect_target(secure, "http://example.org/")
    assert strip_credentials(
        {"authorization": "a", "COOKIE": "c", "Proxy-Authorization": "p", "X": "x"}
    ) == [("X", "x")]
    assert strip_credentials(None) is None
    redirects = Redirects(base, 5)
    not_a_redirect = InvalidStatus(Response(404, "Not Found", websock.Headers()))
    with pytest.raises(InvalidStatus):
        redirects.follow(not_a_redirect)
