"""Tool calls and reasoning through the provider: the real fake upstream over HTTP, the real openai SDK.

Each upstream's tool-call style (OpenAI, llama.cpp's server, Ollama) becomes the same ``ToolCall`` list; reasoning in
``reasoning_content``, ``reasoning`` or ``<think>`` tags arrives as ``ChatChunk.reasoning``; a model that refuses
``tools`` is asked again without them; context fitting keeps tool calls with their results.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from chat.provider import ChatChunk, ChatStream, Provider, ProviderError, ThinkSplitter, ToolCallAccumulator
from chat.provider.context import ContextTooLong, fit_to_context
from chat.provider.tokens import EstimateCounter, TokenCounter
from chat.provider.tool_calls import refuses_tools

from .fake_upstream import (
    FakeUpstream,
    FakeUpstreamProcess,
    Script,
    content_deltas,
    llamacpp_tool_call_deltas,
    ollama_tool_call_deltas,
    openai_tool_call_deltas,
    reasoning_content_deltas,
    reasoning_field_deltas,
    think_tag_deltas,
)

MESSAGES = [{"role": "user", "content": "What time is it in Paris and in Tokyo?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The current time in a time zone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
            },
        },
    }
]
CALLS = [
    ("get_time", {"timezone": "Europe/Paris"}),
    ("get_time", {"timezone": "Asia/Tokyo", "format": '24h, "quoted" ünïcode'}),
    ("convert", {"amount": 12.5, "nested": {"list": [1, 2, {"deep": None}]}}),
]
GENERATED_ID = re.compile(r"call_[0-9a-f]{24}")


@pytest.fixture
async def provider(upstream: FakeUpstream):
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=10, retries=0)
    yield provider
    await provider.close()


async def run(provider: Provider, messages: list | None = None, **options) -> tuple[ChatStream, list[ChatChunk]]:
    """One whole streamed answer: the stream (for its totals) and every chunk it yielded."""
    options.setdefault("model", "fake-model")
    options.setdefault("temperature", 0.0)
    stream = await provider.stream_chat_completion(messages or MESSAGES, **options)
    chunks: list[ChatChunk] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        await stream.aclose()
    return stream, chunks


def assert_calls(stream: ChatStream, chunks: list[ChatChunk], ids: list[str | None]) -> None:
    """The stream's calls are CALLS (names once, arguments whole), with ``ids`` (None: a generated one); the chunks'
    deltas add up to the same calls."""
    calls = stream.tool_calls
    assert [call.index for call in calls] == list(range(len(CALLS)))
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [(n, a) for n, a in CALLS]
    for call, expected in zip(calls, ids, strict=True):
        if expected is None:
            assert GENERATED_ID.fullmatch(call.id), call.id
        else:
            assert call.id == expected
    assert len({call.id for call in calls}) == len(calls)
    rebuilt: dict[int, list[str]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls:
            rebuilt.setdefault(delta.index, ["", ""])
            if delta.name is not None:
                assert rebuilt[delta.index][0] == "", "a name sent twice"
                rebuilt[delta.index][0] = delta.name
            rebuilt[delta.index][1] += delta.arguments
            assert delta.id == calls[delta.index].id  # one id per call, on every delta (the engine keys by it)
    assert [tuple(rebuilt[i]) for i in sorted(rebuilt)] == [(c.name, c.arguments) for c in calls]
    assert all(chunk.delta == "" for chunk in chunks)


# -- each upstream's style, over HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "deltas, ids",
    [
        pytest.param(openai_tool_call_deltas(CALLS, ids=["call_a", "call_b", "call_c"]), ["call_a", "call_b", "call_c"],
                     id="openai"),
        pytest.param(openai_tool_call_deltas(CALLS, fragment=1, ids=[None, "call_b", None]), [None, "call_b", None],
                     id="openai-missing-ids"),
        pytest.param(llamacpp_tool_call_deltas(CALLS, ids=["x1", "x2", "x3"]), ["x1", "x2", "x3"], id="llamacpp"),
        pytest.param(llamacpp_tool_call_deltas(CALLS, fragment=3, ids=[None] * 3), [None] * 3, id="llamacpp-no-ids"),
        pytest.param(ollama_tool_call_deltas(CALLS, ids=["o1", "o2", "o3"]), ["o1", "o2", "o3"], id="ollama"),
        pytest.param(ollama_tool_call_deltas(CALLS, ids=["o1", "o2", "o3"], one_chunk=True), ["o1", "o2", "o3"],
                     id="ollama-one-chunk"),
        pytest.param(ollama_tool_call_deltas(CALLS, ids=[None] * 3), [None] * 3, id="ollama-no-ids"),
        pytest.param(ollama_tool_call_deltas(CALLS, ids=[None] * 3, one_chunk=True), [None] * 3,
                     id="ollama-no-ids-one-chunk"),
    ],
)  # fmt: skip
async def test_each_upstream_style_streams_the_same_tool_calls(provider, upstream, deltas, ids) -> None:
    upstream.script = Script(deltas=deltas, finish_reason="tool_calls")
    stream, chunks = await run(provider, tools=TOOLS)

    assert_calls(stream, chunks, ids)
    assert stream.finish_reason == "tool_calls"
    assert chunks[-2].finish_reason == "tool_calls" or chunks[-1].finish_reason == "tool_calls"
    assert upstream.streams[-1].tokens_sent == len(deltas)
    assert stream.deltas == len(deltas)  # each chunk with a tool-call delta counts
    assert stream.completion_tokens == len(deltas)  # the fake's usage: one per delta sent


async def test_ollama_parallel_calls_at_index_0_are_three_calls(provider, upstream) -> None:
    deltas = ollama_tool_call_deltas(CALLS, ids=[None] * 3)
    assert all(item["index"] == 0 for delta in deltas for item in delta["tool_calls"])
    upstream.script = Script(deltas=deltas, finish_reason="tool_calls")
    stream, _ = await run(provider, tools=TOOLS)
    assert len(stream.tool_calls) == 3
    assert [call.name for call in stream.tool_calls] == ["get_time", "get_time", "convert"]


async def test_calls_with_finish_reason_stop_still_yield_the_calls(provider, upstream) -> None:
    upstream.script = Script(deltas=openai_tool_call_deltas(CALLS, ids=["a", "b", "c"]), finish_reason="stop")
    stream, chunks = await run(provider, tools=TOOLS)
    assert stream.finish_reason == "stop"
    assert_calls(stream, chunks, ["a", "b", "c"])


async def test_text_then_tool_calls_in_one_turn(provider, upstream) -> None:
    deltas = content_deltas("Let me check.") + openai_tool_call_deltas(CALLS[:1], ids=["a"])
    upstream.script = Script(deltas=deltas, finish_reason="tool_calls")
    stream, chunks = await run(provider, tools=TOOLS)
    assert "".join(chunk.delta for chunk in chunks) == "Let me check."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in stream.tool_calls] == [("a", *CALLS[0])]


async def test_a_stream_dropped_in_the_middle_of_arguments_keeps_what_arrived(provider, upstream) -> None:
    deltas = openai_tool_call_deltas(CALLS[:2], fragment=4, ids=["a", "b"])
    cut = len(deltas) - 3  # inside the second call's arguments
    upstream.script = Script(deltas=deltas, drop_after=cut, finish_reason="tool_calls")
    stream = await provider.stream_chat_completion(MESSAGES, model="fake-model", temperature=0, tools=TOOLS)
    seen: list[ChatChunk] = []
    with pytest.raises(ProviderError) as failure:
        async for chunk in stream:
            seen.append(chunk)
    await stream.aclose()

    assert failure.value.connection_lost
    calls = stream.tool_calls
    assert [(c.id, c.name) for c in calls] == [("a", "get_time"), ("b", "get_time")]
    assert json.loads(calls[0].arguments) == CALLS[0][1]
    whole = json.dumps(CALLS[1][1])
    assert calls[1].arguments and whole.startswith(calls[1].arguments) and calls[1].arguments != whole
    assert stream.finish_reason is None


# -- reasoning ------------------------------------------------------------------------------------------------------

THOUGHT = "The user wants Paris. <b>Not</b> a tag: </thin and </think-ish. Fine."
ANSWER = "It is noon in Paris."


@pytest.mark.parametrize(
    "deltas",
    [
        pytest.param(reasoning_content_deltas(THOUGHT) + content_deltas(ANSWER), id="reasoning_content"),
        pytest.param(reasoning_field_deltas(THOUGHT) + content_deltas(ANSWER), id="reasoning"),
        pytest.param(think_tag_deltas(THOUGHT, ANSWER, fragment=3), id="think-tags"),
        pytest.param(reasoning_content_deltas(THOUGHT[:20]) + reasoning_field_deltas(THOUGHT[20:])
                     + content_deltas(ANSWER), id="both-fields"),
    ],
)  # fmt: skip
async def test_reasoning_arrives_apart_from_the_answer(provider, upstream, deltas) -> None:
    upstream.script = Script(deltas=deltas)
    stream, chunks = await run(provider)
    assert "".join(chunk.reasoning for chunk in chunks) == THOUGHT
    assert "".join(chunk.delta for chunk in chunks) == ANSWER
    assert all("think>" not in chunk.delta for chunk in chunks)
    assert stream.deltas == len(deltas)
    assert stream.finish_reason == "stop"


async def test_an_unclosed_think_is_reasoning_to_the_end(provider, upstream) -> None:
    upstream.script = Script(deltas=content_deltas("<think>still thinking</thi", fragment=4), finish_reason="length")
    _, chunks = await run(provider)
    assert "".join(chunk.reasoning for chunk in chunks) == "still thinking</thi"
    assert "".join(chunk.delta for chunk in chunks) == ""


async def test_a_held_back_tag_prefix_is_kept_when_the_stream_ends_unfinished(provider, upstream) -> None:
    upstream.script = Script(pieces=[" <thi"], truncate_after=1)
    stream = await provider.stream_chat_completion(MESSAGES, model="fake-model", temperature=0)
    seen: list[ChatChunk] = []
    with pytest.raises(ProviderError, match="without finishing"):
        async for chunk in stream:
            seen.append(chunk)
    await stream.aclose()
    assert "".join(chunk.delta for chunk in seen) == " <thi"


async def test_text_without_think_tags_is_not_delayed(provider, upstream) -> None:
    upstream.script = Script(pieces=["Hello", " world", "<think>x</think>"])
    _, chunks = await run(provider)
    texts = [chunk.delta for chunk in chunks if chunk.delta]
    assert texts == ["Hello", " world", "<think>x</think>"]  # a later <think> is answer text
    assert all(chunk.reasoning == "" for chunk in chunks)


def split_everywhere(text: str) -> list[list[str]]:
    """``text`` cut at every pair of positions (three pieces, some empty), and character by character."""
    cuts = [[text[:i], text[i:j], text[j:]] for i in range(len(text) + 1) for j in range(i, len(text) + 1)]
    return [*cuts, list(text)]


def split_result(pieces: list[str]) -> tuple[str, str, list[tuple[str, str]]]:
    splitter = ThinkSplitter()
    outputs = [splitter.feed(piece) for piece in pieces]
    outputs.append(splitter.flush())
    return "".join(r for r, _ in outputs), "".join(t for _, t in outputs), outputs


def test_think_tags_split_at_every_position() -> None:
    text = "\n <think>\nab</think>\n\ncd"
    for pieces in split_everywhere(text):
        reasoning, answer, _ = split_result(pieces)
        assert (reasoning, answer) == ("\nab", "cd"), pieces


def test_plain_text_split_at_every_position_passes_through() -> None:
    text = "<thinking> is not <think>, and </think> neither"
    for pieces in split_everywhere(text):
        reasoning, answer, outputs = split_result(pieces)
        assert (reasoning, answer) == ("", text), pieces
        # nothing held once the start shows it is not "<think>"
        fed = released = ""
        for piece, (_, out) in zip(pieces, outputs, strict=False):
            fed, released = fed + piece, released + out
            start = fed.lstrip()
            if start and not "<think>".startswith(start):
                assert released == fed, pieces


@settings(max_examples=300, deadline=None)
@given(
    reasoning=st.text(alphabet="<>/thinkab \n", max_size=30).filter(lambda s: "</think>" not in s),
    answer=st.text(alphabet="<>/thinkab \n", max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_think_splitter_any_split(reasoning: str, answer: str, cuts: list[int]) -> None:
    text = f"<think>{reasoning}</think>{answer}"
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    got_reasoning, got_answer, outputs = split_result(pieces)
    assert got_reasoning == reasoning
    assert got_answer == answer.lstrip()
    # only a possible "</think>" prefix is ever held back while thinking
    fed = ""
    out_reasoning = ""
    for piece, (part, _) in zip(pieces, outputs, strict=False):
        fed += piece
        out_reasoning += part
        body = fed[len("<think>") :]
        if len(fed) > len("<think>") and "</think>" not in fed:
            assert len(body) - len(out_reasoning) < len("</think>")


def test_first_chunk_text_comes_out_at_once() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("Hello") == ("", "Hello")
    assert splitter.feed(" there") == ("", " there")
    waiting = ThinkSplitter()
    assert waiting.feed("<th") == ("", "")  # could be the tag: held
    assert waiting.feed("e end") == ("", "<the end")


# -- tools refused, not supported, sent as given --------------------------------------------------------------------


async def test_the_request_carries_tools_as_given(provider, upstream) -> None:
    upstream.script = Script(pieces=["ok"])
    stream, _ = await run(provider, tools=TOOLS)
    request = upstream.requests[-1]
    assert request["tools"] == TOOLS
    assert "tool_choice" not in request
    assert stream.tools_refused is False


async def test_no_tools_key_without_tools(provider, upstream) -> None:
    upstream.script = Script(pieces=["ok"])
    await run(provider, tools=[])
    await run(provider)
    assert all("tools" not in request for request in upstream.requests)


@pytest.mark.parametrize(
    "status, message",
    [
        (400, "registry.ollama.ai/library/fake-model does not support tools"),
        (500, "tools param requires --jinja flag"),
        (400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'),
    ],
)
async def test_tools_refused_are_dropped_and_remembered(provider, upstream, caplog, status, message) -> None:
    upstream.script = Script(pieces=["plain answer"], reject_tools=message, reject_tools_status=status)
    caplog.set_level(logging.INFO, logger="chat.provider.client")
    stream, chunks = await run(provider, tools=TOOLS)

    assert "".join(chunk.delta for chunk in chunks) == "plain answer"
    assert stream.tools_refused is True
    assert [("tools" in request) for request in upstream.requests] == [True, False]
    assert provider.takes_tools("fake-model") is False
    assert provider.takes_tools("other-model") is True

    again, _ = await run(provider, tools=TOOLS)  # remembered: sent without tools at once
    assert again.tools_refused is True
    assert [("tools" in request) for request in upstream.requests] == [True, False, False]
    refusals = [record for record in caplog.records if "refuses tools" in record.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.INFO

    upstream.script = Script(pieces=["ok"])
    other, _ = await run(provider, model="other-model", tools=TOOLS)  # another model still gets them
    assert upstream.requests[-1]["tools"] == TOOLS and other.tools_refused is False


async def test_other_refusals_are_not_taken_for_a_tools_refusal(provider, upstream) -> None:
    upstream.script = Script(status=400, error_message="Invalid schema for function 'get_time': tools[0] is bad")
    with pytest.raises(ProviderError) as failure:
        await run(provider, tools=TOOLS)
    assert failure.value.status == 400
    assert len(upstream.requests) == 1
    assert provider.takes_tools("fake-model") is True


def test_refusal_recognition() -> None:
    assert refuses_tools(400, "registry.ollama.ai/library/llama2 does not support tools")
    assert refuses_tools(500, "tools param requires --jinja flag")
    assert refuses_tools(400, "Unrecognized request argument supplied: tools")
    assert refuses_tools(422, "function calling is not supported by this model")
    assert not refuses_tools(400, "temperature must be at most 2")
    assert not refuses_tools(400, "Invalid schema for function 'f': In context=(), 'required' is required")
    assert not refuses_tools(429, "tools are not supported")  # a rate limit is not a refusal
    assert not refuses_tools(None, "does not support tools")


async def test_tools_not_supported_are_never_sent(upstream) -> None:
    provider = Provider(upstream.base_url, "k", read_timeout=10, retries=0, tools_supported=False)
    try:
        upstream.script = Script(pieces=["ok"])
        stream, _ = await run(provider, tools=TOOLS)
    finally:
        await provider.close()
    assert "tools" not in upstream.requests[-1]
    assert stream.tools_refused is False
    assert provider.takes_tools("fake-model") is False


# -- a tool loop's follow-up request ---------------------------------------------------------------------------------


async def test_a_tool_loop_follow_up_is_sent_and_recorded_in_order(provider, upstream) -> None:
    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas(CALLS[:2], ids=["call_1", "call_2"]), finish_reason="tool_calls"),
        Script(pieces=["Noon in Paris, ", "7 pm in Tokyo."]),
    ]
    upstream.script = Script(pieces=["not this one"])
    messages = [{"role": "system", "content": "Be brief."}, *MESSAGES]
    first, _ = await run(provider, messages, tools=TOOLS)
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.to_message() for call in first.tool_calls]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_2", "content": "19:00"},
    ]
    second, chunks = await run(provider, follow_up, tools=TOOLS)

    assert "".join(chunk.delta for chunk in chunks) == "Noon in Paris, 7 pm in Tokyo."
    assert second.tool_calls == []
    assert len(upstream.requests) == 2
    sent = upstream.requests[1]["messages"]
    assert sent == follow_up
    assert sent[2]["tool_calls"][1] == {
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_time", "arguments": json.dumps(CALLS[1][1])},
    }
    assert upstream.scripts == []


async def test_system_in_first_turn_keeps_tool_messages(upstream) -> None:
    provider = Provider(upstream.base_url, "k", read_timeout=10, retries=0, system_in_first_turn=True)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                              "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "12:00"},
    ]  # fmt: skip
    try:
        upstream.script = Script(pieces=["Noon."])
        await run(provider, messages)
    finally:
        await provider.close()
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "Be brief.\n\nTime?"}, *messages[2:]]


async def test_non_streaming_answer_carries_tool_calls_and_reasoning(upstream) -> None:
    import openai

    upstream.script = Script(
        deltas=reasoning_content_deltas("hmm") + ollama_tool_call_deltas(CALLS, ids=[None] * 3),
        finish_reason="tool_calls",
    )
    async with openai.AsyncOpenAI(base_url=upstream.base_url, api_key="k", max_retries=0) as client:
        answer = await client.chat.completions.create(model="fake-model", messages=MESSAGES, tools=TOOLS)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == CALLS
    assert choice.message.model_extra["reasoning_content"] == "hmm"


def test_process_variant_queues_scripts() -> None:
    import openai

    with FakeUpstreamProcess() as fake:
        fake.set_scripts([Script(pieces=["first"]), Script(reject_tools="fake-model does not support tools")])
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        first = client.chat.completions.create(model="fake-model", messages=MESSAGES, tools=TOOLS)
        with pytest.raises(openai.BadRequestError, match="does not support tools"):
            client.chat.completions.create(model="fake-model", messages=MESSAGES, tools=TOOLS)
        third = client.chat.completions.create(model="fake-model", messages=MESSAGES)
        client.close()
    assert first.choices[0].message.content == "first"
    assert third.choices[0].message.content == "".join(f"w{i} " for i in range(20))  # the queue is empty: default


# -- the accumulator on SDK objects ----------------------------------------------------------------------------------


def sdk(index: int | None = 0, id: str | None = None, name: str | None = None, arguments: str | None = None):
    """A ``ChoiceDeltaToolCall`` as the SDK builds it from a chunk (unvalidated: ``index`` may be missing)."""
    function = ChoiceDeltaToolCallFunction.construct(name=name, arguments=arguments)
    fields = {"id": id, "function": function, "type": "function" if name else None}
    if index is not None:
        fields["index"] = index
    return ChoiceDeltaToolCall.construct(**fields)


def test_accumulator_id_after_the_name_and_missing_index() -> None:
    calls = ToolCallAccumulator()
    first = calls.add([sdk(index=None, name="get_time", arguments='{"time')])
    assert first[0].name == "get_time" and GENERATED_ID.fullmatch(first[0].id)
    generated = first[0].id
    late = calls.add([sdk(index=None, id="call_late", arguments='zone": "UTC"}')])
    assert [(d.index, d.id, d.name, d.arguments) for d in late] == [(0, generated, None, 'zone": "UTC"}')]
    assert calls.add([sdk(id="call_late", name="get_time")]) == []  # a repeat adds nothing
    assert [(c.id, c.name, c.arguments) for c in calls.calls] == [(generated, "get_time", '{"timezone": "UTC"}')]
    other = calls.add([sdk(id="call_other", name="get_time", arguments="{}")])  # another id: another call
    assert [(d.index, d.id) for d in other] == [(1, "call_other")]


def test_accumulator_keeps_invalid_json_as_streamed() -> None:
    calls = ToolCallAccumulator()
    calls.add([sdk(id="a", name="f", arguments="{not json")])
    calls.add([sdk(arguments=", really")])
    assert calls.calls[0].arguments == "{not json, really"


def test_accumulator_interleaved_openai_parallel_calls() -> None:
    calls = ToolCallAccumulator()
    calls.add([sdk(0, "a", "f", ""), sdk(1, "b", "g", "")])
    calls.add([sdk(1, arguments='{"y":'), sdk(0, arguments='{"x":')])
    calls.add([sdk(0, arguments="1}"), sdk(1, arguments="2}")])
    assert [(c.index, c.id, c.name, c.arguments) for c in calls.calls] == [
        (0, "a", "f", '{"x":1}'),
        (1, "b", "g", '{"y":2}'),
    ]


def test_accumulator_calls_are_snapshots() -> None:
    calls = ToolCallAccumulator()
    calls.add([sdk(id="a", name="f", arguments="{")])
    before = calls.calls
    calls.add([sdk(arguments="}")])
    assert before[0].arguments == "{" and calls.calls[0].arguments == "{}"


# -- context fitting with tool messages ------------------------------------------------------------------------------


class WordCounter(TokenCounter):
    """One token per word plus one per message; one per request."""

    name = "words"
    reply_tokens = 1

    def _count(self, role: str, content: str) -> int:
        return len(content.split()) + 1


def tool_round(tag: str, results: int = 2, words: int = 5) -> list[dict]:
    """A user turn, an assistant turn calling ``results`` tools, their results, and the final answer."""
    calls = [{"id": f"{tag}-{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
             for i in range(results)]  # fmt: skip
    return [
        {"role": "user", "content": " ".join([f"u{tag}"] * words)},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": f"{tag}-{i}", "content": " ".join([f"r{tag}"] * words)}
          for i in range(results)),
        {"role": "assistant", "content": " ".join([f"a{tag}"] * words)},
    ]  # fmt: skip


def check_pairs(messages: list[dict]) -> None:
    """Every tool message follows its assistant turn (with tool_calls) in ``messages``; no tool message first."""
    history = messages[1:] if messages[0]["role"] == "system" else messages
    assert history[0]["role"] not in ("tool", "assistant")
    open_ids: set[str] = set()
    for message in history:
        if message["role"] == "assistant":
            open_ids = {call["id"] for call in message.get("tool_calls") or []}
        elif message["role"] == "tool":
            assert message["tool_call_id"] in open_ids, message
        else:
            open_ids = set()
    answered = {m["tool_call_id"] for m in history if m["role"] == "tool"}
    for message in history:
        for call in message.get("tool_calls") or []:
            assert call["id"] in answered, "a call left without its result"


def test_fitting_never_parts_tool_calls_from_their_results() -> None:
    system = {"role": "system", "content": "be brief"}
    messages = [system]
    for tag in "abcd":
        messages += tool_round(tag)
    messages.append({"role": "user", "content": "new question"})
    counter = WordCounter()
    total = counter.count(messages)
    seen_omitted = set()
    for window in range(20, total + 20):
        try:
            fitted = fit_to_context(messages, window=window, reserve=5, counter=counter)
        except ContextTooLong:
            continue
        assert fitted.messages[0] == system and fitted.messages[-1] == messages[-1]
        assert fitted.messages[1:] == messages[1 + fitted.omitted :]
        assert fitted.tokens + 5 <= window
        check_pairs(fitted.messages)
        seen_omitted.add(fitted.omitted)
    assert 0 in seen_omitted and len(seen_omitted) > 3


def test_fitting_keeps_the_tool_loop_in_progress_whole() -> None:
    messages = [{"role": "system", "content": "s"}, *tool_round("old"), *tool_round("now", results=3)[:-1]]
    counter = WordCounter()
    in_progress = messages[-5:]  # the user turn, the calls and their three results
    needed = counter.count([messages[0], *in_progress])
    fitted = fit_to_context(messages, window=needed + 5, reserve=5, counter=counter)
    assert fitted.messages == [messages[0], *in_progress]
    assert fitted.omitted == len(messages) - 1 - len(in_progress)
    with pytest.raises(ContextTooLong):
        fit_to_context(messages, window=needed + 4, reserve=5, counter=counter)


def test_fitting_counts_content_none_tool_calls_and_tools() -> None:
    counter = EstimateCounter()
    call = {"id": "c", "type": "function", "function": {"name": "get_time", "arguments": '{"timezone": "UTC"}'}}
    bare = {"role": "assistant", "content": None}
    assert counter.count_message(bare) == counter.count_message({"role": "assistant", "content": ""})
    assert counter.count_message({**bare, "tool_calls": [call]}) > counter.count_message(bare) + 10
    messages = [{"role": "user", "content": "hi"}]
    plain = fit_to_context(messages, window=1000, reserve=10, counter=counter)
    with_tools = fit_to_context(messages, window=1000, reserve=10, counter=counter, tools=TOOLS)
    assert with_tools.tokens - plain.tokens >= len(json.dumps(TOOLS)) // 3
    with pytest.raises(ContextTooLong, match="for the tool definitions") as refused:
        fit_to_context(messages, window=plain.tokens + 20, reserve=10, counter=counter, tools=TOOLS)
    assert refused.value.tools_tokens == with_tools.tokens - plain.tokens


async def test_provider_fits_a_tool_loop_to_the_window(upstream) -> None:
    provider = Provider(upstream.base_url, "k", read_timeout=10, retries=0, context_window=400)
    messages = [{"role": "system", "content": "s"}]
    for tag in "abcdefgh":
        messages += tool_round(tag, words=20)
    messages += tool_round("now", results=1, words=5)[:-1]
    try:
        upstream.script = Script(pieces=["ok"])
        stream, _ = await run(provider, messages, max_tokens=50)
    finally:
        await provider.close()
    sent = upstream.requests[-1]["messages"]
    assert stream.omitted > 0
    assert sent[0] == messages[0] and sent[-3:] == messages[-3:]
    check_pairs(sent)
