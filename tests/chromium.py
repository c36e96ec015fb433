"""Headless Chromium, driven through the Chrome DevTools Protocol over websock's own client.

::

    async with Browser.launch() as browser:
        page = await browser.new_page("http://127.0.0.1:8080/#lobby")
        await page.evaluate('document.getElementById("text").value = "hi"')
        await page.wait_for("document.querySelectorAll('#log li').length > 0")

:meth:`Browser.launch` starts ``chromium --headless=new --remote-debugging-port=0`` in a
session (process group) of its own with a fresh profile directory, reads the port and path
the browser chose from ``<profile>/DevToolsActivePort`` (polled, with a deadline), and
connects to the browser's DevTools WebSocket with :func:`websock.connect` (no size limit:
DevTools replies can be large; no compression; no proxy). Each page is a target attached
in *flat* mode, so every page's commands and events share that one connection, told apart
by their ``sessionId``. On exit the browser is asked to close, then its whole process group
is killed (renderers and helpers included) and the profile removed.

A missing browser skips the test: ``install the Debian package chromium (apt-get install
chromium)``. Every wait is bounded (scaled by ``WEBSOCK_TEST_TIMEOUT_FACTOR``): polling the
DOM with :meth:`Page.wait_for` is the way to wait for something to happen in a page.

PYTEST_DONT_REWRITE: a helper module, not a test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import websock
from websock import ClientConnection, ConnectionClosed

__all__ = ["Browser", "CDPError", "Page", "chromium_path", "TIMEOUT"]

_FACTOR = float(os.environ.get("WEBSOCK_TEST_TIMEOUT_FACTOR", "1") or 1)
#: Bound on one DevTools command, or on a condition polled with Page.wait_for.
TIMEOUT = 10.0 * _FACTOR
#: Bound on the browser's start, until it wrote DevToolsActivePort.
STARTUP_TIMEOUT = 30.0 * _FACTOR
_POLL = 0.02

SKIP_REASON = "install the Debian package chromium (apt-get install chromium)"
_PROGRAMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container: no user namespace sandbox
    "--disable-gpu",
    "--remote-debugging-port=0",  # the browser picks a free port: no race with others
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
    "--disable-background-networking",
    "--disable-extensions",
    "--no-proxy-server",  # the tests' servers are on loopback
    "--mute-audio",
)


def chromium_path() -> str:
    """The browser's executable, or skip the test saying what to install."""
    for name in _PROGRAMS:
        if path := shutil.which(name):
            return path
    pytest.skip(SKIP_REASON)


class CDPError(Exception):
    """A DevTools command failed, or a page's script threw."""


class Browser:
    """A headless Chromium and the DevTools connection to it (see the module's docs)."""

    def __init__(self, process: subprocess.Popen[bytes], profile: Path) -> None:
        self.process = process
        self.profile = profile
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls) -> AsyncIterator[Browser]:
        path = chromium_path()
        # The profile, the browser's temporary files (TMPDIR: shared memory files with
        # --disable-dev-shm-usage) and its log, all removed afterwards.
        base = Path(tempfile.mkdtemp(prefix="chromium-"))
        profile, tmp = base / "profile", base / "tmp"
        tmp.mkdir()
        log = (base / "chromium.log").open("wb")
        process = subprocess.Popen(
            [path, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(tmp)},
            start_new_session=True,  # killed as a group: renderers, zygote, GPU process
        )
        browser = cls(process, profile)
        try:
            await browser._connect(Path(log.name))
            yield browser
        finally:
            try:
                await browser._shutdown()
            finally:
                log.close()
                shutil.rmtree(base, ignore_errors=True)

    async def _connect(self, log: Path) -> None:
        port_file = self.profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        lines: list[str] = []
        while len(lines) < 2:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chromium exited with status {self.process.returncode}:\n"
                    + log.read_text(errors="replace")[-4000:]
                )
            if loop.time() > deadline:
                raise RuntimeError(f"chromium wrote no {port_file} within {STARTUP_TIMEOUT} s")
            with contextlib.suppress(FileNotFoundError):
                lines = port_file.read_text().split()
            if len(lines) < 2:
                await asyncio.sleep(_POLL)
        port, path = lines[0], lines[1]
        self._ws = await websock.connect(
            f"ws://127.0.0.1:{port}{path}",
            max_message_size=None,
            compression=None,
            proxy=None,
            open_timeout=TIMEOUT,
        )
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        """Dispatch replies to their commands and events to their pages."""
        assert self._ws is not None
        error: BaseException = CDPError("the DevTools connection closed")
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if "id" in message:
                    waiter = self._replies.pop(message["id"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(message)
                elif (page := self._pages.get(message.get("sessionId", ""))) is not None:
                    page._event(message)
        except ConnectionClosed as exc:
            error = CDPError(f"the DevTools connection closed: {exc}")
        finally:
            for waiter in self._replies.values():
                if not waiter.done():
                    waiter.set_exception(error)
            self._replies.clear()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Run one DevTools command (in a page's ``session``); return its result."""
        assert self._ws is not None, "the browser is not connected"
        command: dict[str, Any] = {"id": next(self._ids), "method": method}
        command["params"] = params or {}
        if session is not None:
            command["sessionId"] = session
        waiter = asyncio.get_running_loop().create_future()
        self._replies[command["id"]] = waiter
        await self._ws.send(json.dumps(command))
        try:
            reply = await asyncio.wait_for(waiter, TIMEOUT)
        finally:
            self._replies.pop(command["id"], None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')} ({reply['error']})")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_page(self, url: str | None = None) -> Page:
        """A new tab, attached; navigated to ``url`` (and loaded) if given."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, target["targetId"], attached["sessionId"])
        self._pages[page.session] = page
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        if url is not None:
            await page.navigate(url)
        return page

    async def _shutdown(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close"), TIMEOUT)
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, TIMEOUT)
        # Browser.close lets it clean up; a browser that does not exit in time is killed.
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, TIMEOUT)
        # Whatever is left of it (helpers outliving the main process): the group is its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, TIMEOUT)


class Page:
    """One tab: commands in its session, JavaScript evaluated in its main frame."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        #: Console messages and uncaught exceptions of the page, for failure messages.
        self.console: list[str] = []

    def _event(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message["method"] == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            self.console.append(f"console.{params['type']}: {args}")
        elif message["method"] == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {text}")

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session)

    async def navigate(self, url: str) -> None:
        """Go to ``url`` and wait until the document is loaded (``readyState`` complete)."""
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        )

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); CDPError
        if it throws."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"{expression!r} threw: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = TIMEOUT) -> Any:
        """Evaluate ``expression`` until its value is truthy; return it. Polls, with a
        deadline: TimeoutError names the last value and the page's console. A failed
        evaluation counts as falsy (a document being replaced has no context for a moment)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                value = await self.evaluate(expression)
            except CDPError as exc:
                value = exc
            else:
                if value:
                    return value
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{expression!r} still {value!r} after {timeout} s; console: {self.console}"
                )
            await asyncio.sleep(_POLL)

    async def close(self) -> None:
        self.browser._pages.pop(self.session, None)
        await self.browser.send("Target.closeTarget", {"targetId": self.target})
