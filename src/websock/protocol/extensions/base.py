"""The extension interface the frame pipeline calls (RFC 6455 section 9).

Negotiation is kept apart from per-connection state: a *factory* is configured once (per
server or per client) and takes part in the opening handshake; when negotiation succeeds it
returns an :class:`Extension`, which holds the state of one connection.

The connection decodes received frames through the negotiated extensions in reverse order and
encodes frames to send in order. Both calls see data frames (text, binary, continuation) and
control frames; an extension passes through what it does not handle.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from ..frames import Frame

__all__ = [
    "ExtensionParameter",
    "Extension",
    "ServerExtensionFactory",
    "ClientExtensionFactory",
]

# One parameter of an extension offer or response: ``("client_max_window_bits", "10")``,
# or ``("server_no_context_takeover", None)`` for a parameter without a value.
ExtensionParameter = tuple[str, str | None]


class Extension(abc.ABC):
    """Per-connection state of one negotiated extension."""

    #: The registered extension token, e.g. ``"permessage-deflate"``.
    name: ClassVar[str]

    #: The RSV bits this extension gives a meaning to, as a mask of the first header byte
    #: (0x40 = RSV1, 0x20 = RSV2, 0x10 = RSV3). The connection fails frames that set any
    #: RSV bit no negotiated extension claims (close code 1002).
    rsv_mask: ClassVar[int] = 0

    @abc.abstractmethod
    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Undo this extension on a received frame.

        ``max_size`` is how many payload bytes the message may still grow by (None: no
        limit); an extension that expands data must stop and raise
        :class:`~websock.exceptions.PayloadTooBig` as soon as it would exceed it, before
        producing more output. Raise :class:`~websock.exceptions.ProtocolError` for a frame
        that breaks the extension's rules.
        """

    def decode_bounded(self, frame: Frame, *, max_size: int | None, max_output: int) -> Frame:
        """Like :meth:`decode`, but return at most ``max_output`` payload bytes.

        For streamed messages (:meth:`Connection.set_streaming
        <websock.protocol.connection.Connection.set_streaming>`): an extension that
        expands data keeps what it could not return yet, sets :attr:`decode_pending`, and
        returns the rest, ``max_output`` bytes at a time, from :meth:`decode_continue`.
        The frame returned has FIN only once nothing is pending; the bound ``max_size``
        applies as in :meth:`decode`, across the steps. This default decodes the whole
        frame at once, which suits extensions that do not expand data.
        """
        return self.decode(frame, max_size=max_size)

    @property
    def decode_pending(self) -> bool:
        """True while output of the frame given to :meth:`decode_bounded` is left to
        return (call :meth:`decode_continue`)."""
        return False

    def decode_continue(self, *, max_size: int | None, max_output: int) -> Frame:
        """The next (at most ``max_output`` bytes) of the frame :meth:`decode_bounded` left
        unfinished: a continuation frame, with FIN once nothing is pending any more if the
        frame had FIN."""
        raise RuntimeError("decode_continue() called while nothing is pending")

    @abc.abstractmethod
    def encode(self, frame: Frame) -> Frame:
        """Apply this extension to a frame about to be sent."""


class ServerExtensionFactory(abc.ABC):
    """Server side of negotiating one extension."""

    name: ClassVar[str]

    @abc.abstractmethod
    def process_offer(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension] | None:
        """Answer one offer of this extension from a client's Sec-WebSocket-Extensions.

        ``accepted`` lists the extensions already accepted for this connection. Return the
        response parameters and the connection's extension, or None to decline this offer
        (an invalid offer is declined, as RFC 7692 section 5 requires).
        """


class ClientExtensionFactory(abc.ABC):
    """Client side of negotiating one extension."""

    name: ClassVar[str]

    @abc.abstractmethod
    def offer(self) -> list[ExtensionParameter]:
        """The parameters of the offer to send in Sec-WebSocket-Extensions."""

    @abc.abstractmethod
    def process_response(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        """Accept the server's response to our offer, or raise NegotiationError."""
