"""websock.sync.connect follows redirects like the asyncio client (same core policy)."""

from __future__ import annotations

import pytest
from syncpeer import TIMEOUT, running_server

from websock import InvalidHandshake
from websock.protocol.http import Request, Response
from websock.sync import ServerConnection, connect


def greet(ws: ServerConnection) -> None:
    ws.send(ws.request.path if ws.request else "?")
    ws.recv(timeout=TIMEOUT)


def test_chain_credentials_and_loops() -> None:
    seen_b: list[dict[str, str]] = []

    def record(ws: ServerConnection, request: Request) -> Response | None:
        seen_b.append(dict(request.headers))
        return None

    with running_server(greet, process_request=record) as b:
        table = {
            "/old": (301, "/older"),
            "/older": (307, f"ws://localhost:{b.port}/new"),
            "/loop1": (302, "/loop2"),
            "/loop2": (302, "/loop1"),
        }

        def route(ws: ServerConnection, request: Request) -> Response | None:
            if request.path in table:
                status, location = table[request.path]
                return ws.respond(status, "moved\n", {"Location": location})
            return None

        with running_server(greet, process_request=route) as a:
            secrets = {"Authorization": "Bearer s3cret", "Cookie": "c=1", "X-Keep": "kept"}
            with connect(f"ws://127.0.0.1:{a.port}/old", additional_headers=secrets) as ws:
                assert ws.recv(timeout=TIMEOUT) == "/new"
            with pytest.raises(InvalidHandshake, match="redirect loop"):
                connect(f"ws://127.0.0.1:{a.port}/loop1")
    ((headers),) = seen_b
    assert "Authorization" not in headers and "Cookie" not in headers
    assert headers["X-Keep"] == "kept"
