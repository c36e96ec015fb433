"""The exception hierarchy: bases, messages, codes, pickling."""

from __future__ import annotations

import pickle

import pytest

from websock.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from websock.protocol.close import Close
from websock.protocol.http import Headers, Response


def test_every_exception_derives_from_websocket_error() -> None:
    for cls in (
        ConcurrencyError,
        ConnectionClosed,
        ConnectionClosedError,
        ConnectionClosedOK,
        InvalidHandshake,
        InvalidProxy,
        InvalidProxyMessage,
        InvalidProxyStatus,
        InvalidState,
        InvalidStatus,
        InvalidURI,
        NegotiationError,
        PayloadTooBig,
        ProtocolError,
        ProxyError,
    ):
        assert issubclass(cls, WebSocketError)
    # Builtin bases where the meaning matches, so generic handlers catch them.
    assert issubclass(InvalidURI, ValueError)
    assert issubclass(InvalidState, RuntimeError)
    assert issubclass(ConcurrencyError, RuntimeError)
    assert issubclass(PayloadTooBig, ProtocolError)
    assert issubclass(InvalidStatus, InvalidHandshake)
    assert issubclass(NegotiationError, InvalidHandshake)
    assert issubclass(InvalidProxy, ValueError)
    assert issubclass(ProxyError, InvalidHandshake)
    assert issubclass(InvalidProxyStatus, ProxyError)
    assert issubclass(InvalidProxyMessage, ProxyError)


def test_protocol_errors_carry_their_close_code() -> None:
    assert ProtocolError("bad frame").close_code == 1002
    assert ProtocolError("bad utf-8", 1007).close_code == 1007
    assert PayloadTooBig("too big").close_code == 1009


def test_invalid_handshake_carries_the_status_to_answer() -> None:
    assert InvalidHandshake("no key").status == 400
    assert InvalidHandshake("version", 426).status == 426


def test_invalid_status_keeps_the_response() -> None:
    response = Response(503, "Service Unavailable", Headers([("Retry-After", "5")]))
    exc = InvalidStatus(response)
    assert exc.response is response
    assert "503" in str(exc)


def test_invalid_uri_says_what_and_why() -> None:
    exc = InvalidURI("http://x", "scheme must be ws or wss")
    assert "http://x" in str(exc) and "scheme" in str(exc)


@pytest.mark.parametrize(
    ("rcvd", "sent", "rcvd_then_sent", "code", "text"),
    [
        (None, None, None, 1006, "abnormally (1006)"),
        (None, Close(1002, "bad"), None, 1002, "no close frame received"),
        (Close(1001, "away"), None, None, 1001, "no close frame sent"),
        (Close(1000), Close(1000), True, 1000, "received 1000"),
        (Close(4000, "x"), Close(4000, "x"), False, 4000, "sent 4000"),
    ],
)
def test_connection_closed_describes_both_frames(
    rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None, code: int, text: str
) -> None:
    exc = ConnectionClosedError(rcvd, sent, rcvd_then_sent)
    assert exc.code == code
    assert text in str(exc)
    expected_reason = (rcvd or sent).reason if (rcvd or sent) else ""
    assert exc.reason == expected_reason


def test_connection_closed_pickles() -> None:
    exc = ConnectionClosedOK(Close(1000, "bye"), Close(1000), True)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is ConnectionClosedOK
    assert (copy.code, copy.reason, copy.rcvd_then_sent) == (1000, "bye", True)
