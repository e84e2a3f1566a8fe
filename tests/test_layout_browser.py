"""The pages in headless Chromium as people see them: a phone (390×844, touch) and a laptop (1280×800), light and dark,
by keyboard, and read aloud. Geometry, colours and accessibility are measured on the rendered page; a screenshot of
each size and theme is saved to ``test-artifacts/screenshots/`` for people to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from chat.store import Role, Status

from .a11y import low_contrast, unnamed_controls
from .browser import ROOT, assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import PASSWORD, add_users, opened_store, wait_until

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
SIZES = {"phone": PHONE, "desktop": DESKTOP}

LONG_TITLE = "Write a Python function that reverses a string, with an example, and explain every step of it slowly"
LONG_LINE = "print('" + "a very long line of code that does not fit " * 8 + "')"
#: An answer with everything that could push a page sideways: a long code line, a long URL, a long word, a table.
WIDE_ANSWER = [
    "Here is a function:\n\n```python\ndef reverse(text: str) -> str:\n    return text[::-1]\n\n",
    LONG_LINE + "\n```\n\n",
    "See https://example.com/" + "very-long-path-segment/" * 12 + " and Donaudampfschifffahrtsgesellschaftskapitän"
    "switwenrentenversicherungsanstalt.\n\n",
    "| name | value | more | and more | columns |\n|---|---|---|---|---|\n| " + " | ".join(["wide cell text"] * 5),
    " |\n\nDone.",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream, browser: Browser
) -> Iterator[tuple[str, Path]]:
    """One app.py for the module (personal mode, the fake upstream): its URL and data folder. Two conversations exist
    when the tests start: 2, the newest, and 1 with ``LONG_TITLE`` and ``WIDE_ANSWER``."""
    tmp_path = tmp_path_factory.mktemp("layout")
    port = free_port()
    fake_upstream_server.reset()
    with serve(tmp_path, fake_upstream_server, port) as process:
        url = f"http://127.0.0.1:{port}"
        page = browser.new_page()
        for text, pieces in ((LONG_TITLE, WIDE_ANSWER), ("A second conversation", ["Short ", "answer."])):
            fake_upstream_server.script = Script(pieces=pieces)
            page.goto(url + "/")
            send(page, text)
            page.wait_for_url("**/c/*")
            expect(page.get_by_text(pieces[-1].strip().splitlines()[-1])).to_be_visible()
        page.close()
        yield url, tmp_path / "data"
        assert_no_errors(process)


def send(page: Page, text: str) -> None:
    composer = page.get_by_placeholder("Message Parley")
    composer.fill(text)
    composer.press("Enter")


@pytest.fixture
def new_page(browser: Browser) -> Iterator:
    """Makes pages, each in a new browser context (its own storage) of a ``SIZES`` size; all are closed after the test
    (a page left open in the background may have its animations paused, and would slow the next tests)."""
    contexts: list[BrowserContext] = []

    def make(size: str = "desktop", **options) -> Page:
        contexts.append(browser.new_context(**SIZES[size], **options))
        page = contexts[-1].new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors  # type: ignore[attr-defined]
        return page

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Save what the page shows, once its transitions (a drawer sliding in) have ended."""
    page.evaluate(SETTLED_JS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")


#: Resolves once every transition and finite animation of the page has ended.
SETTLED_JS = (
    "Promise.all(document.getAnimations().filter((a) => a.effect.getTiming().iterations !== Infinity)"
    ".map((a) => a.finished.catch(() => null)))"
)


def rect(page: Page, selector: str) -> dict:
    return page.locator(selector).first.evaluate("e => e.getBoundingClientRect().toJSON()")


def at_bottom(page: Page) -> bool:
    """True when the page is scrolled to (within 80 px of) its end, as ``streaming_message.js``'s ``nearBottom``."""
    return page.evaluate("innerHeight + scrollY >= document.scrollingElement.scrollHeight - 80")


def height(locator) -> float:
    box = locator.bounding_box()
    return box["height"] if box else 0


def dark(page: Page) -> bool:
    """True when the page is drawn dark: Quasar's dark class on the body and a dark body background."""
    return page.evaluate(
        """() => {
          const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
          return document.body.classList.contains("body--dark") && r + g + b < 3 * 60;
        }"""
    )


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_page_fits_the_screen_in_one_header_row(new_page, app: tuple[str, Path], size: str) -> None:
    url, _ = app
    page = new_page(size)
    page.goto(url + "/c/1")
    expect(page.get_by_text("Done.")).to_be_visible()
    viewport = page.viewport_size
    assert viewport is not None

    header = rect(page, ".q-header")
    assert header["height"] <= 56, header
    for button in page.locator(".q-header .q-btn:visible").all():  # every control on the header's one row
        box = button.bounding_box()
        assert box is not None and box["y"] >= header["y"] and box["y"] + box["height"] <= header["bottom"] + 1, box
        assert box["x"] + box["width"] <= viewport["width"], box
    title = page.locator(".q-header").get_by_text(LONG_TITLE[:30])  # the heading: one line, cut with an ellipsis
    assert title.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    assert title.evaluate("e => e.getBoundingClientRect().height") < 30
    if size == "phone":
        assert title.evaluate("e => e.scrollWidth > e.clientWidth"), "the long title should be cut, not wrapped"

    # nothing scrolls the page sideways; the long code line scrolls inside its block
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")
    code = page.locator(".parley-md pre > code").first
    assert code.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'auto'")
    answer = rect(page, ".parley-message-body:not(.hidden)")
    assert answer["right"] <= viewport["width"]
    if size == "phone":  # the answer uses the width: at most the column's padding on each side
        assert answer["width"] >= viewport["width"] - 2 * 16, answer

    # the composer is at the bottom, inside the screen, and grows with its text up to a few lines
    composer = page.get_by_placeholder("Message Parley")
    send_button = page.get_by_role("button", name="Send")
    one_line = composer.bounding_box()
    assert one_line is not None and one_line["y"] + one_line["height"] <= viewport["height"]
    composer.fill("one\ntwo\nthree")
    wait_until(lambda: height(composer) > one_line["height"] + 20, what="the box to grow to three lines")
    composer.fill("\n".join(f"line {i}" for i in range(40)))
    wait_until(lambda: height(composer) > 100, what="the box to grow")
    many_lines = composer.bounding_box()
    assert many_lines is not None and many_lines["height"] < 260 and many_lines["y"] > viewport["height"] / 2
    box = send_button.bounding_box()
    assert (
        box is not None
        and box["y"] + box["height"] <= viewport["height"]
        and box["x"] + box["width"] <= viewport["width"]
    )
    composer.fill("")

    # the answer's actions need no hover: visible at once on a touch screen (and on a laptop)
    for name in ("Copy", "Regenerate"):
        action = page.locator(".parley-message-footer").get_by_role("button", name=name, exact=True).first
        expect(action).to_be_visible()
        assert action.evaluate("e => getComputedStyle(e).opacity") == "1"
    time = page.locator(".parley-message-footer time").first
    assert time.get_attribute("datetime")
    if size == "phone":
        assert time.evaluate("e => getComputedStyle(e).opacity") == "1"  # no hover on a touch screen: always shown
    screenshot(page, f"chat-{size}-light")
    assert page.errors == []  # type: ignore[attr-defined]


def test_on_a_phone_the_drawer_is_an_overlay_that_closes_after_choosing(new_page, app: tuple[str, Path]) -> None:
    url, _ = app
    page = new_page("phone")
    page.goto(url + "/c/2")
    expect(page.get_by_text("Short answer.")).to_be_visible()
    drawer = page.locator(".q-drawer")
    content_left = rect(page, ".q-page")["left"]
    assert content_left == 0
    expect(drawer).not_to_be_in_viewport()
    page.get_by_role("button", name="Conversations").click()
    expect(drawer).to_be_in_viewport()
    expect(page.locator(".q-drawer__backdrop")).to_be_visible()
    assert rect(page, ".q-page")["left"] == content_left  # on top of the page, not pushing it aside
    screenshot(page, "drawer-phone-light")
    page.locator("a.parley-conversation-link", has_text=LONG_TITLE[:20]).click()
    page.wait_for_url("**/c/1")
    expect(page.get_by_text("Done.")).to_be_visible()
    expect(drawer).not_to_be_in_viewport()

    desktop = new_page()
    desktop.goto(url + "/c/2")
    expect(desktop.locator(".q-drawer")).to_be_in_viewport()
    assert rect(desktop, ".q-page")["left"] >= 280  # beside the page
    assert rect(desktop, ".q-footer")["left"] >= 280  # and beside the composer, which stays under the conversation


def test_dark_mode_follows_the_system_until_chosen_and_the_choice_survives_a_reload(
    new_page, app: tuple[str, Path]
) -> None:
    url, _ = app
    page = new_page(color_scheme="dark")
    page.goto(url + "/c/1")
    expect(page.get_by_text("Done.")).to_be_visible()
    assert dark(page)
    code_background = page.locator(".parley-md pre").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert code_background == "rgb(22, 27, 34)"  # the dark highlighting theme's block
    screenshot(page, "chat-desktop-dark")
    page.emulate_media(color_scheme="light")  # auto follows the system live
    wait_until(lambda: not dark(page), what="the page to follow the system to light")
    page.emulate_media(color_scheme="dark")
    wait_until(lambda: dark(page), what="the page to follow the system to dark")

    page.get_by_role("button", name="Theme: Auto (system)").click()
    page.locator(".q-menu [data-theme=light]").click()
    wait_until(lambda: not dark(page), what="the light theme")
    page.reload()
    expect(page.get_by_text("Done.")).to_be_visible()
    assert not dark(page), "the choice of light should survive a reload while the system is dark"
    expect(page.get_by_role("button", name="Theme: Light")).to_be_visible()
    other = page.context.new_page()  # the same browser: the same choice
    other.goto(url + "/")
    expect(other.get_by_role("button", name="Theme: Light")).to_be_visible()
    assert not dark(other)

    page.get_by_role("button", name="Theme: Light").click()
    page.locator(".q-menu [data-theme=dark]").click()
    wait_until(lambda: dark(page), what="the dark theme")
    wait_until(lambda: dark(other), what="the other tab to follow the choice")
    page.emulate_media(color_scheme="light")
    assert dark(page), "a chosen dark theme does not follow the system"
    page.get_by_role("button", name="Theme: Dark").click()
    page.locator(".q-menu [data-theme=auto]").click()
    wait_until(lambda: not dark(page), what="auto to follow the (light) system again")
    phone = new_page("phone", color_scheme="dark")
    phone.goto(url + "/c/1")
    expect(phone.get_by_text("Done.")).to_be_visible()
    screenshot(phone, "chat-phone-dark")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa_and_every_control_has_a_name(
    new_page, app: tuple[str, Path], fake_upstream_server: FakeUpstream, scheme: str
) -> None:
    url, _ = app
    page = new_page(color_scheme=scheme)
    page.goto(url + "/")
    expect(page.locator(".parley-example").first).to_be_visible()
    assert low_contrast(page) == []
    assert unnamed_controls(page) == []
    page.goto(url + "/c/1")
    expect(page.get_by_text("Done.")).to_be_visible()
    wait_until(lambda: at_bottom(page), what="the page to open at its newest message")  # then it stays still
    time = page.locator(".parley-message time").last
    time.hover()  # a message's time shows while the message is hovered
    wait_until(lambda: time.evaluate("e => getComputedStyle(e).opacity") == "1",
               what="the message's time to show on hover")  # fmt: skip
    assert low_contrast(page) == []
    assert unnamed_controls(page) == []

    fake_upstream_server.script = Script(tokens=2000, rate=50)  # an answer stopped half-way: the status line
    page.goto(url + "/")
    send(page, "A long story, please")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped")).to_be_visible()
    assert low_contrast(page) == []
    page.keyboard.press("Control+/")
    expect(page.get_by_text("Keyboard shortcuts", exact=True)).to_be_visible()
    assert low_contrast(page) == []
    assert unnamed_controls(page) == []

    page.keyboard.press("Escape")
    expect(page.locator(".q-dialog")).to_have_count(0)
    page.keyboard.press("Shift+Escape")  # keyboard focus is visible
    page.keyboard.press("Shift+Tab")
    ring = page.evaluate(
        "() => { const e = document.activeElement, s = getComputedStyle(e);"
        " return [s.outlineStyle, s.boxShadow, e.outerHTML.slice(0, 200)] }"
    )
    assert ring[0] != "none" or ring[1] != "none", ring


def test_keyboard_shortcuts(new_page, app: tuple[str, Path], fake_upstream_server: FakeUpstream) -> None:
    url, data_dir = app
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(url + "/c/2")
    expect(page.get_by_text("Short answer.")).to_be_visible()

    page.locator("body").click(position={"x": 700, "y": 400})
    page.keyboard.press("Shift+Escape")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Message"
    page.keyboard.type("what does ? do")  # a plain "?" typed into the box is text, not the shortcut
    expect(page.get_by_placeholder("Message Parley")).to_have_value("what does ? do")
    expect(page.get_by_text("Keyboard shortcuts", exact=True)).to_have_count(0)
    page.get_by_placeholder("Message Parley").fill("")
    page.locator("body").click(position={"x": 700, "y": 400})
    page.keyboard.press("?")
    dialog = page.locator(".q-dialog")
    expect(dialog.get_by_text("Keyboard shortcuts", exact=True)).to_be_visible()
    for description in ("New chat", "Focus the message box", "Stop the answer", "Regenerate the last answer",
                        "Copy the last answer", "Previous conversation", "Next conversation"):  # fmt: skip
        expect(dialog.get_by_text(description)).to_be_visible()
    page.keyboard.press("Escape")  # closes the dialog, stops nothing
    expect(dialog).to_have_count(0)

    page.keyboard.press("Control+Shift+C")
    wait_until(lambda: page.evaluate("navigator.clipboard.readText()") == "Short answer.", what="the copied answer")

    fake_upstream_server.script = Script(pieces=["A regenerated answer."])
    page.keyboard.press("Alt+R")
    expect(page.get_by_text("A regenerated answer.")).to_be_visible()
    expect(page.get_by_text("2/2")).to_be_visible()
    with opened_store(data_dir) as store:
        answers = [m for m in store.messages(2) if m.role == Role.assistant]
    assert [m.content for m in answers] == ["Short answer.", "A regenerated answer."]

    fake_upstream_server.script = Script(tokens=2000, rate=40)
    send(page, "Tell me a long story")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    wait_until(lambda: len(stored_answer(data_dir, 2).content) > 20, what="the answer to stream")
    page.keyboard.press("Escape")
    expect(page.get_by_text("Stopped")).to_be_visible()
    wait_until(lambda: stored_answer(data_dir, 2).status == Status.cancelled, what="the answer stored as stopped")

    listed = [link.get_attribute("href") for link in page.locator("a.parley-conversation-link").all()]
    assert listed[0] == "/c/2" and len(listed) >= 2, listed  # newest first: 2 has just been answered
    page.keyboard.press("Alt+ArrowDown")
    page.wait_for_url(url + listed[1])
    page.keyboard.press("Alt+ArrowUp")
    page.wait_for_url(url + "/c/2")
    page.keyboard.press("Alt+ArrowUp")  # the first already: stays
    expect(page.get_by_text("A regenerated answer.")).to_be_visible()
    assert page.url == url + "/c/2"
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(url + "/")
    expect(page.locator(".parley-example").first).to_be_visible()


def stored_answer(data_dir: Path, conversation_id: int):
    """The last message of the conversation's shown path."""
    with opened_store(data_dir) as store:
        return store.path(conversation_id)[-1]


def test_a_draft_is_kept_per_conversation_and_sending_clears_it(
    new_page, app: tuple[str, Path], fake_upstream_server: FakeUpstream
) -> None:
    url, data_dir = app
    page = new_page()
    composer = page.get_by_placeholder("Message Parley")
    page.goto(url + "/c/1")
    composer.fill("half a thought about conversation one")
    page.locator("a.parley-conversation-link", has_text="A second conversation").click()
    page.wait_for_url("**/c/2")
    expect(composer).to_have_value("")
    composer.fill("something for two")
    page.goto(url + "/")
    composer.fill("a new chat, not sent yet")
    page.reload()
    expect(composer).to_have_value("a new chat, not sent yet")
    page.goto(url + "/c/1")
    expect(composer).to_have_value("half a thought about conversation one")
    page.goto(url + "/c/2")
    expect(composer).to_have_value("something for two")

    fake_upstream_server.script = Script(pieces=["Noted."])
    composer.press("Enter")  # the draft is sent as the message, and is gone from the box and from the browser
    expect(page.get_by_text("Noted.")).to_be_visible()
    wait_until(lambda: stored_answer(data_dir, 2).content == "Noted.", what="the answer")
    with opened_store(data_dir) as store:
        assert store.path(2)[-2].content == "something for two"
    page.reload()
    expect(page.get_by_text("Noted.")).to_be_visible()
    expect(composer).to_have_value("")
    page.goto(url + "/")
    expect(composer).to_have_value("a new chat, not sent yet")
    settings = page.get_by_role("button", name="Conversation settings")
    expect(settings).to_be_hidden()  # nothing to set before there is a conversation
    fake_upstream_server.script = Script(pieces=["Fine."])
    composer.press("Enter")  # the start page's draft becomes a conversation
    page.wait_for_url("**/c/*")
    expect(page.get_by_text("Fine.")).to_be_visible()
    expect(settings).to_be_visible()
    page.goto(url + "/")
    expect(composer).to_have_value("")
    assert drafts(page) == ["parley-draft:local:1"]


def test_the_scroll_to_bottom_button_brings_back_a_streaming_answer(
    new_page, app: tuple[str, Path], fake_upstream_server: FakeUpstream
) -> None:
    url, _ = app
    page = new_page("phone")
    page.goto(url + "/c/1")
    expect(page.get_by_text("Done.")).to_be_visible()
    fake_upstream_server.script = Script(tokens=3000, rate=60)  # streams for the whole test: Stop ends it
    send(page, "Tell me a very long story")
    button = page.get_by_role("button", name="Scroll to the newest message")
    wait_until(lambda: page.evaluate("document.scrollingElement.scrollHeight") > 2 * 844, 30, what="a long answer")
    expect(button).to_be_hidden()  # following the answer: at the bottom
    page.mouse.wheel(0, -1500)
    expect(button).to_be_visible()
    screenshot(page, "scroll-button-phone-light")
    button.click()
    expect(button).to_be_hidden()
    wait_until(lambda: at_bottom(page), what="the page at its bottom")
    page.get_by_role("button", name="Stop").click()


def test_the_tab_shows_the_app_name_and_its_icon(new_page, app: tuple[str, Path]) -> None:
    url, data_dir = app
    page = new_page()
    page.goto(url + "/")
    expect(page).to_have_title("New chat · Parley")
    icon = page.locator("link[rel~=icon]").get_attribute("href")
    assert icon
    response = page.request.get(url + icon if icon.startswith("/") else icon)
    assert response.ok and "svg" in response.headers["content-type"]
    assert page.locator("meta[name=application-name]").get_attribute("content") == "Parley"
    with opened_store(data_dir) as store:
        title = store.get_conversation(1).title
    page.goto(url + "/c/1")
    expect(page).to_have_title(f"{title} · Parley")


def test_login_account_and_admin_pages_are_themed_readable_and_named(
    new_page, tmp_path: Path, upstream: FakeUpstream
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_users(data_dir, "ann", admins=("ann",))
    port = free_port()
    with serve(tmp_path, upstream, port) as process:
        url = f"http://127.0.0.1:{port}"
        for scheme in ("dark", "light"):
            page = new_page("phone" if scheme == "dark" else "desktop", color_scheme=scheme)
            page.goto(url + "/login")
            expect(page.get_by_label("Name")).to_be_visible()
            assert dark(page) == (scheme == "dark")
            assert low_contrast(page) == [] and unnamed_controls(page) == []
            expect(page.get_by_role("button", name="Theme: Auto (system)")).to_be_visible()
            screenshot(page, f"login-{scheme}")
            page.get_by_label("Name").fill("ann")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_placeholder("Message Parley")).to_be_visible()
            header = rect(page, ".q-header")
            assert header["height"] <= 56, header  # the user menu too fits the one row
            for path, landmark in (("/account", "API tokens"), ("/admin", "Users")):
                page.goto(url + path)
                expect(page.get_by_text(landmark).first).to_be_visible()
                assert dark(page) == (scheme == "dark"), path
                assert low_contrast(page) == [], path
                assert unnamed_controls(page) == [], path
                assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")
                screenshot(page, f"{path.strip('/')}-{scheme}")
            page.get_by_role("button", name="Theme").click()  # the pages have the theme menu too
            page.locator(".q-menu [data-theme=light]" if scheme == "dark" else ".q-menu [data-theme=dark]").click()
            wait_until(lambda page=page, scheme=scheme: dark(page) != (scheme == "dark"), what="the theme chosen")
            page.goto(url + "/login")
            assert dark(page) != (scheme == "dark")
        page.get_by_label("Name").fill("ann")  # logging out forgets the drafts: a shared computer keeps no typing
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_placeholder("Message Parley").fill("a draft nobody else should read")
        wait_until(lambda: drafts(page), what="the draft to be kept")
        page.get_by_role("button", name="ann: account menu").click()
        page.locator(".q-menu").get_by_text("Log out", exact=True).click()
        page.wait_for_url("**/login")
        assert drafts(page) == []
        assert_no_errors(process)


def drafts(page: Page) -> list[str]:
    """The keys of the drafts this browser keeps."""
    return page.evaluate("Object.keys(localStorage).filter((key) => key.startsWith('parley-draft:'))")
