"""The shared page ``/s/{token}`` in a real headless Chromium (app.py in a subprocess, personal mode, the fake
upstream): an answer's Markdown is rendered by the chat page's safe renderer, markup in a user's message or an answer
(``<script>``, ``<img onerror>``, ``javascript:`` links) stays inert, the page has no composer, drawer or settings, and
the token is in no line the server logged."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from chat.store import Conversation, Status
from chat.ui.csp import POLICY

from .browser import ROOT, chromium, free_port, serve, stderr_text
from .fake_upstream import FakeUpstream
from .helpers import opened_store

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
ATTACKER = "attacker.invalid"
QUESTION = '<script>window.__xss=1</script> <img src=x onerror="window.__xss=2"> what is **this**?'
ANSWER = (
    "It is **bold** and `code`.\n\n"
    "<script>window.__xss=3;alert(3)</script>\n\n"
    f'<img src="http://{ATTACKER}/a.png" onerror="window.__xss=4">\n\n'
    "[click me](javascript:window.__xss=5) and a [real link](https://example.invalid/page)\n\n"
    "```python\nprint('hi')\n```\n\nthe end"
)

#: Fires three canaries of the page's own (a failing image, a toggled ``<details>``, a frame then a task): once
#: ``window.__canaries`` is 0, any such event an element of the answer had queued has fired too.
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


def test_shared_page_renders_markdown_safely_without_a_composer(tmp_path: Path, upstream: FakeUpstream) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve(tmp_path, upstream, port) as process, chromium() as browser:
        with opened_store(data_dir) as store:
            conversation = Conversation(title="Hostile <b>title</b>", model="fake-model", system_prompt="SYSTEM-SECRET")
            _, answer = store.add_exchange(
                None, QUESTION, model="fake-model", temperature=0.7, new_conversation=conversation
            )
            assert answer.id is not None
            store.finish_message(answer.id, content=ANSWER, status=Status.complete, finish_reason="stop")
        made = httpx.post(f"{url}/api/conversations/{answer.conversation_id}/share", json={"audience": "anyone"})
        assert made.status_code == 201, made.text
        path = made.json()["url"]
        token = path.removeprefix("/s/")

        page = browser.new_page()
        dialogs: list[str] = []
        leaks: list[str] = []
        errors: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("request", lambda request: leaks.append(request.url) if ATTACKER in request.url else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        response = page.goto(url + path)
        assert response is not None and response.status == 200
        assert response.headers["content-security-policy"] == POLICY

        answer_body = page.locator(".parley-message-body")
        expect(answer_body).to_have_count(1)
        expect(answer_body).to_contain_text("the end")
        expect(answer_body.locator("strong")).to_have_text("bold")  # Markdown rendered
        expect(answer_body.locator("pre code")).to_contain_text("print('hi')")
        expect(answer_body).to_contain_text("<script>window.__xss=3;alert(3)</script>")  # shown, not run
        expect(page.locator(".parley-user-message")).to_have_text(QUESTION)  # a user's text, as text
        expect(page.get_by_text("Hostile <b>title</b>")).to_have_count(1)
        expect(page.get_by_text("Shared on ")).to_have_count(1)

        page.evaluate(CANARIES)
        page.wait_for_function("() => window.__canaries === 0")
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert not dialogs and not leaks and not errors, (dialogs, leaks, errors)
        for tag in ("script", "img", "iframe"):
            assert page.locator(f".parley-message-body {tag}, .parley-user-message {tag}").count() == 0, tag
        hrefs = answer_body.locator("a").evaluate_all('links => links.map(a => a.getAttribute("href") || "")')
        assert not [href for href in hrefs if href.lower().startswith("javascript:")], hrefs
        assert page.locator('meta[name="referrer"][content="no-referrer"]').count() == 1

        # a read-only page: no composer, drawer, settings, conversation list; nothing of the owner's
        assert page.get_by_placeholder("Message Parley").count() == 0
        assert page.locator("textarea, .parley-sidebar, .q-drawer").count() == 0
        assert page.get_by_role("button", name="Conversation settings").count() == 0
        assert "SYSTEM-SECRET" not in page.content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "shared-page.png", full_page=True)

        # revoked: the page says so, with a 404
        share_id = made.json()["id"]
        assert httpx.delete(f"{url}/api/shares/{share_id}").status_code == 204
        response = page.goto(url + path)
        assert response is not None and response.status == 404
        expect(page.get_by_text("This shared link does not exist, or its owner revoked it.")).to_have_count(1)
        assert page.locator(".parley-message-body").count() == 0
        page.close()
        assert token not in stderr_text(process)
