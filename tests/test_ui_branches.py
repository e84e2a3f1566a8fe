"""Editing, branching, deleting, forking and the tree panel on the page (NiceGUI's simulated user, the real app.py,
the fake upstream, a real SQLite file)."""

from __future__ import annotations

from pathlib import Path

from nicegui import ui
from nicegui.testing import User
from nicegui.testing.user_interaction import UserInteraction

from chat.store import Status

from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, send, stored_path, wait_for


def contents(data_dir: Path, conversation_id: int = 1) -> list[str]:
    return [m.content for m in stored_path(data_dir, conversation_id)]


async def two_turns(user: User, data_dir: Path, upstream: FakeUpstream) -> None:
    """Conversation 1: Q1 → A1, Q2 → A2, open on the page."""
    upstream.script = Script(pieces=["A1"])
    await user.open("/")
    await send(user, "Q1")
    await wait_for(lambda: contents(data_dir) == ["Q1", "A1"] and stored_path(data_dir)[1].status == Status.complete)
    await user.open("/c/1")
    upstream.script = Script(pieces=["A2"])
    await send(user, "Q2")
    await wait_for(lambda: contents(data_dir) == ["Q1", "A1", "Q2", "A2"]
                   and stored_path(data_dir)[3].status == Status.complete)  # fmt: skip
    await user.should_see("A2")
    # the page has seen the answer end too: every message has its actions (an answer's come when it ends)
    await wait_for(lambda: len(user.find(marker="message-menu").elements) == 4)


async def test_edit_an_earlier_question_branches_and_the_arrows_switch_branches(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await two_turns(user, app_env, upstream)
    click(user, in_order(user, "edit-message")[0])  # the first question's pencil
    await user.should_see(marker="edit-text")
    editor = next(iter(user.find(marker="edit-text").elements))
    assert isinstance(editor, ui.textarea)
    upstream.script = Script(pieces=["B2"])
    editor.set_value("Q1 edited")
    user.find(marker="edit-save").click()
    await wait_for(
        lambda: contents(app_env) == ["Q1 edited", "B2"] and stored_path(app_env)[1].status == Status.complete
    )
    await user.should_see("Q1 edited")
    await user.should_see("B2")
    await user.should_not_see("Q2")
    await user.should_see("2/2")  # the question's own arrows
    user.find(marker="variant-previous").click()
    await user.should_see("Q2")  # the original branch with its later turns
    await user.should_see("A2")
    assert contents(app_env) == ["Q1", "A1", "Q2", "A2"]
    await user.open("/c/1")  # after a reload: the branch last chosen
    await user.should_see("A2")
    await user.should_see("1/2")


async def test_delete_a_message_with_everything_under_it_and_fork_from_another(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await two_turns(user, app_env, upstream)
    assert len(in_order(user, "message-menu")) == 4
    click(user, in_order(user, "fork-message")[1])  # fork at the first answer: a new conversation, Q1 → A1
    await wait_for(lambda: len(stored_path(app_env, 2)) == 2)
    await wait_for(lambda: current_conversation(user) == "/c/2", what="the page on the fork")  # before leaving it
    assert contents(app_env, 2) == ["Q1", "A1"]
    assert contents(app_env) == ["Q1", "A1", "Q2", "A2"]

    await user.open("/c/1")
    click(user, in_order(user, "delete-message")[2])  # the second question
    await user.should_see(marker="confirm-delete-message")
    user.find(marker="confirm-delete-message").click()
    await wait_for(lambda: contents(app_env) == ["Q1", "A1"])
    await user.should_not_see("Q2")
    with opened_store(app_env) as store:
        assert len(store.messages(1)) == 2


def in_order(user: User, marker: str) -> list[ui.element]:
    """The elements with ``marker``, in the order they were built (the page's order of messages)."""
    return sorted(user.find(marker=marker).elements, key=lambda element: element.id)


def current_conversation(user: User) -> str | None:
    """The drawer's link to the conversation the page shows (``aria-current``), e.g. ``"/c/2"``."""
    try:
        links = user.find(marker="conversation-title").elements
    except AssertionError:  # the page is being built
        return None
    return next((link.props.get("href") for link in links if link.props.get("aria-current") == "page"), None)


def click(user: User, element: ui.element) -> None:
    """Click this one element (``user.find(marker).click()`` clicks every element with the marker)."""
    UserInteraction(user, {element}, None).click()


async def test_the_tree_panel_draws_every_fork_and_a_click_shows_that_branch(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await two_turns(user, app_env, upstream)
    upstream.script = Script(pieces=["A2 again"])
    click(user, in_order(user, "regenerate-menu")[-1])
    user.find(marker="regenerate").click()

    await wait_for(lambda: contents(app_env)[-1] == "A2 again" and stored_path(app_env)[-1].status == Status.complete)
    await user.should_see("2/2")  # the page shows the new variant
    user.find(marker="tree-toggle").click()
    await user.should_see(marker="conversation-tree")
    tree = next(iter(user.find(marker="conversation-tree").elements))
    assert isinstance(tree, ui.tree)
    expected = ["You: Q1", "Answer: A1", "You: Q2", "Answer: A2 again"]  # the shown path, one column
    # the page's sync after the answer's end may still be on its way (the tree shows what the last sync read)
    await wait_for(lambda: [node["label"] for node in tree.props["nodes"]] == expected, what="the tree updated")
    labels = [node["label"] for node in tree.nodes()]
    assert "Branch 1 of 2" in labels and "Branch 2 of 2" not in labels  # the other answer, nested under Q2
    assert "Answer: A2" in labels
    shown = {node["label"] for node in tree.nodes() if node["shown"]}
    assert "Answer: A2 again" in shown and "Answer: A2" not in shown
    first = next(node["id"] for node in tree.nodes() if node["label"] == "Answer: A2")
    UserInteraction(user, {tree}, None).trigger("update:selected", first)  # as a click on the row does
    await wait_for(lambda: contents(app_env)[-1] == "A2")
    await user.should_see("1/2")


async def test_a_link_to_a_message_opens_its_branch(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    await two_turns(user, app_env, upstream)
    upstream.script = Script(pieces=["A2 again"])
    click(user, in_order(user, "regenerate-menu")[-1])
    user.find(marker="regenerate").click()
    await wait_for(lambda: contents(app_env)[-1] == "A2 again" and stored_path(app_env)[-1].status == Status.complete)
    with opened_store(app_env) as store:
        older = next(m for m in store.messages(1) if m.content == "A2")
    await user.open(f"/c/1?message={older.id}")
    await user.should_see("A2")
    await user.should_see("1/2")
    assert contents(app_env)[-1] == "A2"
