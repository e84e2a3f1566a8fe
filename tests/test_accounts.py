"""Accounts below the views, on SQLite and on PostgreSQL: passwords, login sessions, API tokens, login limits,
ownership in the store and the engine, per-user limits, allowed models and daily usage."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest

from chat.auth import Accounts, LoginFailed, WeakPassword, session_secret
from chat.auth.accounts import token_hash
from chat.auth.passwords import verify_password
from chat.engine import LOCAL, Account, Engine, Limits, ModelNotAllowed, RateLimited
from chat.provider import Provider
from chat.store import NameTaken, NotFound, Status, Store

from .fake_upstream import FakeUpstream, Script
from .helpers import PASSWORD


@pytest.fixture
def accounts(store: Store) -> Accounts:
    return Accounts(store, login_attempts_per_ip=100, login_attempts_per_name=100, enabled=True)


def test_passwords_are_stored_as_argon2id_hashes(accounts: Accounts, store: Store) -> None:
    user = accounts.add_user("ann", PASSWORD, is_admin=True)
    stored = store.get_user(user.id)
    assert stored.password_hash.startswith("$argon2id$v=19$")
    assert PASSWORD not in stored.password_hash
    assert stored.is_admin and not stored.disabled


def test_names_and_passwords_are_checked(accounts: Accounts) -> None:
    with pytest.raises(WeakPassword, match="at least 8"):
        accounts.add_user("ann", "short")
    for name in ("", "a b", "x" * 65, "<script>"):
        with pytest.raises(WeakPassword, match="user name"):
            accounts.add_user(name, PASSWORD)
    accounts.add_user("ann", PASSWORD)
    with pytest.raises(NameTaken):
        accounts.add_user("ann", PASSWORD + "!")


async def test_login_logout_and_sessions(accounts: Accounts, store: Store) -> None:
    user = accounts.add_user("ann", PASSWORD)
    token = await accounts.login(" ann ", PASSWORD, "10.0.0.1")
    account = accounts.session_account(token)
    assert account == Account(user_id=user.id, name="ann", is_admin=False, models=None)
    assert store.get_user(user.id).last_login_at is not None
    # the database keeps only the token's SHA-256
    assert store.session_user(hashlib.sha256(token.encode()).hexdigest()).name == "ann"
    assert store.session_user(token) is None
    for wrong in (("ann", "wrong password"), ("bob", PASSWORD), ("Ann", PASSWORD)):
        with pytest.raises(LoginFailed, match="Wrong user name or password"):
            await accounts.login(*wrong, "10.0.0.1")
    accounts.logout(token)
    assert accounts.session_account(token) is None
    assert accounts.session_account(None) is None and accounts.session_account("made-up") is None


async def test_changing_a_password_logs_out_the_other_sessions(accounts: Accounts) -> None:
    user = accounts.add_user("ann", PASSWORD)
    here, elsewhere = [await accounts.login("ann", PASSWORD, "10.0.0.1") for _ in range(2)]
    account = accounts.session_account(here)
    with pytest.raises(LoginFailed, match="current password is wrong"):
        accounts.change_password(account, "not it", "a new password")
    with pytest.raises(WeakPassword):
        accounts.change_password(account, PASSWORD, "short")
    accounts.change_password(account, PASSWORD, "a new password", keep_session=here)
    assert accounts.session_account(here) is not None and accounts.session_account(elsewhere) is None
    with pytest.raises(LoginFailed):
        await accounts.login("ann", PASSWORD, "10.0.0.1")
    assert (await accounts.login("ann", "a new password", "10.0.0.1")) and user.id is not None


async def test_a_disabled_user_cannot_log_in_and_is_logged_out(accounts: Accounts) -> None:
    user = accounts.add_user("bob", PASSWORD)
    session = await accounts.login("bob", PASSWORD, "10.0.0.1")
    token = accounts.create_token(accounts.session_account(session), "ci").secret
    accounts.set_disabled(user.id, True)
    assert accounts.session_account(session) is None and accounts.token_account(token) is None
    with pytest.raises(LoginFailed):
        await accounts.login("bob", PASSWORD, "10.0.0.1")
    accounts.set_disabled(user.id, False)
    assert accounts.token_account(token) is not None  # tokens come back; sessions were deleted
    assert accounts.session_account(session) is None


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(accounts: Accounts, store: Store) -> None:
    ann = Account(accounts.add_user("ann", PASSWORD).id, "ann")
    bob = Account(accounts.add_user("bob", PASSWORD).id, "bob")
    new = accounts.create_token(ann, "  my   laptop ")
    assert new.secret.startswith("parley_") and len(new.secret) > 40
    [listed] = store.api_tokens(ann.user_id)
    assert listed.name == "my laptop" and new.secret.startswith(listed.prefix) and len(listed.prefix) == 11
    assert listed.token_hash == token_hash(new.secret) and new.secret not in listed.model_dump_json()
    assert accounts.token_account(new.secret).user_id == ann.user_id
    assert store.api_tokens(ann.user_id)[0].last_used_at is not None
    for wrong in (None, "", "parley_nope", new.secret + "x", "sk-" + new.secret):
        assert accounts.token_account(wrong) is None
    with pytest.raises(NotFound):
        accounts.revoke_token(bob, listed.id)  # not bob's
    accounts.revoke_token(ann, listed.id)
    assert accounts.token_account(new.secret) is None and store.api_tokens(ann.user_id) == []


async def test_failed_logins_are_limited_per_name_and_per_address(store: Store) -> None:
    accounts = Accounts(store, login_attempts_per_ip=5, login_attempts_per_name=3, enabled=True)
    accounts.add_user("ann", PASSWORD)
    for _ in range(3):
        with pytest.raises(LoginFailed):
            await accounts.login("ann", "guess", "10.0.0.1")
    with pytest.raises(RateLimited) as refusal:  # even the right password: refused before it is checked
        await accounts.login("ann", PASSWORD, "10.0.0.2")
    assert 1 <= refusal.value.retry_after <= 60 and "Try again in" in str(refusal.value)
    # another name from a fresh address is not limited; the address limit counts every name
    for name in ("bob", "carl"):
        with pytest.raises(LoginFailed):
            await accounts.login(name, "guess", "10.0.0.3")
    with pytest.raises(LoginFailed):
        await accounts.login("dan", "guess", "10.0.0.1")  # 4th and 5th failures from 10.0.0.1
    with pytest.raises(LoginFailed):
        await accounts.login("eve", "guess", "10.0.0.1")
    with pytest.raises(RateLimited):
        await accounts.login("fay", "guess", "10.0.0.1")


def test_personal_mode_is_the_one_local_account(store: Store) -> None:
    accounts = Accounts(store)
    assert not accounts.enabled
    assert accounts.session_account(None) is LOCAL and accounts.token_account(None) is LOCAL


def test_the_first_user_owns_the_conversations_made_before_accounts(accounts: Accounts, store: Store) -> None:
    before = store.create_conversation(title="from personal mode")
    ann = accounts.add_user("ann", PASSWORD, is_admin=True)
    bob = accounts.add_user("bob", PASSWORD)
    assert store.get_conversation(before.id).user_id == ann.id
    assert [c.id for c in store.list_conversations(owner=ann.id)] == [before.id]
    assert store.list_conversations(owner=bob.id) == []
    with pytest.raises(NotFound):
        store.get_conversation(before.id, owner=bob.id)


def test_deleting_a_user_deletes_what_they_own(accounts: Accounts, store: Store) -> None:
    ann = accounts.add_user("ann", PASSWORD)
    bob = accounts.add_user("bob", PASSWORD)
    kept = store.create_conversation(title="bob's", user_id=bob.id)
    gone = store.create_conversation(title="ann's", user_id=ann.id)
    store.add_exchange(gone.id, "hello", model="m", temperature=0.5)
    accounts.create_token(Account(ann.id, "ann"), "t")
    store.add_usage(ann.id, 10, 20)
    store.delete_user(ann.id)
    assert [c.id for c in store.list_conversations()] == [kept.id]
    assert store.count_messages() == 0 and store.usage() == [] and store.api_tokens(ann.id) == []


def test_the_session_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    secret = session_secret(tmp_path / "data")
    assert len(secret) >= 43 and secret == session_secret(tmp_path / "data")
    assert (tmp_path / "data" / "session-secret").stat().st_mode & 0o777 == 0o600
    assert session_secret(tmp_path / "data", "from-settings") == "from-settings"
    assert session_secret(tmp_path / "other") != secret


# -- the engine: ownership, limits, models, usage ------------------------------------------------------------------


@pytest.fixture
async def team(store: Store, upstream: FakeUpstream):
    """An engine with limits (2 messages per minute, 1 answer at a time) and two users."""
    accounts = Accounts(store, enabled=True)
    ann = accounts.add_user("ann", PASSWORD)
    bob = accounts.add_user("bob", PASSWORD)
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model", checkpoint_interval=0.2,
                    limits=Limits(messages_per_minute=2, concurrent_answers=1))  # fmt: skip
    yield engine, Account(ann.id, "ann"), Account(bob.id, "bob")
    await engine.shutdown()
    await provider.close()


async def test_the_engine_keeps_each_user_to_their_own_conversations(team, store: Store) -> None:
    engine, ann, bob = team
    user, answer = await engine.send(None, "ann's secret", account=ann)
    await engine.generations[answer.id].wait()
    assert store.get_conversation(user.conversation_id).user_id == ann.user_id
    before = [m.model_dump() for m in store.messages(user.conversation_id)]
    refusals = [
        engine.send(user.conversation_id, "bob was here", account=bob),
        engine.regenerate(answer.id, account=bob),
        engine.delete_conversation(user.conversation_id, bob),
    ]
    for refusal in refusals:
        with pytest.raises(NotFound):
            await refusal
    with pytest.raises(NotFound):
        await engine.update_conversation(user.conversation_id, bob, title="bob's now")
    with pytest.raises(NotFound):
        await engine.select_variant(answer.id, bob)
    with pytest.raises(NotFound):
        [event async for event in engine.follow(answer.id, 0, bob)]
    assert [m.model_dump() for m in store.messages(user.conversation_id)] == before
    assert store.get_conversation(user.conversation_id).title == "ann's secret"
    assert [event async for event in engine.follow(answer.id, 0, ann)][-1].message.status == Status.complete


async def test_per_user_limits_refuse_without_storing(team, store: Store, upstream: FakeUpstream) -> None:
    engine, ann, bob = team
    upstream.script = Script(tokens=40, rate=40)  # about 1 s
    _, first = await engine.send(None, "one", account=ann)
    with pytest.raises(RateLimited, match="answers running") as busy:  # one at a time
        await engine.send(None, "two at once", account=ann)
    assert busy.value.retry_after == 5
    _, other = await engine.send(None, "bob is not limited by ann", account=bob)
    await engine.generations[first.id].wait()
    _, second = await engine.send(None, "two", account=ann)
    await engine.generations[second.id].wait()
    with pytest.raises(RateLimited, match="Try again in") as fast:  # a third message within the minute
        await engine.regenerate(second.id, account=ann)
    assert 1 <= fast.value.retry_after <= 60
    await engine.generations[other.id].wait() if other.id in engine.generations else None
    texts = [m.content for c in store.list_conversations(owner=ann.user_id) for m in store.messages(c.id)]
    assert "two at once" not in texts and sorted(t for t in texts if not t.startswith("w")) == ["one", "two"]
    assert len(store.variants(second.id)) == 1  # the refused regeneration stored nothing


async def test_allowed_models_and_daily_usage(team, store: Store) -> None:
    engine, ann, _ = team
    limited = Account(ann.user_id, "ann", models=frozenset({"other-model"}))
    with pytest.raises(ModelNotAllowed, match="fake-model"):
        await engine.send(None, "with the default model", account=limited)
    assert store.list_conversations(owner=ann.user_id) == []
    user, answer = await engine.send(None, "with an allowed one", model="other-model", account=limited)
    stored = await engine.generations[answer.id].wait()
    with pytest.raises(ModelNotAllowed):
        await engine.update_conversation(user.conversation_id, limited, model="fake-model")
    engine.record_usage(limited, 7, 3)  # e.g. an answer not stored (/v1 with store: false)
    engine.record_usage(LOCAL, 100, 100)  # personal mode counts nothing
    [day] = store.usage()
    assert day.user_id == ann.user_id and day.answers == 2
    assert day.prompt_tokens == (stored.prompt_tokens or 0) + 7
    assert day.completion_tokens == stored.completion_tokens + 3 == 23


async def test_usage_is_counted_once_under_concurrent_first_writes(store: Store) -> None:
    accounts = Accounts(store, enabled=True)
    ann = accounts.add_user("ann", PASSWORD)
    await asyncio.gather(*(asyncio.to_thread(store.add_usage, ann.id, 1, 2) for _ in range(20)))
    [day] = store.usage()
    assert (day.answers, day.prompt_tokens, day.completion_tokens) == (20, 20, 40)


def test_upgrading_a_0002_database_keeps_conversations_and_messages(tmp_path: Path) -> None:
    from alembic import command

    from chat.store.store import alembic_config

    store = Store(f"sqlite:///{tmp_path / 'parley.db'}")
    command.upgrade(alembic_config(store.engine), "0002")  # a database from before accounts
    with sqlite3.connect(tmp_path / "parley.db") as raw:
        raw.execute("insert into conversation (title, system_prompt, temperature, created_at, updated_at) "
                    "values ('old', '', 0.7, '2026-01-01', '2026-01-01')")  # fmt: skip
        for parent, role in ((None, "user"), (1, "assistant")):
            raw.execute("insert into message (conversation_id, parent_id, selected, role, content, status, created_at)"
                        " values (1, ?, 1, ?, 'héllo 👋', 'complete', '2026-01-01')", (parent, role))  # fmt: skip
    store.migrate()
    assert [m.content for m in store.messages(1)] == ["héllo 👋", "héllo 👋"]
    with sqlite3.connect(tmp_path / "parley.db") as raw:
        assert raw.execute("pragma foreign_key_check").fetchall() == []
        assert raw.execute("select user_id from conversation").fetchall() == [(None,)]
    store.close()


async def test_a_session_unused_for_two_weeks_has_ended(accounts: Accounts, store: Store) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from chat.store.models import LoginSession, utcnow

    accounts.add_user("ann", PASSWORD)
    token = await accounts.login("ann", PASSWORD, "10.0.0.1")
    with store.engine.begin() as connection:
        connection.execute(update(LoginSession).values(last_seen_at=utcnow() - timedelta(days=15)))
    assert accounts.session_account(token) is None
    assert store.delete_login_sessions(token_hash=token_hash(token)) == 0  # it was deleted


async def test_answers_stored_nowhere_count_as_running(team, store: Store, upstream: FakeUpstream) -> None:
    engine, _, bob = team
    upstream.script = Script(tokens=400, rate=20)
    unstored = await engine.answer_unstored([{"role": "user", "content": "hi"}], account=bob)  # /v1, store: false
    assert engine.running_answers(bob) == 1
    with pytest.raises(RateLimited, match="answers running"):
        await engine.send(None, "one too many", account=bob)
    await engine.cancel_unstored(unstored)
    assert engine.running_answers(bob) == 0 and store.list_conversations(owner=bob.user_id) == []


async def test_wrong_current_passwords_count_with_failed_logins(store: Store) -> None:
    accounts = Accounts(store, login_attempts_per_ip=100, login_attempts_per_name=3, enabled=True)
    user = accounts.add_user("ann", PASSWORD)
    account = Account(user.id, "ann")
    for _ in range(3):  # a stolen session guessing the password
        with pytest.raises(LoginFailed):
            accounts.change_password(account, "guess", "a new password")
    with pytest.raises(RateLimited):
        accounts.change_password(account, PASSWORD, "a new password")  # even the right one, for a minute
    with pytest.raises(RateLimited):
        await accounts.login("ann", PASSWORD, "10.0.0.9")
    assert verify_password(store.get_user(user.id).password_hash, PASSWORD)
