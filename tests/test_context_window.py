"""A conversation longer than the model's context window: the oldest turns are left out of the request (the system
prompt always kept), the answer records how many, and the page says so — instead of an upstream 400."""

from __future__ import annotations

from pathlib import Path

import pytest
from nicegui.testing import User

from chat.engine import Engine
from chat.store import Role, Status, Store

from .fake_upstream import FakeUpstream, Script
from .helpers import send, stored_path, wait_for

SYSTEM = "You are terse."
LONG = " ".join(f"word{i}" for i in range(40))  # 40 words, 280 bytes: ~98 estimated tokens with its overhead


async def converse(engine: Engine, conversation_id: int, turns: int) -> list[int]:
    """Send ``turns`` long messages one after the other; return the assistant message ids."""
    answers = []
    for index in range(turns):
        _, assistant = await engine.send(conversation_id, f"{index}: {LONG}")
        await engine.live(assistant.id).wait()
        answers.append(assistant.id)
    return answers


async def test_oldest_turns_are_left_out_and_the_system_prompt_kept(
    make_engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["short answer"])
    engine = make_engine(context_window=600, max_tokens=100)
    conversation_id = await engine.create_conversation(system_prompt=SYSTEM)
    answers = await converse(engine, conversation_id, 8)

    first, last = upstream.requests[0]["messages"], upstream.requests[-1]["messages"]
    assert [m["role"] for m in first] == ["system", "user"]
    assert last[0] == {"role": "system", "content": SYSTEM}  # always kept
    assert last[-1]["content"] == f"7: {LONG}"  # the new message, whole
    assert last[1]["role"] == "user"  # the kept history starts with a user turn
    full = 1 + 2 * 8 - 1  # system + 8 user turns + 7 answers
    omitted = full - len(last)
    assert omitted >= 2
    assert [m["content"] for m in last[1:]] == [
        m.content for m in store.path(conversation_id)[omitted:-1]
    ]  # the newest turns, in order, none skipped in between
    assert store.get_message(answers[-1]).omitted_messages == omitted
    assert store.get_message(answers[0]).omitted_messages is None
    assert all(store.get_message(a).status == Status.complete for a in answers)


async def test_an_unknown_window_is_learned_from_the_upstreams_refusal(
    make_engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["ok"])
    engine = make_engine()  # "fake-model": no configured window, not in the table of known models
    conversation_id = await engine.create_conversation()
    await converse(engine, conversation_id, 4)  # the fake has no window until now
    upstream.script = Script(pieces=["fitted"], context_window=200)
    before = len(upstream.requests)
    _, assistant = await engine.send(conversation_id, f"4: {LONG}")
    message = await engine.live(assistant.id).wait()
    assert message.status == Status.complete and message.content == "fitted"
    assert len(upstream.requests) - before == 2  # refused once (400 naming 200 tokens), then sent fitted
    assert message.omitted_messages and message.omitted_messages > 0
    assert engine.provider.learned_windows == {"fake-model": 200}
    _, again = await engine.send(conversation_id, f"5: {LONG}")
    assert (await engine.live(again.id).wait()).status == Status.complete
    assert len(upstream.requests) - before == 3  # learned: fitted from the start


async def test_a_message_too_long_for_the_window_is_an_error_and_nothing_is_sent(
    make_engine, store: Store, upstream: FakeUpstream
) -> None:
    engine = make_engine(context_window=300, max_tokens=100)
    user, assistant = await engine.send(None, LONG * 5)
    message = await engine.live(assistant.id).wait()
    assert message.status == Status.error
    assert "Your message is about" in (message.error or "") and "context window is 300 tokens" in message.error
    assert (message.error_status, message.error_code) == (400, "context_length_exceeded")
    assert upstream.requests == []
    assert store.get_message(user.id).content == LONG * 5  # what the user typed is kept


async def test_without_a_system_role_the_system_prompt_leads_the_first_user_turn(
    make_engine, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["ok"])
    engine = make_engine(system_in_first_turn=True)
    conversation_id = await engine.create_conversation(system_prompt=SYSTEM)
    await converse(engine, conversation_id, 2)
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": f"{SYSTEM}\n\n0: {LONG}"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": f"1: {LONG}"},
    ]


@pytest.fixture
def small_window(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("PARLEY_CONTEXT_WINDOW", "400")
    monkeypatch.setenv("PARLEY_MAX_TOKENS", "100")
    monkeypatch.setenv("PARLEY_TOOLS", "false")  # the tools' definitions alone would take most of 400 tokens
    return 400


async def test_the_page_says_earlier_turns_were_left_out(
    small_window: int, user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["noted"])
    await user.open("/")
    await send(user, f"0: {LONG}")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[-1].status == Status.complete)
    await user.open("/c/1")
    for index in range(1, 4):
        await user.should_see(marker="send")  # the last answer has ended in the engine too, not only in the database
        await send(user, f"{index}: {LONG}")
        await wait_for(
            lambda n=index: (
                len(stored_path(app_env)) == 2 * (n + 1) and stored_path(app_env)[-1].status == Status.complete
            )
        )
    path = stored_path(app_env)
    assert path[-1].role == Role.assistant and path[-1].omitted_messages
    await user.open("/c/1")
    await user.should_see(f"{path[-1].omitted_messages} earlier messages were left out of this answer's request")
