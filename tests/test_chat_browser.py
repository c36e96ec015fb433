"""The chat demo in a real browser: headless Chromium (tests/chromium.py) on
``websock chat --plain --workers 2 --redis URL`` (a real Redis: tests/redisserver.py).

Pages are opened on ``/#lobby`` (the page joins the room in its URL's fragment) until two of
them are served by different workers (the page shows the worker's pid from the server's
first message, in ``document.body.dataset.worker``); a message typed in one then appears in
the other's DOM, as text (no HTML interpreted).
"""

from __future__ import annotations

import json

import pytest

from chromium import Browser, Page, chromium_path
from redisserver import RedisServer
from test_chat import MAX_ATTEMPTS, chat_server

pytest_plugins = ["redisserver"]

LOG_TEXTS = "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"


async def say(page: Page, nick: str, text: str) -> None:
    """Type a nickname and a message in the page, and press Send."""
    await page.evaluate(
        f"""(() => {{
            document.getElementById("nick").value = {json.dumps(nick)};
            document.getElementById("text").value = {json.dumps(text)};
            document.getElementById("send").click();
        }})()"""
    )


async def wait_for_line(page: Page, line: str) -> None:
    await page.wait_for(f"{LOG_TEXTS}.includes({json.dumps(line)})")


async def test_two_pages_on_two_workers(redis_server: RedisServer) -> None:
    chromium_path()  # skips before the server starts if there is no browser
    async with (
        chat_server("--plain", "--workers", "2", "--redis", redis_server.url) as server,
        Browser.launch() as browser,
    ):
        url = f"http://127.0.0.1:{server.port}/#lobby"
        by_worker: dict[str, Page] = {}
        for _ in range(MAX_ATTEMPTS):
            page = await browser.new_page(url)
            worker = await page.wait_for("document.body.dataset.worker")
            if worker in by_worker:
                await page.close()
            else:
                by_worker[worker] = page
            if len(by_worker) == 2:
                break
        else:
            pytest.fail(f"{MAX_ATTEMPTS} pages, all served by worker {list(by_worker)}")
        (worker_a, a), (worker_b, b) = by_worker.items()
        assert worker_a != worker_b
        status = await b.evaluate('document.getElementById("status").textContent')
        assert status == f"room lobby, served by worker {worker_b}"

        hostile = 'hello <img src=x onerror="document.title=1"><b>bold</b> & "quotes"'
        await say(a, "ann", hostile)
        await wait_for_line(b, f"ann: {hostile}")
        await wait_for_line(a, f"ann: {hostile}")  # the sender sees its message too
        for page in (a, b):
            assert await page.evaluate("document.querySelectorAll('#log *:not(li)').length") == 0
            assert await page.evaluate("document.title") == "websock chat"
            assert await page.evaluate('document.getElementById("text").value') == ""

        await say(b, "bob", "hi ann")
        await wait_for_line(a, "bob: hi ann")
        assert await a.evaluate(LOG_TEXTS) == [f"ann: {hostile}", "bob: hi ann"]
        assert not a.console and not b.console, a.console + b.console
