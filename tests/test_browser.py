"""The whole app in a real headless Chromium: app.py as a subprocess on the fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat.store import Status

from .browser import chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store

pytestmark = pytest.mark.browser

ANSWER = ["Rivers ", "**flow** ", "to the ", "sea.\n\n", "```python\n", "print('río')\n", "```\n"]


@pytest.fixture
def app_url(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    """The app's URL while it runs; see ``serve``."""
    port = free_port()
    with serve(tmp_path, upstream, port):
        yield f"http://127.0.0.1:{port}"


def test_send_see_streamed_answer_reload_see_it_again(app_url: str, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script = Script(pieces=ANSWER, rate=20)
    with chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(app_url + "/")
        composer = page.get_by_placeholder("Message Parley")
        composer.fill("Where do rivers go?")
        composer.press("Shift+Enter")  # a new line, not a send
        composer.type("Briefly.")
        assert composer.input_value() == "Where do rivers go?\nBriefly."
        page.evaluate("window.__samePage = 1")
        composer.press("Enter")
        page.wait_for_url("**/c/1")
        body = page.locator(".parley-message-body").last
        expect(page.locator(".parley-user-message")).to_have_text("Where do rivers go?\nBriefly.")
        expect(body.locator("strong")).to_have_text("flow", timeout=10_000)  # Markdown rendered while it streams
        expect(body.locator("pre code")).to_contain_text("print('río')", timeout=10_000)
        expect(page.locator(".parley-message-footer").last).to_contain_text("fake-model", timeout=10_000)
        expect(composer).to_have_value("")
        assert page.evaluate("window.__samePage") == 1  # Send did not reload the page
        expect(page.locator("a[href='/c/1']")).to_have_text("Where do rivers go? Briefly.")  # the drawer's new row
        page.reload()
        body = page.locator(".parley-message-body").last
        expect(body.locator("strong")).to_have_text("flow")
        expect(body).to_contain_text("Rivers flow to the sea.")
        expect(body.locator("pre code")).to_contain_text("print('río')")
        assert not errors, errors
    with opened_store(tmp_path / "data") as store:
        path = store.path(1)
    assert [m.content for m in path] == ["Where do rivers go?\nBriefly.", "".join(ANSWER)]
    assert path[1].status == Status.complete


def test_answer_is_still_there_after_restarting_the_app(tmp_path: Path, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=ANSWER)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with chromium() as browser:
        page = browser.new_page()
        with serve(tmp_path, upstream, port):
            page.goto(url + "/")
            page.get_by_placeholder("Message Parley").fill("Where do rivers go?")
            page.keyboard.press("Enter")
            page.wait_for_url("**/c/1")
            expect(page.locator(".parley-message-footer").last).to_contain_text("fake-model", timeout=10_000)
            page.close()  # an open tab would reload itself when the new server comes up, racing our own navigation
        with serve(tmp_path, upstream, port):  # a new process on the same data folder
            page = browser.new_page()
            page.goto(url + "/c/1")
            expect(page.locator(".parley-user-message")).to_have_text("Where do rivers go?")
            expect(page.locator(".parley-message-body").last).to_contain_text("Rivers flow to the sea.")


NEAR_BOTTOM = "() => window.innerHeight + window.scrollY >= document.scrollingElement.scrollHeight - 100"


def test_page_follows_a_growing_answer_and_opens_at_the_newest_message(app_url: str, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=[f"Paragraph {i}.\n\n" for i in range(120)], rate=60)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 600})
        page.goto(app_url + "/")
        page.get_by_placeholder("Message Parley").fill("Many paragraphs, please.")
        page.keyboard.press("Enter")
        page.wait_for_url("**/c/1")
        expect(page.locator(".parley-message-body").last).to_contain_text("Paragraph 60.", timeout=10_000)
        assert page.evaluate("() => window.scrollY") > 500, "the page should have scrolled with the answer"
        assert page.evaluate(NEAR_BOTTOM)
        expect(page.locator(".parley-message-footer").last).to_contain_text("fake-model", timeout=10_000)
        page.goto(app_url + "/c/1")
        expect(page.locator(".parley-message-body").last).to_contain_text("Paragraph 119.")
        page.wait_for_function(NEAR_BOTTOM, timeout=5_000)  # opened at the newest message


def test_copy_copies_the_answers_markdown(app_url: str, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=ANSWER)
    with chromium() as browser:
        context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.goto(app_url + "/")
        page.get_by_placeholder("Message Parley").fill("Copy me")
        page.keyboard.press("Enter")
        footer = page.locator(".parley-message-footer").last
        expect(footer).to_contain_text("fake-model", timeout=10_000)
        footer.get_by_label("Copy").click()
        expect(footer.get_by_label("Copy")).to_contain_text("check")  # the icon turns into a check mark
        assert page.evaluate("navigator.clipboard.readText()") == "".join(ANSWER)


def test_answer_streams_over_server_sent_events_when_websockets_are_blocked(
    app_url: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.script = Script(pieces=[f"part{i} " for i in range(60)], rate=30)  # 2 s
    with chromium() as browser:
        page = browser.new_page()
        refused: list[str] = []
        # a proxy that blocks the answers' WebSockets (NiceGUI's own socket still works): the answer's own and the
        # page's next-answer socket (which never falls back to server-sent events: the answer's element does)
        page.route_web_socket("**/api/messages/*/stream*", lambda ws: (refused.append(ws.url), ws.close()))
        page.route_web_socket("**/api/answers/next*", lambda ws: ws.close())
        streams: list[str] = []
        page.on("request", lambda request: streams.append(request.url) if "/stream" in request.url else None)
        page.goto(app_url + "/")
        page.get_by_placeholder("Message Parley").fill("Count, please.")
        page.keyboard.press("Enter")
        page.wait_for_url("**/c/1")
        body = page.locator(".parley-message-body").last
        expect(body).to_contain_text("part5")  # live, before the end
        assert body.get_attribute("aria-busy") == "true"
        expect(body).to_have_attribute("aria-busy", "false", timeout=15_000)
        expect(body).to_have_text("".join(f"part{i} " for i in range(60)).strip())
        assert len(refused) >= 2  # the WebSocket was tried, and refused
        assert [url for url in streams if url.startswith("http")]  # then an EventSource followed the answer
    with opened_store(tmp_path / "data") as store:
        assert store.path(1)[1].content == "".join(f"part{i} " for i in range(60))
