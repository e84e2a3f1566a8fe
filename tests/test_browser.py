"""The whole app in a real headless Chromium: app.py as a subprocess on the fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat.store import Status

from .browser import chromium, clean_env, free_port, server_process
from .conftest import opened_store
from .fake_upstream import FakeUpstream, Script

pytestmark = pytest.mark.browser

ANSWER = ["Rivers ", "**flow** ", "to the ", "sea.\n\n", "```python\n", "print('río')\n", "```\n"]


@pytest.fixture
def app_url(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    """app.py serving on a free port, answering from the fake upstream, with its data in ``tmp_path``."""
    port = free_port()
    env = clean_env(
        OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY="test-key", PARLEY_MODEL="fake-model",
        PARLEY_DATA_DIR=str(tmp_path / "data"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with server_process(["app.py", "--port", str(port)], url + "/", env):
        yield url


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
        composer.press("Enter")
        page.wait_for_url("**/c/1")
        body = page.locator(".parley-message-body").last
        expect(page.locator(".parley-user-message")).to_have_text("Where do rivers go?\nBriefly.")
        expect(body.locator("strong")).to_have_text("flow", timeout=10_000)  # Markdown rendered while it streams
        expect(body.locator("pre code")).to_contain_text("print('río')", timeout=10_000)
        expect(page.locator(".parley-message-footer").last).to_contain_text("fake-model", timeout=10_000)
        expect(composer).to_have_value("")
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
