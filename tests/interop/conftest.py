"""Fixtures for interop tests: TLS material shared by websock and the peer libraries."""

from __future__ import annotations

import os
import ssl

import pytest
import trustme

#: Bound on every wait in these tests, scaled by ``WEBSOCK_TEST_TIMEOUT_FACTOR`` on slow
#: machines: a stuck test fails instead of hanging; no test measures a duration.
TIMEOUT = 5.0 * float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
MiB = 1 << 20


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
