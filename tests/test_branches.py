"""Editing and branching: an edit is a new sibling with its own answer, every branch keeps its later turns and its
own last selection, a deep message's branch can be shown, a message goes with everything under it, and a path can
continue in a new conversation. On SQLite and PostgreSQL, through the engine, as the page and ``/api`` use it."""

from __future__ import annotations

import asyncio

import pytest

from chat.engine import ConversationBusy, Engine
from chat.refusals import InvalidRequest
from chat.store import Message, NotFound, Role, Status, Store

from .fake_upstream import FakeUpstream, Script


async def answered(engine: Engine, conversation_id: int | None, text: str) -> tuple[Message, Message]:
    """Send ``text``; wait for its answer to be stored; return (user, answer) as stored."""
    user, assistant = await engine.send(conversation_id, text)
    generation = engine.live(assistant.id)  # type: ignore[arg-type]
    assert generation is not None
    return user, await generation.wait()


def contents(store: Store, conversation_id: int) -> list[str]:
    return [m.content for m in store.path(conversation_id)]


async def test_an_edit_branches_and_each_branch_keeps_its_own_later_turns(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["A1"])
    q1, _ = await answered(engine, None, "Q1")
    conversation = q1.conversation_id
    upstream.script = Script(pieces=["A2"])
    q2, _ = await answered(engine, conversation, "Q2")
    upstream.script = Script(pieces=["A3"])
    await answered(engine, conversation, "Q3")
    assert contents(store, conversation) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"]

    upstream.script = Script(pieces=["B2"])
    edited, answer = await engine.edit(q2.id, "Q2 edited")  # type: ignore[arg-type]
    await engine.live(answer.id).wait()  # type: ignore[arg-type, union-attr]
    assert contents(store, conversation) == ["Q1", "A1", "Q2 edited", "B2"]
    sent = upstream.requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["Q1", "A1", "Q2 edited"]  # the edit's answer sees the branch, no Q3
    assert [m.id for m in store.variants(q2.id)] == [q2.id, edited.id]  # type: ignore[arg-type]

    upstream.script = Script(pieces=["B3"])
    await answered(engine, conversation, "Q3 on the edit")
    await engine.select_variant(q2.id)  # type: ignore[arg-type]
    assert contents(store, conversation) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"]  # the original branch, whole
    await engine.select_variant(edited.id)  # type: ignore[arg-type]
    assert contents(store, conversation) == ["Q1", "A1", "Q2 edited", "B2", "Q3 on the edit", "B3"]
    # as stored: a reload, another device, shows the same
    fresh = Store(store.engine.url.render_as_string(hide_password=False))
    try:
        assert contents(fresh, conversation) == ["Q1", "A1", "Q2 edited", "B2", "Q3 on the edit", "B3"]
    finally:
        fresh.close()


async def test_an_edit_is_refused_for_an_answer_a_blank_text_and_while_answering(
    engine: Engine, upstream: FakeUpstream
) -> None:
    q1, a1 = await answered(engine, None, "Q1")
    with pytest.raises(InvalidRequest):
        await engine.edit(a1.id, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Type a message"):
        await engine.edit(q1.id, "   ")  # type: ignore[arg-type]
    upstream.script = Script(tokens=200, rate=20)
    _, running = await engine.send(q1.conversation_id, "long")
    with pytest.raises(ConversationBusy):
        await engine.edit(q1.id, "again")  # type: ignore[arg-type]
    with pytest.raises(ConversationBusy):
        await engine.delete_message(q1.id)  # type: ignore[arg-type]
    await engine.cancel(running.id)  # type: ignore[arg-type]


async def test_showing_a_deep_message_selects_its_branch_and_a_delete_takes_everything_under_it(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["A1"])
    q1, _ = await answered(engine, None, "Q1")
    conversation = q1.conversation_id
    upstream.script = Script(pieces=["A2"])
    await answered(engine, conversation, "Q2")
    upstream.script = Script(pieces=["E1"])
    edited, answer = await engine.edit(q1.id, "Q1 edited")  # type: ignore[arg-type]
    await engine.live(answer.id).wait()  # type: ignore[arg-type, union-attr]
    assert contents(store, conversation) == ["Q1 edited", "E1"]

    deep = next(m for m in store.messages(conversation) if m.content == "A2")
    await engine.show_message(deep.id)  # type: ignore[arg-type]
    assert contents(store, conversation) == ["Q1", "A1", "Q2", "A2"]

    count = await engine.delete_message(q1.id)  # type: ignore[arg-type]
    assert count == 4
    assert contents(store, conversation) == ["Q1 edited", "E1"]  # the other sibling is shown now
    assert {m.content for m in store.messages(conversation)} == {"Q1 edited", "E1"}
    with pytest.raises(NotFound):
        await engine.show_message(deep.id)  # type: ignore[arg-type]


async def test_fork_continues_the_path_up_to_a_message_in_a_new_conversation(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["A1"])
    q1, a1 = await answered(engine, None, "Q1")
    conversation = q1.conversation_id
    await engine.update_conversation(conversation, system_prompt="Be brief.", temperature=0.3, title="Rivers")
    upstream.script = Script(pieces=["A2"])
    await answered(engine, conversation, "Q2")

    forked = await engine.fork(a1.id)  # type: ignore[arg-type]
    copy = await asyncio.to_thread(store.get_conversation, forked)
    assert (copy.title, copy.system_prompt, copy.temperature) == ("Rivers", "Be brief.", 0.3)
    path = store.path(forked)
    assert [(m.role, m.content, m.status) for m in path] == [(Role.user, "Q1", Status.complete),
                                                            (Role.assistant, "A1", Status.complete)]  # fmt: skip
    assert contents(store, conversation) == ["Q1", "A1", "Q2", "A2"]  # the original is untouched
    upstream.script = Script(pieces=["F2"])
    await answered(engine, forked, "Q2 in the fork")
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == ["Be brief.", "Q1", "A1", "Q2 in the fork"]


async def test_a_v1_history_that_is_a_stored_path_continues_it_and_a_changed_one_branches(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    """What ``llm "…"`` then ``llm -c "…"`` do: the second request carries the first exchange as history."""
    upstream.script = Script(pieces=["A1"])
    first, answer = await engine.send(None, "Q1", system_prompt="Be brief.", continues=True)
    await engine.live(answer.id).wait()  # type: ignore[arg-type, union-attr]
    conversation = first.conversation_id

    upstream.script = Script(pieces=["A2"])
    history = [(Role.user, "Q1"), (Role.assistant, "A1")]
    second, answer = await engine.send(None, "Q2", system_prompt="Be brief.", history=history, continues=True)
    await engine.live(answer.id).wait()  # type: ignore[arg-type, union-attr]
    assert second.conversation_id == conversation
    assert contents(store, conversation) == ["Q1", "A1", "Q2", "A2"]
    assert len(store.list_conversations()) == 1

    # the client changed its earlier answer: a branch at the first difference, in the same conversation
    upstream.script = Script(pieces=["B3"])
    changed = [(Role.user, "Q1"), (Role.assistant, "A1"), (Role.user, "Q2"), (Role.assistant, "A2 (edited)")]
    third, answer = await engine.send(None, "Q3", system_prompt="Be brief.", history=changed, continues=True)
    await engine.live(answer.id).wait()  # type: ignore[arg-type, union-attr]
    assert third.conversation_id == conversation
    assert contents(store, conversation) == ["Q1", "A1", "Q2", "A2 (edited)", "Q3", "B3"]
    assert len(store.messages(conversation)) == 7  # A2 kept as the other branch
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == [
        "Be brief.", "Q1", "A1", "Q2", "A2 (edited)", "Q3",
    ]  # fmt: skip

    # another system prompt, or a history nobody stored: a new conversation
    _, answer = await engine.send(None, "Q2", system_prompt="Be long.", history=history, continues=True)
    await engine.live(answer.id).wait()  # type: ignore[arg-type, union-attr]
    assert len(store.list_conversations()) == 2
