"""Two replicas' engines in one test process, each with its own connection to a real ``redis-server``, on one
database (SQLite and PostgreSQL): a tool call waiting on A is decided on B; an answer with steps read on B is A's, event
for event; a Stop whose notification is lost still reaches A; another user's call is not B's to decide."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat.engine import Account, Engine
from chat.engine.engine import ToolCallNotWaiting
from chat.engine.events import ApprovalRequired, Finished, ToolResult, ToolStatus, content_of, is_content, replay
from chat.engine.replicas import Replicas
from chat.engine.tool_loop import ToolLimits, ToolLoop
from chat.provider import Provider
from chat.relay.redis_relay import RedisRelay, cancel_key
from chat.store import Status, Store
from chat.tools import Toolbox

from .fake_upstream import FakeUpstream, Script, content_deltas, openai_tool_call_deltas
from .helpers import wait_for
from .redis_server import RedisServer

MCP_TIME = {"mcpServers": {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}


@pytest.fixture
async def pair(
    store: Store, upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Engine]]:
    """Engines A and B, replicas of one another (leases of 1 s)."""
    redis_server.restart()
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(MCP_TIME))
    made = []
    for name in ("a", "b"):
        provider = Provider(upstream.base_url, "test-key", read_timeout=10)
        toolbox = Toolbox(mcp_config=config, call_timeout=20)
        engine = Engine(store, provider, default_model="fake-model", checkpoint_interval=0.2,
                        tools=ToolLoop(toolbox, store, ToolLimits()))  # fmt: skip
        engine.replicas = Replicas(engine, RedisRelay(redis_server.url, replica_id=name, lease_ttl=1.0))
        await engine.replicas.start()
        made.append((engine, provider, toolbox))
    yield made[0][0], made[1][0]
    for engine, provider, toolbox in made:
        await engine.shutdown()
        assert engine.replicas is not None
        await engine.replicas.close()
        await provider.close()
        await toolbox.aclose()


def asks_for_the_time(call_id: str) -> list[Script]:
    deltas = openai_tool_call_deltas([("time__get_current_time", {"timezone": "UTC"})], ids=[call_id])
    return [Script(deltas=deltas, finish_reason="tool_calls"), Script(deltas=content_deltas("It is noon in UTC."))]


async def test_a_call_waiting_on_a_is_decided_on_b_and_b_reads_every_step(
    pair: tuple[Engine, Engine], upstream: FakeUpstream
) -> None:
    a, b = pair
    upstream.scripts = asks_for_the_time("call_t1")
    _, answer = await a.send(None, "What time is it?")
    assert answer.id is not None
    generation = a.live(answer.id)
    assert generation is not None
    await wait_for(lambda: any(isinstance(e, ApprovalRequired) for e in generation.content), timeout=30)
    seen_on_b = []

    async def follow_on_b() -> None:
        async for event in b.follow(answer.id):  # type: ignore[arg-type]
            seen_on_b.append(event)

    follower = asyncio.create_task(follow_on_b())
    await wait_for(lambda: any(isinstance(e, ApprovalRequired) for e in seen_on_b), timeout=10)
    assert b.live(answer.id) is None  # B does not run it
    await b.decide("call_t1", True)  # on B, for A's answer
    stored = await generation.wait()
    await asyncio.wait_for(follower, 10)
    [result] = [e for e in content_of(stored) if isinstance(e, ToolResult)]
    assert result.status == ToolStatus.succeeded and stored.content == "It is noon in UTC."
    content_on_b = [e for e in seen_on_b if is_content(e)]
    stored_events = [e for e in replay(stored) if is_content(e)]
    assert "".join(getattr(e, "text", "") for e in content_on_b) == "".join(
        getattr(e, "text", "") for e in stored_events
    )
    assert [type(e) for e in content_on_b if not hasattr(e, "text")] == [type(e) for e in stored_events
                                                                         if not hasattr(e, "text")]  # fmt: skip
    assert isinstance(seen_on_b[-1], Finished) and seen_on_b[-1].message.status == Status.complete


async def test_only_the_owner_decides_from_another_replica(
    pair: tuple[Engine, Engine], upstream: FakeUpstream, store: Store
) -> None:
    a, b = pair
    ann = await asyncio.to_thread(store.create_user, "ann", "x")
    bob = await asyncio.to_thread(store.create_user, "bob", "x")
    upstream.scripts = asks_for_the_time("call_t2")
    _, answer = await a.send(None, "Time?", account=Account(ann.id))
    generation = a.live(answer.id)  # type: ignore[arg-type]
    assert generation is not None
    await wait_for(lambda: "call_t2" in generation.pending, timeout=30)
    await asyncio.sleep(0)  # the waiting call's key is written in the next turn
    with pytest.raises(ToolCallNotWaiting):
        await b.decide("call_t2", True, account=Account(bob.id))
    with pytest.raises(ToolCallNotWaiting):
        await b.decide("no-such-call", True, account=Account(ann.id))
    await wait_for_async(lambda: b.decide("call_t2", False, account=Account(ann.id)))
    stored = await generation.wait()
    [result] = [e for e in content_of(stored) if isinstance(e, ToolResult)]
    assert result.status == ToolStatus.denied


async def wait_for_async(attempt, timeout: float = 10) -> None:
    """Retry ``attempt()`` until it does not raise ToolCallNotWaiting (the waiting call's key lands in Redis)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await attempt()
            return
        except ToolCallNotWaiting:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_a_stop_whose_notification_is_lost_still_reaches_the_owner(
    pair: tuple[Engine, Engine], upstream: FakeUpstream
) -> None:
    a, b = pair
    upstream.script = Script(tokens=400, rate=20)
    _, answer = await a.send(None, "Tell me a long story")
    generation = a.live(answer.id)  # type: ignore[arg-type]
    assert generation is not None and b.replicas is not None
    await wait_for(lambda: generation.position > 10)
    await b.replicas.relay.set_json(cancel_key(answer.id), {"by": "b"}, ttl=60)  # type: ignore[arg-type]  # no publish
    stored = await asyncio.wait_for(generation.wait(), 10)  # A looks at the keys when it renews its leases
    assert stored.status == Status.cancelled and 0 < len(stored.content) < len(upstream.expected_text(400))
