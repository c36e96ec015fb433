"""Fixtures for interop tests: TLS material shared by websock and the peer libraries."""

from __future__ import annotations

import ssl

import pytest
import trustme
from interop_common import TIMEOUT, MiB  # noqa: F401  (kept importable from here too)


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


@pytest.fixture(params=["ws", "wss"])
def secure(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "wss")


@pytest.fixture(params=["deflate", "plain"])
def deflate(request: pytest.FixtureRequest) -> bool:
    """With permessage-deflate negotiated, and without."""
    return bool(request.param == "deflate")
