"""The page's next answer (``chat/ui/next_answer.py``) in a real headless Chromium: after Enter, the question and the
first tokens show over the socket the page opened beforehand, before any of NiceGUI's updates reaches the page; then
the message views take over with nothing shown twice; and without that socket everything works as before."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, wait_until

pytestmark = pytest.mark.browser

PIECES = [f"word{i} " for i in range(40)]  # 2 s at 20 a second
ANSWER = "".join(PIECES).strip()


@pytest.fixture
def app(tmp_path: Path, upstream: FakeUpstream) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app's URL and process while it runs; see ``serve``."""
    port = free_port()
    with serve(tmp_path, upstream, port) as process:
        yield f"http://127.0.0.1:{port}", process


def waiting_sockets(url: str) -> int:
    """How many next-answer sockets the app holds open and waiting (``/api/metrics``)."""
    return httpx.get(url + "/api/metrics", timeout=10).json()["waiting_next_answers"]


def watched_page(browser: Any) -> tuple[Any, list[str]]:
    """A new page of ``browser`` and the list its uncaught script errors go to."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


class HeldUpdates:
    """Sits between the page and NiceGUI's own WebSocket: while ``holding``, what the server sends is kept back (in
    order) instead of reaching the page; ``release`` delivers it. What the page sends always goes through."""

    def __init__(self, page: Any) -> None:
        self.holding = False
        self.held: list[str | bytes] = []
        self.route: Any = None
        page.route_web_socket("**/_nicegui_ws/**", self._connect)

    def _connect(self, route: Any) -> None:
        self.route = route
        server = route.connect_to_server()
        server.on_message(lambda message: self.held.append(message) if self.holding else route.send(message))
        route.on_message(server.send)

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for message in held:
            self.route.send(message)


def test_the_question_and_first_tokens_show_before_any_update_of_the_page(
    app: tuple[str, subprocess.Popen], upstream: FakeUpstream, tmp_path: Path
) -> None:
    app_url, process = app
    upstream.script = Script(pieces=PIECES, rate=20)
    with chromium() as browser:
        page, errors = watched_page(browser)
        updates = HeldUpdates(page)
        page.goto(app_url + "/")
        composer = page.get_by_placeholder("Message Parley")
        expect(composer).to_be_visible()
        next_answer = page.locator(".parley-next-answer")
        expect(next_answer).to_be_hidden()
        for turn, question in enumerate(["Count for me.", "Again, please."]):
            expect(next_answer).to_have_attribute("data-waiting", "true")  # its socket is open (a Send right after
            composer.fill(question)  # the page loaded, before it is, is shown by the message views alone)
            updates.hold()
            composer.press("Enter")
            # nothing of NiceGUI's reaches the page now: what shows came over the next-answer socket
            expect(next_answer.locator(".parley-next-question")).to_have_text(question)
            expect(next_answer).to_contain_text("word0 word1")
            expect(page.locator(".parley-user-message")).to_have_count(turn)  # no message view was built here
            if turn == 0:
                expect(page.locator(".parley-welcome")).to_be_hidden()
            assert updates.held, "the server's updates were held back"
            updates.release()
            expect(page.locator(".parley-user-message")).to_have_count(turn + 1)
            expect(next_answer).to_be_hidden()  # the message views took over
            answer = page.locator(".parley-message-body").last
            expect(answer).to_have_attribute("aria-busy", "false", timeout=15_000)
            expect(answer).to_have_text(ANSWER)
            expect(page.locator(".parley-user-message").last).to_have_text(question)
            expect(page.get_by_text("word0 word1")).to_have_count(turn + 1)  # shown once per answer, not twice
            expect(composer).to_have_value("")
        assert not errors, errors
        assert waiting_sockets(app_url) == 1  # the page's next one
    wait_until(lambda: waiting_sockets(app_url) == 0, what="the closed page's socket to be let go")
    assert_no_errors(process)
    with opened_store(tmp_path / "data") as store:
        assert [(m.role.value, m.content) for m in store.path(1)] == [
            ("user", "Count for me."), ("assistant", "".join(PIECES)),
            ("user", "Again, please."), ("assistant", "".join(PIECES)),
        ]  # fmt: skip


def test_without_the_next_answer_socket_the_answer_streams_as_before(
    app: tuple[str, subprocess.Popen], upstream: FakeUpstream, tmp_path: Path
) -> None:
    app_url, process = app
    upstream.script = Script(pieces=PIECES, rate=40)
    with chromium() as browser:
        page, errors = watched_page(browser)
        refused: list[str] = []
        page.route_web_socket("**/api/answers/next*", lambda ws: (refused.append(ws.url), ws.close()))
        page.goto(app_url + "/")
        composer = page.get_by_placeholder("Message Parley")
        composer.fill("Count without it.")
        composer.press("Enter")
        page.wait_for_url("**/c/1")
        answer = page.locator(".parley-message-body").last
        expect(answer).to_contain_text("word5")
        expect(answer).to_have_attribute("aria-busy", "false", timeout=15_000)
        expect(answer).to_have_text(ANSWER)
        expect(page.locator(".parley-user-message")).to_have_text("Count without it.")
        expect(page.locator(".parley-next-answer")).to_be_hidden()
        assert refused, "the page tried its next-answer socket"
        assert not errors, errors
    assert_no_errors(process)
    with opened_store(tmp_path / "data") as store:
        assert store.path(1)[1].content == "".join(PIECES)
