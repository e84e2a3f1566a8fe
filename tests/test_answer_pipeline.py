"""One path for every answer, and its numbered event log: the engine's own contracts, on SQLite and PostgreSQL.

* A request's history becomes a conversation in one engine call (``Engine.send`` with ``history``), with the title
  cleaned like any other; a refused request stores nothing and tells no view anything.
* An answer stored nowhere (``Engine.answer_unstored``, ``/v1`` with ``store: false``) is the same generation: it
  streams the same events, counts as running, and stops when cancelled.
* Sequence numbers: resuming after any number, from the live answer or from the stored one, gives exactly the rest.
* Views are told only about what they watch: one conversation, or one user's conversations.
* Parley's refusals are one hierarchy, and ``/api`` answers each with its status in one place.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from chat.api.rest import register_rest
from chat.engine import (
    LOCAL,
    Account,
    Change,
    ConversationBusy,
    EmptyMessage,
    Engine,
    Finished,
    Limits,
    ModelNotAllowed,
    RateLimited,
    TextDelta,
    UsageReported,
)
from chat.provider import Provider
from chat.refusals import InvalidRequest, Refusal
from chat.store import NotFound, Role, Status, Store

from .fake_upstream import FakeUpstream, Script
from .helpers import wait_for


async def test_a_requests_history_becomes_one_conversation_titled_and_cleaned(engine: Engine, store: Store) -> None:
    seen: list[Change] = []
    engine.watch_conversations(LOCAL, seen.append)
    history = [(Role.user, "Where\x00 do rivers go?"), (Role.assistant, "To the sea.")]
    user, assistant = await engine.send(
        None, "And\x00 then?", system_prompt="Be\x00 brief.", history=history, model="fake-model", temperature=0.3
    )
    await engine.live(assistant.id).wait()
    conversation = store.get_conversation(user.conversation_id)
    assert conversation.title == "Where\ufffd do rivers go?"  # no NUL: PostgreSQL refuses it in text
    assert conversation.system_prompt == "Be\ufffd brief." and conversation.temperature == 0.3
    assert conversation.model == "fake-model"
    path = store.path(user.conversation_id)
    assert [(m.role, m.content) for m in path[:3]] == [
        (Role.user, "Where\ufffd do rivers go?"),
        (Role.assistant, "To the sea."),
        (Role.user, "And\ufffd then?"),
    ]
    assert path[3].id == assistant.id and path[3].status == Status.complete
    assert [(c.kind, c.title) for c in seen[:2]] == [("created", conversation.title), ("message", None)]
    with pytest.raises(InvalidRequest):  # a history only starts a new conversation
        await engine.send(user.conversation_id, "more", history=history)


async def test_a_refused_request_stores_nothing_and_tells_no_view(store: Store, upstream: FakeUpstream) -> None:
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model", limits=Limits(messages_per_minute=1))
    limited = Account(user_id=None, name="limited", models=frozenset({"fake-model"}))
    seen: list[Change] = []
    engine.watch_conversations(LOCAL, seen.append)
    try:
        with pytest.raises(ModelNotAllowed):
            await engine.send(None, "hi", model="other-model", account=limited, history=[(Role.user, "earlier")])
        assert store.list_conversations() == [] and seen == []
        member = Account(user_id=store.create_user("ann", "x" * 60).id, name="ann")
        _, first = await engine.send(None, "one", account=member)
        await engine.live(first.id).wait()
        seen.clear()
        with pytest.raises(RateLimited):  # one message per minute
            await engine.send(None, "two", account=member, history=[(Role.user, "earlier")])
        assert len(store.list_conversations()) == 1 and seen == []
    finally:
        await engine.shutdown()
        await provider.close()


async def test_an_answer_stored_nowhere_streams_the_same_events_and_stops_when_cancelled(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    generation = await engine.answer_unstored([{"role": "user", "content": "hi"}], temperature=0.2)
    events = [event async for event in generation.follow(0)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == upstream.expected_text()
    assert [type(e) for e in events[-2:]] == [UsageReported, Finished]
    finished = events[-1]
    assert finished.message.id is None and finished.message.status == Status.complete
    assert finished.seq == len(upstream.expected_text()) == generation.position
    assert store.list_conversations() == []  # stored nowhere
    assert upstream.requests[-1]["temperature"] == 0.2

    upstream.script = Script(tokens=400, rate=40)
    before = len(upstream.streams)
    generation = await engine.answer_unstored([{"role": "user", "content": "a long one"}])
    assert engine.running_answers(LOCAL) == 1
    await wait_for(lambda: len(upstream.streams) > before and upstream.streams[-1].tokens_sent > 0, what="text")
    assert await engine.cancel_unstored(generation)
    message = await generation.wait()
    assert message.status == Status.cancelled and engine.running_answers(LOCAL) == 0
    assert await upstream.streams[-1].wait_ended(2.0) and upstream.streams[-1].client_disconnected
    with pytest.raises(EmptyMessage):
        await engine.answer_unstored([{"role": "user", "content": " \n"}])


async def test_resuming_after_any_sequence_number_gives_exactly_the_rest(
    engine: Engine, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["Ríos ", "🌊 ", "flow", " to", " the sea."], rate=20)
    _, assistant = await engine.send(None, "go")
    generation = engine.live(assistant.id)
    text = "".join(upstream.script.pieces)

    async def rest_after(position: int) -> tuple[str, list[int]]:
        events = [event async for event in engine.follow(assistant.id, position)]
        assert isinstance(events[-1], Finished)
        deltas = [e for e in events if isinstance(e, TextDelta)]
        return "".join(e.text for e in deltas), [e.seq for e in deltas]

    live = await asyncio.gather(*(rest_after(position) for position in range(len(text) + 1)))
    assert generation.done
    stored = [await rest_after(position) for position in range(len(text) + 1)]
    for position in range(len(text) + 1):
        assert live[position][0] == stored[position][0] == text[position:], position
        assert all(seq > position for seq in live[position][1] + stored[position][1])
        assert (live[position][1] or [len(text)])[-1] == len(text)  # the last delta ends at the end


async def test_views_are_told_only_about_what_they_watch(store: Store, upstream: FakeUpstream) -> None:
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model")
    ann = Account(store.create_user("ann", "x" * 60).id, "ann")
    bob = Account(store.create_user("bob", "x" * 60).id, "bob")
    anns, bobs, everyone, one = [], [], [], []
    engine.watch_conversations(ann, anns.append)
    engine.watch_conversations(bob, bobs.append)
    engine.watch_conversations(LOCAL, everyone.append)
    try:
        _, first = await engine.send(None, "ann's", account=ann)
        engine.watch_conversation(first.conversation_id, one.append)
        await engine.live(first.id).wait()
        _, second = await engine.send(None, "bob's", account=bob)
        await engine.live(second.id).wait()
        await engine.update_conversation(first.conversation_id, ann, title="Renamed")
    finally:
        await engine.shutdown()
        await provider.close()
    assert {c.conversation_id for c in anns} == {first.conversation_id}
    assert {c.conversation_id for c in bobs} == {second.conversation_id}
    assert {c.conversation_id for c in everyone} == {first.conversation_id, second.conversation_id}
    assert [c.kind for c in one] == ["finished", "updated"] and one[-1].title == "Renamed"
    assert len(engine.watchers) == 4


def test_every_refusal_is_one_hierarchy_with_its_http_status() -> None:
    refusals = {
        NotFound("gone"): 404,
        ConversationBusy("busy"): 409,
        EmptyMessage("empty"): 422,
        ModelNotAllowed("no"): 403,
        RateLimited("slow down", 7): 429,
        InvalidRequest("bad"): 422,
    }
    for refusal, status in refusals.items():
        assert isinstance(refusal, Refusal) and refusal.status == status, refusal
    assert RateLimited("slow down", 7).headers == {"Retry-After": "7"}
    assert not issubclass(ValueError, Refusal)  # a bug's ValueError is not a refusal


async def test_the_api_answers_each_refusal_with_its_status_in_one_place(engine: Engine, store: Store) -> None:
    app = FastAPI()
    register_rest(app, engine, store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley") as client:
        missing = await client.get("/api/conversations/9")
        assert missing.status_code == 404 and missing.json() == {"detail": "conversation 9 not found"}
        conversation = (await client.post("/api/conversations", json={})).json()["id"]
        blank = await client.post(f"/api/conversations/{conversation}/messages", json={"content": " "})
        assert blank.status_code == 422
        assert blank.json()["detail"][0]["loc"] == ["body", "content"]
        hot = await client.patch(f"/api/conversations/{conversation}", json={"temperature": 1.0})
        assert hot.status_code == 200 and hot.json()["temperature"] == 1.0
        user, _ = await engine.send(conversation, "hi")
        not_an_answer = await client.post(f"/api/messages/{user.id}/regenerate", json={})
        assert not_an_answer.status_code == 422 and not_an_answer.json()["detail"][0]["loc"] == ["path", "message_id"]
