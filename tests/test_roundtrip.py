"""Stored text is shown text: what a user types and what the upstream streams is stored exactly and shown exactly.

The whole app (app.py in a subprocess) on the fake upstream, in Chromium. A message is typed into the composer and
sent with Enter; the fake upstream answers with random pieces (random splits of random text, so pieces cut through
surrogate pairs' code points' neighbours: ZWJ sequences, skin-tone modifiers, combining marks). Then:

* the stored user message is the typed text, and the page shows it exactly (``textContent`` of the user bubble,
  which is plain text with ``white-space: pre-wrap``), live and after a reload;
* the stored answer is the concatenation of the pieces, and the page holds exactly that Markdown (the buffer Copy
  copies, and the clipboard after a click on Copy), live and after a reload.

A browser textarea normalises line breaks (``"\\r\\n"`` and a lone ``"\\r"`` become ``"\\n"``, HTML's "API value"), so
the user text is compared in that normalised form: what the user typed is what the composer holds. Answers keep
every ``"\\r"``: they never pass through a textarea. NUL and lone surrogates are left out of the generated text
(``Engine.send`` replaces them by U+FFFD; a lone surrogate cannot even cross the browser's UTF-8 boundary).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Page, expect

from chat.store import Role, Status

from .browser import chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store

pytestmark = pytest.mark.browser

#: Pieces of text that break naive handling of Unicode: emoji with skin tones and ZWJ joins, flags, CJK, Arabic and
#: Hebrew (right to left, with marks), combining characters, direction and zero-width controls, Markdown and HTML.
HARD = [
    "👍🏽", "👨‍👩‍👧", "👩🏿‍💻", "🏳️‍🌈", "🇫🇷", "❤️", "🫶🏻",
    "漢字", "日本語のテキスト", "中文", "한국어", "𠜎𠜱",
    "العربية", "مَرْحَبًا", "עברית", "שָׁלוֹם",
    "e\u0301", "\u0301", "a\u0308\u0304", "Z\u0324\u0354\u0367\u0311", "\u0915\u094d\u0937",
    "\u200d", "\u200e", "\u200f", "\u202e", "\u2066", "\ufeff", "\u00a0", "\u2028",
    "\t", "\n", "\n\n", "\r\n", "\r", "  ", " ",
    "**", "`", "```", "# ", "- ", "<b>x</b>", "&amp;", "\\", "[a](b)",
]  # fmt: skip
#: Any code point but NUL and the surrogates.
ANY_CHARACTER = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
TEXT = st.lists(
    st.one_of(st.sampled_from(HARD), st.text(ANY_CHARACTER, min_size=1, max_size=6)), min_size=1, max_size=10
).map("".join)


@st.composite
def split_text(draw: st.DrawFn) -> list[str]:
    """Random text cut at random code-point boundaries (empty pieces included)."""
    text = draw(TEXT)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def typed(text: str) -> str:
    """``text`` as a textarea holds it: line breaks normalised to ``"\\n"``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


USER_TEXT = "() => [...document.querySelectorAll('.parley-user-message')].pop().textContent"
ANSWER_BUFFER = "() => getElement([...document.querySelectorAll('.parley-message-body')].pop()).buffer"


class App:
    """The app serving on the session's fake upstream, one Chromium page with clipboard access, its data folder."""

    def __init__(self, url: str, page: Page, data_dir: Path, upstream: FakeUpstream) -> None:
        self.url, self.page, self.data_dir, self.upstream = url, page, data_dir, upstream
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream) -> Iterator[App]:
    tmp_path = tmp_path_factory.mktemp("roundtrip")
    port = free_port()
    fake_upstream_server.reset()
    with serve(tmp_path, fake_upstream_server, port), chromium() as browser:
        context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield App(f"http://127.0.0.1:{port}", page, tmp_path / "data", fake_upstream_server)
    fake_upstream_server.reset()


def round_trip(app: App, text: str, pieces: list[str]) -> None:
    """Send ``text`` from a new conversation, answered by ``pieces``; assert the database and the page agree."""
    page = app.page
    app.upstream.script = Script(pieces=pieces)
    page.goto(app.url + "/")
    composer = page.get_by_placeholder("Message Parley")
    composer.fill(text)
    assert composer.input_value() == typed(text)
    composer.press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+$"))
    conversation_id = int(page.url.rsplit("/", 1)[1])
    footer = page.locator(".parley-message-footer").last
    expect(footer).to_contain_text("fake-model")
    with opened_store(app.data_dir) as store:
        path = store.path(conversation_id)
    assert [(m.role, m.status) for m in path] == [(Role.user, Status.complete), (Role.assistant, Status.complete)]
    user, answer = path
    assert user.content == typed(text)
    assert answer.content == "".join(pieces)
    # live: the page that sent it, once its stream has ended (the footer comes over NiceGUI's socket, the text over the
    # answer's own: either may be first)
    expect(page.locator(".parley-message-body[aria-busy=false]").last).to_be_attached()
    assert page.evaluate(USER_TEXT) == user.content
    assert page.evaluate(ANSWER_BUFFER) == answer.content
    footer.get_by_label("Copy").click()
    expect(footer.get_by_label("Copy")).to_contain_text("check")
    assert page.evaluate("navigator.clipboard.readText()") == answer.content
    # stored: the same conversation opened again
    page.goto(f"{app.url}/c/{conversation_id}")
    expect(page.locator(".parley-message-footer").last).to_contain_text("fake-model")
    assert page.evaluate(USER_TEXT) == user.content
    assert page.evaluate(ANSWER_BUFFER) == answer.content
    assert not app.errors, app.errors


def test_hard_text_round_trips_through_the_database_and_the_page(app: App) -> None:
    text = "Thumbs 👍🏽, family 👨‍👩‍👧,\t漢字 العربية עברית e\u0301!\n\tindented\n\n  two blank  \n"
    answer = "Yes 👍🏽👨‍👩‍👧\n\n漢字\tالعربية עברית\r\ne\u0301 — ok\n"
    # cut inside the ZWJ sequence, between a skin tone and its emoji, and between e and its accent
    pieces = ["Yes 👍", "🏽👨\u200d", "👩\u200d👧\n\n漢", "字\tالعربية עברית\r\ne", "\u0301 — ok\n"]
    assert "".join(pieces) == answer
    round_trip(app, text, pieces)
    page = app.page  # what the user sees of their message, not only its text: every tab and line break kept
    bubble = page.locator(".parley-user-message")
    assert bubble.evaluate("el => getComputedStyle(el).whiteSpace") == "pre-wrap"
    assert bubble.evaluate("el => el.innerText") == text


def test_typed_carriage_returns_are_stored_as_the_composer_holds_them(app: App) -> None:
    # the composer (a textarea) turns "\r\n" and "\r" into "\n": what is stored and shown is what it held
    round_trip(app, "one\r\ntwo\rthree\n", ["a\r", "\nb\r"])
    with opened_store(app.data_dir) as store:
        assert store.messages(int(app.page.url.rsplit("/", 1)[1]))[0].content == "one\ntwo\nthree\n"


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=TEXT.filter(lambda s: typed(s).strip()), pieces=split_text())
def test_any_text_round_trips_through_the_database_and_the_page(app: App, text: str, pieces: list[str]) -> None:
    round_trip(app, text, pieces)
