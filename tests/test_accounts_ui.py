"""The pages in team mode with NiceGUI's simulated user, on the real app.py (users made in its database before it
starts), the fake upstream and a real SQLite file: who sees what, and what the account and admin pages store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nicegui.testing import User
from nicegui.testing.user_simulation import user_simulation

from chat.auth import Accounts
from chat.store import Status
from chat.ui.access import safe_next

from .browser import ROOT
from .fake_upstream import FakeUpstream
from .helpers import PASSWORD, add_users, not_found, opened_store, send, wait_for


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


async def log_in(user: User, name: str, password: str = PASSWORD) -> None:
    user.http_client.cookies.clear()
    response = await user.http_client.post("/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text


async def test_pages_need_a_login(team: User) -> None:
    for path in ("/", "/c/1", "/account", "/admin"):
        response = await team.http_client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"
    response = await team.http_client.get("/login")
    assert response.status_code == 200


async def test_a_user_sees_only_their_conversations(team: User, app_env: Path, upstream: FakeUpstream) -> None:
    await log_in(team, "ann")
    await team.open("/")
    await team.should_see(marker="user-menu")
    await send(team, "Ann's secret plan")
    with opened_store(app_env) as store:
        await wait_for(lambda: [m.status for m in store.path(1)] == [Status.complete] * 2)
        assert store.get_conversation(1).user_id == 1
    await log_in(team, "bob")
    page = await not_found(team, "/c/1")
    assert "This conversation does not exist" in page and "Ann's secret plan" not in page
    await team.open("/")
    await team.should_not_see(marker="conversation-1")
    await team.should_see(marker="user-menu")
    await team.should_not_see(marker="menu-admin")


async def test_an_open_tab_stops_acting_once_its_user_is_disabled(team: User, app_env: Path) -> None:
    await log_in(team, "bob")
    await team.open("/")
    await team.should_see(marker="welcome")
    with opened_store(app_env) as store:
        bob = store.user_by_name("bob")
        assert bob is not None and bob.id is not None
        Accounts(store, enabled=True).set_disabled(bob.id, True)
    await send(team, "still here?")
    await team.should_see("Log in to continue.")
    with opened_store(app_env) as store:
        assert store.list_conversations() == []


async def test_admin_page_is_for_admins_only(team: User) -> None:
    await log_in(team, "bob")
    assert "This page does not exist." in await not_found(team, "/admin")
    await log_in(team, "ann")
    await team.open("/admin")
    await team.should_see(marker="user-bob")
    await team.should_see(marker="no-usage")


async def test_add_user_and_refusals(team: User, app_env: Path) -> None:
    await log_in(team, "ann")
    await team.open("/admin")
    team.find(marker="new-user-name").type("carol")
    team.find(marker="new-user-password").type("short")
    team.find(marker="add-user").click()
    await team.should_see("A password has at least 8 characters.", retries=50)
    team.find(marker="new-user-name").clear().type("bob")
    team.find(marker="new-user-password").clear().type("long enough password")
    team.find(marker="add-user").click()
    await team.should_see("a user named 'bob' exists already")
    team.find(marker="new-user-name").clear().type("carol")
    team.find(marker="add-user").click()
    await team.should_see("carol can log in now.")
    await team.should_see(marker="user-carol")
    with opened_store(app_env) as store:
        carol = store.user_by_name("carol")
        assert carol is not None and not carol.is_admin


async def test_admin_sets_a_users_models(team: User, app_env: Path) -> None:
    await log_in(team, "ann")
    await team.open("/admin")
    with team.scope(marker="user-bob"):
        team.find(marker="user-models-edit").click()
    await team.should_see(marker="all-models")
    team.find(marker="all-models").click()  # off: choose some
    team.find(marker="allowed-models").elements.pop().set_value(["other-model"])
    team.find(marker="save-models").click()
    await team.should_see("Models of bob saved")
    with opened_store(app_env) as store:
        assert store.user_by_name("bob").allowed_models == frozenset({"other-model"})  # type: ignore[union-attr]
    # bob may not use the default model any more: his Send is refused, his text kept
    await log_in(team, "bob")
    await team.open("/")
    await send(team, "may I?")
    await team.should_see("You may not use the model 'fake-model'")
    assert team.find(marker="composer").elements.pop().value == "may I?"
    with opened_store(app_env) as store:
        assert store.list_conversations() == []


async def test_password_change_refusals_are_said(team: User) -> None:
    await log_in(team, "bob")
    await team.open("/account")
    team.find(marker="current-password").type(PASSWORD)
    team.find(marker="new-password").type("a new password")
    team.find(marker="repeat-password").type("another one")
    team.find(marker="change-password").click()
    await team.should_see("The new passwords do not match.")
    team.find(marker="repeat-password").clear().type("a new password")
    team.find(marker="current-password").clear().type("wrong password")
    team.find(marker="change-password").click()
    await team.should_see("The current password is wrong.", retries=50)  # argon2id takes ~0.1 s in a thread
    team.find(marker="current-password").clear().type(PASSWORD)
    team.find(marker="new-password").clear().type("short")
    team.find(marker="repeat-password").clear().type("short")
    team.find(marker="change-password").click()
    await team.should_see("A password has at least 8 characters.", retries=50)


async def test_personal_mode_has_no_login_or_user_menu(user: User) -> None:
    response = await user.http_client.get("/login")
    assert response.status_code == 303 and response.headers["location"] == "/"
    await user.open("/")
    await user.should_not_see(marker="user-menu")
    assert "This page does not exist." in await not_found(user, "/admin")
    await user.open("/account")
    await user.should_see(marker="no-accounts")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/c/12", "/c/12"),
        ("/account?tab=tokens", "/account?tab=tokens"),
        (None, "/"),
        ("", "/"),
        ("c/1", "/"),
        ("//attacker.invalid/x", "/"),
        ("/\\attacker.invalid", "/"),
        ("https://attacker.invalid/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nLocation: https://attacker.invalid", "/"),
    ],
)
def test_after_login_only_a_local_path(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
