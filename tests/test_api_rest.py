"""The ``/api`` REST and SSE routes (``chat/api/rest.py``) against the real app.py in a subprocess on the fake upstream,
with an SSE client (httpx + httpx-sse). Two tests run the routes in-process instead, behind NiceGUI's middlewares: the
heartbeat (0.2 s there, not 15) and what a disconnect does to the engine's subscription."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from httpx_sse import EventSource, aconnect_sse, connect_sse
from nicegui.middlewares import RedirectWithPrefixMiddleware, SetCacheControlMiddleware
from playwright.sync_api import expect
from starlette.middleware.gzip import GZipMiddleware

from chat.api.rest import register_rest
from chat.engine import Engine
from chat.store import Store

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import wait_for, wait_until

#: Text that is easy to split wrongly: combining marks, a ZWJ emoji sequence and astral characters, CJK, right-to-left,
#: CR LF and a lone CR, tab, and the line separators that ``str.splitlines`` (not SSE) breaks lines on.
HARD = [
    "Ri\u0301os ",
    "👩‍👩‍👧 ",
    "𝄞 ",
    "河流 ",
    "נהרות ",
    "a\r\nb ",
    "c\rd\t",
    "e\u2028f\u2029g\x85h ",
    "**bold** ",
    '"quotes" \\ ',
]


@dataclass
class Event:
    """One server-sent event, its data parsed."""

    event: str
    id: str
    data: dict[str, Any]


def read(source: EventSource) -> Iterator[Event]:
    """The events of ``source`` as they arrive."""
    for sse in source.iter_sse():
        yield Event(sse.event, sse.id, json.loads(sse.data))


def text_of(events: list[Event]) -> str:
    return "".join(e.data["delta"] for e in events if e.event == "text_delta")


def assert_ids_count_characters(events: list[Event], start: int = 0) -> None:
    """Every event's id is the number of characters (code points) of the answer the client has once it has it."""
    have = start
    for event in events:
        if event.event == "text_delta":
            have += len(event.data["delta"])
        assert event.id == str(have), (event, have)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream
) -> Iterator[str]:
    """One app.py for this module's tests (each makes its own conversations), on SQLite (its default file) and then
    on a database of the test PostgreSQL server (``DATABASE_URL``)."""
    port = free_port()
    env = {}
    if request.param == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("postgres_server").create_database()
    with serve(tmp_path_factory.mktemp("api"), fake_upstream_server, port, **env) as process:
        yield f"http://127.0.0.1:{port}"
        assert_no_errors(process)


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=15) as client:
        yield client


def new_conversation(client: httpx.Client, **fields: Any) -> int:
    response = client.post("/api/conversations", json=fields)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def send(client: httpx.Client, conversation_id: int, content: str, **fields: Any) -> list[Event]:
    """Send a message and read its whole answer."""
    body = {"content": content, **fields}
    with connect_sse(client, "POST", f"/api/conversations/{conversation_id}/messages", json=body) as source:
        assert source.response.status_code == 200
        return list(read(source))


def test_conversations_are_created_listed_read_changed_and_deleted(client: httpx.Client) -> None:
    created = client.post(
        "/api/conversations",
        json={"title": "Ríos 🌊", "system_prompt": "Sé breve.", "model": "other-model", "temperature": 0.2},
    )
    assert created.status_code == 201
    conversation = created.json()
    assert conversation["title"] == "Ríos 🌊" and conversation["model"] == "other-model"
    assert "Ríos 🌊".encode() in created.content  # UTF-8 as is, not \u escapes
    bare = client.post("/api/conversations")  # no body at all: every field is optional
    assert bare.status_code == 201 and bare.json()["title"] == "New chat" and bare.json()["model"] is None
    listed = client.get("/api/conversations").json()
    assert [c["id"] for c in listed[:2]] == [bare.json()["id"], conversation["id"]]  # the newest first
    changed = client.patch(f"/api/conversations/{conversation['id']}", json={"title": "  Mares  ", "model": None})
    assert changed.status_code == 200
    assert changed.json() | {"updated_at": None} == conversation | {
        "title": "Mares", "model": None, "updated_at": None
    }  # fmt: skip
    detail = client.get(f"/api/conversations/{conversation['id']}").json()
    assert detail["title"] == "Mares" and detail["messages"] == [] and detail["path"] == []
    assert client.delete(f"/api/conversations/{conversation['id']}").status_code == 204
    assert client.get(f"/api/conversations/{conversation['id']}").status_code == 404
    assert conversation["id"] not in [c["id"] for c in client.get("/api/conversations").json()]


def test_a_message_streams_typed_events_and_is_stored(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=HARD)
    conversation = new_conversation(client)
    body = {"content": "¿Adónde van los ríos? 🌊", "temperature": 0.4, "model": "other-model"}
    with connect_sse(client, "POST", f"/api/conversations/{conversation}/messages", json=body) as source:
        headers = source.response.headers
        assert source.response.request.headers["accept-encoding"].startswith("gzip")
        raw_events = list(read(source))
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in headers  # never gzipped: compression buffers
    start, *rest = raw_events
    assert start.event == "message_start" and start.id == "0"
    assert start.data["conversation_id"] == conversation
    assert start.data["model"] == "other-model" and start.data["temperature"] == 0.4
    names = [e.event for e in rest]
    assert set(names) <= {"phase", "text_delta", "usage", "done"}
    assert names[-2:] == ["usage", "done"]
    assert text_of(raw_events) == "".join(HARD)
    assert_ids_count_characters(raw_events)
    assert set(rest[-2].data) == {"prompt_tokens", "completion_tokens"}
    assert rest[-2].data["prompt_tokens"] > 0 and rest[-2].data["completion_tokens"] == len(HARD)
    assert rest[-1].data == {"status": "complete", "finish_reason": "stop", "length": len("".join(HARD))}
    assert upstream.requests[-1]["model"] == "other-model" and upstream.requests[-1]["temperature"] == 0.4
    detail = client.get(f"/api/conversations/{conversation}").json()
    user, assistant = detail["messages"]
    assert (user["id"], assistant["id"]) == (start.data["user_message_id"], start.data["assistant_message_id"])
    assert user["content"] == body["content"] and assistant["content"] == "".join(HARD)
    assert assistant["status"] == "complete" and assistant["parent_id"] == user["id"]
    assert detail["path"] == [user["id"], assistant["id"]]
    assert detail["title"] == "¿Adónde van los ríos? 🌊"  # titled from the first message, as in the page


def test_a_client_that_disconnects_mid_answer_resumes_with_last_event_id_and_gets_exactly_the_whole_text(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=HARD * 8, rate=40)  # 80 pieces, 2 s
    whole = "".join(HARD * 8)
    conversation = new_conversation(client)
    before: list[Event] = []
    with connect_sse(client, "POST", f"/api/conversations/{conversation}/messages", json={"content": "Go"}) as source:
        for event in read(source):
            before.append(event)
            if sum(e.event == "text_delta" for e in before) == 5:
                break  # leaving the block closes the connection mid-answer
    answer = before[0].data["assistant_message_id"]
    last_id = before[-1].id
    assert int(last_id) == len(text_of(before)) > 0
    answering = upstream.streams[-1]
    sent = answering.tokens_sent
    wait_until(lambda: answering.tokens_sent >= sent + 10, what="the answer to go on without a client")
    with connect_sse(client, "GET", f"/api/messages/{answer}/stream", headers={"Last-Event-ID": last_id}) as source:
        after = list(read(source))
    assert after[0].event == "message_start" and after[0].id == last_id  # resuming: its id is where it starts
    assert after[0].data["assistant_message_id"] == answer
    assert text_of(before) + text_of(after) == whole  # nothing lost, nothing doubled
    assert_ids_count_characters(after, int(last_id))
    assert sum(e.event == "text_delta" for e in after) > 1, "the resumed stream should have followed the live answer"
    assert after[-1].data == {"status": "complete", "finish_reason": "stop", "length": len(whole)}
    record = upstream.streams[-1]
    assert record.finished and not record.client_disconnected, "a client leaving must not stop the answer"

    # the stored answer replays the same way, from an id or from ?offset=
    middle = str(len(whole) // 2)
    with connect_sse(client, "GET", f"/api/messages/{answer}/stream", headers={"Last-Event-ID": middle}) as source:
        replayed = list(read(source))
    assert [e.event for e in replayed] == ["message_start", "text_delta", "usage", "done"]
    assert text_of(replayed) == whole[int(middle) :] and replayed[1].id == str(len(whole))
    with connect_sse(client, "GET", f"/api/messages/{answer}/stream?offset=3") as source:
        assert text_of(list(read(source))) == whole[3:]
    with connect_sse(client, "GET", f"/api/messages/{answer}/stream", headers={"Last-Event-ID": "99999"}) as source:
        beyond = list(read(source))
    assert [(e.event, e.id) for e in beyond] == [(name, str(len(whole))) for name in ("message_start", "usage", "done")]


def test_cancel_stops_the_answer_and_the_stream_ends_with_done_cancelled(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=200, rate=20)
    conversation = new_conversation(client)
    with connect_sse(client, "POST", f"/api/conversations/{conversation}/messages", json={"content": "Go"}) as source:
        events = read(source)
        seen = [next(events)]
        answer = seen[0].data["assistant_message_id"]
        while sum(e.event == "text_delta" for e in seen) < 3:
            seen.append(next(events))
        cancelled = client.post(f"/api/messages/{answer}/cancel")
        seen.extend(events)
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    stored = cancelled.json()["message"]
    assert stored["status"] == "cancelled"
    assert seen[-1].event == "done" and seen[-1].data["status"] == "cancelled"
    assert text_of(seen) == stored["content"] == upstream.expected_text(len(stored["content"].split()))
    record = upstream.streams[-1]
    assert record.ended.wait(5) and record.client_disconnected, "cancel must close the upstream stream"
    assert record.tokens_sent < 200
    again = client.post(f"/api/messages/{answer}/cancel")
    assert again.status_code == 200 and again.json()["cancelled"] is False


def test_regenerate_streams_a_new_variant_and_keeps_the_old_one(client: httpx.Client, upstream: FakeUpstream) -> None:
    conversation = new_conversation(client, temperature=0.5)
    first = send(client, conversation, "Hola")
    old = first[0].data["assistant_message_id"]
    upstream.script = Script(pieces=["Otra ", "vez ", "✨"])
    with connect_sse(client, "POST", f"/api/messages/{old}/regenerate", json={"temperature": 1.3}) as source:
        events = list(read(source))
    start = events[0]
    new = start.data["assistant_message_id"]
    assert start.event == "message_start" and new != old
    assert start.data["user_message_id"] == first[0].data["user_message_id"] and start.data["temperature"] == 1.3
    assert text_of(events) == "Otra vez ✨" and events[-1].data["status"] == "complete"
    assert_ids_count_characters(events)
    assert upstream.requests[-1]["temperature"] == 1.3
    detail = client.get(f"/api/conversations/{conversation}").json()
    variants = {m["id"]: m for m in detail["messages"] if m["role"] == "assistant"}
    assert set(variants) == {old, new}
    assert variants[old]["parent_id"] == variants[new]["parent_id"] == start.data["user_message_id"]
    assert (variants[old]["selected"], variants[new]["selected"]) == (False, True)
    assert (variants[old]["temperature"], variants[new]["temperature"]) == (0.5, 1.3)
    assert detail["path"] == [start.data["user_message_id"], new]
    # no body: the conversation's temperature
    with connect_sse(client, "POST", f"/api/messages/{new}/regenerate") as source:
        assert list(read(source))[0].data["temperature"] == 0.5


def test_a_failed_answer_sends_error_then_done(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=10, drop_after=3)
    events = send(client, new_conversation(client), "Go")
    assert text_of(events) == upstream.expected_text(3)  # the text before the failure is kept
    assert [e.event for e in events[-3:]] == ["usage", "error", "done"]
    assert "broke in the middle of the answer" in events[-2].data["reason"]
    assert events[-1].data["status"] == "error"


def assert_error(response: httpx.Response, status: int, says: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert says in json.dumps(response.json(), ensure_ascii=False), response.json()


def test_errors_are_json_404_unknown_422_bad_body_409_busy(client: httpx.Client, upstream: FakeUpstream) -> None:
    conversation = new_conversation(client)
    for method, path in [
        ("GET", "/api/conversations/9999"),
        ("PATCH", "/api/conversations/9999"),
        ("DELETE", "/api/conversations/9999"),
        ("POST", "/api/conversations/9999/messages"),
        ("GET", "/api/messages/9999"),
        ("GET", "/api/messages/9999/stream"),
        ("POST", "/api/messages/9999/cancel"),
        ("POST", "/api/messages/9999/regenerate"),
    ]:
        body = {"content": "Hi"} if path.endswith("messages") else {}
        response = client.request(method, path, json=body)
        assert_error(response, 404, "9999 not found")
        assert response.json()["detail"] in ("conversation 9999 not found", "message 9999 not found")

    messages = f"/api/conversations/{conversation}/messages"
    assert_error(client.post(messages, json={"content": "Hi", "temperature": 3}), 422, "less than or equal to 2")
    assert client.post(messages, json={"content": "Hi", "temperature": 3}).json()["detail"][0]["loc"] == [
        "body", "temperature"
    ]  # fmt: skip
    assert_error(client.post(messages, json={}), 422, '"loc": ["body", "content"]')
    assert_error(client.post(messages, json={"content": " \n "}), 422, "Type a message first.")
    assert_error(client.post(messages, json={"content": "x" * 100_001}), 422, "the limit is 100,000")
    assert_error(client.post(messages, content=b"{not json", headers={"content-type": "application/json"}), 422,
                 "JSON decode error")  # fmt: skip
    assert_error(client.patch(f"/api/conversations/{conversation}", json={"title": "x" * 201}), 422, "200 characters")
    assert_error(client.patch(f"/api/conversations/{conversation}", json={"title": None}), 422, "valid string")
    assert_error(client.post("/api/conversations", json={"colour": "red"}), 422, "Extra inputs are not permitted")
    assert_error(client.get("/api/conversations/abc"), 422, "valid integer")
    assert_error(client.get(f"/api/conversations/{2**80}"), 422, "less than or equal to 9223372036854775807")
    assert_error(client.post(messages, json={"content": ""}), 422, "at least 1 character")
    assert client.get(f"/api/conversations/{conversation}").json()["messages"] == []  # nothing refused was stored

    upstream.script = Script(tokens=100, rate=20)
    with connect_sse(client, "POST", messages, json={"content": "Count"}) as source:
        start = next(read(source))
        answer, user = start.data["assistant_message_id"], start.data["user_message_id"]
        assert_error(client.post(messages, json={"content": "Again"}), 409, "Wait for the current answer to finish")
        assert_error(client.post(f"/api/messages/{answer}/regenerate", json={}), 409, "before regenerating")
        assert_error(client.get(f"/api/messages/{answer}/stream", headers={"Last-Event-ID": "x"}), 422,
                     "last-event-id")  # fmt: skip
        assert_error(client.post(f"/api/messages/{user}/regenerate"), 422, "is a user message, not an answer")
        assert_error(client.get(f"/api/messages/{user}/stream"), 422, "is a user message, not an answer")
        assert_error(client.post(f"/api/messages/{user}/cancel"), 422, "is a user message, not an answer")
        assert client.post(f"/api/messages/{answer}/cancel").json()["cancelled"] is True
    assert len(client.get(f"/api/conversations/{conversation}").json()["messages"]) == 2  # "Again" was not stored


def test_openapi_documents_the_routes_and_their_shapes(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, methods in {
        "/api/conversations": {"get", "post"},
        "/api/conversations/{conversation_id}": {"get", "patch", "delete"},
        "/api/conversations/{conversation_id}/messages": {"post"},
        "/api/messages/{message_id}": {"get"},
        "/api/messages/{message_id}/stream": {"get"},
        "/api/messages/{message_id}/cancel": {"post"},
        "/api/messages/{message_id}/regenerate": {"post"},
    }.items():
        assert methods <= set(paths[path]), path
    send_op = paths["/api/conversations/{conversation_id}/messages"]["post"]
    assert "text/event-stream" in send_op["responses"]["200"]["content"]
    assert {"404", "409", "422"} <= set(send_op["responses"])
    shapes = schema["components"]["schemas"]
    assert {"content", "temperature", "model", "attachments", "files"} == set(shapes["SendMessage"]["properties"])
    assert shapes["SendMessage"]["properties"]["temperature"]["anyOf"][0]["maximum"] == 2
    detail = shapes["ConversationDetail"]
    assert {"messages", "path"} <= set(detail["required"])


@contextlib.asynccontextmanager
async def in_process(engine: Engine, store: Store, heartbeat: float) -> AsyncIterator[httpx.AsyncClient]:
    """The routes on uvicorn on the test's own loop, behind the middlewares NiceGUI's ``ui.run`` adds to every request
    (GZip, and two ``BaseHTTPMiddleware``s, which wrap a streaming response); yields a client for them."""
    app = FastAPI()
    register_rest(app, engine, store, heartbeat=heartbeat)
    app.add_middleware(GZipMiddleware)
    app.add_middleware(RedirectWithPrefixMiddleware)
    app.add_middleware(SetCacheControlMiddleware)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or serving.done(), what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await serving


async def test_a_heartbeat_comment_keeps_an_idle_stream_open(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    """In-process, so the heartbeat can be 0.2 s instead of 15."""
    upstream.script = Script(tokens=2, first_token_delay=1.2)
    conversation = await engine.create_conversation()
    async with in_process(engine, store, heartbeat=0.2) as client:
        path = f"/api/conversations/{conversation}/messages"
        async with client.stream("POST", path, json={"content": "Hi"}) as response:
            assert "content-encoding" not in response.headers  # GZip leaves event streams alone
            lines = [line async for line in response.aiter_lines()]
        async with aconnect_sse(client, "GET", "/api/messages/2/stream") as source:  # comments are not events
            events = [sse.event async for sse in source.aiter_sse()]
    assert events == ["message_start", "text_delta", "usage", "done"]
    first_text = next(i for i, line in enumerate(lines) if line == "event: text_delta")
    pings = [line for line in lines[:first_text] if line.startswith(": ping")]
    assert len(pings) >= 3, lines  # 1.2 s with no text: a comment every 0.2 s


async def test_a_client_that_disconnects_is_unsubscribed_and_the_answer_goes_on(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    """sse-starlette cancels the response on a disconnect: the engine's ``follow`` must be closed (it unsubscribes),
    and the answer, owned by the engine, must not notice."""
    upstream.script = Script(tokens=40, rate=40)
    conversation = await engine.create_conversation()
    async with in_process(engine, store, heartbeat=15) as client:
        path = f"/api/conversations/{conversation}/messages"
        async with aconnect_sse(client, "POST", path, json={"content": "Hi"}) as source:
            async for sse in source.aiter_sse():
                if sse.event == "text_delta":
                    break
            generation = engine.live(2)
            assert generation is not None and len(generation._subscribers) == 1  # this stream
        await wait_for(lambda: not generation._subscribers, what="the stream's subscription to end with its client")
        assert not generation._subscribers, "the stream's subscription should end with its client"
        assert not generation.done, "the answer should still be streaming"
        stored = await generation.wait()
    assert stored.status == "complete" and stored.content == upstream.expected_text()


@pytest.mark.browser
def test_an_answer_streamed_over_the_api_shows_live_in_the_page(
    client: httpx.Client, url: str, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=[f"Word{i} " for i in range(60)], rate=15)  # 4 s
    conversation = new_conversation(client, title="From the API")
    with chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{url}/c/{conversation}")
        expect(page.get_by_placeholder("Message Parley")).to_be_visible()
        path = f"/api/conversations/{conversation}/messages"
        with connect_sse(client, "POST", path, json={"content": "Hello from the API"}) as source:
            events = read(source)
            answer = next(events).data["assistant_message_id"]
            expect(page.locator(".parley-user-message")).to_have_text("Hello from the API")
            body = page.locator(".parley-message-body").last
            expect(body).to_contain_text("Word3")
            assert client.get(f"/api/messages/{answer}").json()["status"] == "streaming", "should be shown live"
            rest = list(events)
        assert rest[-1].event == "done"
        expect(body).to_contain_text("Word59")
        assert body.inner_text().strip() == text_of(rest).strip()
        wait_until(lambda: "fake-model" in page.locator(".parley-message-footer").last.inner_text(), what="the footer")
        assert not errors, errors
