"""The OpenAI-compatible API (``/v1``) of the real app.py, run as a subprocess on the fake upstream, through the
unmodified openai SDK and raw HTTP (what curl sees)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from chat.store import Role, Status, Store

from .browser import assert_no_errors, free_port, serve
from .fake_upstream import FakeUpstream, Script, StreamRecord
from .helpers import opened_store, wait_until

PIECES = ["Rivers ", "flow ", "to the ", "sea ", "— ", "río 🌊."]
ANSWER = "".join(PIECES)


@dataclass
class Parley:
    url: str
    data_dir: Path

    def client(self, **options: object) -> openai.OpenAI:
        """The openai SDK pointed at Parley, as a user would configure it (its default retries included)."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", timeout=20, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def parley(fake_upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parley]:
    """app.py on a free port, answering from the fake upstream; one process for the module (tests reset the fake)."""
    tmp_path, port = tmp_path_factory.mktemp("openai-api"), free_port()
    with serve(
        tmp_path, fake_upstream_server, port, PARLEY_CHECKPOINT_INTERVAL="0.2", PARLEY_READ_TIMEOUT="5"
    ) as process:
        yield Parley(f"http://127.0.0.1:{port}", tmp_path / "data")
        assert_no_errors(process)


@pytest.fixture
def store(parley: Parley) -> Iterator[Store]:
    """A second Store on the app's database, for asserting what it holds."""
    with opened_store(parley.data_dir) as store:
        yield store


def last_stream(upstream: FakeUpstream) -> StreamRecord:
    """The fake's record of the newest chat completion request, once it has ended."""
    record = wait_until(lambda: upstream.streams and upstream.streams[-1], what="a request upstream")
    assert record.ended.wait(10), "the upstream response never ended"
    return record


def test_models_lists_the_upstreams_models_in_openais_shape(parley: Parley, upstream: FakeUpstream) -> None:
    models = parley.client().models.list()

    assert [m.id for m in models.data] == ["fake-model", "other-model"]
    assert {(m.object, m.owned_by) for m in models.data} == {("model", "parley")}


def test_sdk_without_streaming_answers_and_stores_the_request_as_a_conversation(
    parley: Parley, upstream: FakeUpstream, store: Store
) -> None:
    upstream.script = Script(pieces=PIECES)
    messages = [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Where do rivers go, in the end?"},
        {"role": "assistant", "content": "Downhill."},
        {"role": "user", "content": [{"type": "text", "text": "And "}, {"type": "text", "text": "then?"}]},
    ]

    raw = parley.client().chat.completions.with_raw_response.create(
        model="other-model", messages=messages, temperature=0.3
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "other-model"
    assert [(c.index, c.message.role, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "assistant", ANSWER, "stop")
    ]
    sent = upstream.requests[-1]
    assert (sent["model"], sent["temperature"]) == ("other-model", 0.3)
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Where do rivers go, in the end?"},
        {"role": "assistant", "content": "Downhill."},
        {"role": "user", "content": "And then?"},
    ]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(PIECES)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + len(PIECES) > len(PIECES)
    conversation = store.get_conversation(int(raw.headers["x-parley-conversation-id"]))
    assert (conversation.title, conversation.system_prompt) == (
        "Where do rivers go, in the end?",
        "Answer in one line.",
    )
    assert (conversation.model, conversation.temperature) == ("other-model", 0.3)
    path = store.path(conversation.id)
    assert [(m.role, m.content, m.status) for m in path] == [
        (Role.user, "Where do rivers go, in the end?", Status.complete),
        (Role.assistant, "Downhill.", Status.complete),
        (Role.user, "And then?", Status.complete),
        (Role.assistant, ANSWER, Status.complete),
    ]
    assert path[-1].id == int(raw.headers["x-parley-message-id"])


def test_sdk_streaming_sends_openais_chunks_then_usage_and_stores_the_answer(
    parley: Parley, upstream: FakeUpstream, store: Store
) -> None:
    upstream.script = Script(pieces=PIECES, rate=50)

    raw = parley.client().chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Rivers?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())

    assert raw.headers["content-type"].startswith("text/event-stream")
    assert {(c.id, c.object, c.model) for c in chunks} == {(chunks[0].id, "chat.completion.chunk", "fake-model")}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(PIECES)
    assert all(c.usage is None for c in chunks[:-1])
    answer = store.get_message(int(raw.headers["x-parley-message-id"]))
    assert (answer.content, answer.status, answer.finish_reason) == (ANSWER, Status.complete, "stop")
    assert store.get_conversation(answer.conversation_id).title == "Rivers?"


def test_raw_stream_is_what_curl_sees_from_openai(parley: Parley, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=["Hi", " there"])
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Hello"}], "stream": True}

    with httpx.stream("POST", f"{parley.url}/v1/chat/completions", json=body, timeout=20) as response:
        lines = [line for line in response.iter_lines() if line]

    assert response.status_code == 200
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    choices = [(e["choices"][0]["delta"], e["choices"][0]["finish_reason"]) for e in events]
    assert choices[0] == ({"role": "assistant", "content": ""}, None)
    assert choices[-1] == ({}, "stop")
    assert {(tuple(delta), finish) for delta, finish in choices[1:-1]} == {(("content",), None)}
    assert "".join(delta["content"] for delta, _ in choices[1:-1]) == "Hi there"  # deltas may be joined
    assert all("usage" not in e and e["choices"][0]["index"] == 0 for e in events)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
def test_store_false_answers_and_leaves_no_conversation(
    parley: Parley, upstream: FakeUpstream, store: Store, stream: bool
) -> None:
    upstream.script = Script(pieces=PIECES)
    conversations, messages = len(store.list_conversations()), store.count_messages()

    reply = parley.client().chat.completions.create(
        model="fake-model",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rivers?"}],
        stream=stream,
        store=False,
    )
    text = (
        "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
        if stream
        else reply.choices[0].message.content
    )

    assert text == ANSWER
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Rivers?"},
    ]
    assert (len(store.list_conversations()), store.count_messages()) == (conversations, messages)


def test_refusals_have_openais_error_shape(parley: Parley, upstream: FakeUpstream, store: Store) -> None:
    client = parley.client()
    hello = [{"role": "user", "content": "Hello"}]
    cases = [
        ({"n": 2}, "n", "n must be 1"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"messages": [*hello, {"role": "assistant", "content": "Hi"}]}, "messages[1].role", "must have role `user`"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "needs the `tool_call_id`"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content", "must be a data: URL"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]},
         "messages[0].content", "text, image_url and file parts, not 'input_audio'"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content", "empty"),
        ({"messages": []}, "messages", "at least 1 item"),
    ]  # fmt: skip
    conversations = len(store.list_conversations())
    for change, param, words in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(**{"model": "fake-model", "messages": hello, **change})  # type: ignore[call-overload]
        error = refused.value
        assert (error.status_code, error.type, error.param) == (400, "invalid_request_error", param), change
        assert words in error.message, (change, error.message)
    assert len(store.list_conversations()) == conversations  # nothing refused was stored
    assert upstream.requests == []

    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="no-such-model", messages=hello, stream=stream, store=stream)
        assert (unknown.value.code, unknown.value.param, unknown.value.type) == (
            "model_not_found", "model", "invalid_request_error"
        )  # fmt: skip
        assert "no-such-model" in unknown.value.message

    bad_json = httpx.post(f"{parley.url}/v1/chat/completions", content=b"{not json", timeout=10,
                          headers={"content-type": "application/json"})  # fmt: skip
    unknown_path = httpx.get(f"{parley.url}/v1/embeddings", timeout=10)
    other_methods = [httpx.request(method, f"{parley.url}/v1/chat/completions", timeout=10)
                     for method in ("GET", "PUT", "OPTIONS")]  # fmt: skip
    for response, status in ((bad_json, 400), (unknown_path, 404), *((r, 404) for r in other_methods)):
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_max_tokens_is_passed_on_per_request(parley: Parley, upstream: FakeUpstream) -> None:
    client = parley.client()
    hello = [{"role": "user", "content": "Hi"}]
    for stored in (True, False):
        client.chat.completions.create(model="fake-model", messages=hello, max_tokens=7, store=stored)
        assert upstream.requests[-1]["max_tokens"] == 7
        client.chat.completions.create(model="fake-model", messages=hello, max_completion_tokens=9, store=stored)
        assert upstream.requests[-1]["max_tokens"] == 9
        client.chat.completions.create(model="fake-model", messages=hello, store=stored)
        assert "max_tokens" not in upstream.requests[-1]  # this server has no --max-tokens: the upstream's own limit


def test_a_prompt_longer_than_the_context_window_is_openais_context_length_exceeded(
    parley: Parley, upstream: FakeUpstream, store: Store
) -> None:
    upstream.script = Script(context_window=60)  # learnt from the first refusal, for "other-model" only
    client = parley.client()
    too_long = [{"role": "user", "content": "word " * 200}]
    for stream, kept in ((False, True), (True, True), (True, False)):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="other-model", messages=too_long, stream=stream, store=kept)
        assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "messages")
        assert "context window is 60 tokens" in refused.value.message
    answer = store.path(store.list_conversations()[0].id)[-1]  # the stored answer keeps the code and the status
    assert (answer.status, answer.error_status, answer.error_code) == (Status.error, 400, "context_length_exceeded")


def test_a_failure_mid_answer_is_an_error_event_or_a_502_and_is_not_retried(
    parley: Parley, upstream: FakeUpstream, store: Store
) -> None:
    upstream.script = Script(tokens=10, drop_after=3)
    client = parley.client()  # the SDK's default: 2 retries of a 5xx, unless told not to

    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="broke in the middle of the answer") as failed:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == upstream.expected_text(3)
    assert failed.value.type == "server_error"

    with pytest.raises(openai.InternalServerError, match="broke in the middle of the answer") as whole:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Hi"}])
    assert (whole.value.status_code, whole.value.type) == (502, "server_error")
    assert len(upstream.streams) == 2  # one request each: no retry by the SDK
    answer = store.path(store.list_conversations()[0].id)[-1]
    assert (answer.status, answer.content) == (Status.error, upstream.expected_text(3))


def test_client_disconnecting_mid_stream_cancels_the_answer(
    parley: Parley, upstream: FakeUpstream, store: Store
) -> None:
    upstream.script = Script(tokens=400, rate=40)

    raw = parley.client().chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "Go on and on"}], stream=True
    )
    stream = raw.parse()
    text = ""
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""
        if len(text) > 12:
            break
    stream.close()

    record = last_stream(upstream)
    assert record.client_disconnected and not record.finished
    assert record.tokens_sent < 100
    message_id = int(raw.headers["x-parley-message-id"])
    answer = wait_until(lambda: (m := store.get_message(message_id)).status != Status.streaming and m, what="the end")
    assert answer.status == Status.cancelled
    assert answer.content.startswith(text) and upstream.expected_text().startswith(answer.content)


@pytest.mark.parametrize(
    ("stream", "store_it"), [(False, True), (False, False), (True, True)],
    ids=["whole, stored", "whole, not stored", "streaming, before its first text"],
)  # fmt: skip
def test_client_disconnecting_before_the_answer_is_sent_cancels_it(
    parley: Parley, upstream: FakeUpstream, store: Store, stream: bool, store_it: bool
) -> None:
    # streaming: the status (and so the headers) waits for the first text, which comes after 4 s
    upstream.script = Script(tokens=400, rate=40, first_token_delay=4 if stream else 0)
    conversations = len(store.list_conversations())
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Take your time"}], "store": store_it,
            "stream": stream}  # fmt: skip

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{parley.url}/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=1.0))

    record = last_stream(upstream)
    assert record.client_disconnected and not record.finished
    if stream:  # cancelled while the upstream still held its first token back (4 s)
        assert record.tokens_sent == 0
    if not store_it:
        assert len(store.list_conversations()) == conversations
        return
    answer = wait_until(
        lambda: (m := store.path(store.list_conversations()[0].id)[-1]).status != Status.streaming and m,
        what="the stored end",
    )
    assert answer.status == Status.cancelled
    assert upstream.expected_text().startswith(answer.content)
    assert bool(answer.content) is not stream
