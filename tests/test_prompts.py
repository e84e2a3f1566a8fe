"""Saved prompts and presets: the store's rules (own + published, owner-checked, admins publish, one default) on
SQLite and PostgreSQL, and ``/api/prompts`` / ``/api/presets`` over real HTTP (uvicorn on 127.0.0.1) in team mode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chat.api.routes import register_api
from chat.auth import Accounts
from chat.auth.accounts import account_of
from chat.engine import Account, Engine
from chat.provider import Provider
from chat.refusals import InvalidRequest
from chat.store import NotFound, Store
from chat.store import prompts as library

from .browser import free_port
from .fake_upstream import FakeUpstream
from .helpers import wait_for

PASSWORD = "correct horse battery"


def test_placeholders_are_listed_once_in_order_and_filled() -> None:
    text = "Review {{ language }} code for {{focus}}; {{language}} only. {{ }} {x}"
    assert library.placeholders(text) == ["language", "focus"]
    filled = library.fill(text, {"language": "Rust", "focus": "{{language}}"})
    assert filled == "Review Rust code for {{language}}; Rust only. {{ }} {x}"


def test_prompts_are_own_and_published_and_only_the_owner_changes_them(store: Store) -> None:
    ann, bob = Account(1, "ann", is_admin=False), Account(2, "bob", is_admin=False)
    admin = Account(3, "root", is_admin=True)
    for user_id, name in ((1, "ann"), (2, "bob"), (3, "root")):
        assert store.create_user(name, "x", is_admin=user_id == 3).id == user_id
    mine = library.create_prompt(store, ann, name="  Translate   it ", text="Translate {{text}} to {{language}}")
    assert mine.name == "Translate it" and mine.user_id == 1
    library.create_prompt(store, bob, name="Bob's", text="secret")
    shared = library.create_prompt(store, admin, name="announce", text="For all", published=True)

    assert [p.name for p in library.list_prompts(store, ann)] == ["announce", "Translate it"]
    with pytest.raises(library.NotAdmin):
        library.create_prompt(store, ann, name="x", text="y", published=True)
    with pytest.raises(library.NotAdmin):
        library.update_prompt(store, ann, mine.id, published=True)
    for account, prompt_id in ((bob, mine.id), (ann, shared.id), (ann, 999_999)):
        with pytest.raises(NotFound):
            library.update_prompt(store, account, prompt_id, text="changed")
        with pytest.raises(NotFound):
            library.delete_prompt(store, account, prompt_id)
    with pytest.raises(InvalidRequest):
        library.update_prompt(store, ann, mine.id, name="   ")

    changed = library.update_prompt(store, ann, mine.id, text="Say {{it}}")
    assert changed.text == "Say {{it}}" and changed.name == "Translate it" and changed.updated_at >= mine.updated_at
    library.delete_prompt(store, ann, mine.id)
    assert [p.name for p in library.list_prompts(store, ann)] == ["announce"]
    assert [p.name for p in library.list_prompts(store, bob)] == ["announce", "Bob's"]


def test_a_user_has_one_default_preset(store: Store) -> None:
    ann, bob = Account(1, "ann", is_admin=False), Account(2, "bob", is_admin=False)
    store.create_user("ann", "x")
    store.create_user("bob", "x")
    first = library.create_preset(store, ann, name="Coder", system_prompt="Write code.", temperature=0.2,
                                  is_default=True)  # fmt: skip
    second = library.create_preset(store, ann, name="Poet", model="poet-model", tools=["calculator", "calculator"])
    bobs = library.create_preset(store, bob, name="Bob's", is_default=True)
    assert second.tools == ["calculator"] and second.model == "poet-model" and second.temperature is None
    assert library.default_preset(store, ann).id == first.id

    library.set_default_preset(store, ann, second.id)
    assert library.default_preset(store, ann).id == second.id
    assert [p.name for p in library.list_presets(store, ann)] == ["Poet", "Coder"]  # the default first
    assert library.default_preset(store, bob).id == bobs.id  # bob's is untouched
    with pytest.raises(NotFound):
        library.set_default_preset(store, bob, first.id)
    with pytest.raises(InvalidRequest):
        library.update_preset(store, ann, first.id, temperature=3)
    library.set_default_preset(store, ann, None)
    assert library.default_preset(store, ann) is None and library.default_preset(store, bob).id == bobs.id
    library.delete_preset(store, ann, first.id)
    assert [p.name for p in library.list_presets(store, ann)] == ["Poet"]


@contextlib.asynccontextmanager
async def served(engine: Engine, store: Store) -> AsyncIterator[str]:
    """``/api`` on uvicorn on the test's loop; yields its base URL."""
    app = FastAPI()
    register_api(app, engine, store, Accounts(store))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or serving.done(), what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def test_api_prompts_and_presets_in_team_mode(store: Store, upstream: FakeUpstream) -> None:
    accounts = Accounts(store, enabled=True)
    users = {name: accounts.add_user(name, PASSWORD, is_admin=name == "root") for name in ("ann", "bob", "root")}
    tokens = {name: accounts.create_token(account_of(user), "test").secret for name, user in users.items()}
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model")
    try:
        async with served(engine, store) as url:
            clients = {name: httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"})
                       for name, token in tokens.items()}  # fmt: skip
            ann, bob, root = clients["ann"], clients["bob"], clients["root"]
            async with ann, bob, root, httpx.AsyncClient(base_url=url) as nobody:
                assert (await nobody.get("/api/prompts")).status_code == 401

                made = await ann.post("/api/prompts", json={"name": "Fix", "text": "Fix {{code}} in {{lang}}"})
                assert made.status_code == 201, made.text
                prompt = made.json()
                assert prompt["placeholders"] == ["code", "lang"] and prompt["mine"] and not prompt["published"]
                assert (await ann.post("/api/prompts", json={"name": "x", "text": "y", "id": 3})).status_code == 422
                assert (await ann.post("/api/prompts", json={"name": "", "text": "y"})).status_code == 422
                refused = await ann.post("/api/prompts", json={"name": "x", "text": "y", "published": True})
                assert refused.status_code == 403 and "admin" in refused.json()["detail"]
                published = await root.post("/api/prompts", json={"name": "All", "text": "Hi", "published": True})
                assert published.status_code == 201, published.text

                listed = (await bob.get("/api/prompts")).json()
                assert [(p["name"], p["mine"]) for p in listed] == [("All", False)]
                for method, body in (("PATCH", {"text": "Bob"}), ("DELETE", None)):
                    for prompt_id in (prompt["id"], published.json()["id"], 999_999):
                        answer = await bob.request(method, f"/api/prompts/{prompt_id}", json=body)
                        assert answer.status_code == 404, answer.text
                patched = await ann.patch(f"/api/prompts/{prompt['id']}", json={"name": "Fix it"})
                assert patched.status_code == 200 and patched.json()["text"] == prompt["text"]
                assert [p["name"] for p in (await ann.get("/api/prompts")).json()] == ["All", "Fix it"]
                assert (await ann.delete(f"/api/prompts/{prompt['id']}")).status_code == 204
                assert [p["name"] for p in (await ann.get("/api/prompts")).json()] == ["All"]

                body = {"name": "Reviewer", "system_prompt": "Review.", "model": "m", "temperature": 0.3,
                        "tools": ["calculator"], "is_default": True}  # fmt: skip
                preset = (await ann.post("/api/presets", json=body)).json()
                assert {k: preset[k] for k in body} == body and preset["mine"]
                assert (await ann.post("/api/presets", json={"name": "Hot", "temperature": 5})).status_code == 422
                other = (await ann.post("/api/presets", json={"name": "Plain", "is_default": True})).json()
                listed = (await ann.get("/api/presets")).json()
                assert [(p["name"], p["is_default"]) for p in listed] == [("Plain", True), ("Reviewer", False)]
                assert (await bob.get("/api/presets")).json() == []
                for method, body in (("PATCH", {"is_default": True}), ("DELETE", None)):
                    answer = await bob.request(method, f"/api/presets/{other['id']}", json=body)
                    assert answer.status_code == 404, answer.text
                reset = await ann.patch(f"/api/presets/{preset['id']}", json={"model": None, "is_default": True})
                assert reset.json()["model"] is None and reset.json()["is_default"]
                assert (await ann.delete(f"/api/presets/{other['id']}")).status_code == 204
                assert [p["name"] for p in (await ann.get("/api/presets")).json()] == ["Reviewer"]
    finally:
        await engine.shutdown()
        await provider.close()
