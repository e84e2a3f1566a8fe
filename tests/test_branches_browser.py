"""Branches survive reloads, in Chromium on the whole app: edit an earlier question, switch back and forth, reload,
open the tree panel and pick a branch from it, reload again (the bugs other chat UIs have here: the selected branch
forgotten on reload, later turns lost when switching after a reload)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chat.store import Status

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, wait_until

pytestmark = pytest.mark.browser


def ask(page: Page, text: str) -> None:
    composer = page.get_by_placeholder("Message Parley")
    composer.fill(text)
    composer.press("Enter")


def answered(data_dir: Path, count: int) -> bool:
    with opened_store(data_dir) as store:
        path = store.path(1) if store.list_conversations() else []
    return len(path) == count and path[-1].status == Status.complete


def texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def test_an_edited_branch_and_the_branch_picked_in_the_tree_survive_reloads(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    with serve(tmp_path, upstream, port) as app, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + "/")
        upstream.script = Script(pieces=["First answer."])
        ask(page, "First question")
        page.wait_for_url("**/c/1")
        wait_until(lambda: answered(data_dir, 2), timeout=10, what="the first answer")
        upstream.script = Script(pieces=["Second answer."])
        ask(page, "Second question")
        wait_until(lambda: answered(data_dir, 4), timeout=10, what="the second answer")
        expect(page.locator(".parley-message-body").last).to_have_text("Second answer.")

        # edit the first question: a new branch with its own answer, the old one kept
        upstream.script = Script(pieces=["Answer to the edit."])
        page.get_by_role("button", name="Edit this message").first.click()
        editor = page.locator("textarea").first
        editor.fill("First question, edited")
        page.get_by_role("button", name="Save and send").click()
        expect(page.locator(".parley-message-body").last).to_have_text("Answer to the edit.", timeout=10_000)
        expect(page.locator(".parley-user-message")).to_have_text(["First question, edited"])
        wait_until(lambda: answered(data_dir, 2), timeout=10, what="the edit's answer")

        page.reload()
        expect(page.locator(".parley-user-message")).to_have_text(["First question, edited"])
        page.get_by_role("button", name="Previous variant").first.click()  # back to the original branch
        expect(page.locator(".parley-user-message")).to_have_text(["First question", "Second question"])
        page.reload()  # the original branch, with its later turns, after a reload
        expect(page.locator(".parley-user-message")).to_have_text(["First question", "Second question"])
        expect(page.locator(".parley-message-body").last).to_have_text("Second answer.")

        # the tree shows both branches; a click on the edit's answer shows that branch, which a reload keeps
        page.get_by_role("button", name="Conversation tree").click()
        tree = page.locator(".q-tree")
        expect(tree).to_contain_text("Branch 2 of 2")  # the edit, nested under the shown path's first question
        expect(tree.locator(".parley-tree-shown")).to_contain_text(["You: First question"])
        tree.get_by_text("Answer: Answer to the edit.").click()
        expect(page.locator(".parley-user-message")).to_have_text(["First question, edited"])
        page.reload()
        expect(page.locator(".parley-user-message")).to_have_text(["First question, edited"])
        expect(page.locator(".parley-message-body").last).to_have_text("Answer to the edit.")
        page.screenshot(path=str(tmp_path / "branches.png"))
        assert_no_errors(app)
