"""The chat page at ``/``, driven in a real Chromium against a live server.

The browser is Debian's ``chromium`` (``.ci/run`` installs it when missing), driven by
Playwright. The server runs the real composition on a real socket with a stand-in
agent: the echo agent (which says what it remembers), plus three words that ask for a
slow answer, a long one to stop, and an upstream failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import attrs
import pytest

from nanobot_api.app.config import Config
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.errors import UpstreamFailed
from nanobot_api.domain.ports import Reply
from nanobot_api.domain.turns import Turn

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "images" / "chat-page.png"
KEY = "sk-chat-page-0123456789"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Chromium for the chat page tests: .ci/run installs it")
    pytest.skip(
        "no Chromium here (apt-get install chromium); the chat page tests need a browser",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.slow
MARKDOWN = (
    "Here is **Markdown**, rendered as it streams:\n\n"
    "```python\nprint('hello from the chat page')\n```\n\n"
    "- a list item with `inline code`\n- and a [link](https://example.com)"
)


class StandIn:
    """The echo agent, except for a few words that ask for something else."""

    model = "nanobot-echo"

    def __init__(self) -> None:
        self._echo = EchoAgent()
        self.stopped = anyio.Event()

    async def respond(self, turn: Turn, reply: Reply) -> None:
        if turn.text == "slowly":
            for word in ("one", "two", "three", "four", "five", "six"):
                await reply.send(f"{word} ")
                await anyio.sleep(0.15)
        elif turn.text == "forever":
            try:
                for number in range(10_000):
                    await reply.send(f"word{number} ")
                    await anyio.sleep(0.05)
            finally:
                self.stopped.set()  # the page's Stop reached the turn
        elif turn.text == "markdown, please":
            for piece in MARKDOWN.split(" "):
                await reply.send(f"{piece} ")
        elif turn.text == "fail":
            raise UpstreamFailed("The model provider answered 502 Bad Gateway")
        else:
            await self._echo.respond(turn, reply)


# A drop as the browser delivers one: a DataTransfer holding a File, on the main area.
DROP = """({name, text}) => {
    const data = new DataTransfer();
    data.items.add(new File([text], name, {type: "text/plain"}));
    const main = document.querySelector("main");
    main.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true}));
    main.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
}"""


@pytest.fixture(name="browser")
async def _browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


def server_config(tmp_path: Path, **api: object) -> Config:
    return attrs.evolve(Config(), api=attrs.evolve(Config().api, **api), workspace=tmp_path)


async def open_page(browser: Browser, server: RunningServer, width: int = 1100) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 720})
    await page.goto(f"{server.origin}/")
    return page


async def say(page: Page, text: str) -> None:
    await page.get_by_label("Message (Enter sends").fill(text)
    await page.get_by_label("Message (Enter sends").press("Enter")


async def last_answer(page: Page) -> str:
    await expect(page.locator("#stop")).to_be_hidden()
    return await page.locator(".message.assistant .body").last.inner_text()


async def test_a_conversation_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    agent = StandIn()
    async with running_server(build(server_config(tmp_path), agent=agent)) as server:
        page = await open_page(browser, server)
        await expect(page.locator("body[data-ready=true]")).to_have_count(1)
        await expect(page.locator("#model")).to_have_text("nanobot-echo")

        # The answer grows as it streams.
        await say(page, "slowly")
        answer = page.locator(".message.assistant .body").last
        seen = set()
        with anyio.fail_after(20):
            while (await page.locator("#stop").is_visible()) or not seen:
                seen.add((await answer.inner_text()).strip())
                await anyio.sleep(0.05)
        assert (await answer.inner_text()).strip() == "one two three four five six"
        assert len(seen - {""}) >= 3, seen

        # A second turn is remembered, and Shift+Enter only adds a line.
        prompt = page.get_by_label("Message (Enter sends")
        await prompt.fill("again")
        await prompt.press("Shift+Enter")
        assert await prompt.input_value() == "again\n"
        await say(page, "again")
        assert await last_answer(page) == 'echo: again (turn 2; earlier: "slowly")'

        # A file, picked as a user would; the agent reports what it received.
        await page.locator("#files").set_input_files(ROOT / "examples" / "files" / "notes.txt")
        await expect(page.locator("#attached")).to_contain_text("notes.txt")
        await say(page, "read this")
        assert (await last_answer(page)).startswith("echo: read this [notes.txt: 31 chars]")

        # A file dropped on the page is attached like a picked one.
        await page.evaluate(DROP, {"name": "dropped.txt", "text": "dropped words"})
        await expect(page.locator("#attached")).to_contain_text("dropped.txt")
        await say(page, "dropped")
        assert (await last_answer(page)).startswith("echo: dropped [dropped.txt: 13 chars]")

        # A file the API refuses is shown as the API's error, not as an answer.
        mystery = {"name": "mystery.bin", "mimeType": "application/octet-stream"}
        await page.locator("#files").set_input_files({**mystery, "buffer": b"\x00\x01\xff"})
        await say(page, "and this")
        await expect(page.locator(".message.error").last).to_contain_text("415")
        await expect(page.locator(".message.error").last).to_contain_text("mystery.bin")

        # A second conversation, then back: each shows its own history, from the server.
        await page.get_by_role("button", name="New conversation").click()
        await expect(page.locator(".message")).to_have_count(0)
        await say(page, "other topic")
        assert await last_answer(page) == "echo: other topic"
        listed = page.locator("#conversations .open")
        await expect(listed).to_have_count(2)
        await expect(listed.first).to_have_text("other topic")  # newest first
        await listed.nth(1).click()
        await expect(page.locator(".message.user .body").first).to_have_text("slowly")
        await expect(page.locator(".message.assistant")).to_have_count(4)

        # A reload keeps the conversations and the one that was open.
        await page.reload()
        await expect(page.locator("#conversations .open")).to_have_count(2)
        await expect(page.locator(".message.assistant")).to_have_count(4)

        # Stop ends a long answer, and the turn on the server with it.
        await say(page, "forever")
        await expect(page.locator(".message.assistant").last).to_contain_text("word3")
        await page.get_by_role("button", name="Stop").click()
        await expect(page.locator("#status")).to_have_text("Stopped.")
        with anyio.fail_after(10):
            await agent.stopped.wait()

        # An upstream failure is an error, never an answer.
        answers = await page.locator(".message.assistant").count()
        await say(page, "fail")
        error = page.locator(".message.error")
        await expect(error).to_contain_text("502")
        await expect(error).to_have_attribute("role", "alert")
        assert await page.locator(".message.assistant").count() == answers

        # Deleting a conversation removes it from the server's list.
        await page.get_by_role("button", name="Delete conversation other topic").click()
        await expect(page.locator("#conversations .open")).to_have_count(1)

        await page.get_by_role("button", name="New conversation").click()
        await say(page, "markdown, please")
        await expect(page.locator(".message.assistant strong").last).to_have_text("Markdown")
        code = page.locator(".message.assistant pre code").last
        await expect(code).to_have_text("print('hello from the chat page')")
        await expect(page.locator(".message.assistant li")).to_have_count(2)
        link = page.locator(".message.assistant a").last
        await expect(link).to_have_attribute("href", "https://example.com")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=tmp_path / "chat-page.png")
        if os.environ.get("NANOBOT_UPDATE_SCREENSHOT"):
            shutil.copy(tmp_path / "chat-page.png", SCREENSHOT)


async def test_the_page_asks_for_the_key_once_and_keeps_it_for_the_tab(
    browser: Browser, tmp_path: Path
) -> None:
    app = build(server_config(tmp_path, api_key=KEY), agent=StandIn())
    async with running_server(app, api_key=KEY) as server:
        page = await open_page(browser, server, width=390)  # a phone's width
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible()
        await page.get_by_label("API key", exact=True).fill("wrong-key")
        await page.get_by_role("button", name="Use this key").click()
        await expect(dialog).to_contain_text("That key was refused")
        await page.get_by_label("API key", exact=True).fill(KEY)
        await page.get_by_role("button", name="Use this key").click()
        await expect(page.locator("#model")).to_have_text("nanobot-echo")
        await say(page, "hello")
        assert await last_answer(page) == "echo: hello"

        await page.reload()  # the same tab: no second prompt
        await expect(page.locator(".message.user .body")).to_have_text(["hello"])
        await expect(dialog).to_be_hidden()
        assert KEY not in page.url
        assert await page.evaluate("sessionStorage.getItem('nanobot.apiKey')") == KEY
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the phone


async def test_the_page_is_off_when_configured_so(tmp_path: Path) -> None:
    app = build(server_config(tmp_path, chat_page=False))
    async with app.test_app() as running:
        assert (await running.test_client().get("/")).status_code == 404


async def test_the_page_and_its_files_need_no_key_and_stay_on_this_server(
    tmp_path: Path,
) -> None:
    app = build(server_config(tmp_path, api_key=KEY))
    async with app.test_app() as running:
        client = running.test_client()
        page = await client.get("/")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        script = await client.get("/static/chat.js")
        assert script.status_code == 200
        assert script.content_type.startswith("text/javascript")
        assert (await client.get("/static/chat.css")).status_code == 200
        assert (await client.get("/static/nope.js")).status_code == 404
        assert (await client.get("/v1/models")).status_code == 401


def test_the_docs_show_the_screenshot_these_tests_take() -> None:
    """Refreshed with NANOBOT_UPDATE_SCREENSHOT=1 when the page changes."""
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")
    tutorial = (ROOT / "docs" / "tutorials" / "getting-started.md").read_text()
    assert "(../images/chat-page.png)" in tutorial
