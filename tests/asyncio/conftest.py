"""Fixtures for the loopback integration tests: TLS material and servers on port 0."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from rawpeer import TIMEOUT

import websock
from websock.asyncio.server import Handler


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@dataclass
class Running:
    """A websock server started for a test, with what a client needs to reach it."""

    server: websock.Server
    secure: bool
    client_ssl: ssl.SSLContext | None

    @property
    def port(self) -> int:
        return self.server.port

    def uri(self, path: str = "/") -> str:
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://localhost:{self.port}{path}"

    def connect(self, path: str = "/", **kwargs: Any) -> websock.connect:
        if self.secure:
            kwargs.setdefault("ssl", self.client_ssl)
        return websock.connect(self.uri(path), host="127.0.0.1", **kwargs)


StartServer = Callable[..., Any]


@pytest.fixture
def start_server(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> Callable[..., Any]:
    """``async with start_server(handler, secure=..., **serve_kwargs) as running``."""

    @asynccontextmanager
    async def start(
        handler: Handler, *, secure: bool = False, **kwargs: Any
    ) -> AsyncIterator[Running]:
        server = await websock.serve(
            handler, "127.0.0.1", 0, ssl=server_ssl if secure else None, **kwargs
        )
        try:
            yield Running(server, secure, client_ssl if secure else None)
        finally:
            server.close()
            await asyncio.wait_for(server.wait_closed(), TIMEOUT * 3)

    return start


@pytest.fixture(params=["ws", "wss"])
def secure(request: pytest.FixtureRequest) -> bool:
    """Run the test over plain TCP and over TLS."""
    return bool(request.param == "wss")
