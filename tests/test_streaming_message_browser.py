"""StreamingMessage in a real headless Chromium: streamed Markdown, final render, copy button, XSS, indicator.

The app under test is tests/apps/streaming_message_app.py, started as a subprocess; its JSON routes push deltas
into the message of the page the browser has open.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from playwright import sync_api

from .browser import ROOT, chromium, clean_env, free_port, server_process
from .helpers import wait_until

APP = ROOT / "tests" / "apps" / "streaming_message_app.py"
STREAMED = "[data-testid=streamed]"


class App:
    """The test app's process and its JSON routes."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def post(self, path: str, **data: object) -> dict:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    port = free_port()
    test_app = App(port)
    with server_process([str(APP), str(port)], test_app.base + "/api/ping", clean_env(), timeout=30):
        yield test_app


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(app: App, browser) -> Iterator:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(5000)
    page.goto(app.base + "/")
    page.wait_for_selector(f"{STREAMED} .parley-thinking")
    page.wait_for_function('() => document.querySelector("[data-testid=streamed] .parley-md") !== null')
    yield page
    context.close()
    assert not errors, errors


def _html(page, selector: str) -> str:
    return page.eval_on_selector(selector, "el => el.innerHTML")


@pytest.mark.browser
def test_deltas_render_as_growing_markdown(app: App, page) -> None:
    sync_api.expect(page.locator(f"{STREAMED} .parley-thinking")).to_contain_text("Thinking…")

    app.post("/api/append", name="streamed", deltas=["Hello **wor"])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_have_text("Hello **wor")
    assert page.locator(f"{STREAMED} strong").count() == 0
    sync_api.expect(page.locator(f"{STREAMED} .parley-thinking")).to_have_count(0)

    app.post("/api/append", name="streamed", deltas=["ld**\n\n```python\nprint(1)"])
    sync_api.expect(page.locator(f"{STREAMED} strong")).to_have_text("world")
    code = page.locator(f"{STREAMED} pre > code")
    sync_api.expect(code).to_have_text("print(1)")  # the fence is still open: shown as a code block anyway
    assert "language-python" in (code.get_attribute("class") or "")
    assert code.locator(".hljs-built_in").count() == 1  # highlighted while streaming
    sync_api.expect(page.locator(STREAMED)).to_contain_class("parley-message-body parley-streaming")
    cursor = page.eval_on_selector(f"{STREAMED} pre > code", 'el => getComputedStyle(el, "::after").content')
    assert cursor not in ("", "none"), "no cursor at the end of the streamed text"


@pytest.mark.browser
def test_finish_replaces_the_stream_with_the_full_render(app: App, page) -> None:
    deltas = [
        "Hello **wor",
        "ld**\n\n```python\nprint(1)",
        "\n```\n\n| a | b |\n|---|---|\n| 1 | `x` |\n\n- one\n- tw",
        "o\n\n> quote\nsee https://example.com and [docs](https://example.com/docs)\n\n```\nno language\n```\n",
    ]
    full = "".join(deltas)
    app.post("/api/append", name="streamed", deltas=deltas)
    sync_api.expect(page.locator(f"{STREAMED} blockquote")).to_contain_text("quote")
    app.post("/api/classes", name="streamed", classes="extra-class")  # a full update while streaming keeps the text
    sync_api.expect(page.locator(STREAMED)).to_contain_class("extra-class parley-streaming")
    sync_api.expect(page.locator(f"{STREAMED} strong")).to_have_text("world")

    assert app.post("/api/finish", name="streamed", text=full)["text"] == full
    app.post("/api/new", name="reference", text=full)
    sync_api.expect(page.locator("[data-testid=reference] table")).to_have_count(1)
    sync_api.expect(page.locator(STREAMED)).to_contain_class("parley-message-body extra-class")
    sync_api.expect(page.locator(STREAMED)).not_to_contain_class("parley-streaming")

    streamed, reference = _html(page, STREAMED), _html(page, "[data-testid=reference]")
    assert streamed == reference
    assert page.locator(f"{STREAMED} pre").count() == 2
    assert page.locator(f"{STREAMED} table td").count() == 2
    links = page.locator(f"{STREAMED} a")
    assert links.count() == 2
    for i in range(2):
        assert links.nth(i).get_attribute("target") == "_blank"
        assert links.nth(i).get_attribute("rel") == "noopener noreferrer"


@pytest.mark.browser
def test_late_deltas_do_not_duplicate_the_final_text(app: App, page) -> None:
    app.post("/api/append", name="streamed", deltas=["one ", "two "])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_have_text("one two")
    app.post("/api/finish", name="streamed", deltas=["three"], text="one two three")  # same tick as finish()
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_have_text("one two three")
    page.wait_for_timeout(300)  # not synchronization: time for a duplicate to appear, if one were coming
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_have_text("one two three")


@pytest.mark.browser
def test_copy_button_copies_the_code(app: App, page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    app.post("/api/append", name="streamed", deltas=["Code:\n\n```python\ndef f():\n    return 1\n```\n"])
    button = page.locator(f"{STREAMED} pre > button.parley-copy")
    sync_api.expect(button).to_have_count(1)
    page.hover(f"{STREAMED} pre")
    button.click()
    sync_api.expect(button).to_contain_class("parley-copied")
    assert page.evaluate("navigator.clipboard.readText()") == "def f():\n    return 1\n"

    # without navigator.clipboard (plain http on a LAN) the execCommand fallback copies
    page.evaluate("""() => {
        Object.defineProperty(navigator, "clipboard", { value: undefined });
        window.__copied = null;
        document.execCommand = (command) => {
            window.__copied = command === "copy" ? document.activeElement.value : null;
            return true;
        };
    }""")
    sync_api.expect(button).not_to_contain_class("parley-copied")  # the check mark of the first copy has gone
    button.click()
    sync_api.expect(button).to_contain_class("parley-copied")
    assert page.evaluate("window.__copied") == "def f():\n    return 1\n"


@pytest.mark.browser
def test_untrusted_markup_stays_inert(app: App, page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    evil = (
        '<script>window.__xss=1</script>\n\n<img src=x onerror="window.__xss=2">\n\n'
        "[click](javascript:window.__xss=3) [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)\n\n"
        '<svg onload="window.__xss=4"><script>alert(5)</script></svg>\n\n'
        "![pic](javascript:alert(6)) ![track](https://example.com/pixel.png)\n\n"
        '<a href="javascript:alert(7)">raw link</a> <iframe src="javascript:alert(8)"></iframe>'
    )

    def check() -> None:
        message = page.locator(STREAMED)
        sync_api.expect(message).to_contain_text("<script>window.__xss=1</script>")  # shown as text
        sync_api.expect(message).to_contain_text('<svg onload="window.__xss=4">')
        page.wait_for_timeout(200)  # not synchronization: time for a failed img load to fire onerror, were there one
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert not dialogs
        for tag in ("script", "img", "svg:not(.parley-copy svg)", "iframe"):
            assert message.locator(tag).count() == 0, tag
        hrefs = message.locator("a").evaluate_all('links => links.map(a => a.getAttribute("href"))')
        assert hrefs == ["https://example.com/pixel.png"]  # images are links, never loaded
        assert "click" in message.inner_text()

    app.post("/api/append", name="streamed", deltas=[evil[i : i + 7] for i in range(0, len(evil), 7)])
    check()
    app.post("/api/finish", name="streamed", text=evil)
    sync_api.expect(page.locator(STREAMED)).not_to_contain_class("parley-streaming")
    check()


@pytest.mark.browser
def test_thinking_indicator_until_the_first_delta(app: App, page) -> None:
    indicator = page.locator(f"{STREAMED} .parley-thinking")
    sync_api.expect(indicator).to_be_visible()
    sync_api.expect(indicator).to_have_text("Thinking…")
    assert page.locator(f"{STREAMED} .parley-dots > span").count() == 3

    app.post("/api/phase", name="streamed", phase="queued")
    sync_api.expect(indicator).to_have_text("Queued — waiting for the model…")
    app.post("/api/phase", name="streamed", phase="loading")
    sync_api.expect(indicator).to_have_text("Loading the model…")
    app.post("/api/phase", name="streamed", phase="thinking")
    sync_api.expect(indicator).to_have_text("Thinking…")

    app.post("/api/append", name="streamed", deltas=["First"])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_have_text("First")
    sync_api.expect(indicator).to_have_count(0)

    app.post("/api/new", name="queued", streaming=True, phase="queued")
    sync_api.expect(page.locator("[data-testid=queued] .parley-thinking")).to_have_text(
        "Queued — waiting for the model…"
    )
    app.post("/api/finish", name="queued", text="")  # an empty answer: no indicator once it is over
    sync_api.expect(page.locator("[data-testid=queued] .parley-thinking")).to_have_count(0)


@pytest.mark.browser
def test_each_delta_is_sent_once_as_its_own_bytes(app: App, page) -> None:
    frames: list[str | bytes] = []
    other: list[str | bytes] = []

    def watch(ws) -> None:
        target = frames if "/stream/streamed" in ws.url else other
        ws.on("framereceived", lambda payload: target.append(payload))

    page.on("websocket", watch)
    page.reload()  # the listener sees only sockets opened after it was added
    page.wait_for_selector(f"{STREAMED} .parley-thinking")
    page.wait_for_timeout(300)  # a quiet spell: the page's own start-up messages pass before the others are counted
    other.clear()

    page.evaluate("""() => {
        window.__renders = 0;  // DOM patches are batched per render: one observer call per render
        new MutationObserver(() => window.__renders++)
            .observe(document.querySelector("[data-testid=streamed] .parley-md"), { childList: true });
    }""")
    deltas = [f"word{i:03d} " for i in range(200)]
    for start in range(0, len(deltas), 50):
        app.post("/api/append", name="streamed", deltas=deltas[start : start + 50])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_contain_text("word199")
    renders = page.evaluate("window.__renders")
    assert 1 <= renders <= 40, f"{renders} renders for {len(deltas)} deltas: not coalesced per animation frame"
    assert page.locator(f"{STREAMED} .parley-md").inner_text().strip() == "".join(deltas).strip()

    text_frames = [frame for frame in frames if isinstance(frame, str)]
    assert "".join(text_frames) == "".join(deltas)  # the frames carry the text and nothing else, each delta once
    assert not [frame for frame in other if "word" in str(frame)], "deltas also went through NiceGUI's socket"


@pytest.mark.browser
def test_lost_stream_reconnects_from_its_offset(app: App, page) -> None:
    # 👍🏽 is two code points and four UTF-16 units: the offset must count like the server (code points)
    app.post("/api/append", name="streamed", deltas=["Thumbs 👍", "🏽 and e", "\u0301 ", "more "])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_have_text("Thumbs 👍🏽 and e\u0301 more")
    assert app.post("/api/drop", name="streamed")["dropped"] == 1
    app.post("/api/append", name="streamed", deltas=["written ", "while ", "away. "])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_contain_text("away.")
    assert app.post("/api/drop", name="streamed")["dropped"] == 1  # it reconnected
    full = app.post("/api/finish", name="streamed", deltas=["The end."])["text"]
    sync_api.expect(page.locator(STREAMED)).not_to_contain_class("parley-streaming")
    assert page.locator(f"{STREAMED} .parley-md").inner_text() == full.strip()


TRICKY = {
    # every piece boundary is a place where a naive streamer goes wrong
    "inside bold": ["Some *", "*bo", "ld text*", "* and more.\n", "\nNext paragraph."],
    "inside a code fence": ["Intro:\n\n`", "``pyth", "on\ndef f():\n    ret", "urn '**not bold**'\n`", "``\n\nAfter."],
    "inside a link": ["See [the d", "ocs](https://exa", "mple.com/a_b", ") now.\n\n- o", "ne\n- two"],
    "across characters": ["Caf\u00e9 e", "\u0301 👍", "🏽 日", "本語 text.\n\n>", " quoted"],
    "heading, table and list": [
        "# Ti", "tle\n\n| a |", " b |\n|--", "-|---|\n| 1 | `x", "` |\n\n1. fi", "rst\n2. second\n\nEnd.",
    ],
}  # fmt: skip


@pytest.mark.browser
@pytest.mark.parametrize("pieces", TRICKY.values(), ids=TRICKY.keys())
def test_streamed_markdown_ends_identical_to_the_whole_render(app: App, page, pieces: list[str]) -> None:
    markdown = "".join(pieces)
    app.post("/api/new", name="reference", text=markdown)
    reference = page.locator("[data-testid=reference] .parley-md")
    sync_api.expect(reference).not_to_be_empty()
    streamed = page.locator(f"{STREAMED} .parley-md")
    for piece in pieces:
        app.post("/api/append", name="streamed", deltas=[piece])
        page.wait_for_function(  # each piece rendered before the next arrives: every split point is exercised
            "n => document.querySelector('[data-testid=streamed]').textContent.replace(/\\s/g, '').length >= n",
            arg=len(piece) // 2,
        )
    # while it streams, the frozen blocks plus the re-rendered last block already match the whole render (once the
    # last piece is rendered: a wrong incremental render never gets there)
    wait_until(lambda: streamed.inner_html() == reference.inner_html(), what="the streamed render to match")
    app.post("/api/finish", name="streamed")
    sync_api.expect(page.locator(STREAMED)).not_to_contain_class("parley-streaming")
    assert streamed.inner_html() == reference.inner_html()


@pytest.mark.browser
def test_one_character_per_delta_and_finished_blocks_are_never_rendered_again(app: App, page) -> None:
    paragraph = "A sentence with **bold**, `code` and a [link](https://example.com).\n\n"
    markdown = paragraph * 60 + "```js\nconst x = 1;\n```\n\nThe end."
    for start in range(0, len(markdown), 400):
        chunk = markdown[start : start + 400]
        app.post("/api/append", name="streamed", deltas=list(chunk))
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_contain_text("The end.")
    # frozen blocks are never touched again: the DOM holds exactly one node set per block, none re-created
    blocks_before = page.locator(f"{STREAMED} .parley-md > p").count()
    assert blocks_before == 61
    first = page.locator(f"{STREAMED} .parley-md > p").first.element_handle()
    app.post("/api/append", name="streamed", deltas=[" More", " text."])
    sync_api.expect(page.locator(f"{STREAMED} .parley-md")).to_contain_text("More text.")
    assert page.evaluate("el => el.isConnected", first), "a finished block was re-rendered"
    app.post("/api/finish", name="streamed")
    sync_api.expect(page.locator(STREAMED)).not_to_contain_class("parley-streaming")
    assert page.evaluate("el => el.isConnected", first), "the final render replaced an unchanged block"


@pytest.mark.browser
def test_reattached_tab_continues_the_partial_text(app: App, page) -> None:
    app.post("/api/new", name="live", text="Partial *answ", streaming=True)
    live = page.locator("[data-testid=live]")
    sync_api.expect(live.locator(".parley-md")).to_have_text("Partial *answ")
    sync_api.expect(live.locator(".parley-thinking")).to_have_count(0)
    sync_api.expect(live).to_contain_class("parley-streaming")
    app.post("/api/append", name="live", deltas=["er*"])
    sync_api.expect(live.locator("em")).to_have_text("answer")
    assert app.post("/api/finish", name="live", deltas=["."])["text"] == "Partial *answer*."
    sync_api.expect(live.locator(".parley-md")).to_have_text("Partial answer.")
    sync_api.expect(live).not_to_contain_class("parley-streaming")


#: Texts whose plain-looking pieces could render as something else once lengthened (links, lists, headings,
#: entities, rules, tables): the fast path (BlockRenderer.appendPlain) must show exactly what a parse would.
FAST_PATH_TEXTS = [
    "Plain words in a paragraph, with punctuation: commas, semicolons; questions? Yes! (parens) 'quotes' \"double\".",
    "Visit foo.com now, read app.py, see www.example.org or mail a@b.co, then http://x.org/path and more words.",
    "**bold** then text, *em* and `code` after, ~~strike~~ too, **unclosed bold and `open code go on",
    "Number\n\n1. item one\n2. item two\n\n- dash item\n- another one\n\n1 is a number, 2. not\n\n1\n\n- \n\n3) three",
    "Title\n-----\n\nPara\n=\n\nfoo\n- bar\n\nbaz\n---\n\n--- and - - -",
    "# Head # more words\n\n## Sub ##\n\ntext after it\n\n#hashtag words",
    "a &amp b &amp; c &#35; d &copy e, 5 < 6 > 4 and a\\*b\\_c",
    "> quoted words here\n> more quoted words\n\nafter the quote\n\n> - a list in a quote with words",
    "- a\n  - nested words here\n  - more nested\n- b with words\n\n  loose paragraph words",
    "a | b\n--- | ---\nc | d words\n\nnot | a table",
    "line one  \nline two with words\nline three\n\n    indented code words\n\nend",
    "Café naïve 日本語 e\u0301 👍🏽 words and ünïcödé, then ok.",
]


def _word_pieces(text: str) -> list[str]:
    """Pieces the way models stream them: a leading space and a word, newlines and punctuation on their own."""
    import re

    return [piece for piece in re.findall(r" ?[^\s.,:;!?]+|[.,:;!?]+|\s", text) if piece]


def _char_pieces(text: str, seed: int) -> list[str]:
    import random

    rng, pieces, i = random.Random(seed), [], 0
    while i < len(text):
        size = rng.randint(1, 4)
        pieces.append(text[i : i + size])
        i += size
    return pieces


@pytest.mark.browser
def test_words_shown_without_a_render_match_a_parse_after_every_piece(page) -> None:
    cases = [_word_pieces(text) for text in FAST_PATH_TEXTS]
    cases += [_char_pieces(text, seed) for seed in (1, 2) for text in FAST_PATH_TEXTS]
    for pieces in cases:
        assert "".join(pieces) in {*FAST_PATH_TEXTS}
    result = page.evaluate(
        """async (cases) => {
            const { BlockRenderer } = await import("parley-block-renderer");
            let fast = 0;
            for (const pieces of cases) {
                const streamed = document.createElement("div"), renderer = new BlockRenderer(() => {});
                let text = "";
                for (const piece of pieces) {
                    if (renderer.appendPlain(text.slice(text.lastIndexOf("\\n") + 1), piece)) fast++;
                    else renderer.renderTail(streamed, text + piece);
                    text += piece;
                    const parsed = document.createElement("div");
                    new BlockRenderer(() => {}).renderTail(parsed, text);
                    if (streamed.innerHTML !== parsed.innerHTML)
                        return { text, piece, streamed: streamed.innerHTML, parsed: parsed.innerHTML };
                }
            }
            return { fast };
        }""",
        cases,
    )
    assert "text" not in result, f"after {result.get('piece')!r} of {result.get('text')!r}: {result}"
    assert result["fast"] > 300, result  # most word pieces of prose take the fast path
