"""The fake OpenAI upstream, exercised with the real ``openai`` SDK over HTTP."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.fake_upstream import FakeUpstream, Script

MESSAGES = [{"role": "user", "content": "say something nice"}]


@pytest.fixture(scope="module")
def fake():
    """One fake upstream for the whole module."""
    with FakeUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream):
    fake.reset()
    fake.api_key = None
    yield
    fake.api_key = None


@pytest.fixture
async def client(fake: FakeUpstream):
    """An SDK client bound to this test's event loop."""
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


async def collect(stream) -> tuple[str, list]:
    """Read a whole SDK stream: (concatenated content, all chunks)."""
    text, chunks = "", []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    return text, chunks


async def test_streams_expected_text_finish_reason_and_usage(fake, client):
    stream = await client.chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, chunks = await collect(stream)

    assert text == fake.expected_text() == "".join(f"w{i} " for i in range(20))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 20
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].usage.prompt_tokens == 3
    assert chunks[-1].usage.total_tokens == 23
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")

    record = fake.streams[0]
    assert record.ended.wait(2)
    assert record.finished and not record.client_disconnected
    assert record.tokens_sent == 20
    assert fake.requests == [record.request]
    assert record.request["messages"] == MESSAGES
    assert [i for _, i in fake.log] == list(range(20))


async def test_no_usage_chunk_unless_requested(fake, client):
    fake.script = Script(tokens=3, finish_reason="length")
    _, chunks = await collect(await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_multibyte_pieces_arrive_intact(fake, client):
    pieces = ["Grüße, ", "世界", " 🙂🎉", "\n", "naïve — ok"]
    fake.script = Script(pieces=pieces)
    text, chunks = await collect(
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    )
    assert text == "".join(pieces) == fake.expected_text()
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == pieces
    assert fake.expected_text(2) == "Grüße, 世界"


async def test_models_endpoint(fake, client):
    models = await client.models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    assert models.data[0].owned_by == "fake"


async def test_wrong_api_key_is_401(fake, client):
    fake.api_key = "right"
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert fake.streams == []

    good = openai.AsyncOpenAI(base_url=fake.base_url, api_key="right", max_retries=0)
    async with good:
        text, _ = await collect(await good.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    assert text == fake.expected_text()


async def test_unknown_model_is_404(fake, client):
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="nope", messages=MESSAGES, stream=True)
    assert info.value.code == "model_not_found"
    assert info.value.body["message"] == "The model `nope` does not exist"
    assert fake.requests[0]["model"] == "nope"
    assert fake.streams == []


async def test_rate_limit_with_retry_after(fake, client):
    fake.script = Script(status=429, retry_after=7, error_message="slow down")
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["message"] == "slow down"
    assert info.value.code == "rate_limit_exceeded"


async def test_server_error(fake, client):
    fake.script = Script(status=500)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    assert info.value.status_code == 500
    assert info.value.body["message"] == "fake upstream error"
    assert info.value.body["type"] == "server_error"


async def test_hang_times_out_and_fake_sees_client_leave(fake, client):
    fake.script = Script(hang=True)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 2
    record = fake.streams[0]
    assert await record.wait_ended(2)
    assert record.client_disconnected and not record.finished
    assert record.tokens_sent == 0


async def test_drop_after_cuts_the_connection(fake, client):
    fake.script = Script(drop_after=3)
    stream = await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    received = ""
    with pytest.raises((openai.APIError, httpx.HTTPError)) as info:
        async for chunk in stream:
            received += chunk.choices[0].delta.content or ""
    assert received == fake.expected_text(3) == "w0 w1 w2 "
    # Older SDKs let httpx's error through; newer ones wrap it (and may ship their own httpx fork): check the chain.
    chain = [info.value]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    assert any(type(e).__name__ == "RemoteProtocolError" and "incomplete chunked read" in str(e) for e in chain)
    record = fake.streams[0]
    assert await record.wait_ended(2)
    assert record.tokens_sent == 3


async def test_malformed_after_raises(fake, client):
    fake.script = Script(malformed_after=2)
    stream = await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    received = ""
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's SSE decoder
        async for chunk in stream:
            received += chunk.choices[0].delta.content or ""
    assert received == "w0 w1 "


async def test_no_done_ends_cleanly(fake, client):
    fake.script = Script(tokens=4, no_done=True)
    text, chunks = await collect(
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    )
    assert text == "w0 w1 w2 w3 "
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_closing_stream_early_ends_generation_upstream(fake, client):
    fake.script = Script(tokens=40, rate=20)
    stream = await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 2:
            break
    await stream.close()
    record = fake.streams[0]
    assert await record.wait_ended(2)
    assert record.client_disconnected and not record.finished
    assert 1 <= record.tokens_sent <= 5 < fake.script.tokens


async def test_stall_after_until_client_leaves(fake, client):
    fake.script = Script(stall_after=2)
    stream = await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True, timeout=0.5)
    received = ""
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        async for chunk in stream:
            received += chunk.choices[0].delta.content or ""
    assert received == "w0 w1 "
    record = fake.streams[0]
    assert await record.wait_ended(2)
    assert record.client_disconnected and record.tokens_sent == 2


async def test_rate_pacing_follows_absolute_schedule(fake, client):
    fake.script = Script(tokens=6, rate=50, first_token_delay=0.1)
    started = time.time()
    text, _ = await collect(await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    assert text == fake.expected_text()
    times = [t for t, _ in fake.log]
    assert times[0] - started >= 0.09
    assert times[-1] - times[0] == pytest.approx(5 / 50, abs=0.04)


async def test_non_streaming_returns_whole_text(fake, client):
    fake.script = Script(tokens=5)
    completion = await client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "w0 w1 w2 w3 w4 "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 5 and completion.usage.prompt_tokens == 3
    record = fake.streams[0]
    assert await record.wait_ended(2)
    assert record.stream is False and record.finished and record.tokens_sent == 5


def test_sync_client_and_restart():
    with FakeUpstream(models=["a", "b"], api_key="s") as other:
        sdk = openai.OpenAI(base_url=other.base_url, api_key="s", max_retries=0)
        assert [m.id for m in sdk.models.list().data] == ["a", "b"]
        other.script = Script(stall_after=1)
        stream = sdk.chat.completions.create(model="b", messages=MESSAGES, stream=True)
        assert next(iter(stream)).choices[0].delta.role == "assistant"
    # stop() cut the stalled response instead of waiting for it
    assert other.streams[0].ended.wait(2)
    with pytest.raises(RuntimeError):
        _ = other.base_url


async def test_stream_record_times_its_own_tokens(fake, client):
    fake.script = Script(tokens=3)
    await collect(await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    fake.script = Script(tokens=2)
    await collect(await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    first, second = fake.streams
    assert await second.wait_ended(2)
    assert len(first.written) == first.tokens_sent == 3
    assert len(second.written) == second.tokens_sent == 2
    assert first.received_at <= first.written[0] <= first.written[-1] <= second.received_at <= second.written[0]
    assert [t for t, _ in fake.log] == first.written + second.written
    snapshot = second.to_json()
    assert snapshot["written"] == second.written and snapshot["received_at"] == second.received_at
    assert snapshot["ended"] is True and snapshot["finished"] is True and snapshot["request"]["messages"] == MESSAGES


async def test_control_endpoints_set_script_list_streams_and_reset(fake, client):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fake.port}") as http:
        answer = await http.put("/_fake/script", json={"pieces": ["a ", "b"], "finish_reason": "length"})
        assert answer.json() == {"ok": True}
        assert fake.script == Script(pieces=["a ", "b"], finish_reason="length")
        assert (await http.put("/_fake/script", json={"bogus": 1})).status_code == 400
        assert (await http.put("/_fake/script", json=[1])).status_code == 400

        text, _ = await collect(
            await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
        )
        assert text == "a b"
        await collect(await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
        assert await fake.streams[1].wait_ended(2)
        streams = (await http.get("/_fake/streams")).json()
        assert [s["tokens_sent"] for s in streams] == [2, 2]
        assert streams[0]["written"] == fake.streams[0].written
        assert (await http.get("/_fake/streams", params={"since": 1})).json() == streams[1:]

        assert (await http.post("/_fake/reset")).json() == {"ok": True}
        assert fake.streams == [] and fake.script == Script()


def test_subprocess_fake_streams_and_reports_per_request_times():
    from tests.fake_upstream import FakeUpstreamProcess

    with FakeUpstreamProcess(models=["m"], api_key="s") as remote:
        assert remote.base_url == f"http://127.0.0.1:{remote.port}/v1"
        remote.set_script(Script(pieces=["x1 ", "x2 ", "x3"], rate=200))
        sdk = openai.OpenAI(base_url=remote.base_url, api_key="s", max_retries=0)
        chunks = sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "x1 x2 x3"
        [record] = remote.streams()
        assert record["tokens_sent"] == 3 and len(record["written"]) == 3
        assert record["received_at"] <= record["written"][0] <= record["written"][1] <= record["written"][2]
        assert record["request"]["messages"] == MESSAGES
        remote.reset()
        assert remote.streams() == []
        process = remote.process
    assert process is not None and process.poll() is not None
    with pytest.raises(RuntimeError):
        _ = remote.base_url
