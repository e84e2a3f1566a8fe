"""The engine against the fake upstream (real HTTP) and a real SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from chat.engine import (
    ConversationBusy,
    EmptyMessage,
    Engine,
    Finished,
    Phase,
    PhaseChanged,
    TextDelta,
    UsageReported,
    make_title,
)
from chat.store import Status, Store

from .fake_upstream import FakeUpstream, Script
from .helpers import wait_for


async def test_answer_streams_and_is_stored_complete(engine: Engine, store: Store, upstream: FakeUpstream) -> None:
    conversation_id = await engine.create_conversation()
    user, assistant = await engine.send(conversation_id, "Hello there")
    generation = engine.live(assistant.id)
    assert generation is not None
    seen: list[str] = []
    content, _ = generation.subscribe(lambda e: seen.append(e.text) if isinstance(e, TextDelta) else None)
    text = "".join(event.text for event in content)
    message = await generation.wait()
    assert text + "".join(seen) == upstream.expected_text()
    assert message.status == Status.complete
    stored = store.get_message(assistant.id)
    assert stored.content == upstream.expected_text()
    assert stored.status == Status.complete
    assert stored.finish_reason == "stop"
    assert stored.completion_tokens == 20  # from the usage chunk
    assert stored.prompt_tokens is not None
    assert stored.ttft is not None and stored.ttft >= 0
    assert stored.duration is not None and stored.duration >= stored.ttft
    assert store.get_message(user.id).content == "Hello there"
    assert store.get_conversation(conversation_id).title == "Hello there"
    assert engine.live(assistant.id) is None


async def test_request_carries_system_prompt_history_and_temperature(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    conversation_id = await engine.create_conversation(system_prompt="You are terse.", temperature=0.3)
    _, first = await engine.send(conversation_id, "one")
    await engine.live(first.id).wait()
    _, second = await engine.send(conversation_id, "two", temperature=1.2)
    await engine.live(second.id).wait()
    request = upstream.requests[-1]
    assert request["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": upstream.expected_text()},
        {"role": "user", "content": "two"},
    ]
    assert request["temperature"] == 1.2
    assert request["model"] == "fake-model"
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert upstream.requests[0]["temperature"] == 0.3


async def test_checkpoints_are_bounded_and_partial_text_is_saved(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=30, rate=30)  # about 1 s of streaming
    conversation_id = await engine.create_conversation()
    _, assistant = await engine.send(conversation_id, "go")
    partial = await wait_for(lambda: store.get_message(assistant.id).content, what="a checkpoint while streaming")
    assert partial, "a checkpoint should have saved some text while streaming"
    assert upstream.expected_text().startswith(partial)
    assert store.get_message(assistant.id).status == Status.streaming
    message = await engine.live(assistant.id).wait()
    assert message.content == upstream.expected_text()
    duration = message.duration or 0
    # at most one checkpoint per interval (0.2 s) while streaming, never one per token
    assert 1 <= engine.checkpoints <= duration / 0.2 + 1
    assert engine.checkpoints < 30


async def test_cancel_closes_upstream_and_keeps_partial_text(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=500, rate=50)
    conversation_id = await engine.create_conversation()
    _, assistant = await engine.send(conversation_id, "long please")
    generation = engine.live(assistant.id)
    await wait_for(lambda: generation.size > 0, what="the answer's first text")
    assert await engine.cancel(assistant.id) is True
    stored = store.get_message(assistant.id)
    assert stored.status == Status.cancelled
    assert stored.content and upstream.expected_text().startswith(stored.content)
    record = upstream.streams[-1]
    assert await record.wait_ended(2.0), "the upstream stream should end once Parley closes it"
    assert record.client_disconnected
    assert record.tokens_sent < 100
    assert not engine.busy(conversation_id)
    assert await engine.cancel(assistant.id) is False


async def test_regenerate_adds_selected_variant_and_keeps_the_old(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    conversation_id = await engine.create_conversation()
    _, first = await engine.send(conversation_id, "hi")
    await engine.live(first.id).wait()
    first_text = upstream.expected_text()
    upstream.script = Script(pieces=["another ", "answer"])
    variant = await engine.regenerate(first.id, temperature=1.5)
    message = await engine.live(variant.id).wait()
    assert message.content == "another answer" and message.temperature == 1.5
    assert upstream.requests[-1]["temperature"] == 1.5
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "hi"}]
    variants = store.variants(first.id)
    assert [v.id for v in variants] == [first.id, variant.id]
    assert store.get_message(first.id).content == first_text
    assert store.path(conversation_id)[-1].id == variant.id
    await engine.select_variant(first.id)
    assert store.path(conversation_id)[-1].id == first.id


async def test_busy_conversation_refuses_a_second_answer(engine: Engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=100, rate=50)
    conversation_id = await engine.create_conversation()
    _, assistant = await engine.send(conversation_id, "first")
    with pytest.raises(ConversationBusy):
        await engine.send(conversation_id, "second")
    with pytest.raises(ConversationBusy):
        await engine.regenerate(assistant.id)
    with pytest.raises(EmptyMessage):
        await engine.send(await engine.create_conversation(), "  \n\t ")
    await engine.cancel(assistant.id)


async def test_two_subscribers_see_the_same_stream_and_phases(engine: Engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=20, rate=20, first_token_delay=0.2)  # 1 s: the late one joins well before the end
    _, assistant = await engine.send(await engine.create_conversation(), "hi")
    generation = engine.live(assistant.id)
    events_a: list[object] = []
    events_b: list[object] = []
    generation.subscribe(events_a.append)
    await wait_for(lambda: any(isinstance(e, TextDelta) for e in events_a), what="the first text")
    late_content, _ = generation.subscribe(events_b.append)  # mid-answer: it gets the text so far, then the rest
    assert late_content, "the late subscriber should have joined after the first text"
    late_text = "".join(event.text for event in late_content)
    await generation.wait()
    text_a = "".join(e.text for e in events_a if isinstance(e, TextDelta))
    text_b = late_text + "".join(e.text for e in events_b if isinstance(e, TextDelta))
    assert text_a == text_b == upstream.expected_text()
    assert isinstance(events_a[-1], Finished) and isinstance(events_b[-1], Finished)
    assert PhaseChanged(Phase.streaming) in events_a


async def test_restart_marks_streaming_messages_interrupted(engine: Engine, store: Store) -> None:
    conversation_id = await engine.create_conversation()
    user, assistant = store.add_exchange(conversation_id, "hi", model="fake-model", temperature=0.5)
    store.checkpoint(assistant.id, "partial ans")
    assert engine.recover() == 1
    stored = store.get_message(assistant.id)
    assert stored.status == Status.interrupted and stored.content == "partial ans"


async def test_shutdown_stores_running_answers_as_interrupted(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=500, rate=50)
    _, assistant = await engine.send(await engine.create_conversation(), "hi")
    generation = engine.live(assistant.id)
    await wait_for(lambda: generation.size > 0, what="the answer's first text")
    await engine.shutdown()
    stored = store.get_message(assistant.id)
    assert stored.status == Status.interrupted
    assert stored.content and upstream.expected_text().startswith(stored.content)


def test_make_title() -> None:
    assert make_title("  How do I\nsort a list?  ") == "How do I sort a list?"
    long = "Explain the difference between processes and threads in operating systems please"
    title = make_title(long)
    assert title.endswith("…") and len(title) <= 49 and long.startswith(title[:-1])
    assert make_title("   ") == "New chat"


async def test_one_at_a_time_upstream_queues_the_second_answer(store: Store, upstream: FakeUpstream) -> None:
    from chat.provider import Provider

    upstream.script = Script(tokens=20, rate=40)
    provider = Provider(upstream.base_url, "k", read_timeout=5, max_concurrency=1)  # like the embedded model
    engine = Engine(store, provider, default_model="fake-model")
    _, first = await engine.send(await engine.create_conversation(), "first")
    await wait_for(lambda: upstream.streams, what="the first request upstream")
    _, second = await engine.send(await engine.create_conversation(), "second")
    # the provider says so when an answer waits for the upstream's one slot
    await wait_for(lambda: engine.live(second.id).phase == Phase.queued, what="the second answer to queue")
    assert engine.live(second.id).phase == Phase.queued
    assert len(upstream.requests) == 1  # the second request waits for the first answer to end
    done_first = await engine.live(first.id).wait()
    done_second = await engine.live(second.id).wait()
    assert done_first.status == done_second.status == Status.complete
    assert done_second.content == upstream.expected_text()
    first_stream, second_stream = upstream.streams
    assert second_stream.received_at >= first_stream.written[-1], "the second request came before the first ended"
    await provider.close()


async def test_follow_from_an_offset_live_slow_consumer_and_stored(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=40, rate=200)
    conversation_id = await engine.create_conversation()
    _, assistant = await engine.send(conversation_id, "go")

    async def collect(offset: int, pause: float = 0.0) -> list:
        events = []
        async for event in engine.follow(assistant.id, offset):
            events.append(event)
            await asyncio.sleep(pause)  # being slow is the point, not a wait: a slow consumer gets joined deltas
        return events

    fast, slow = await asyncio.gather(collect(0), collect(0, pause=0.05))
    late = await collect(7)  # the answer is stored by now
    expected = upstream.expected_text()
    for events in (fast, slow):
        assert isinstance(events[-1], Finished) and events[-1].message.status == Status.complete
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected
    assert isinstance(fast[0], PhaseChanged)  # no text yet when it started following: the phase comes first
    assert len([e for e in slow if isinstance(e, TextDelta)]) < len([e for e in fast if isinstance(e, TextDelta)])
    assert [type(e) for e in late] == [TextDelta, UsageReported, Finished] and late[0].text == expected[7:]
    assert [type(e) for e in await collect(len(expected))] == [UsageReported, Finished]


async def test_database_writes_per_answer_are_one_plus_checkpoints_plus_one(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=40, rate=50)  # about 0.8 s at a checkpoint interval of 0.2 s
    before, checkpoints = store.writes, engine.checkpoints
    _, assistant = await engine.send(None, "first message names the new conversation")
    message = await engine.live(assistant.id).wait()
    checkpoints = engine.checkpoints - checkpoints
    assert 2 <= checkpoints <= message.duration / 0.2
    # the new conversation, its title and the exchange in one transaction, the checkpoints, the final write
    assert store.writes - before == 1 + checkpoints + 1
    conversation = store.get_conversation(assistant.conversation_id)
    assert conversation.title == "first message names the new conversation"
    assert conversation.temperature == engine.default_temperature
    assert [m.content for m in store.path(conversation.id)] == ["first message names the new conversation",
                                                                 upstream.expected_text()]  # fmt: skip

    conversation_id = await engine.create_conversation()  # an empty conversation is named by its first message
    _, assistant = await engine.send(conversation_id, "named later")
    await engine.live(assistant.id).wait()
    assert store.get_conversation(conversation_id).title == "named later"


async def test_concurrent_answers_share_one_checkpoint_transaction(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=400, rate=40)  # about 10 s each: all five stream through the whole window below
    answers = []
    for i in range(5):
        _, assistant = await engine.send(await engine.create_conversation(), f"question {i}")
        answers.append(assistant.id)
    generations = [engine.live(message_id) for message_id in answers]

    def checkpointed() -> list[str] | None:
        texts = [store.get_message(message_id).content for message_id in answers]
        return texts if all(texts) else None

    partials = await wait_for(checkpointed, what="a checkpoint of every answer")
    assert all(partials), "every streaming answer should have been checkpointed"
    transactions, saved, writes = engine.checkpoints, engine.checkpointed_answers, store.writes
    await wait_for(lambda: engine.checkpoints >= transactions + 6, what="six more checkpoint transactions")
    assert all(not generation.done for generation in generations)  # the window saw all five streaming
    # one transaction saves every due answer: about five per two transactions (answers whose interval ends at the
    # other half-interval tick), never one transaction per answer (a ratio of 1)
    assert engine.checkpointed_answers - saved >= 2 * (engine.checkpoints - transactions)
    assert store.writes - writes <= engine.checkpoints - transactions + 1  # nothing else wrote (one may be in flight)
    for message_id in answers:
        await engine.cancel(message_id)
    messages = [await generation.wait() for generation in generations]
    assert [store.get_message(m.id).content for m in messages] == [g.text for g in generations]


async def test_twenty_conversations_stream_at_once(
    engine: Engine, store: Store, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.script = Script(tokens=60, rate=60)  # ~1 s each, all overlapping: 20 writers' checkpoints interleave
    sent = await asyncio.gather(*(engine.send(None, f"question {i} — ¿qué tal? 👋") for i in range(20)))
    generations = [engine.live(assistant.id) for _, assistant in sent]
    assert all(generations)  # all twenty are streaming at once
    messages = await asyncio.gather(*(generation.wait() for generation in generations))
    assert all(m.status == Status.complete for m in messages), [(m.status, m.error) for m in messages]
    for (user, assistant), index in zip(sent, range(20), strict=True):
        assert store.get_message(user.id).content == f"question {index} — ¿qué tal? 👋"
        assert store.get_message(assistant.id).content == upstream.expected_text()
    assert engine.checkpoints >= 3  # checkpoints ran while all twenty streamed
    assert not [r for r in caplog.records if "locked" in r.getMessage()]


async def test_two_sends_at_once_in_one_conversation_store_one_exchange(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=3)
    conversation_id = await engine.create_conversation()
    results = await asyncio.gather(
        engine.send(conversation_id, "first"), engine.send(conversation_id, "second"), return_exceptions=True
    )
    assert isinstance(results[1], ConversationBusy)  # the store works in a thread: the second Send must see it busy
    await engine.live(results[0][1].id).wait()
    assert [m.content for m in store.path(conversation_id)] == ["first", upstream.expected_text()]


async def test_an_answers_max_tokens_is_capped_by_the_configured_one(make_engine, upstream: FakeUpstream) -> None:
    capped, free = make_engine(max_tokens=5), make_engine()
    for engine, asked, sent in ((capped, 7, 5), (capped, 3, 3), (capped, None, 5), (free, 7, 7), (free, None, None)):
        _, answer = await engine.send(None, "Hi", max_tokens=asked)
        await engine.live(answer.id).wait()
        assert upstream.requests[-1].get("max_tokens") == sent, (asked, sent)
