"""Nothing blocks the event loop: no database call from a page, a route or the engine runs on the loop's thread.

The loop serves every stream of the process; a database call made on it (cheap on a local SQLite file, tens of
milliseconds on PostgreSQL across a network) would stall all of them. The store used here records every call made from
a thread that runs an event loop; the tests drive the pages (NiceGUI's simulated user), the engine and the HTTP API
through everything they do, then assert that the record is empty. Deterministic: it checks where each call runs, not
how long anything took.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from nicegui.testing.user_simulation import user_simulation

import chat.server
from chat.api.rest import register_rest
from chat.engine import Engine
from chat.provider import Provider
from chat.store import Store

from .browser import ROOT
from .fake_upstream import FakeUpstream, Script
from .helpers import send, stored_path, wait_for


def on_event_loop() -> bool:
    """True when called from a thread that is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class WatchedStore(Store):
    """A ``Store`` that records the name of every method called on an event loop's thread while ``watching``."""

    watching = False
    on_loop: list[str] = []  # noqa: RUF012  # shared by every instance: the app builds its own

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if name.startswith("_") or not inspect.ismethod(value) or not WatchedStore.watching:
            return value

        @functools.wraps(value)
        def watched(*args, **kwargs):
            if on_event_loop():
                WatchedStore.on_loop.append(name)
            return value(*args, **kwargs)

        return watched


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch):
    """Make the app build a ``WatchedStore``; yields the record (empty at the start)."""
    WatchedStore.on_loop = []
    WatchedStore.watching = False
    monkeypatch.setattr(chat.server, "Store", WatchedStore)
    yield WatchedStore
    WatchedStore.watching = False


async def test_the_pages_never_call_the_database_on_the_event_loop(
    app_env: Path, upstream: FakeUpstream, watched: type[WatchedStore], caplog: pytest.LogCaptureFixture
) -> None:
    async with user_simulation(main_file=ROOT / "app.py") as user:
        watched.watching = True  # after start-up (migrations, recovery: before serving)
        await user.open("/")
        upstream.script = Script(pieces=["first ", "answer"])
        await send(user, "Hello")
        await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].content == "first answer")
        await user.open("/c/1")
        await user.should_see("first answer")
        upstream.script = Script(pieces=["second"])
        user.find(marker="regenerate-menu").click()
        user.find(marker="regenerate").click()
        await wait_for(lambda: stored_path(app_env)[-1].content == "second")
        await user.should_see(marker="variant-previous")
        user.find(marker="variant-previous").click()
        await wait_for(lambda: stored_path(app_env)[-1].content == "first answer")
        with user.scope(marker="conversation-list"):
            user.find(marker="conversation-menu").click()
            user.find(marker="rename-conversation").click()
        await user.should_see(marker="rename-input")
        user.find(marker="rename-input").clear().type("Renamed")
        user.find(marker="rename-save").click()
        await user.should_see(marker="conversation-heading", content="Renamed", retries=30)
        user.find(marker="settings").click()
        await user.should_see(marker="settings-save")
        user.find(marker="settings-save").click()
        await user.should_see("Settings saved")
        await user.open("/c/1")  # the page of a conversation with variants, loaded again
        await user.should_see("Renamed")
        watched.watching = False
    assert watched.on_loop == []
    assert not [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR]


async def test_the_engine_and_the_api_never_call_the_database_on_the_event_loop(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    store = WatchedStore(f"sqlite:///{tmp_path / 'parley.db'}")
    store.migrate()
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model", checkpoint_interval=0.05)
    app = FastAPI()
    register_rest(app, engine, store, heartbeat=15)
    WatchedStore.on_loop = []
    WatchedStore.watching = True
    try:
        upstream.script = Script(tokens=30, rate=200)  # long enough for checkpoints
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley") as client:
            conversation = (await client.post("/api/conversations", json={"title": "API"})).json()["id"]
            async with aconnect_sse(client, "POST", f"/api/conversations/{conversation}/messages",
                                    json={"content": "Hi"}) as source:  # fmt: skip
                events = [sse.event async for sse in source.aiter_sse()]
            assert events[-1] == "done"
            await client.patch(f"/api/conversations/{conversation}", json={"title": "Renamed"})
            assert (await client.get(f"/api/conversations/{conversation}")).json()["title"] == "Renamed"
            async with aconnect_sse(client, "POST", "/api/messages/2/regenerate", json={}) as source:
                assert [sse.event async for sse in source.aiter_sse()][-1] == "done"
            async with aconnect_sse(client, "GET", "/api/messages/2/stream") as source:
                assert [sse.event async for sse in source.aiter_sse()][-1] == "done"
            await client.post("/api/messages/3/cancel")
            generation = await engine.answer_unstored([{"role": "user", "content": "not stored"}])
            await generation.wait()
            await engine.select_variant(2)
            await client.delete(f"/api/conversations/{conversation}")
    finally:
        WatchedStore.watching = False
        await engine.shutdown()
        await provider.close()
        store.close()
    assert WatchedStore.on_loop == []


async def test_the_record_sees_a_call_on_the_loop(tmp_path: Path) -> None:
    """The check can fail: a store call made on the loop is recorded."""
    store = WatchedStore(f"sqlite:///{tmp_path / 'parley.db'}")
    store.migrate()
    WatchedStore.on_loop = []
    WatchedStore.watching = True
    try:
        store.list_conversations()
        await asyncio.to_thread(store.list_conversations)
    finally:
        WatchedStore.watching = False
        store.close()
    assert WatchedStore.on_loop == ["list_conversations"]
