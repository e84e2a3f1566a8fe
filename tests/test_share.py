"""Read-only share links: the store functions on SQLite and PostgreSQL (``chat/store/sharing.py``), then the whole app
(app.py under NiceGUI's simulated user, in-process HTTP, a real SQLite file) in team mode — the ``/api`` routes, the
shared page ``/s/{token}`` with its audiences, the Share dialog and the Account page's list — and in personal mode."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nicegui.testing import User
from nicegui.testing.user_simulation import user_simulation
from sqlalchemy import text

from chat.refusals import InvalidRequest
from chat.store import Conversation, Message, NotFound, Status, Store
from chat.store.sharing import create_share, list_shares, revoke_share, shared

from .browser import ROOT
from .helpers import PASSWORD, add_users, handlers_done, not_found, opened_store, wait_for

SYSTEM_SECRET = "SYSTEM-PROMPT-SECRET-do-not-share"


def exchange(store: Store, conversation_id: int | None, question: str, answer: str, **conversation: object) -> Message:
    """Store a finished exchange at the end of the shown path (a new conversation with ``conversation``'s fields when
    ``conversation_id`` is None); returns the answer."""
    new = Conversation(model="fake-model", **conversation) if conversation_id is None else None  # type: ignore[arg-type]
    _, answer_message = store.add_exchange(
        conversation_id, question, model="fake-model", temperature=0.7, new_conversation=new
    )
    assert answer_message.id is not None
    return store.finish_message(answer_message.id, content=answer, status=Status.complete, finish_reason="stop")


def finish(store: Store, message: Message, content: str) -> Message:
    assert message.id is not None
    return store.finish_message(message.id, content=content, status=Status.complete, finish_reason="stop")


# -- the store, on SQLite and PostgreSQL ---------------------------------------------------------------------------


def test_snapshot_is_the_shown_path_at_share_time(store: Store) -> None:
    first = exchange(store, None, "Plan a trip", "Go **north**.", title="Trips", system_prompt=SYSTEM_SECRET)
    conversation_id = first.conversation_id
    finish(store, store.add_variant(first.id, model="fake-model", temperature=1.0), "Go *south*.")  # type: ignore[arg-type]
    exchange(store, conversation_id, "And then?", "Then home.")
    shown = [(m.role.value, m.content) for m in store.path(conversation_id)]
    assert shown == [("user", "Plan a trip"), ("assistant", "Go *south*."), ("user", "And then?"),
                     ("assistant", "Then home.")]  # fmt: skip

    token, link = create_share(store, conversation_id, None, "anyone")
    exchange(store, conversation_id, "Written after sharing", "Not in the link")
    store.update_conversation(conversation_id, title="Renamed later")

    found = shared(store, token)
    assert found is not None and found.id == link.id
    assert found.snapshot["title"] == "Trips"
    assert [(m["role"], m["content"]) for m in found.snapshot["messages"]] == shown
    assert [m["model"] for m in found.snapshot["messages"]] == [None, "fake-model", None, "fake-model"]
    dumped = json.dumps(found.snapshot)
    for absent in (SYSTEM_SECRET, "Go **north**.", "Written after sharing", "Not in the link", "Renamed later"):
        assert absent not in dumped


def test_the_snapshot_keeps_an_answers_steps_and_leaves_out_a_streaming_one(store: Store) -> None:
    events = [{"kind": "text_delta", "text": "42", "seq": 2}]
    answer = exchange(store, None, "6*7?", "42", title="Maths")
    assert answer.id is not None
    store.finish_message(answer.id, events=events)
    store.add_exchange(answer.conversation_id, "Still answering?", model="fake-model", temperature=0.7)
    _, link = create_share(store, answer.conversation_id, None, "users")
    messages = link.snapshot["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "6*7?"), ("assistant", "42"),
                                                              ("user", "Still answering?")]  # fmt: skip
    assert messages[1]["events"] == events and messages[0]["events"] is None


def test_only_the_tokens_hash_is_stored(store: Store) -> None:
    answer = exchange(store, None, "Hello", "Hi", title="Greeting")
    token, link = create_share(store, answer.conversation_id, None, "anyone")
    other, _ = create_share(store, answer.conversation_id, None, "anyone")
    assert len(token) >= 32 and token != other
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM share_link")).mappings().all()
    assert len(rows) == 2
    assert token not in json.dumps([{k: str(v) for k, v in row.items()} for row in rows])
    assert shared(store, link.token_hash) is None  # the hash is not a token
    assert shared(store, token[:-1]) is None and shared(store, "") is None and shared(store, "x" * 10_000) is None


def test_revoke_and_ownership(store: Store) -> None:
    ann = store.create_user("ann", "x")
    bob = store.create_user("bob", "x")
    answer = exchange(store, None, "Ann's question", "Ann's answer", title="Ann's", user_id=ann.id)
    token, link = create_share(store, answer.conversation_id, ann.id, "users")
    assert link.user_id == ann.id and link.audience == "users"
    with pytest.raises(NotFound):
        create_share(store, answer.conversation_id, bob.id, "anyone")
    with pytest.raises(NotFound):
        create_share(store, 999, ann.id, "anyone")
    with pytest.raises(InvalidRequest):
        create_share(store, answer.conversation_id, ann.id, "everyone")
    assert [s.id for s in list_shares(store, ann.id)] == [link.id]
    assert list_shares(store, bob.id) == []
    assert [s.id for s in list_shares(store, None)] == [link.id]  # personal mode: every link
    assert list_shares(store, ann.id, conversation_id=answer.conversation_id + 1) == []
    with pytest.raises(NotFound):
        revoke_share(store, link.id, bob.id)  # type: ignore[arg-type]
    assert shared(store, token) is not None
    revoked = revoke_share(store, link.id, ann.id)  # type: ignore[arg-type]
    assert revoked.revoked_at is not None
    assert shared(store, token) is None and list_shares(store, ann.id) == []
    with pytest.raises(NotFound):
        revoke_share(store, link.id, ann.id)  # type: ignore[arg-type]
    # deleting the conversation deletes its links
    token, _ = create_share(store, answer.conversation_id, ann.id, "anyone")
    store.delete_conversation(answer.conversation_id)
    assert shared(store, token) is None
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM share_link")).scalar() == 0


# -- the app in team mode ------------------------------------------------------------------------------------------


@pytest.fixture
async def team(app_env: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """The simulated user on app.py in team mode: ann (admin) and bob exist; ann has two conversations, 1 ("Ann's
    trip", system prompt ``SYSTEM_SECRET``) and 2 ("Ann's diary"); nobody is logged in yet."""
    app_env.mkdir(parents=True, exist_ok=True)
    users = add_users(app_env, "ann", "bob", admins=("ann",))
    with opened_store(app_env) as store:
        ann = users["ann"].user_id
        trip = exchange(store, None, "Where to go?", "Try **Lisbon**.", title="Ann's trip", system_prompt=SYSTEM_SECRET,
                        user_id=ann)  # fmt: skip
        assert trip.conversation_id == 1
        diary = exchange(store, None, "Dear diary", "DIARY-SECRET", title="Ann's diary", user_id=ann)
        assert diary.conversation_id == 2
    async with user_simulation(main_file=ROOT / "app.py") as simulated:
        yield simulated
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(f"unexpected ERROR logs: {[r.getMessage() for r in errors]}", pytrace=False)


async def log_in(user: User, name: str) -> None:
    user.http_client.cookies.clear()
    response = await user.http_client.post("/login", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text


async def share(user: User, conversation_id: int, audience: str) -> dict:
    response = await user.http_client.post(f"/api/conversations/{conversation_id}/share", json={"audience": audience})
    assert response.status_code == 201, response.text
    return response.json()


async def test_api_creates_lists_and_revokes_only_the_owners_links(team: User, app_env: Path) -> None:
    client = team.http_client
    assert (await client.get("/api/shares")).status_code == 401
    assert (await client.post("/api/conversations/1/share", json={"audience": "anyone"})).status_code == 401
    await log_in(team, "ann")
    default = await client.post("/api/conversations/1/share")
    assert default.status_code == 201 and default.json()["audience"] == "users"  # "anyone" is off by default
    made = await share(team, 1, "anyone")
    assert made["url"].startswith("/s/") and made["title"] == "Ann's trip" and made["messages"] == 2
    token = made["url"].removeprefix("/s/")
    bad = await client.post("/api/conversations/1/share", json={"audience": "everyone"})
    assert bad.status_code == 422
    listed = (await client.get("/api/shares")).json()
    assert [s["id"] for s in listed] == [made["id"], default.json()["id"]]
    assert "url" not in listed[0] and token not in json.dumps(listed)
    assert (await client.get("/api/shares", params={"conversation_id": 2})).json() == []

    await log_in(team, "bob")
    assert (await client.get("/api/shares")).json() == []
    assert (await client.delete(f"/api/shares/{made['id']}")).status_code == 404
    assert (await client.post("/api/conversations/1/share", json={"audience": "anyone"})).status_code == 404
    assert (await client.get(f"/s/{token}")).status_code == 200  # bob's failed revoke left it working
    with opened_store(app_env) as store:
        assert [s.id for s in list_shares(store, None)] == [made["id"], default.json()["id"]]

    await log_in(team, "ann")
    assert (await client.delete(f"/api/shares/{made['id']}")).status_code == 204
    assert (await client.delete(f"/api/shares/{made['id']}")).status_code == 404
    assert [s["id"] for s in (await client.get("/api/shares")).json()] == [default.json()["id"]]
    client.cookies.clear()
    assert "revoked" in await not_found(team, f"/s/{token}")


async def test_users_audience_needs_a_login_and_anyone_does_not(team: User) -> None:
    await log_in(team, "ann")
    for_users = (await share(team, 1, "users"))["url"]
    for_anyone = (await share(team, 1, "anyone"))["url"]
    team.http_client.cookies.clear()
    response = await team.http_client.get(for_users)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={for_users}"
    response = await team.http_client.get(for_anyone)
    assert response.status_code == 200 and "Lisbon" in response.text
    await log_in(team, "bob")
    await team.open(for_users)
    await team.should_see("Try **Lisbon**.")
    await team.should_see("Shared by ann on ")


async def test_the_shared_page_shows_the_snapshot_and_nothing_else(team: User, app_env: Path) -> None:
    await log_in(team, "ann")
    url = (await share(team, 1, "anyone"))["url"]
    with opened_store(app_env) as store:
        exchange(store, 1, "Asked after sharing", "LATER-ANSWER")
    await log_in(team, "bob")
    await team.open(url)
    await team.should_see(marker="share-title")
    await team.should_see("Ann's trip")
    await team.should_see("Where to go?")
    await team.should_see("Try **Lisbon**.")
    for hidden in ("composer", "send", "settings", "drawer-toggle", "user-menu", "conversation-1", "conversation-2"):
        await team.should_not_see(marker=hidden)
    for absent in ("Asked after sharing", "LATER-ANSWER", "Ann's diary", "DIARY-SECRET", SYSTEM_SECRET):
        await team.should_not_see(absent)
    team.http_client.cookies.clear()
    page = (await team.http_client.get(url)).text
    for absent in ("LATER-ANSWER", "Ann's diary", "DIARY-SECRET", SYSTEM_SECRET, "/c/1", "/c/2"):
        assert absent not in page
    assert '<meta name="referrer" content="no-referrer">' in page
    # ann's own conversations stay hers
    await log_in(team, "bob")
    assert "This conversation does not exist" in await not_found(team, "/c/2")


async def test_unknown_and_revoked_links_are_404(team: User) -> None:
    for path in ("/s/nosuchtoken", "/s/" + "x" * 500):
        assert "This shared link does not exist, or its owner revoked it." in await not_found(team, path)
    await log_in(team, "ann")
    made = await share(team, 1, "users")
    assert (await team.http_client.delete(f"/api/shares/{made['id']}")).status_code == 204
    assert "revoked" in await not_found(team, made["url"])  # logged in or not: the same 404


async def test_share_dialog_then_the_account_page_lists_and_revokes(team: User) -> None:
    await log_in(team, "ann")
    await team.open("/c/1")
    team.find(marker="share").click()  # its handler lasts as long as the dialog is open
    await team.should_see(marker="share-dialog")
    await team.should_see("People logged in to this Parley")
    await team.should_not_see(marker="share-personal-note")
    await team.should_see(marker="no-shares")
    team.find("Anyone with the link").click()
    async with handlers_done():
        team.find(marker="create-share").click()
    await team.should_see(marker="share-url")
    url = next(iter(team.find(marker="share-url").elements)).value
    path = "/s/" + url.split("/s/", 1)[1]
    await team.should_see(marker="copy-share")
    await team.should_not_see(marker="no-shares")
    async with handlers_done():
        team.find(marker="share-done").click()

    listed = (await team.http_client.get("/api/shares")).json()
    assert [(s["audience"], s["conversation_id"]) for s in listed] == [("anyone", 1)]
    team.http_client.cookies.clear()
    assert (await team.http_client.get(path)).status_code == 200  # "anyone": no login needed
    await log_in(team, "ann")

    await team.open("/account")
    await team.should_see(marker="shared-links")
    await team.should_see(marker=f"share-{listed[0]['id']}")
    await team.should_see("Anyone with the link · created ")
    team.find(marker="revoke-share").click()  # its handler waits for the confirmation
    await team.should_see(marker="confirm-revoke-share")
    team.find(marker="confirm-revoke-share").click()
    await team.should_see(marker="no-shares")
    assert "revoked" in await not_found(team, path)

    await log_in(team, "bob")
    await team.open("/account")
    await team.should_see(marker="no-shares")


# -- personal mode ---------------------------------------------------------------------------------------------------


async def test_personal_mode_dialog_says_loopback_and_lists_the_links(user: User, app_env: Path) -> None:
    app_env.mkdir(parents=True, exist_ok=True)
    with opened_store(app_env) as store:
        store.migrate()
        answer = exchange(store, None, "Personal question", "Personal answer", title="Mine")
        old_token, old = create_share(store, answer.conversation_id, None, "anyone")
    await user.open(f"/c/{answer.conversation_id}")
    user.find(marker="share").click()  # its handler lasts as long as the dialog is open
    await user.should_see(marker="share-personal-note")
    await user.should_see("loopback")
    await user.should_not_see(marker="share-audience")
    await user.should_see(marker=f"share-{old.id}")
    async with handlers_done():
        user.find(marker="create-share").click()
    await user.should_see(marker="share-url")
    url = next(iter(user.find(marker="share-url").elements)).value
    path = "/s/" + url.split("/s/", 1)[1]
    with opened_store(app_env) as store:
        links = list_shares(store, None)
        assert [link.audience for link in links] == ["anyone", "anyone"] and links[1].id == old.id
        assert shared(store, path.removeprefix("/s/")) is not None
    assert len(user.find(marker="revoke-share").elements) == 2
    user.find(marker="revoke-share").click()  # the newest link is listed first; its handler waits for the confirmation
    await user.should_see(marker="confirm-revoke-share")
    user.find(marker="confirm-revoke-share").click()
    await wait_for(lambda: len(user.find(marker="revoke-share").elements) == 1, what="the revoked link to go")
    await user.should_see(marker=f"share-{old.id}")
    assert "revoked" in await not_found(user, path)
    await user.open(f"/s/{old_token}")
    await user.should_see("Personal answer")
    await user.should_see("Shared on ")
    await user.should_not_see("Shared by")
    await user.open("/account")
    await user.should_see(marker="no-accounts")
    await user.should_see(marker=f"share-{old.id}")
