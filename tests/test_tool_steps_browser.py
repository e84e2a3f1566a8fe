"""An answer's steps in a real headless Chromium: reasoning, tool calls (stored and live) and approval cards.

The whole app (app.py in a subprocess) on the fake upstream. A stored answer is written into the app's database
through the Store (as the engine stores one: ``Message.content`` its text, ``Message.events`` its content events);
a live one is asked of the fake upstream, whose script streams tool call deltas.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chat.engine.events import (
    ReasoningDelta,
    ReasoningEnded,
    TextDelta,
    ToolArgumentsDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolResult,
    ToolStatus,
    numbered,
    to_json,
)
from chat.store import Conversation, Role, Status, Store

from .browser import ROOT, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script, openai_tool_call_deltas
from .helpers import opened_store

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
HOSTILE = "<b>html</b> & <img src=x onerror=alert(1)>"


def stored_answer_events(result: str = HOSTILE) -> list[dict]:
    """Reasoning, then two tool calls of one round (a calculator and a clock), then the answer's text; numbered."""
    events = [
        ReasoningDelta("The user wants **6 times 7** and the time."),
        ReasoningEnded(12.4),
        ToolCallStarted("call_1", "calculator", "builtin", 0.5),
        ToolArgumentsDelta("call_1", '{"expression": "6*7"}'),
        ToolCallReady("call_1", "calculator", '{"expression": "6*7"}', {"expression": "6*7"}),
        ToolCallStarted("call_2", "time__get_current_time", "time", 0.6),
        ToolArgumentsDelta("call_2", '{"timezone": "UTC"}'),
        ToolCallReady("call_2", "time__get_current_time", '{"timezone": "UTC"}', {"timezone": "UTC"}),
        ToolResult("call_1", ToolStatus.succeeded, "42", at=0.7, duration=0.4),
        ToolResult("call_2", ToolStatus.succeeded, result, at=0.8, duration=0.2),
        TextDelta("It is **42**."),
    ]
    position, numbered_events = 0, []
    for event in events:
        position += event.size
        numbered_events.append(to_json(numbered(event, position)))
    return numbered_events


def store_rich_answer(store: Store, events: list[dict], question: str = "What is 6*7, and the time?") -> int:
    """Store a conversation with one exchange whose answer is ``events``; returns the conversation's id."""
    text = "".join(e["text"] for e in events if e["kind"] == "text_delta")
    conversation = Conversation(title="Tools", model="fake-model", temperature=0.7)
    _, answer = store.add_exchange(None, question, model="fake-model", temperature=0.7, new_conversation=conversation)
    assert answer.id is not None
    store.finish_message(answer.id, content=text, events=events, status=Status.complete, finish_reason="stop")
    return answer.conversation_id


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app_url(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    port = free_port()
    with serve(tmp_path, upstream, port, PARLEY_CHECKPOINT_INTERVAL="0.2"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page(app_url: str) -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        context.close()
        assert not errors, errors


def test_stored_answer_shows_its_steps(page: Page, app_url: str, data_dir: Path) -> None:
    with opened_store(data_dir) as store:
        conversation_id = store_rich_answer(store, stored_answer_events())
        assert [m.role for m in store.path(conversation_id)] == [Role.user, Role.assistant]
    page.goto(f"{app_url}/c/{conversation_id}")
    body = page.locator(".parley-message-body").last
    # the reasoning block: folded, says how long it thought, its Markdown rendered (sanitized)
    reasoning = body.locator("details.parley-reasoning")
    expect(reasoning).to_have_count(1)
    expect(reasoning.locator("summary")).to_have_text("psychologyThought for 12 s")
    assert reasoning.evaluate("el => el.open") is False
    expect(reasoning.locator(".parley-reasoning-text strong")).to_have_text("6 times 7")
    # the two calls are one group, in order, before the answer's text
    rows = body.locator(".parley-tool-group details.parley-tool-call")
    expect(rows).to_have_count(2)
    assert body.locator(".parley-tool-group").count() == 1
    first, second = rows.nth(0), rows.nth(1)
    expect(first.locator(".parley-tool-name")).to_have_text("calculator")
    expect(first.locator(".parley-tool-source")).to_have_text("built-in")
    expect(first.locator(".parley-chip")).to_have_text("done")
    expect(first.locator(".parley-tool-duration")).to_have_text("0.4 s")
    expect(second.locator(".parley-tool-source")).to_have_text("time (MCP server)")
    assert all(row.evaluate("el => el.open") is False for row in (first, second))
    # arguments pretty-printed, the result as literal text: no element made from the tool's output
    first.locator("summary").click()
    expect(first.locator(".parley-tool-args")).to_have_text('{\n  "expression": "6*7"\n}')
    expect(first.locator(".parley-tool-result")).to_have_text("42")
    second.locator("summary").click()
    result = second.locator(".parley-tool-result")
    expect(result).to_have_text(HOSTILE)
    assert result.evaluate("el => el.children.length") == 0
    assert body.locator(".parley-tool-group b, .parley-tool-group img").count() == 0
    # the text after the steps is its own Markdown segment, last
    kinds = body.locator(".parley-parts > *").evaluate_all("els => els.map((el) => el.className)")
    assert kinds == ["parley-reasoning", "parley-tool-group", "parley-md"], kinds
    expect(body.locator(".parley-parts > .parley-md strong")).to_have_text("42")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "tool-steps-desktop-light.png", full_page=True)
    page.emulate_media(color_scheme="dark")  # the theme's "auto" follows the system
    expect(page.locator("body.body--dark")).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "tool-steps-desktop-dark.png", full_page=True)
    # Copy copies the answer's text only
    assert page.evaluate("() => getElement([...document.querySelectorAll('.parley-message-body')].pop()).buffer") == (
        "It is **42**."
    )


def test_long_result_is_folded_behind_show_all(page: Page, app_url: str, data_dir: Path) -> None:
    long = "\n".join(f"line {i}" for i in range(60))
    with opened_store(data_dir) as store:
        conversation_id = store_rich_answer(store, stored_answer_events(result=long))
    page.goto(f"{app_url}/c/{conversation_id}")
    row = page.locator("details.parley-tool-call").nth(1)
    row.locator("summary").click()
    result = row.locator(".parley-tool-result")
    expect(result).to_have_class("parley-tool-result parley-folded")
    show = row.get_by_role("button", name="Show all")
    expect(show).to_have_attribute("aria-expanded", "false")
    folded_height = result.evaluate("el => el.clientHeight")
    show.click()
    expect(row.get_by_role("button", name="Show less")).to_have_attribute("aria-expanded", "true")
    expect(result).to_have_class("parley-tool-result")
    assert result.evaluate("el => el.clientHeight") > folded_height
    assert result.text_content() == long


def _engine_has_tool_loop() -> bool:
    text = (ROOT / "chat" / "engine" / "engine.py").read_text()
    return "async def decide" in text


live = pytest.mark.skipif(not _engine_has_tool_loop(), reason="needs the engine's tool loop (Engine.decide)")


def ask(page: Page, text: str) -> None:
    composer = page.get_by_placeholder("Message Parley")
    composer.fill(text)
    composer.press("Enter")


@live
def test_live_tool_call_then_answer_streams(page: Page, app_url: str, upstream: FakeUpstream) -> None:
    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas([("calculator", {"expression": "6*7"})], ids=["call_a"]),
               finish_reason="tool_calls"),
        Script(pieces=["The answer ", "is 42."]),
    ]  # fmt: skip
    page.goto(app_url + "/")
    ask(page, "What is 6*7?")
    row = page.locator("details.parley-tool-call")
    expect(row.locator(".parley-tool-name")).to_have_text("calculator")
    expect(row.locator(".parley-chip")).to_have_text("done")
    expect(row.locator(".parley-tool-result")).to_have_text("42")
    expect(row.locator(".parley-tool-args")).to_have_text('{\n  "expression": "6*7"\n}')
    body = page.locator(".parley-message-body").last
    expect(body.locator(".parley-parts > .parley-md").last).to_have_text("The answer is 42.")
    expect(body).to_have_attribute("aria-busy", "false")
    kinds = body.locator(".parley-parts > *").evaluate_all("els => els.map((el) => el.className)")
    assert kinds == ["parley-tool-group", "parley-md"], kinds
    # the model was told the result
    assert any(m.get("role") == "tool" and m.get("content") == "42" for m in upstream.requests[-1]["messages"])
    # after a reload the stored answer shows the same steps
    page.reload()
    expect(page.locator("details.parley-tool-call .parley-chip")).to_have_text("done")
    expect(page.locator(".parley-message-body").last.locator(".parley-parts > .parley-md").last).to_have_text(
        "The answer is 42."
    )


@pytest.fixture
def mcp_app_url(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    """The app with the ``time`` MCP server (mcp-server-time, a real subprocess), whose tools ask before running."""
    config = tmp_path / "mcp.json"
    command = str(Path(sys.executable).parent / "mcp-server-time")
    config.write_text(json.dumps({"mcpServers": {"time": {"command": command, "args": ["--local-timezone", "UTC"]}}}))
    port = free_port()
    with serve(tmp_path, upstream, port, PARLEY_MCP_CONFIG=str(config)):
        yield f"http://127.0.0.1:{port}"


@live
def test_approval_card_runs_the_call(mcp_app_url: str, upstream: FakeUpstream) -> None:
    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas([("time__get_current_time", {"timezone": "UTC"})], ids=["call_b"]),
               finish_reason="tool_calls"),
        Script(pieces=["It is noon somewhere."]),
    ]  # fmt: skip
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page, other = context.new_page(), context.new_page()
        errors: list[str] = []
        for tab in (page, other):
            tab.set_default_timeout(20_000)
            tab.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(mcp_app_url + "/")
        ask(page, "What time is it?")
        card = page.locator(".parley-approval")
        expect(card).to_have_count(1)
        expect(card.locator(".parley-approval-title")).to_contain_text("time__get_current_time")
        expect(card.locator(".parley-approval-source")).to_have_text("Source: time (MCP server)")
        expect(card.locator(".parley-approval-args")).to_have_text('{\n  "timezone": "UTC"\n}')
        expect(card.locator(".parley-approval-deadline")).to_contain_text("Waits until")
        expect(page.locator("details.parley-tool-call .parley-chip")).to_have_text("waiting for approval")
        # a second tab on the same conversation shows the same card
        page.wait_for_url("**/c/*")
        other.goto(page.url)
        other_card = other.locator(".parley-approval")
        expect(other_card).to_have_count(1)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "tool-approval-desktop-light.png", full_page=True)
        card.get_by_role("button", name="Approve", exact=True).click()
        # the card goes in every tab; the call runs and the answer goes on
        expect(card).to_have_count(0)
        expect(other_card).to_have_count(0)
        for tab in (page, other):
            expect(tab.locator("details.parley-tool-call .parley-chip")).to_have_text("done")
            expect(tab.locator("details.parley-tool-call .parley-tool-result")).to_contain_text("UTC")
            body = tab.locator(".parley-message-body").last
            expect(body.locator(".parley-parts > .parley-md").last).to_have_text("It is noon somewhere.")
        context.close()
        assert not errors, errors


def test_plain_answer_streams_as_one_text_segment(page: Page, app_url: str, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=["Plain ", "**text** ", "only."], rate=20)
    page.goto(app_url + "/")
    ask(page, "Hello")
    body = page.locator(".parley-message-body").last
    expect(body).to_have_attribute("aria-busy", "false")
    expect(body.locator(".parley-parts > .parley-md")).to_have_text("Plain text only.")
    assert body.locator(".parley-parts > *").count() == 1  # nothing but the text
    assert page.evaluate("() => getElement([...document.querySelectorAll('.parley-message-body')].pop()).buffer") == (
        "Plain **text** only."
    )


@live
def test_reasoning_is_open_while_it_thinks_then_folds(page: Page, app_url: str, upstream: FakeUpstream) -> None:
    from .fake_upstream import content_deltas, reasoning_content_deltas

    # the model thinks, then hangs: the block stays open and streaming until the reader stops the answer
    upstream.script = Script(deltas=reasoning_content_deltas("Let me *think* about it."), stall_after=5)
    page.goto(app_url + "/")
    ask(page, "Think first")
    reasoning = page.locator("details.parley-reasoning")
    expect(reasoning).to_have_attribute("open", "")
    expect(reasoning.locator("summary")).to_contain_text("Thinking…")
    expect(reasoning.locator(".parley-reasoning-text")).to_have_text("Let me think about it.")
    expect(reasoning.locator(".parley-reasoning-text em")).to_have_text("think")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".parley-message-body").last).to_have_attribute("aria-busy", "false")
    # the next answer thinks, then answers: its block folds once the text starts
    upstream.script = Script(deltas=[*reasoning_content_deltas("Short thought."), *content_deltas("The answer.")])
    ask(page, "Again")
    last = page.locator(".parley-message-body").last
    expect(last.locator(".parley-parts > .parley-md")).to_have_text("The answer.")
    expect(last.locator("details.parley-reasoning summary")).to_contain_text("Thought for")
    assert last.locator("details.parley-reasoning").evaluate("el => el.open") is False


def read_stream(url: str) -> list[str | dict]:
    """Every frame of an answer's WebSocket until it closes: text frames as str, binary frames as their JSON."""
    from websockets.sync.client import connect

    frames: list[str | dict] = []
    with connect(url, open_timeout=10) as socket:
        for frame in socket:
            frames.append(frame if isinstance(frame, str) else json.loads(frame))
    return frames


@live
def test_socket_sends_steps_as_binary_frames_and_resumes_after_them(app_url: str, upstream: FakeUpstream) -> None:
    import httpx

    upstream.scripts = [
        Script(deltas=openai_tool_call_deltas([("calculator", {"expression": "6*7"})], ids=["call_s"]),
               finish_reason="tool_calls"),
        Script(pieces=["It is ", "42."]),
    ]  # fmt: skip
    with httpx.Client(base_url=app_url, timeout=20) as client:
        conversation = client.post("/api/conversations", json={}).json()
        with client.stream("POST", f"/api/conversations/{conversation['id']}/messages", json={"content": "6*7?"}) as r:
            assert r.status_code == 200
            r.read()  # the whole answer, to its end
    ws = app_url.replace("http://", "ws://") + "/api/messages/2/stream"
    frames = read_stream(ws + "?after=0")
    steps = [f["event"] for f in frames if isinstance(f, dict) and "event" in f]
    assert [s["kind"] for s in steps][:1] == ["tool_call_started"] and steps[0]["name"] == "calculator"
    result = next(s for s in steps if s["kind"] == "tool_result")
    assert result["result"] == "42" and result["status"] == "succeeded"
    assert "".join(f for f in frames if isinstance(f, str)) == "It is 42."  # text frames: the text only
    end = frames[-1]["end"]  # type: ignore[index]
    assert end["length"] == len("It is 42.") and end["seq"] == result["seq"] + len("It is 42.")
    # resuming right after the result gives the text and the end, nothing doubled
    resumed = read_stream(ws + f"?after={result['seq']}")
    assert resumed[:-1] == ["It is 42."] and resumed[-1]["end"]["seq"] == end["seq"]  # type: ignore[index]
    # resuming inside the arguments gives the rest of them, then every later step
    started = steps[0]["seq"]
    middle = read_stream(ws + f"?after={started + 3}")
    first = middle[0]["event"]  # type: ignore[index]
    assert first["kind"] == "tool_call_delta" and first["text"] == '{"expression": "6*7"}'[3:]
