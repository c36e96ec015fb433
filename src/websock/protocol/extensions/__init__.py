"""WebSocket extensions: the interface (base) and permessage-deflate (RFC 7692)."""

from __future__ import annotations

from .base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory

__all__ = ["ClientExtensionFactory", "Extension", "ExtensionParameter", "ServerExtensionFactory"]
