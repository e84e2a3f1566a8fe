"""Tools over HTTP: ``/api``'s typed, numbered, resumable tool and reasoning events and its approve/deny routes;
``/v1`` passing a client's own tools through (the openai SDK, streamed and not) and reasoning as
``reasoning_content``. The routes run in-process on uvicorn, on the fake upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from httpx_sse import aconnect_sse

from chat.api.routes import register_api
from chat.auth import Accounts
from chat.engine import Engine, Phase
from chat.engine.events import ToolStatus, content_of, parts
from chat.engine.tool_loop import ToolLimits, ToolLoop
from chat.provider import Provider
from chat.store import Store
from chat.tools import Toolbox

from .browser import free_port, serve
from .fake_upstream import (
    FakeUpstream,
    Script,
    content_deltas,
    openai_tool_call_deltas,
    reasoning_content_deltas,
)
from .helpers import opened_store, wait_for, wait_until

MCP_TIME = {"mcpServers": {"time": {"command": str(Path(sys.executable).with_name("mcp-server-time")),
                                    "args": ["--local-timezone", "UTC"]}}}  # fmt: skip


@contextlib.asynccontextmanager
async def served(engine: Engine, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """``/api`` and ``/v1`` on uvicorn on the test's loop; yields a client."""
    app = FastAPI()
    register_api(app, engine, store, Accounts(store))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or serving.done(), what="uvicorn to start")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield client
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def app(store: Store, upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(MCP_TIME))
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=10)
    toolbox = Toolbox(mcp_config=config, call_timeout=20)
    engine = Engine(store, provider, default_model="fake-model", tools=ToolLoop(toolbox, store, ToolLimits()))
    async with served(engine, store) as client:
        yield engine, client
    await engine.shutdown()
    await provider.close()
    await toolbox.aclose()


async def events_of(client: httpx.AsyncClient, method: str, url: str, **options: Any) -> list[tuple[str, int, dict]]:
    """The server-sent events of one request: ``(event, id, data)``."""
    got = []
    async with aconnect_sse(client, method, url, **options) as source:
        async for sse in source.aiter_sse():
            got.append((sse.event, int(sse.id), json.loads(sse.data)))
    return got


async def test_api_streams_typed_numbered_tool_events_that_resume_after_any_of_them(
    app: tuple[Engine, httpx.AsyncClient], upstream: FakeUpstream
) -> None:
    engine, client = app
    upstream.scripts = [
        Script(deltas=[*reasoning_content_deltas("Compute."), *openai_tool_call_deltas(
            [("calculator", {"expression": "6*7"})], ids=["k1"])], finish_reason="tool_calls"),
        Script(deltas=content_deltas("It is 42.")),
    ]  # fmt: skip
    conversation = (await client.post("/api/conversations", json={})).json()
    got = await events_of(client, "POST", f"/api/conversations/{conversation['id']}/messages", json={"content": "6*7?"})
    names = [name for name, _, _ in got]
    for expected in ("reasoning_delta", "reasoning_done", "tool_call_started", "tool_call_delta", "tool_call",
                     "tool_running", "tool_result", "text_delta", "done"):  # fmt: skip
        assert expected in names, (expected, names)
    assert names.index("tool_result") < names.index("text_delta")
    ready = next(data for name, _, data in got if name == "tool_call")
    assert (ready["id"], ready["name"], ready["parsed"]) == ("k1", "calculator", {"expression": "6*7"})
    result = next(data for name, _, data in got if name == "tool_result")
    assert (result["id"], result["status"], result["result"], result["is_error"]) == ("k1", "succeeded", "42", False)
    arguments = "".join(data["delta"] for name, _, data in got if name == "tool_call_delta")
    assert json.loads(arguments) == {"expression": "6*7"}

    message_id = got[0][2]["assistant_message_id"]
    detail = (await client.get(f"/api/messages/{message_id}")).json()
    assert detail["content"] == "It is 42." and detail["events"][0]["kind"] == "reasoning_delta"
    # resuming after each event's id gives exactly what followed it
    content = [(name, seq, data) for name, seq, data in got if name not in ("message_start", "phase", "usage", "done")]
    deltas = ("text_delta", "reasoning_delta", "tool_call_delta")

    def steps(events: list[tuple[str, int, dict]]) -> list[tuple[str, int]]:
        return [(name, seq) for name, seq, _ in events if name not in deltas]

    def texts(events: list[tuple[str, int, dict]]) -> dict[str, str]:
        joined: dict[str, str] = {}
        for name, _, data in events:
            if name in deltas:
                joined[name] = joined.get(name, "") + data["delta"]
        return joined

    for index, (_, seq, _) in enumerate(content):
        resumed = await events_of(client, "GET", f"/api/messages/{message_id}/stream", params={"after": seq})
        rest = [(n, s, d) for n, s, d in resumed if n not in ("message_start", "phase", "usage", "done")]
        # the same steps at the same numbers, the same text after them (deltas may be joined differently: a live
        # stream joins what queued up while its reader was busy, a stored one is joined wholly)
        assert steps(rest) == steps(content[index + 1 :]) and texts(rest) == texts(content[index + 1 :])
        assert (rest[-1][1] if rest else seq) == content[-1][1]


async def test_approve_and_deny_over_api_and_the_tools_list(
    app: tuple[Engine, httpx.AsyncClient], upstream: FakeUpstream
) -> None:
    engine, client = app
    listing = (await client.get("/api/tools")).json()
    by_name = {tool["name"]: tool for tool in listing["tools"]}
    assert by_name["calculator"]["policy"] == "auto" and by_name["time__get_current_time"]["policy"] == "ask"
    assert listing["problems"] == {} and listing["off_reason"] is None

    for decision, call_id in (("approve", "a1"), ("deny", "a2")):
        upstream.scripts = [
            Script(deltas=openai_tool_call_deltas([("time__get_current_time", {"timezone": "UTC"})], ids=[call_id]),
                   finish_reason="tool_calls"),
            Script(deltas=content_deltas("Done.")),
        ]  # fmt: skip
        conversation = (await client.post("/api/conversations", json={})).json()
        stream = asyncio.create_task(
            events_of(client, "POST", f"/api/conversations/{conversation['id']}/messages", json={"content": "time?"})
        )
        await wait_for(lambda: any(g.phase == Phase.awaiting_approval for g in engine.generations.values()),
                       timeout=30)  # fmt: skip
        answered = await client.post(f"/api/tool-calls/{call_id}/{decision}")
        assert answered.status_code == 200 and answered.json() == {"id": call_id, "approved": decision == "approve"}
        got = await stream
        required = next(data for name, _, data in got if name == "approval_required")
        assert required["id"] == call_id and required["source"] == "time"
        result = next(data for name, _, data in got if name == "tool_result")
        assert result["status"] == ("succeeded" if decision == "approve" else "denied")
        again = await client.post(f"/api/tool-calls/{call_id}/approve")
        assert again.status_code == 404 and "waiting" in again.json()["detail"]


@pytest.mark.parametrize("stream", [False, True])
async def test_v1_passes_a_clients_own_tools_through_and_its_tool_messages_back(
    app: tuple[Engine, httpx.AsyncClient], upstream: FakeUpstream, stream: bool
) -> None:
    _, client = app
    sdk = openai.AsyncOpenAI(base_url=f"{client.base_url}/v1", api_key="none", max_retries=0)
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                                "parameters": {"type": "object", "properties": {"city": {
                                                    "type": "string"}}}}}  # fmt: skip
    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas([("get_weather", {"city": "Oslo"})], ids=["w1"]),
               finish_reason="tool_calls"),
        Script(deltas=[*reasoning_content_deltas("Cold."), *content_deltas("It is -3 °C in Oslo.")]),
    ]  # fmt: skip
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in await sdk.chat.completions.create(model="fake-model", messages=question, tools=[weather],
                                                              stream=True):  # fmt: skip
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for item in choice.delta.tool_calls or []:
                call = calls.setdefault(item.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += item.id or ""
                call["name"] += (item.function.name or "") if item.function else ""
                call["arguments"] += (item.function.arguments or "") if item.function else ""
        assert finish == "tool_calls"
        [call] = calls.values()
    else:
        completion = await sdk.chat.completions.create(model="fake-model", messages=question, tools=[weather])
        assert completion.choices[0].finish_reason == "tool_calls"
        [item] = completion.choices[0].message.tool_calls or []
        call = {"id": item.id, "name": item.function.name, "arguments": item.function.arguments}
    assert (call["id"], call["name"], json.loads(call["arguments"])) == ("w1", "get_weather", {"city": "Oslo"})
    assert upstream.requests[0]["tools"] == [weather]

    follow_up = [
        *question,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "w1", "type": "function", "function": {"name": "get_weather", "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": "w1", "content": "-3 °C"},
    ]  # fmt: skip
    completion = await sdk.chat.completions.create(model="fake-model", messages=follow_up, tools=[weather])
    assert completion.choices[0].message.content == "It is -3 °C in Oslo."
    assert completion.choices[0].message.model_extra.get("reasoning_content") == "Cold."  # type: ignore[union-attr]
    sent = upstream.requests[1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "w1", "content": "-3 °C"}
    assert sent[-2]["tool_calls"][0]["id"] == "w1"
    await sdk.close()

    # both exchanges are stored like any other: the call handed to the client, then the same round with its result
    conversations = (await client.get("/api/conversations")).json()
    first, second = [(await client.get(f"/api/conversations/{c['id']}")).json() for c in reversed(conversations[:2])]
    asked = first["messages"][-1]
    kinds = [(e["kind"], e.get("status")) for e in asked["events"]]
    assert ("tool_call_started", None) in kinds and kinds[-1] == ("tool_result", "sent_to_client")
    answered = second["messages"][-1]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant"]
    assert answered["content"] == "It is -3 °C in Oslo." and answered["status"] == "complete"
    result = next(e for e in answered["events"] if e["kind"] == "tool_result")
    assert (result["call_id"], result["status"], result["result"]) == ("w1", "succeeded", "-3 °C")
    assert answered["events"][-1] == {"kind": "text_delta", "text": "It is -3 °C in Oslo.",
                                      "seq": answered["events"][-1]["seq"]}  # fmt: skip


async def test_v1_stores_earlier_client_tool_rounds_as_one_assistant_turn_that_a_page_regenerate_sends_back(
    app: tuple[Engine, httpx.AsyncClient], upstream: FakeUpstream
) -> None:
    engine, client = app
    calls = [{"id": "h1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Look x up."},
        {"role": "assistant", "content": "Looking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "h1", "content": "x is 1"},
        {"role": "assistant", "content": "x is 1."},
        {"role": "user", "content": "Thanks!"},
    ]
    upstream.scripts = [Script(deltas=content_deltas("Welcome."))]
    response = await client.post("/v1/chat/completions", json={"model": "fake-model", "messages": history})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Welcome."
    assert upstream.requests[0]["messages"][3] == {"role": "tool", "tool_call_id": "h1", "content": "x is 1"}
    conversation = (await client.get(f"/api/conversations/{response.headers['x-parley-conversation-id']}")).json()
    assert conversation["system_prompt"] == "Be brief."
    user, turn, thanks, welcome = conversation["messages"]
    assert (turn["role"], turn["content"]) == ("assistant", "Looking.x is 1.")
    assert [e["kind"] for e in turn["events"]][-1] == "text_delta"
    # a regenerate in Parley sends the stored rounds back in the protocol's shape
    upstream.scripts = [Script(deltas=content_deltas("Again."))]
    variant = await engine.regenerate(welcome["id"])
    await engine.live(variant.id).wait()  # type: ignore[arg-type, union-attr]
    again = upstream.requests[-1]["messages"]
    assert again[1:6] == [
        {"role": "user", "content": "Look x up."},
        {"role": "assistant", "content": "Looking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "h1", "content": "x is 1"},
        {"role": "assistant", "content": "x is 1."},
        {"role": "user", "content": "Thanks!"},
    ]


def test_sigkill_while_a_call_waits_for_approval_keeps_the_steps_and_the_restart_marks_it_interrupted(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(MCP_TIME))
    upstream.scripts = [
        Script(deltas=[*content_deltas("Let me look. "), *openai_tool_call_deltas(
            [("time__get_current_time", {"timezone": "UTC"})], ids=["k9"])], finish_reason="tool_calls"),
    ]  # fmt: skip
    data_dir, port = tmp_path / "data", free_port()
    env = {"PARLEY_CHECKPOINT_INTERVAL": "0.2", "PARLEY_MCP_CONFIG": str(config)}

    def waiting(store: Store) -> bool:
        path = store.path(1) if store.list_conversations() else []
        events = path[1].events if len(path) == 2 else None
        return bool(events) and any(e["kind"] == "approval_required" for e in events)

    with serve(tmp_path, upstream, port, **env) as app:
        base = f"http://127.0.0.1:{port}"
        conversation = httpx.post(f"{base}/api/conversations", json={}).json()
        with httpx.stream("POST", f"{base}/api/conversations/{conversation['id']}/messages",
                          json={"content": "What time is it?"}, timeout=30) as response:  # fmt: skip
            for line in response.iter_lines():
                if line == "event: approval_required":
                    break
            with opened_store(data_dir) as store:
                wait_until(lambda: waiting(store), timeout=10, what="a checkpoint with the approval step")
            app.kill()
            app.wait(5)
    with serve(tmp_path, upstream, port, **env):
        with opened_store(data_dir) as store:
            message = store.path(1)[1]
        assert message.status == "interrupted" and message.content == "Let me look. "
        [text, group] = parts(content_of(message))
        assert text.text == "Let me look. "
        [call] = group.calls
        assert call.name == "time__get_current_time" and call.status == ToolStatus.cancelled
        detail = httpx.get(f"http://127.0.0.1:{port}/api/messages/{message.id}").json()
        assert detail["status"] == "interrupted" and detail["events"][-1]["kind"] == "approval_required"
