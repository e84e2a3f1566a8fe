"""A long conversation (issue 19, part 6): the store's light reads (SQLite and PostgreSQL), and the page's window of
messages and its search within the conversation, with NiceGUI's simulated user on the real app.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from nicegui import ui
from nicegui.testing import User
from nicegui.testing.user_interaction import UserInteraction

from chat.store import Status, Store
from chat.store.search import search
from chat.store.store import MessageNode, selected_path
from chat.ui.chat_view import BATCH, OPEN_TEXT, WINDOW, ChatView

from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, send, stored_path, wait_for


def seed(
    store: Store, exchanges: int, title: str = "Long", questions: dict[int, str] | None = None
) -> tuple[int, list[int]]:
    """A conversation of ``exchanges`` questions ("question 007", or ``questions[7]``) and answers ("answer 007");
    returns its id and its messages' ids, oldest first."""
    conversation_id = store.create_conversation(title=title).id
    assert conversation_id is not None
    ids: list[int] = []
    for i in range(exchanges):
        text = (questions or {}).get(i, f"question {i:03d}")
        question, answer = store.add_exchange(conversation_id, text, model="fake-model", temperature=0.7)
        store.finish_message(answer.id, content=f"answer {i:03d}", status=Status.complete, cost=0.001)
        ids += [question.id, answer.id]
    return conversation_id, ids


# -- the store -------------------------------------------------------------------------------------------------------


def test_nodes_are_the_tree_without_text_and_rows_are_read_by_id(store: Store) -> None:
    conversation_id, ids = seed(store, 3)
    variant = store.add_variant(ids[3], model="fake-model", temperature=1.0)  # a second answer to question 001
    store.finish_message(variant.id, content="answer 001 again", status=Status.complete)
    other, _ = seed(store, 1, "Other")

    nodes = store.message_nodes(conversation_id)
    assert [n.id for n in nodes] == sorted([*ids, variant.id])
    assert all(isinstance(n, MessageNode) and not hasattr(n, "content") for n in nodes)
    by_id = {n.id: n for n in nodes}
    assert by_id[variant.id].selected and not by_id[ids[3]].selected
    assert by_id[ids[1]].cost == pytest.approx(0.001) and by_id[ids[1]].status == Status.complete
    # the nodes' path is the messages' path
    assert [n.id for n in selected_path(nodes)] == [m.id for m in store.path(conversation_id)]

    rows = store.messages_by_id(conversation_id, [ids[0], variant.id, store.message_nodes(other)[0].id, 10**9])
    assert {key: m.content for key, m in rows.items()} == {ids[0]: "question 000", variant.id: "answer 001 again"}
    labels = store.message_labels(conversation_id, 6)
    assert labels[ids[2]] == "questi" and len(labels) == len(nodes)
    assert store.message_labels(conversation_id, 20, [ids[5]]) == {ids[5]: "answer 002"}


def test_search_within_one_conversation_finds_every_branch_newest_first(store: Store) -> None:
    conversation_id, ids = seed(store, 30)
    variant = store.add_variant(ids[1], model="fake-model", temperature=1.0)  # a hidden branch after this
    store.finish_message(variant.id, content="a hidden walrus answer", status=Status.complete)
    store.select_variant(ids[1])
    other, _ = seed(store, 30, "Other")

    page = search(store, "question 00", owner=None, conversation_id=conversation_id, limit=20)
    assert [hit.message_id for hit in page.hits] == [ids[2 * i] for i in range(9, -1, -1)]  # newest first
    assert all(hit.conversation_id == conversation_id for hit in page.hits)
    assert [h.message_id for h in search(store, "walrus", owner=None, conversation_id=conversation_id).hits] == [
        variant.id
    ]
    assert not search(store, "walrus", owner=None, conversation_id=other).hits
    assert not search(store, "Long", owner=None, conversation_id=conversation_id).hits  # no title hits
    assert search(store, "Long", owner=None).hits[0].message_id is None  # across conversations, as before


# -- the page --------------------------------------------------------------------------------------------------------


def built(user: User) -> list[str]:
    """The texts of the messages built on the page, top to bottom (an answer's: its text as the page has it)."""
    [column] = user.find(marker="chat-column").elements
    return [_text(child) for child in column.default_slot.children if "parley-message" in child.classes]


def _text(view: ui.element) -> str:
    for element in view.descendants():
        if "user-message" in element._markers:
            return element.text  # type: ignore[attr-defined]
        if "assistant-message" in element._markers:
            return element.props.get("text", "")
    return ""


def window(user: User) -> UserInteraction:
    """The browser side of the window, to send it the events its JavaScript sends when the reader scrolls."""
    return UserInteraction(user, set(user.find(marker="message-window").elements), None)


async def wait_built(user: User, first: str, last: str, what: str) -> list[str]:
    return await wait_for(lambda: (texts := built(user)) and texts[0] == first and texts[-1] == last and texts,
                          what=what)  # fmt: skip


async def test_the_window_follows_the_reader_and_stays_bounded(user: User, app_env: Path) -> None:
    with opened_store(app_env) as store:
        seed(store, 200)  # 400 messages
    await user.open("/c/1")
    texts = await wait_built(user, "question 180", "answer 199", "the newest batch")
    assert len(texts) == BATCH
    await user.should_see(marker="show-earlier")
    await user.should_not_see(marker="jump-newest")

    firsts = ["question 160", "question 140", "question 120", "question 100", "question 080"]
    for batch, first in enumerate(firsts):  # back through 200 more messages, a batch at a time, as scrolling up asks
        window(user).trigger("earlier")
        texts = await wait_for(lambda f=first: (t := built(user)) and t[0] == f and t, what=f"batch {batch}")
        assert len(texts) == min(WINDOW, BATCH * (batch + 2))
    assert texts == [f"{kind} {i:03d}" for i in range(80, 140) for kind in ("question", "answer")]  # 3 batches
    await user.should_see(marker="jump-newest")  # the newest were removed: a way back to them

    window(user).trigger("later")  # scrolling down again: the next batch below, the farthest above removed
    texts = await wait_built(user, "question 100", "answer 159", "the batch below")
    assert len(texts) == WINDOW

    user.find(marker="jump-newest").click()
    texts = await wait_built(user, "question 180", "answer 199", "the newest again")
    assert len(texts) == BATCH
    await user.should_not_see(marker="jump-newest")

    for _ in range(10):  # back to the very first message with the button
        user.find(marker="show-earlier").click()
        texts = await wait_for(lambda t=texts: (now := built(user))[0] != t[0] and now, what="an earlier batch")
        assert len(texts) <= WINDOW
        if texts[0] == "question 000":
            break
    assert texts[0] == "question 000"
    await user.should_not_see(marker="show-earlier")


async def test_long_messages_open_fewer_views_and_the_rest_come_when_asked(user: User, app_env: Path) -> None:
    answer = "lorem ipsum " * 250  # 3,000 characters
    with opened_store(app_env) as store:
        conversation_id = store.create_conversation(title="Long answers").id
        for i in range(30):
            _, reply = store.add_exchange(conversation_id, f"question {i:03d}", model="fake-model", temperature=None)
            store.finish_message(reply.id, content=f"answer {i:03d} {answer}", status=Status.complete)
    await user.open(f"/c/{conversation_id}")
    texts = await wait_for(lambda: (t := built(user)) and t[-1].startswith("answer 029") and t, what="the newest")
    # the newest exchanges whose text fits in OPEN_TEXT (each is about 3,000 characters), from a question on
    assert texts[0] == "question 025" and len(texts) == 10
    assert sum(map(len, texts)) <= OPEN_TEXT + len(texts[1])
    await user.should_see(marker="show-earlier")
    window(user).trigger("earlier")  # scrolling up: a whole batch above them
    texts = await wait_built(user, "question 005", texts[-1], "the batch above")
    assert len(texts) == 10 + BATCH


async def test_search_in_the_conversation_shows_an_old_message_and_its_hidden_branch(user: User, app_env: Path) -> None:
    with opened_store(app_env) as store:
        _, ids = seed(store, 150, questions={3: "question 003 about a narwhal"})
        variant = store.add_variant(ids[11], model="fake-model", temperature=1.0)  # answer 005 again, hidden
        store.finish_message(variant.id, content="a walrus in the hidden branch", status=Status.complete)
        store.select_variant(ids[11])
    await user.open("/c/1")
    await wait_built(user, "question 130", "answer 149", "the newest batch")

    user.find(marker="conversation-search").click()
    await user.should_see(marker="conversation-search-dialog")
    user.find(marker="conversation-search-input").type("narwhal")
    await user.should_see(marker="conversation-search-hit", retries=100)
    [hit] = user.find(marker="conversation-search-hit").elements
    UserInteraction(user, {hit}, None).trigger("click")
    texts = await wait_for(lambda: "question 003 about a narwhal" in (t := built(user)) and t, what="the old message")
    assert len(texts) <= BATCH
    [view] = [e for e in user.find(marker=f"message-{ids[6]}").elements]
    assert "parley-highlight" in view.classes
    await user.should_see(marker="jump-newest")

    user.find(marker="conversation-search").click()
    user.find(marker="conversation-search-input").clear().type("walrus")
    await wait_for(lambda: any("walrus" in _hit_text(e) for e in user.find(marker="conversation-search-hit").elements),
                   what="the hidden branch's hit")  # fmt: skip
    [hit] = user.find(marker="conversation-search-hit").elements
    UserInteraction(user, {hit}, None).trigger("click")
    await wait_for(lambda: "a walrus in the hidden branch" in built(user), what="the hidden branch shown")
    assert stored_path(app_env)[11].id == variant.id  # its branch is the shown one now
    await user.should_see("2/2")


def _hit_text(element: ui.element) -> str:
    return "".join(getattr(e, "text", "") or "" for e in element.descendants())


async def test_own_send_is_built_without_waiting_for_a_read(
    user: User, app_env: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    with opened_store(app_env) as store:
        seed(store, 50)
    await user.open("/c/1")
    await wait_built(user, "question 030", "answer 049", "the newest batch")
    release = threading.Event()
    read = ChatView._read_nodes

    def held(
        self: ChatView,
    ) -> object:  # every read of the conversation waits (longer than the test waits for the page)
        release.wait(30)
        return read(self)

    monkeypatch.setattr(ChatView, "_read_nodes", held)
    upstream.script = Script(tokens=200, rate=50)
    try:
        await send(user, "a new question")
        texts = await wait_for(lambda: (t := built(user)) and t[-2] == "a new question" and t, what="the new question")
        assert len(user.find(marker="assistant-message").elements) == BATCH // 2 + 1  # the live answer too
    finally:
        release.set()
    await wait_for(lambda: stored_path(app_env)[-1].status == Status.complete, what="the answer's end")
    await wait_for(lambda: built(user)[-1] == upstream.expected_text(), what="the answer shown whole")
    assert built(user)[:-2] == texts[:-2] and len(built(user)) == BATCH + 2
