"""Nothing lost across tabs and refreshes: the whole app (app.py in a subprocess) on the fake upstream, in Chromium.

An answer belongs to the engine, not to a tab: a reload or a closed tab must not stop, lose or double it; a second
tab on the same conversation follows the same answer live, can stop it, and cannot start a second one.

Every answer here is made of numbered words (``p000 p001 … p199.``), so a lost or doubled piece changes the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chat.store import Role, Status

from .browser import chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, wait_until

pytestmark = pytest.mark.browser

#: The live answer: 200 numbered words at 40 per second (5 s); the last one ends with a full stop, so the rendered
#: paragraph's text is the answer's text exactly (Markdown trims a paragraph's trailing space).
WORDS = [f"p{i:03d} " for i in range(199)] + ["p199."]
SLOW = Script(pieces=WORDS, rate=40)
FULL = "".join(WORDS)
BUSY = "Wait for the current answer to finish, or stop it, before sending another message."

# The last answer on a page: its element, the text its rendered blocks show (one line per block), and the raw
# Markdown it holds (what Copy copies).
LAST_BODY = "() => [...document.querySelectorAll('.parley-message-body')].pop()"
SHOWN = f"() => [...({LAST_BODY})().querySelectorAll('.parley-md > *')].map((block) => block.textContent).join('\\n')"
BUFFER = f"() => getElement(({LAST_BODY})()).buffer"


def live_with(marker: str) -> str:
    """A predicate: the page's last answer is still streaming and already shows ``marker``."""
    return (
        f"() => {{ const el = ({LAST_BODY})(); return !!el && el.getAttribute('aria-busy') === 'true'"
        f" && el.querySelector('.parley-md').textContent.includes({marker!r}); }}"
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app_url(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    port = free_port()
    with serve(tmp_path, upstream, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser() -> Iterator:
    with chromium() as browser:
        yield browser


def new_page(context) -> Page:
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def send(page: Page, text: str) -> None:
    composer = page.get_by_placeholder("Message Parley")
    composer.fill(text)
    composer.press("Enter")


def wait_finished(page: Page) -> None:
    """Until the last answer on ``page`` has ended and its footer is built."""
    # the first answer of a new conversation shows in the page's next answer until its own element is built: no
    # .parley-message-body for a moment
    page.wait_for_function(f"() => ({LAST_BODY})()?.getAttribute('aria-busy') === 'false'")
    expect(page.locator(".parley-message-footer").last).to_contain_text("fake-model")


def stored(data_dir: Path, conversation_id: int = 1):
    with opened_store(data_dir) as store:
        return store.path(conversation_id), store.messages(conversation_id)


def two_tabs_on_a_streaming_answer(browser, app_url: str, upstream: FakeUpstream) -> tuple[Page, Page]:
    """Tab 1 starts a conversation (a quick first exchange); tab 2 opens it; then tab 1 sends a second message, whose
    answer streams slowly (``SLOW``). Returns both tabs once tab 2 shows that answer growing."""
    context = browser.new_context()
    first, second = new_page(context), new_page(context)
    upstream.script = Script(pieces=["Hello ", "there."])
    first.goto(app_url + "/")
    send(first, "Hi")
    first.wait_for_url("**/c/1")
    wait_finished(first)
    second.goto(app_url + "/c/1")
    expect(second.locator(".parley-message-body").last).to_have_text("Hello there.")
    expect(second.get_by_label("Send")).to_be_visible()
    upstream.script = SLOW
    send(first, "Count slowly")
    # tab 2 did nothing: the new message, the live answer and Stop come to it from the engine
    expect(second.locator(".parley-user-message").last).to_have_text("Count slowly")
    second.wait_for_function(live_with("p010"))
    expect(second.get_by_label("Stop")).to_be_visible()
    expect(first.get_by_label("Stop")).to_be_visible()
    return first, second


def test_reload_mid_answer_reattaches_and_ends_with_exactly_the_whole_text(
    browser, app_url: str, upstream: FakeUpstream, data_dir: Path
) -> None:
    upstream.script = SLOW
    page = new_page(browser.new_context())
    page.goto(app_url + "/")
    send(page, "Count slowly")
    page.wait_for_url("**/c/1")
    page.wait_for_function(live_with("p010"))
    page.reload()
    # re-attached to the answer still streaming: it keeps growing on the reloaded page
    page.wait_for_function(live_with("p120"))
    assert not upstream.streams[0].finished, "the answer should still be streaming after the reload"
    expect(page.get_by_label("Stop")).to_be_visible()
    wait_finished(page)
    assert page.evaluate(SHOWN) == FULL
    assert page.evaluate(BUFFER) == FULL
    expect(page.locator(".parley-message-footer").last).not_to_contain_text("Stopped")
    expect(page.get_by_label("Send")).to_be_visible()
    path, messages = stored(data_dir)
    assert [(m.role, m.content, m.status) for m in path] == [
        (Role.user, "Count slowly", Status.complete),
        (Role.assistant, FULL, Status.complete),
    ]
    assert len(messages) == 2
    assert len(upstream.streams) == 1, "the reload must not start the answer again"
    record = upstream.streams[0]
    assert record.finished and not record.client_disconnected and record.tokens_sent == len(WORDS)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_closed_tab_answer_goes_on_and_a_new_tab_shows_it_whole(
    browser, app_url: str, upstream: FakeUpstream, data_dir: Path
) -> None:
    upstream.script = SLOW
    context = browser.new_context()
    page = new_page(context)
    page.goto(app_url + "/")
    send(page, "Count slowly")
    page.wait_for_url("**/c/1")
    page.wait_for_function(live_with("p010"))
    page.close()
    assert upstream.streams[0].ended.wait(15), "the answer should go on to its end with no tab open"
    record = upstream.streams[0]
    assert record.finished and not record.client_disconnected and record.tokens_sent == len(WORDS)
    # the final write follows the upstream's last byte
    wait_until(lambda: stored(data_dir)[0][-1].status != Status.streaming)
    path, messages = stored(data_dir)
    assert [(m.role, m.content, m.status) for m in path] == [
        (Role.user, "Count slowly", Status.complete),
        (Role.assistant, FULL, Status.complete),
    ]
    assert len(messages) == 2
    page = new_page(context)
    page.goto(app_url + "/c/1")
    expect(page.locator(".parley-user-message")).to_have_text("Count slowly")
    wait_finished(page)
    assert page.evaluate(SHOWN) == FULL
    assert page.evaluate(BUFFER) == FULL
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_two_tabs_follow_the_same_answer_live_and_end_with_the_same_text(
    browser, app_url: str, upstream: FakeUpstream, data_dir: Path
) -> None:
    first, second = two_tabs_on_a_streaming_answer(browser, app_url, upstream)
    for page in (first, second):  # both grow: a middle word while the answer still streams
        page.wait_for_function(live_with("p100"))
    assert not upstream.streams[-1].finished
    for page in (first, second):
        wait_finished(page)
        assert page.evaluate(SHOWN) == FULL
        assert page.evaluate(BUFFER) == FULL
        expect(page.get_by_label("Send")).to_be_visible()
        assert not page.errors, page.errors  # type: ignore[attr-defined]
    path, messages = stored(data_dir)
    assert [m.content for m in path] == ["Hi", "Hello there.", "Count slowly", FULL]
    assert path[-1].status == Status.complete
    assert len(messages) == 4
    assert len(upstream.streams) == 2


def test_stop_in_the_second_tab_stops_the_answer_for_both(
    browser, app_url: str, upstream: FakeUpstream, data_dir: Path
) -> None:
    first, second = two_tabs_on_a_streaming_answer(browser, app_url, upstream)
    first.wait_for_function(live_with("p020"))
    second.get_by_label("Stop").click()
    record = upstream.streams[-1]
    assert record.ended.wait(5)
    assert record.client_disconnected, "Stop must close the upstream stream"
    assert not record.finished
    for page in (first, second):
        expect(page.locator(".parley-message-footer").last).to_contain_text("Stopped")
        expect(page.get_by_label("Send")).to_be_visible()
    path, messages = stored(data_dir)
    answer = path[-1]
    assert answer.status == Status.cancelled
    assert len(messages) == 4
    words = answer.content.split()
    assert 20 <= len(words) < len(WORDS)
    assert answer.content == "".join(WORDS[: len(words)]), "the kept text is the streamed words, in order, once each"
    for page in (first, second):  # the partial text kept on both pages is the stored one
        assert page.evaluate(BUFFER) == answer.content
        assert page.evaluate(SHOWN) == answer.content.rstrip()  # Markdown trims the paragraph's trailing space
        assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_send_from_the_other_tab_while_it_answers_is_refused_and_keeps_the_text(
    browser, app_url: str, upstream: FakeUpstream, data_dir: Path
) -> None:
    first, second = two_tabs_on_a_streaming_answer(browser, app_url, upstream)
    composer = second.get_by_placeholder("Message Parley")
    composer.fill("Me too")
    composer.press("Enter")
    expect(second.locator(".q-notification")).to_contain_text(BUSY)
    expect(composer).to_have_value("Me too")
    expect(second.get_by_label("Stop")).to_be_visible()
    expect(first.locator(".q-notification")).to_have_count(0)  # only the tab that tried is told
    path, messages = stored(data_dir)
    assert len(messages) == 4 and path[-1].status == Status.streaming
    for page in (first, second):  # the running answer was not disturbed
        wait_finished(page)
        assert page.evaluate(BUFFER) == FULL
    expect(composer).to_have_value("Me too")
    path, messages = stored(data_dir)
    assert [m.content for m in path] == ["Hi", "Hello there.", "Count slowly", FULL]
    assert len(messages) == 4
    assert len(upstream.streams) == 2
    assert len(upstream.requests) == 2
