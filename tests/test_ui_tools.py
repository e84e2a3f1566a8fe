"""Tools on the pages with NiceGUI's simulated user, on the real app.py, the fake upstream and a real SQLite file: an
answer's steps (stored and live), the approval card's decision, the settings dialog's Tools section and the admin's
per-user tools."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nicegui.testing import User
from nicegui.testing.user_simulation import user_simulation

from chat.engine.events import (
    ApprovalRequired,
    ReasoningDelta,
    ReasoningEnded,
    TextDelta,
    ToolArgumentsDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolResult,
    ToolStatus,
    content_of,
    numbered,
    parts,
    to_json,
)
from chat.store import Conversation, Status, Store
from chat.ui.streaming_message import step_lines, thought_for

from .browser import ROOT
from .fake_upstream import FakeUpstream, Script, openai_tool_call_deltas
from .helpers import PASSWORD, add_users, handlers_done, opened_store, send, stored_path, wait_for


def numbered_json(events: list) -> list[dict]:
    """``events`` numbered as a log numbers them, as ``to_json`` dicts (what ``Message.events`` holds)."""
    position, result = 0, []
    for event in events:
        position += event.size
        result.append(to_json(numbered(event, position)))
    return result


STEPS = [
    ReasoningDelta("The user wants 6 times 7 and the time."),
    ReasoningEnded(2.6),
    ToolCallStarted("call_1", "calculator", "builtin", 0.5),
    ToolArgumentsDelta("call_1", '{"expression": "6*7"}'),
    ToolCallReady("call_1", "calculator", '{"expression": "6*7"}', {"expression": "6*7"}),
    ToolCallStarted("call_2", "time__get_current_time", "time", 0.6),
    ToolCallReady("call_2", "time__get_current_time", "{}", {}),
    ToolResult("call_1", ToolStatus.succeeded, "42", at=0.7, duration=0.4),
    ToolResult("call_2", ToolStatus.failed, "The MCP server 'time' is down.", is_error=True, at=0.8),
    TextDelta("It is 42; the clock is down."),
]


def store_answer(store: Store, events: list[dict]) -> int:
    """A conversation with one exchange whose answer is ``events``; returns the conversation's id."""
    text = "".join(e["text"] for e in events if e["kind"] == "text_delta")
    conversation = Conversation(title="Tools", model="fake-model", temperature=0.7)
    _, answer = store.add_exchange(None, "6*7, and the time?", model="fake-model", temperature=0.7,
                                   new_conversation=conversation)  # fmt: skip
    assert answer.id is not None
    store.finish_message(answer.id, content=text, events=events, status=Status.complete, finish_reason="stop")
    return answer.conversation_id


def test_step_lines_say_each_step() -> None:
    lines = step_lines(parts([numbered(e, 0) for e in STEPS]))
    assert lines == [
        "Thought for 3 s",
        "calculator · built-in · done · 0.4 s",
        "time__get_current_time · time (MCP server) · failed",
    ]
    assert thought_for(0.4) == "Thought for a moment"
    waiting = [ToolCallStarted("c", "ask_me", "docs"), ApprovalRequired("c", "ask_me", "docs", 1e10)]
    assert step_lines(parts(waiting)) == ["ask_me · docs (MCP server) · waiting for approval"]


async def test_stored_answer_shows_text_and_steps(user: User, app_env: Path) -> None:
    await user.open("/")  # the app has migrated its database
    with opened_store(app_env) as store:
        conversation_id = store_answer(store, numbered_json(STEPS))
        stored = store.path(conversation_id)[1]
        assert [type(e).__name__ for e in content_of(stored)][-1] == "TextDelta"
    await user.open(f"/c/{conversation_id}")
    await user.should_see("It is 42; the clock is down.")
    await user.should_see("Thought for 3 s")
    await user.should_see("calculator · built-in · done · 0.4 s")
    await user.should_see("time__get_current_time · time (MCP server) · failed")
    body = user.find(marker="assistant-message").elements.pop()
    assert body.props["events"] == stored.events  # the browser gets the stored events to render
    assert body.text == "It is 42; the clock is down."
    # a plain answer sends no events at all
    with opened_store(app_env) as store:
        conversation = Conversation(title="Plain", model="fake-model", temperature=0.7)
        _, plain = store.add_exchange(None, "hi", model="fake-model", temperature=0.7, new_conversation=conversation)
        assert plain.id is not None
        store.finish_message(plain.id, content="Hello.", status=Status.complete)
    await user.open(f"/c/{plain.conversation_id}")
    await user.should_see("Hello.")
    assert "events" not in user.find(marker="assistant-message").elements.pop().props


async def test_live_tool_call_shows_its_step(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas([("calculator", {"expression": "6*7"})], ids=["call_a"]),
               finish_reason="tool_calls"),
        Script(pieces=["Six times seven ", "is 42."], rate=5),
    ]  # fmt: skip
    await user.open("/")
    await send(user, "What is 6*7?")
    await wait_for(lambda: len(stored_path(app_env)) == 2)
    await user.open("/c/1")
    await user.should_see("calculator · built-in · done", retries=100)
    await wait_for(lambda: stored_path(app_env)[1].status == Status.complete)
    await user.open("/c/1")
    await user.should_see("Six times seven is 42.")
    await user.should_see("calculator · built-in · done")
    answer = stored_path(app_env)[1]
    kinds = [e["kind"] for e in answer.events or []]
    assert kinds[:2] == ["tool_call_started", "tool_call_delta"] and "tool_result" in kinds
    assert kinds[-1] == "text_delta"


@pytest.fixture
def mcp_env(app_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``app_env`` plus the ``time`` MCP server (mcp-server-time, a real subprocess), whose tools ask first."""
    config = tmp_path / "mcp.json"
    command = str(Path(sys.executable).parent / "mcp-server-time")
    config.write_text(json.dumps({"mcpServers": {"time": {"command": command, "args": ["--local-timezone", "UTC"]}}}))
    monkeypatch.setenv("PARLEY_MCP_CONFIG", str(config))
    return app_env


async def test_approval_decision_goes_to_the_engine(
    mcp_env: Path, caplog: pytest.LogCaptureFixture, upstream: FakeUpstream
) -> None:
    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas([("time__get_current_time", {"timezone": "UTC"})], ids=["call_t"]),
               finish_reason="tool_calls"),
        Script(pieces=["Done."]),
    ]  # fmt: skip
    async with user_simulation(main_file=ROOT / "app.py") as user:
        await user.open("/")
        await send(user, "What time is it?")
        await wait_for(lambda: len(stored_path(mcp_env)) == 2)
        await user.open("/c/1")
        await user.should_see("time__get_current_time · time (MCP server) · waiting for approval", retries=100)
        body = user.find(marker="assistant-message")
        # a decision for a call that does not wait is said, and nothing runs
        async with handlers_done():
            body.trigger("decide", {"call_id": "no-such-call", "approve": True, "always": False})
        await user.should_see("Tool call 'no-such-call' not found")
        async with handlers_done():
            body.trigger("decide", {"call_id": "call_t", "approve": False, "always": False})
        await wait_for(lambda: stored_path(mcp_env)[1].status == Status.complete, timeout=20)
        await user.open("/c/1")
        await user.should_see("time__get_current_time · time (MCP server) · denied")
        await user.should_see("Done.")
    assert not [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]


async def test_settings_lists_tools_and_saves_the_switches(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    await user.open("/")
    await send(user, "hello")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].status == Status.complete)
    await user.open("/c/1")
    user.find(marker="settings").click()
    await user.should_see(marker="tools-section")
    await user.should_see("calculator")
    await user.should_see("current_time")
    await user.should_not_see(marker="tools-off")
    switch = user.find(marker="tool-switch-calculator").elements.pop()
    assert switch.value is True  # the default: every tool on
    switch.set_value(False)
    async with handlers_done():
        user.find(marker="settings-save").click()
    await user.should_see("Settings saved")
    with opened_store(app_env) as store:
        assert store.get_conversation(1).tools == ["current_time"]
    user.find(marker="settings").click()
    await user.should_see(marker="tools-section")
    assert user.find(marker="tool-switch-calculator").elements.pop().value is False
    assert user.find(marker="tool-switch-current_time").elements.pop().value is True
    # the next answer offers only the tools left on
    user.find("Cancel").click()
    await send(user, "again")
    await wait_for(lambda: len(stored_path(app_env)) == 4 and stored_path(app_env)[3].status == Status.complete)
    offered = [tool["function"]["name"] for tool in upstream.requests[-1].get("tools", [])]
    assert offered == ["current_time"]


@pytest.fixture
async def team(app_env: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """The simulated user on app.py in team mode: ann (admin) and bob exist; nobody is logged in yet."""
    app_env.mkdir(parents=True, exist_ok=True)
    add_users(app_env, "ann", "bob", admins=("ann",))
    async with user_simulation(main_file=ROOT / "app.py") as simulated:
        yield simulated
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(f"unexpected ERROR logs: {[r.getMessage() for r in errors]}", pytrace=False)


async def log_in(user: User, name: str) -> None:
    user.http_client.cookies.clear()
    response = await user.http_client.post("/login", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text


async def test_admin_sets_a_users_tools(team: User, app_env: Path) -> None:
    await log_in(team, "ann")
    await team.open("/admin")
    with team.scope(marker="user-bob"):
        team.find(marker="user-tools-edit").click()
    await team.should_see(marker="all-tools")
    team.find(marker="all-tools").click()  # off: choose some
    team.find(marker="allowed-tools").elements.pop().set_value(["calculator"])
    async with handlers_done():
        team.find(marker="save-tools").click()
    await team.should_see("Tools of bob saved")
    with opened_store(app_env) as store:
        assert store.user_by_name("bob").allowed_tools == frozenset({"calculator"})  # type: ignore[union-attr]
    with team.scope(marker="user-bob"):
        await team.should_see("calculator")
    # bob's settings list only the tool he may use
    await log_in(team, "bob")
    await team.open("/")
    await send(team, "hello")
    await wait_for(lambda: stored_path(app_env) and stored_path(app_env)[-1].status == Status.complete)
    await team.open("/c/1")
    team.find(marker="settings").click()
    await team.should_see(marker="tool-switch-calculator")
    await team.should_not_see(marker="tool-switch-current_time")
    # and back to every tool
    await log_in(team, "ann")
    await team.open("/admin")
    with team.scope(marker="user-bob"):
        team.find(marker="user-tools-edit").click()
    await team.should_see(marker="all-tools")
    team.find(marker="all-tools").click()
    team.find(marker="save-tools").click()

    def bobs_tools() -> str | None:
        with opened_store(app_env) as store:
            return store.user_by_name("bob").tools  # type: ignore[union-attr]

    await wait_for(lambda: bobs_tools() is None, what="bob's tools to be every tool again")
    with team.scope(marker="user-bob"):
        await team.should_see("all")
