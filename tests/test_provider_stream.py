"""Reading a streamed answer (``chat/provider/stream.py``): the SDK's raw streaming response read with httpx-sse and
jiter, against the real fake upstream over HTTP. What the SDK's own stream did must still hold: an error the upstream
sends inside the stream, ``[DONE]`` (and the connection kept for the next answer), usage, ``finish_reason``, JSON that
only the standard library reads (a lone surrogate's escape), closing mid-answer; and what the SDK never said: a
response that is not server-sent events. The fault matrix (HTTP statuses, drops, stalls, malformed chunks, timeouts)
is ``tests/test_faults.py``; tool calls and reasoning are ``tests/test_provider_tools.py``."""

from __future__ import annotations

import psutil
import pytest

from chat.provider import ChatChunk, ChatStream, Provider, ProviderError
from chat.provider.stream import MalformedChunk, parse_chunk

from .fake_upstream import FakeUpstream, Script
from .helpers import wait_for

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture
async def provider(upstream: FakeUpstream):
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=10, retries=0)
    yield provider
    await provider.close()


async def read_all(provider: Provider) -> tuple[ChatStream, list[ChatChunk], ProviderError | None]:
    """One answer read to its end: the stream, every chunk, and the ProviderError that ended it (None: none)."""
    stream = await provider.stream_chat_completion(MESSAGES, model="fake-model", temperature=0.0)
    chunks: list[ChatChunk] = []
    failure = None
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except ProviderError as error:
        failure = error
    finally:
        await stream.aclose()
    return stream, chunks, failure


def text(chunks: list[ChatChunk]) -> str:
    return "".join(chunk.delta for chunk in chunks)


@pytest.mark.parametrize("after", [0, 4])
async def test_an_error_inside_the_stream_is_the_upstreams_reason(provider: Provider, upstream: FakeUpstream, after):
    """``data: {"error": {...}}`` after the response started: the SDK raised ``APIError`` with its message; so does
    the provider's reading, and ``errors.describe`` quotes it. The text before it is kept."""
    upstream.script = Script(tokens=10, error_event_after=after, error_message="the GPU fell over")
    _stream, chunks, failure = await read_all(provider)
    assert failure is not None
    assert failure.reason == "The model server reported an error: the GPU fell over"
    assert text(chunks) == upstream.expected_text(after)


async def test_usage_finish_reason_and_done(provider: Provider, upstream: FakeUpstream):
    """The last chunks: ``finish_reason`` (here ``"length"``), then ``usage`` with empty ``choices``, and
    ``[DONE]``."""
    upstream.script = Script(tokens=7, finish_reason="length")
    stream, chunks, failure = await read_all(provider)
    assert failure is None
    assert text(chunks) == upstream.expected_text()
    assert stream.finish_reason == "length"
    assert stream.usage is not None and stream.usage.completion_tokens == 7
    assert stream.usage.prompt_tokens == upstream.streams[-1].request["messages"][0]["content"].count(" ") + 1
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["length"]
    assert chunks[-1].usage == stream.usage and chunks[-1].delta == ""
    assert stream.completion_tokens == 7


def connections_to(port: int) -> set[int]:
    """Local ports of this process's established TCP connections to 127.0.0.1:``port``."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


async def test_the_connection_is_used_again_after_done(provider: Provider, upstream: FakeUpstream):
    """After ``[DONE]`` the rest of the body is read, so the next answer goes over the same kept-alive connection (as
    the SDK's stream did): three answers, one connection."""
    upstream.script = Script(tokens=5)
    seen: set[int] = set()
    for _ in range(3):
        _stream, chunks, failure = await read_all(provider)
        assert failure is None and text(chunks) == upstream.expected_text()
        seen |= connections_to(upstream.port)
    assert len(seen) == 1, seen


async def test_a_lone_surrogate_escape_is_read(provider: Provider, upstream: FakeUpstream):
    """jiter refuses ``"\\ud83d"`` without its pair, which JSON allows (RFC 8259 §8.2) and the SDK's ``json.loads``
    read: such a chunk is read with the standard library instead, not reported malformed."""
    upstream.script = Script(pieces=["a\ud83d", "b", " c"])
    _stream, chunks, failure = await read_all(provider)
    assert failure is None
    assert text(chunks) == "a\ud83db c"


async def test_fields_of_the_wrong_type_are_ignored(provider: Provider, upstream: FakeUpstream):
    """A delta's ``content`` that is not a string, or ``tool_calls`` that is not a list of objects, adds nothing (the
    SDK built its objects without validating them, and Parley then failed on them)."""
    upstream.script = Script(
        deltas=[{"content": 5}, {"content": "ok"}, {"tool_calls": "no"}, {"tool_calls": ["x", 1]}, {"content": None}]
    )
    stream, chunks, failure = await read_all(provider)
    assert failure is None
    assert text(chunks) == "ok" and stream.tool_calls == [] and stream.deltas == 1


async def test_a_response_that_is_not_server_sent_events(provider: Provider, upstream: FakeUpstream):
    """A 200 whose ``Content-Type`` is not ``text/event-stream`` (a proxy's page, a server ignoring ``stream``) says
    so, instead of an answer that ends without finishing."""
    upstream.script = Script(tokens=3, content_type="application/json")
    _stream, chunks, failure = await read_all(provider)
    assert failure is not None
    assert failure.reason == "The model server answered with application/json, not a stream of server-sent events."
    assert chunks == []


async def test_closing_mid_answer_ends_the_upstreams_response(provider: Provider, upstream: FakeUpstream):
    """``aclose()`` while the answer streams closes the HTTP response: the upstream sees the client go away."""
    upstream.script = Script(tokens=200, rate=50.0)
    stream = await provider.stream_chat_completion(MESSAGES, model="fake-model", temperature=0.0)
    received = []
    async for chunk in stream:
        received.append(chunk.delta)
        if len(received) == 3:
            break
    await stream.aclose()
    await stream.aclose()  # idempotent
    record = upstream.streams[-1]
    assert await wait_for(lambda: record.ended.is_set(), what="the upstream's response to end")
    assert record.client_disconnected and record.tokens_sent < 200
    assert "".join(received) == upstream.expected_text(3)


@pytest.mark.parametrize(
    "data, parsed",
    [
        ('{"choices":[]}', {"choices": []}),
        ('{"a":"\\ud83d"}', {"a": "\ud83d"}),  # jiter refuses it; the standard library reads it
    ],
)
def test_parse_chunk(data, parsed):
    assert parse_chunk(data) == parsed


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"', "null"])
def test_parse_chunk_refuses_what_is_not_an_object(data):
    with pytest.raises(MalformedChunk):
        parse_chunk(data)
