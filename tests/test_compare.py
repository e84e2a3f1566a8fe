"""Side by side: one message to several models at once, each answer its own generation; keeping one continues the
conversation from it and the others stay as its variants; limits count each model. Engine, ``/api`` shapes and the
page (NiceGUI's simulated user), on the fake upstream (which serves ``fake-model`` and ``other-model``: a third,
``missing-model``, fails as an unknown model)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nicegui.testing import User

from chat.engine import Engine, RateLimited
from chat.engine.policy import Account, Limits
from chat.provider import Provider
from chat.refusals import InvalidRequest
from chat.store import Status, Store

from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, send, wait_for

MODELS = ["fake-model", "other-model", "missing-model"]


async def ended(engine: Engine, message_id: int | None):
    """The answer once it ended (it may have ended already)."""
    generation = engine.live(message_id)  # type: ignore[arg-type]
    if generation is not None:
        return await generation.wait()
    return await asyncio.to_thread(engine.store.get_message, message_id)  # type: ignore[arg-type]


async def test_three_models_one_failing_then_one_is_kept(engine: Engine, upstream: FakeUpstream, store: Store) -> None:
    upstream.script = Script(tokens=30, rate=300)
    user, answers = await engine.compare(None, "Which river is longest?", MODELS)
    assert [a.model for a in answers] == MODELS and all(a.comparing for a in answers)
    assert engine.busy(user.conversation_id)
    done = [await ended(engine, a.id) for a in answers]
    assert [m.status for m in done] == [Status.complete, Status.complete, Status.error]
    assert "missing-model" in (done[2].error or "")
    assert sorted(r["model"] for r in upstream.requests) == sorted(MODELS)  # one request per model, concurrently
    path = await asyncio.to_thread(store.path, user.conversation_id)
    assert [m.id for m in path] == [user.id, answers[0].id]  # the first column is shown until one is kept

    await engine.pick(answers[1].id)  # type: ignore[arg-type]
    variants = await asyncio.to_thread(store.variants, answers[1].id)  # type: ignore[arg-type]
    assert [v.id for v in variants] == [a.id for a in answers] and not any(v.comparing for v in variants)
    assert [v.selected for v in variants] == [False, True, False]
    _, next_answer = await engine.send(user.conversation_id, "And the second?")
    await ended(engine, next_answer.id)
    path = await asyncio.to_thread(store.path, user.conversation_id)
    assert path[1].id == answers[1].id and path[2].parent_id == answers[1].id  # continued from the kept one
    sent = upstream.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": done[1].content}


async def test_sending_without_keeping_continues_from_the_first_column(engine: Engine, store: Store) -> None:
    user, answers = await engine.compare(None, "Compare these", MODELS[:2])
    for answer in answers:
        await ended(engine, answer.id)
    _, answer = await engine.send(user.conversation_id, "Next")
    await ended(engine, answer.id)
    variants = await asyncio.to_thread(store.variants, answers[0].id)  # type: ignore[arg-type]
    assert not any(v.comparing for v in variants) and answer.parent_id is not None
    path = await asyncio.to_thread(store.path, user.conversation_id)
    assert path[1].id == answers[0].id and path[2].parent_id == answers[0].id


async def test_each_model_counts_against_the_limits_and_the_allowed_models(
    store: Store, upstream: FakeUpstream
) -> None:
    provider = Provider(upstream.base_url, "test-key", read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model", limits=Limits(messages_per_minute=3,
                                                                               concurrent_answers=2))  # fmt: skip
    ann = await asyncio.to_thread(store.create_user, "ann", "x")
    account = Account(ann.id, models=None)
    try:
        with pytest.raises(RateLimited, match="compare at most 2 models"):
            await engine.compare(None, "Three at once", MODELS, account=account)
        user, answers = await engine.compare(None, "Two at once", MODELS[:2], account=account)
        for answer in answers:
            await ended(engine, answer.id)
        with pytest.raises(RateLimited, match="3 messages in the last minute"):  # two counted, one left
            await engine.compare(user.conversation_id, "Two more", MODELS[:2], account=account)
        limited = Account(ann.id, models=frozenset({"fake-model"}))
        with pytest.raises(Exception, match="other-model"):
            await engine.compare(user.conversation_id, "Not allowed", MODELS[:2], account=limited)
        with pytest.raises(InvalidRequest, match="2 to 4"):
            await engine.compare(None, "Alone", ["fake-model"], account=account)
    finally:
        await engine.shutdown()
        await provider.close()
    assert await asyncio.to_thread(store.count_messages) == 3  # nothing stored for the refused ones


async def test_the_page_shows_columns_each_with_its_model_status_and_keep(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=20, rate=200)
    await user.open("/")
    chooser = user.find(marker="compare")
    chooser.click()
    await user.should_see(marker="compare-fake-model")
    user.find(marker="compare-fake-model").click()
    user.find(marker="compare-other-model").click()
    await user.should_see(marker="compare-count")
    await send(user, "Side by side, please")
    await user.should_see(marker="comparison")

    def both_ended() -> bool:
        with opened_store(app_env) as store:
            messages = store.messages(1)
        return len(messages) == 3 and all(m.status != Status.streaming for m in messages)

    await wait_for(both_ended, what="both answers ended")
    await user.should_see("other-model")
    await wait_for(lambda: len(user.find(marker="keep-answer").elements) == 2, what="a Keep button per column")
    with opened_store(app_env) as store:
        second = store.messages(1)[2]
    assert second.model == "other-model"
    user.find(marker=f"keep-{second.id}").click()

    def kept() -> bool:
        with opened_store(app_env) as store:
            return [m.selected for m in store.messages(1)[1:]] == [False, True]

    await wait_for(kept, what="the second answer kept")
    await user.should_not_see(marker="comparison")
    await user.should_see(marker="variant-nav")  # the other one is its variant now: ‹ 2/2 ›
