"""The engine's function-calling loop against the fake upstream: rounds of tool calls run, stored, resumed and sent
back exactly as the protocol requires; approval, limits, Stop, reasoning."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chat.engine import Account, Engine, Phase
from chat.engine.events import (
    ApprovalRequired,
    ReasoningDelta,
    ToolCallStarted,
    ToolResult,
    ToolStatus,
    content_of,
    parts,
    replay,
)
from chat.engine.tool_loop import ToolLimits, ToolLoop
from chat.provider import Provider
from chat.store import Status, Store
from chat.tools import Toolbox

from .fake_upstream import (
    FakeUpstream,
    Script,
    content_deltas,
    ollama_tool_call_deltas,
    openai_tool_call_deltas,
    reasoning_content_deltas,
)
from .helpers import wait_for

MakeToolEngine = Callable[..., Engine]


@pytest.fixture
async def make_tool_engine(store: Store, upstream: FakeUpstream) -> AsyncIterator[MakeToolEngine]:
    """Builds an engine with tools: ``make_tool_engine(mcp_config=None, **ToolLimits fields)``."""
    made: list[tuple[Engine, Provider, Toolbox]] = []

    def make(mcp_config: Path | None = None, **limits: float) -> Engine:
        provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=10)
        toolbox = Toolbox(mcp_config=mcp_config, call_timeout=20)
        engine = Engine(store, provider, default_model="fake-model", checkpoint_interval=0.2,
                        tools=ToolLoop(toolbox, store, ToolLimits(**limits)))  # fmt: skip
        made.append((engine, provider, toolbox))
        return engine

    yield make
    for engine, provider, toolbox in made:
        await engine.shutdown()
        await provider.close()
        await toolbox.aclose()


def calls(*items: tuple[str, dict], ids: list[str] | None = None) -> Script:
    """A turn that calls these tools (OpenAI's style) and ends with ``tool_calls``."""
    return Script(deltas=openai_tool_call_deltas(list(items), ids=ids), finish_reason="tool_calls")


def text(answer: str) -> Script:
    return Script(deltas=content_deltas(answer))


async def answer(engine: Engine, content: str = "What is 6*7?") -> tuple[int, object]:
    """Send ``content`` in a new conversation; wait for the answer to be stored; return (its id, the message)."""
    _, assistant = await engine.send(None, content)
    assert assistant.id is not None
    generation = engine.live(assistant.id)
    assert generation is not None
    return assistant.id, await generation.wait()


async def test_a_tool_round_runs_and_the_results_go_back_as_the_protocol_requires(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream, store: Store
) -> None:
    engine = make_tool_engine()
    upstream.scripts = [calls(("calculator", {"expression": "6*7"}), ids=["call_A"]), text("It is 42.")]
    message_id, message = await answer(engine)

    assert message.status == Status.complete and message.content == "It is 42."
    follow_up = upstream.requests[1]["messages"]
    assert follow_up[-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_A",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
            }
        ],
    }
    assert follow_up[-1] == {"role": "tool", "tool_call_id": "call_A", "content": "42"}
    assert [tool["function"]["name"] for tool in upstream.requests[0]["tools"]] == ["calculator", "current_time"]

    stored = await asyncio.to_thread(store.get_message, message_id)
    [tool_part, text_part] = parts(content_of(stored))
    assert tool_part.kind == "tool_calls" and text_part.text == "It is 42."
    [call] = tool_part.calls
    assert (call.name, call.source, call.status, call.result, call.parsed) == (
        "calculator", "builtin", ToolStatus.succeeded, "42", {"expression": "6*7"},
    )  # fmt: skip


async def test_three_sequential_rounds_then_regenerate_sends_all_of_them_back(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    upstream.scripts = [
        calls(("calculator", {"expression": "1+1"}), ids=["c1"]),
        calls(("calculator", {"expression": "2+2"}), ids=["c2"]),
        calls(("calculator", {"expression": "3+3"}), ids=["c3"]),
        text("Done: 2, 4, 6."),
    ]
    message_id, message = await answer(engine)
    assert message.content == "Done: 2, 4, 6." and len(upstream.requests) == 4
    last = upstream.requests[3]["messages"]
    assert [m.get("tool_call_id") for m in last if m["role"] == "tool"] == ["c1", "c2", "c3"]
    assert [m["content"] for m in last if m["role"] == "tool"] == ["2", "4", "6"]

    # a follow-up message carries the whole exchange as history: rounds, results, then the final text
    upstream.scripts = [text("You're welcome.")]
    conversation_id = message.conversation_id
    _, second = await engine.send(conversation_id, "Thanks")
    await engine.live(second.id).wait()  # type: ignore[union-attr]
    history = upstream.requests[4]["messages"]
    roles = [m["role"] for m in history]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert history[-2] == {"role": "assistant", "content": "Done: 2, 4, 6."}


async def test_parallel_calls_whole_at_index_0_run_concurrently_and_each_gets_its_tool_message(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    three = [("calculator", {"expression": f"{n}*10"}) for n in (1, 2, 3)]
    upstream.scripts = [
        Script(deltas=ollama_tool_call_deltas(three, ids=["p1", "p2", "p3"]), finish_reason="stop"),
        text("10, 20, 30."),
    ]
    _, message = await answer(engine)
    assert message.content == "10, 20, 30."
    follow_up = upstream.requests[1]["messages"]
    assert [c["id"] for c in follow_up[-4]["tool_calls"]] == ["p1", "p2", "p3"]
    assert [(m["tool_call_id"], m["content"]) for m in follow_up[-3:]] == [("p1", "10"), ("p2", "20"), ("p3", "30")]
    [group] = [part for part in parts(content_of(message)) if part.kind == "tool_calls"]
    assert len(group.calls) == 3


async def test_invalid_arguments_and_unknown_tools_go_back_to_the_model_as_errors_and_never_run(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    broken = [
        {"tool_calls": [{"index": 0, "id": "b1", "type": "function", "function": {"name": "calculator",
                                                                                   "arguments": '{"expression": '}}]},
        {"tool_calls": [{"index": 1, "id": "b2", "type": "function", "function": {"name": "calculator",
                                                                                   "arguments": '{"x": 1}'}}]},
        {"tool_calls": [{"index": 2, "id": "b3", "type": "function", "function": {"name": "rm_rf",
                                                                                   "arguments": "{}"}}]},
    ]  # fmt: skip
    upstream.scripts = [Script(deltas=broken, finish_reason="tool_calls"), text("Sorry.")]
    _, message = await answer(engine)
    tool_messages = {m["tool_call_id"]: m["content"] for m in upstream.requests[1]["messages"] if m["role"] == "tool"}
    assert "not valid JSON" in tool_messages["b1"]
    assert "input schema" in tool_messages["b2"]
    assert "no tool named 'rm_rf'" in tool_messages["b3"]
    statuses = [c.status for p in parts(content_of(message)) if p.kind == "tool_calls" for c in p.calls]
    assert statuses == [ToolStatus.failed] * 3


async def test_past_the_step_bound_the_answer_ends_with_a_clear_reason_and_keeps_everything(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine(max_steps=2)
    upstream.scripts = [calls(("calculator", {"expression": f"{n}+0"}), ids=[f"s{n}"]) for n in range(5)]
    _, message = await answer(engine)
    assert message.status == Status.error and message.error_code == "tool_limit"
    assert "2 rounds" in (message.error or "")
    assert len(upstream.requests) == 3
    results = [e for e in content_of(message) if isinstance(e, ToolResult)]
    assert [r.status for r in results] == [ToolStatus.succeeded, ToolStatus.succeeded, ToolStatus.cancelled]


async def test_a_model_that_refuses_tools_is_asked_again_without_them_and_the_answer_says_so(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    upstream.script = Script(reject_tools="fake-model does not support tools", pieces=["plain answer"])
    _, message = await answer(engine)
    assert message.status == Status.complete and message.content == "plain answer"
    assert [p.text for p in parts(content_of(message)) if p.kind == "notice"] == [
        "Tools are off for fake-model: its server does not take them."
    ]
    assert "tools" not in upstream.requests[-1]
    assert engine.tools_off_reason("fake-model") == "Tools are off for fake-model: its server does not take them."
    _, again = await answer(engine)  # remembered: no refused request first, no notice
    assert "tools" not in upstream.requests[-1] and again.events is None


async def test_reasoning_is_its_own_part_stored_apart_and_never_sent_back(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    upstream.scripts = [Script(deltas=[*reasoning_content_deltas("Let me think."), *content_deltas("Hello!")])]
    _, message = await answer(engine)
    assert message.content == "Hello!"
    [reasoning, answer_part] = parts(content_of(message))
    assert (reasoning.kind, reasoning.text) == ("reasoning", "Let me think.") and reasoning.seconds is not None
    assert answer_part.text == "Hello!"
    upstream.scripts = [text("ok")]
    _, second = await engine.send(message.conversation_id, "next")
    await engine.live(second.id).wait()  # type: ignore[union-attr]
    sent = json.dumps(upstream.requests[-1]["messages"])
    assert "Let me think" not in sent and "Hello!" in sent


async def test_a_resumed_stream_after_any_position_gives_the_same_events_live_and_stored(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    upstream.scripts = [
        Script(deltas=[*content_deltas("Let me compute. "), *openai_tool_call_deltas(
            [("calculator", {"expression": "2**10"})], ids=["r1"])], finish_reason="tool_calls"),
        text("It is 1024."),
    ]  # fmt: skip
    message_id, message = await answer(engine)
    everything = [e for e in replay(message) if hasattr(e, "size")]
    end = everything[-1].seq
    assert sum(e.size for e in everything) == end  # positions are the sizes added up
    for position in range(end + 1):
        resumed = [e async for e in engine.follow(message_id, position)]
        content = [e for e in resumed if hasattr(e, "size")]
        assert sum(e.size for e in content) == end - position
        assert not content or content[-1].seq == end


MCP_TIME = {"mcpServers": {"time": {"command": str(Path(sys.executable).with_name("mcp-server-time")),
                                    "args": ["--local-timezone", "UTC"]}}}  # fmt: skip


@pytest.fixture
def mcp_config(tmp_path: Path) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(MCP_TIME))
    return path


async def wait_for_approval(engine: Engine, message_id: int) -> ApprovalRequired:
    generation = engine.live(message_id)
    assert generation is not None
    await wait_for(lambda: generation.phase == Phase.awaiting_approval, timeout=30)
    [event] = [e for e in generation.content if isinstance(e, ApprovalRequired)]
    return event


async def start(engine: Engine, content: str) -> int:
    _, assistant = await engine.send(None, content)
    assert assistant.id is not None
    return assistant.id


async def test_an_mcp_tool_asks_first_and_runs_once_approved_then_always_allowed_runs_without_asking(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream, mcp_config: Path
) -> None:
    engine = make_tool_engine(mcp_config=mcp_config)
    ask = calls(("time__get_current_time", {"timezone": "Europe/Paris"}), ids=["t1"])
    upstream.scripts = [ask, text("It is late in Paris.")]
    message_id = await start(engine, "Time in Paris?")
    approval = await wait_for_approval(engine, message_id)
    assert (approval.name, approval.source, approval.changed) == ("time__get_current_time", "time", False)
    await engine.decide("t1", True, always=True)
    message = await engine.live(message_id).wait()  # type: ignore[union-attr]
    [call] = [c for p in parts(content_of(message)) if p.kind == "tool_calls" for c in p.calls]
    assert call.status == ToolStatus.succeeded and "Europe/Paris" in (call.result or "")

    upstream.scripts = [calls(("time__get_current_time", {"timezone": "UTC"}), ids=["t2"]), text("Noon.")]
    _, message = await answer(engine, "And UTC?")
    assert not [e for e in content_of(message) if isinstance(e, ApprovalRequired)]
    assert message.content == "Noon."


async def test_denied_and_expired_calls_tell_the_model_and_never_run(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream, mcp_config: Path
) -> None:
    engine = make_tool_engine(mcp_config=mcp_config, approval_timeout=1.0)
    upstream.scripts = [calls(("time__get_current_time", {"timezone": "UTC"}), ids=["d1"]), text("OK, no.")]
    message_id = await start(engine, "Time?")
    await wait_for_approval(engine, message_id)
    await engine.decide("d1", False)
    await engine.live(message_id).wait()  # type: ignore[union-attr]
    assert upstream.requests[1]["messages"][-1] == {
        "role": "tool", "tool_call_id": "d1", "content": "The user denied this call.",
    }  # fmt: skip

    upstream.scripts = [calls(("time__get_current_time", {"timezone": "UTC"}), ids=["e1"]), text("Nobody.")]
    _, message = await answer(engine, "Time again?")  # nobody decides: expires after 1 s
    results = [e for e in content_of(message) if isinstance(e, ToolResult)]
    assert [r.status for r in results] == [ToolStatus.expired]
    assert "did not run" in upstream.requests[-1]["messages"][-1]["content"]
    with pytest.raises(LookupError):
        await engine.decide("e1", True)


async def test_stop_while_a_call_waits_cancels_it_and_keeps_the_steps(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream, mcp_config: Path, store: Store
) -> None:
    engine = make_tool_engine(mcp_config=mcp_config)
    upstream.scripts = [calls(("time__get_current_time", {"timezone": "UTC"}), ids=["x1"])]
    message_id = await start(engine, "Time?")
    await wait_for_approval(engine, message_id)
    assert await engine.cancel(message_id)
    stored = await asyncio.to_thread(store.get_message, message_id)
    assert stored.status == Status.cancelled
    events = content_of(stored)
    assert [e.name for e in events if isinstance(e, ToolCallStarted)] == ["time__get_current_time"]
    assert [e.status for e in events if isinstance(e, ToolResult)] == [ToolStatus.cancelled]
    assert len(upstream.requests) == 1


async def test_a_second_follower_sees_the_same_steps_live(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream, mcp_config: Path
) -> None:
    engine = make_tool_engine(mcp_config=mcp_config)
    upstream.scripts = [
        Script(deltas=[*reasoning_content_deltas("Hmm."), *openai_tool_call_deltas(
            [("time__get_current_time", {"timezone": "UTC"})], ids=["f1"])], finish_reason="tool_calls"),
        text("Done."),
    ]  # fmt: skip
    message_id = await start(engine, "Time?")
    await wait_for_approval(engine, message_id)
    seen: list[object] = []

    async def follow() -> None:
        async for event in engine.follow(message_id, 0):
            seen.append(event)

    follower = asyncio.create_task(follow())
    await wait_for(lambda: any(isinstance(e, ApprovalRequired) for e in seen))
    await engine.decide("f1", True)
    await follower
    kinds = [e.kind for e in seen]
    assert kinds[0] == "phase" and "reasoning_delta" in kinds and kinds[-1] == "done"
    assert kinds.index("approval_required") < kinds.index("tool_running") < kinds.index("tool_result")
    assert any(isinstance(e, ReasoningDelta) for e in seen)


async def test_a_stream_dropped_mid_arguments_keeps_the_steps_says_why_and_a_regenerate_starts_clean(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream
) -> None:
    engine = make_tool_engine()
    deltas = [*content_deltas("Checking. "), *openai_tool_call_deltas([("calculator", {"expression": "1+2+3"})])]
    upstream.scripts = [Script(deltas=deltas, drop_after=len(deltas) - 2, finish_reason="tool_calls")]
    message_id, message = await answer(engine)
    assert message.status == Status.error and message.content == "Checking. " and message.error
    [text_part, group] = parts(content_of(message))
    assert text_part.text == "Checking. " and group.calls[0].status == ToolStatus.cancelled
    assert len(upstream.requests) == 1  # nothing ran, nothing was sent on

    upstream.scripts = [calls(("calculator", {"expression": "1+2+3"}), ids=["g1"]), text("Six.")]
    variant = await engine.regenerate(message_id)
    done = await engine.live(variant.id).wait()  # type: ignore[arg-type, union-attr]
    assert done.status == Status.complete and done.content == "Six."
    assert [m["role"] for m in upstream.requests[1]["messages"]] == ["user"]  # the failed variant is not history


async def test_only_the_owner_decides_on_a_waiting_call(
    make_tool_engine: MakeToolEngine, upstream: FakeUpstream, mcp_config: Path, store: Store
) -> None:
    engine = make_tool_engine(mcp_config=mcp_config)
    ann = await asyncio.to_thread(store.create_user, "ann", "x")
    bob = await asyncio.to_thread(store.create_user, "bob", "x")
    ann_account, bob_account = Account(ann.id, "ann", False), Account(bob.id, "bob", False)
    upstream.scripts = [calls(("time__get_current_time", {"timezone": "UTC"}), ids=["o1"]), text("ok")]
    _, assistant = await engine.send(None, "Time?", account=ann_account)
    await wait_for_approval(engine, assistant.id)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="not found"):
        await engine.decide("o1", True, account=bob_account)
    await engine.decide("o1", False, account=ann_account)
    message = await engine.live(assistant.id, ann_account).wait()  # type: ignore[arg-type, union-attr]
    assert [e.status for e in content_of(message) if isinstance(e, ToolResult)] == [ToolStatus.denied]
