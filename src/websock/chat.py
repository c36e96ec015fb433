"""The chat demo of ``python -m websock chat``: rooms over :class:`websock.pubsub.Hub`.

``GET /`` answers a small HTML/JS page (no dependency, no build step); a WebSocket to
``/room/<name>`` joins room ``<name>``. Every text message a client sends in a room is
published to the room's topic and so reaches every client of that room, the sender
included, in this process and — with a Redis backplane (``redis_url``) — in every other
worker and host using the same Redis. The server relays messages as they are: the page sends
``{"nick": ..., "text": ...}`` as JSON, but any text goes.

Decisions, and why:

- **First message.** On joining, the server subscribes the connection, waits (at most
  :data:`SYNC_TIMEOUT`) until Redis has its subscription (:meth:`Hub.sync`), then sends
  ``{"type": "joined", "room": <name>, "worker": <pid>}``: once a client has it, messages
  published by any worker reach it. The worker's process id lets tests (and curious users)
  see which worker serves them.
- **Limits.** ``max_message_size`` (4 KiB by default: a chat line, not a file transfer):
  a bigger message closes the sender's connection with 1009, as any websock server does.
  Binary messages are refused with 1003 (unsupported data): rooms carry text.
- **Slow consumers are closed** (``slow_consumer="close"``, 1013 "try again later") once
  more than :func:`broadcast_limit` bytes (64 messages of the maximum size: 256 KiB by
  default) wait for them. "drop" would keep them connected with silent gaps in the
  conversation; a chat reader who missed lines should know it, and the page shows the close
  code and offers to join again. Either way the others are never delayed, and a stalled
  client costs at most the bound.
- **Room names** are 1 to 64 characters among ``A-Z a-z 0-9 _ -`` (no percent-decoding, so
  a name is the same in the URL, the topic and the Redis channel): any other name under
  ``/room/`` is answered 400, any other path 404.
- **Origin.** A browser always sends ``Origin``; a WebSocket whose Origin is not this page's
  own origin (another site's script riding on the user's browser) is answered 403. Clients
  that send no Origin (programs) are accepted.
- **The page** builds every message with ``textContent`` (never ``innerHTML``), and is
  served with a Content-Security-Policy allowing only its own inline script and style
  (by hash) and connections to its own origin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from .asyncio.server import ServerConnection
from .options import DEFAULT_BROADCAST_LIMIT
from .protocol.close import CloseCode
from .protocol.http import Request, Response
from .pubsub import Hub

__all__ = [
    "ChatApp",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "PAGE",
    "ROOM_NAME",
    "SYNC_TIMEOUT",
    "broadcast_limit",
]

#: A chat line, not a file: 4 KiB. Bigger messages close the connection with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024
#: Messages of the maximum size a client may fall behind by before it is closed (1013).
SLOW_CONSUMER_MESSAGES = 64
#: Room names: what may follow ``/room/``.
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROOM_PREFIX = "/room/"
#: Topic of room ``name`` in the hub (and ``websock:chat:name`` as a Redis channel).
TOPIC_PREFIX = "chat:"
#: Bound on waiting for Redis to take a new subscription before the first message.
SYNC_TIMEOUT = 5.0


def broadcast_limit(max_message_size: int | None) -> int:
    """The slow-consumer bound for a given message size limit: 64 messages' worth, at
    least 64 KiB (the server's default, 1 MiB, when messages are not limited)."""
    if max_message_size is None:
        return DEFAULT_BROADCAST_LIMIT
    return SLOW_CONSUMER_MESSAGES * max(max_message_size, 1024)


_SCRIPT = """
"use strict";
const $ = (id) => document.getElementById(id);
const ROOM = /^[A-Za-z0-9_-]{1,64}$/;
let ws = null;
let room = null;

function show(text, kind) {
  const item = document.createElement("li");
  item.textContent = text;
  if (kind) item.className = kind;
  const log = $("log");
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

function connected(on) {
  $("text").disabled = $("send").disabled = !on;
  if (on) $("text").focus();
}

function join(name) {
  if (ws) ws.close(1000);
  room = name;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = ws = new WebSocket(`${scheme}//${location.host}/room/${name}`);
  let first = true;
  $("status").textContent = `joining room ${name}...`;
  sock.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    if (first) {
      first = false;
      let info = {};
      try { info = JSON.parse(event.data); } catch (e) { /* not ours */ }
      document.body.dataset.worker = String(info.worker);
      $("status").textContent = `room ${info.room}, served by worker ${info.worker}`;
      connected(true);
      return;
    }
    let message = null;
    try { message = JSON.parse(event.data); } catch (e) { /* plain text */ }
    if (message && typeof message.text === "string") {
      show(`${String(message.nick || "anonymous")}: ${message.text}`);
    } else {
      show(event.data);
    }
  };
  sock.onclose = (event) => {
    if (sock !== ws) return;
    ws = null;
    connected(false);
    delete document.body.dataset.worker;
    const why = event.reason ? `: ${event.reason}` : "";
    $("status").textContent = `disconnected (${event.code}${why}); press Join to join again`;
  };
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("room").value.trim();
  if (!ROOM.test(name)) {
    $("status").textContent = "a room name is 1 to 64 letters, digits, _ or -";
    return;
  }
  history.replaceState(null, "", `#${name}`);
  join(name);
});

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!ws || ws.readyState !== WebSocket.OPEN || !text) return;
  ws.send(JSON.stringify({nick: $("nick").value.trim() || "anonymous", text}));
  $("text").value = "";
});

function fromHash() {
  const name = location.hash.slice(1);
  if (ROOM.test(name) && name !== room) {
    $("room").value = name;
    join(name);
  }
}
window.addEventListener("hashchange", fromHash);
fromHash();
"""

_STYLE = """
body { font: 16px system-ui, sans-serif; max-width: 42em; margin: 1em auto; padding: 0 1em; }
form { display: flex; gap: .5em; margin: .5em 0; }
#text { flex: 1; }
#status { color: #555; }
#log { list-style: none; padding: .3em; margin: 0; border: 1px solid #ccc; height: 60vh;
       overflow-y: auto; overflow-wrap: anywhere; white-space: pre-wrap; }
"""

#: The page served at ``/``.
PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>websock chat</title>
<style>{_STYLE}</style>
</head>
<body>
<form id="join">
  <input id="room" placeholder="room" maxlength="64" autocomplete="off" aria-label="room">
  <input id="nick" placeholder="nickname" maxlength="32" aria-label="nickname">
  <button>Join</button>
</form>
<p id="status">not connected: choose a room</p>
<ul id="log"></ul>
<form id="say">
  <input id="text" placeholder="message" maxlength="1000" autocomplete="off" disabled
    aria-label="message">
  <button id="send" disabled>Send</button>
</form>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _same_origin(request: Request) -> bool:
    """Whether the request has no Origin, or the Origin of a page served by this host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = request.headers.get("Host")
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return host is not None and netloc.lower() == host.lower()


class ChatApp:
    """The chat server's hooks: ``process_request`` (the page, routing), ``handler`` (a
    room) and ``lifespan`` (this process's :class:`Hub`).

    Made once, before the workers fork; each worker enters :meth:`lifespan`, which gives
    its copy of the app a hub of its own (a hub belongs to one event loop).
    """

    def __init__(
        self, *, redis_url: str | None = None, max_message_size: int | None = None
    ) -> None:
        self.redis_url = redis_url
        self.max_message_size = max_message_size
        self._hub: Hub | None = None

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`websock.serve` / :func:`websock.run`."""
        return {
            "process_request": self.process_request,
            "max_message_size": self.max_message_size,
            "broadcast_limit": broadcast_limit(self.max_message_size),
            "slow_consumer": "close",
        }

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Hub]:
        """This process's hub, joined to Redis while the server runs (if ``redis_url``)."""
        hub = Hub(self.redis_url)
        async with hub:
            self._hub = hub
            try:
                yield hub
            finally:
                self._hub = None

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the chat app serves inside its lifespan: enter lifespan() first")
        return self._hub

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """``/``: the page; ``/room/<name>``: upgrade (None); 400 or 404 otherwise."""
        path = request.path_without_query
        if path == "/":
            return ws.respond(200, PAGE, _PAGE_HEADERS)
        if not path.startswith(ROOM_PREFIX):
            return ws.respond(404, f"not found: try / or {ROOM_PREFIX}<name>\n")
        if ROOM_NAME.fullmatch(path[len(ROOM_PREFIX) :]) is None:
            return ws.respond(400, "invalid room name: 1 to 64 characters among A-Z a-z 0-9 _ -\n")
        if not _same_origin(request):
            return ws.respond(403, "cross-origin WebSocket refused\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        """One client in one room: relay each text message to the room."""
        hub = self.hub
        assert ws.request is not None  # the handler runs after the opening handshake
        room = ws.request.path_without_query[len(ROOM_PREFIX) :]
        topic = TOPIC_PREFIX + room
        hub.subscribe(ws, topic)
        # Redis unreachable: join anyway, local delivery works and the hub reconnects.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(hub.sync(), SYNC_TIMEOUT)
        await ws.send(json.dumps({"type": "joined", "room": room, "worker": os.getpid()}))
        async for message in ws:
            if not isinstance(message, str):
                await ws.close(CloseCode.UNSUPPORTED_DATA, "text messages only")
                return
            hub.publish(topic, message)
