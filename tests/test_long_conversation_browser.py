"""A long conversation in Chromium on the whole app: scrolling back to its first message builds the earlier ones and
removes far ones (the DOM stays bounded), the reader's place holds while messages are added above, and the search
within the conversation jumps to an old message that was not built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chat.store import Status, Store
from chat.ui.chat_view import WINDOW

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.browser

EXCHANGES = 150  # 300 messages
#: The first message's text, and where it is in the page (viewport px), after a frame (the page's own corrections).
FIRST = """async () => {
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const first = document.querySelector('.parley-chat > .parley-message');
  const text = first.querySelector('.parley-user-message, .parley-message-body')?.innerText.trim();
  return {id: first.id, text, top: first.getBoundingClientRect().top,
          count: document.querySelectorAll('.parley-message').length};
}"""


def seed(data_dir: Path) -> None:
    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    try:
        store.migrate()
        conversation = store.create_conversation(title="Long")
        for i in range(EXCHANGES):
            question = "question 120 about a narwhal" if i == 120 else f"question {i:03d}"
            _, answer = store.add_exchange(conversation.id, question, model="fake-model", temperature=0.7)
            store.finish_message(answer.id, content=f"answer {i:03d}", status=Status.complete)
    finally:
        store.close()


def message_count(page: Page) -> int:
    return page.locator(".parley-message").count()


def test_scrolling_back_to_the_first_message_keeps_the_dom_bounded_and_search_jumps(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    seed(data_dir)
    with serve(tmp_path, upstream, port) as app, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{port}/c/1")
        # the page opens at its newest message (scrolled there after the Markdown rendered)
        expect(page.get_by_text(f"answer {EXCHANGES - 1:03d}", exact=True)).to_be_in_viewport()
        most = message_count(page)
        assert most <= WINDOW

        before = page.evaluate(FIRST)
        for _ in range(2 * EXCHANGES // 40 + 2):  # scroll up to the top of the built messages until the first
            if before["text"] == "question 000":
                break
            page.evaluate("window.scrollTo(0, 0)")
            placed = page.evaluate(FIRST)  # where the first built message is with the page at its top
            page.wait_for_function(
                "(id) => document.querySelector('.parley-chat > .parley-message')?.id !== id", arg=before["id"]
            )  # an earlier batch was built above it
            after = page.evaluate(FIRST)
            moved = page.evaluate("(id) => document.getElementById(id)?.getBoundingClientRect().top", before["id"])
            if moved is not None:  # still built: the page kept it where the reader had it
                assert abs(moved - placed["top"]) <= 2, (moved, placed)
            most = max(most, after["count"])
            before = after
        assert before["text"] == "question 000"
        page.evaluate("window.scrollTo(0, 0)")
        expect(page.get_by_text("question 000", exact=True)).to_be_in_viewport()
        assert most <= WINDOW, most
        expect(page.get_by_text(f"answer {EXCHANGES - 1:03d}", exact=True)).to_have_count(0)  # the newest removed

        page.get_by_role("button", name="Search in this conversation").click()
        page.get_by_role("combobox", name="Search in this conversation").fill("narwhal")
        hit = page.locator(".q-dialog [role=option]").filter(has_text="narwhal")
        expect(hit).to_have_count(1)
        hit.click()
        found = page.locator(".parley-message").filter(has_text="question 120 about a narwhal")
        expect(found).to_be_in_viewport()
        expect(found).to_have_class(re.compile(r"\bparley-highlight\b"))
        expect(page.get_by_text("question 000", exact=True)).to_have_count(0)  # the window moved to it
        assert message_count(page) <= WINDOW
        # the composer's scroll-to-bottom button: to the newest, built first when they are not (the window may have
        # reached them already as the page filled the view around the hit)
        page.get_by_role("button", name="Scroll to the newest message").click()
        expect(page.get_by_text(f"answer {EXCHANGES - 1:03d}", exact=True)).to_be_in_viewport()
        assert_no_errors(app)
