"""Team mode in a real browser: app.py in a subprocess on a database with two users, ann (admin) and bob, driven by
headless Chromium. One server and one Chromium for the whole story (each costs seconds): logging in (refused, then
accepted, never to another site), chatting, what another user can see, the messages-per-minute limit, API tokens
(shown once, stored hashed, revoked), a password change, disabling a user, the usage table and logging out."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream
from .helpers import PASSWORD, add_users, opened_store

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a brand new passphrase"


def new_page(browser) -> Page:
    """A page in a fresh context (its own cookies: its own login), failing nothing slower than 20 s."""
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def log_in(page: Page, name: str, password: str, *, submit_with_enter: bool = False) -> None:
    """Type a name and password into the login page shown and submit them."""
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    if submit_with_enter:
        page.get_by_label("Password").press("Enter")
    else:
        page.get_by_role("button", name="Log in").click()


def send(page: Page, text: str) -> None:
    composer = page.get_by_placeholder("Message Parley")
    composer.fill(text)
    composer.press("Enter")


def open_user_menu(page: Page, name: str, item: str) -> None:
    page.get_by_role("button", name=name).click()
    page.locator(".q-menu").get_by_text(item, exact=True).click()


def test_team_mode_in_the_browser(tmp_path: Path, upstream: FakeUpstream) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_users(data_dir, "ann", "bob", admins=("ann",))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve(tmp_path, upstream, port, PARLEY_MESSAGES_PER_MINUTE="1") as process, chromium() as browser:
        expect.set_options(timeout=20_000)
        ann = new_page(browser)

        # -- not logged in: every page goes to the login form; a wrong password is said, the typed text stays
        ann.goto(url + "/")
        ann.wait_for_url(f"{url}/login?next=/")
        log_in(ann, "ann", "not the password", submit_with_enter=True)
        expect(ann.get_by_role("alert")).to_have_text("Wrong user name or password.")
        expect(ann.get_by_label("Name")).to_have_value("ann")
        expect(ann.get_by_label("Password")).to_have_value("not the password")
        ann.get_by_label("Password").fill(PASSWORD)
        ann.get_by_role("button", name="Log in").click()
        ann.wait_for_url(url + "/")

        # -- chat works; a second message within the minute is refused with a clear sentence, the text kept
        send(ann, "Hello from ann")
        ann.wait_for_url("**/c/1")
        answer = ann.locator(".parley-message-body").last
        expect(answer).to_have_attribute("aria-busy", "false")
        expect(answer).to_contain_text(upstream.expected_text().strip())
        send(ann, "A second message too soon")
        expect(ann.locator(".q-notification").last).to_contain_text("Try again in")
        expect(ann.get_by_placeholder("Message Parley")).to_have_value("A second message too soon")
        with opened_store(data_dir) as store:
            assert len(store.messages(1)) == 2  # the refused message was not stored
            usage = store.usage()
        assert [(u.user_id, u.answers) for u in usage] == [(1, 1)]
        tokens = usage[0].prompt_tokens + usage[0].completion_tokens
        assert tokens > 0

        # -- bob: a login never leads to another site; ann's conversation does not exist for him
        bob = new_page(browser)
        bob.goto(url + "/login?next=//attacker.invalid/x")
        log_in(bob, "bob", PASSWORD)
        bob.wait_for_url(url + "/")
        bob.goto(url + "/c/1")
        expect(bob.get_by_text("This conversation does not exist")).to_be_visible()
        expect(bob.get_by_text("Hello from ann")).to_have_count(0)
        bob.goto(url + "/")
        expect(bob.get_by_placeholder("Message Parley")).to_be_visible()
        expect(bob.locator('a[href="/c/1"]')).to_have_count(0)
        expect(bob.get_by_role("button", name="bob")).to_be_visible()

        # -- ann's API token: its secret is shown once, only its SHA-256 is stored, Revoke removes it
        open_user_menu(ann, "ann", "Account")
        ann.wait_for_url(url + "/account")
        ann.get_by_label("Token name").fill("laptop script")
        ann.get_by_role("button", name="Create token").click()
        expect(ann.get_by_text("it will not be shown again")).to_be_visible()
        secret_box = ann.locator(".q-dialog input")
        secret = secret_box.input_value()
        assert secret.startswith("parley_") and len(secret) > 40
        with sqlite3.connect(data_dir / "parley.db") as db:
            rows = db.execute("SELECT name, prefix, token_hash FROM api_token").fetchall()
        assert rows == [("laptop script", secret[:11], hashlib.sha256(secret.encode()).hexdigest())]
        assert secret.encode() not in (data_dir / "parley.db").read_bytes()
        assert httpx.get(url + "/api/conversations", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        ann.get_by_role("button", name="Done").click()
        expect(ann.locator(".q-dialog")).to_have_count(0)
        assert secret not in ann.content()
        ann.reload()
        expect(ann.get_by_text("laptop script")).to_be_visible()
        assert secret not in ann.content()
        ann.get_by_role("button", name="Revoke").click()
        ann.locator(".q-dialog").get_by_role("button", name="Revoke").click()
        expect(ann.get_by_text("No API tokens.")).to_be_visible()
        with sqlite3.connect(data_dir / "parley.db") as db:
            assert db.execute("SELECT count(*) FROM api_token").fetchone() == (0,)

        # -- a password change: the old password is refused from then on, this browser stays logged in
        ann.get_by_label("Current password", exact=True).fill(PASSWORD)
        ann.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        ann.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
        ann.get_by_role("button", name="Change password").click()
        expect(ann.get_by_text("Password changed.")).to_be_visible()
        assert httpx.post(url + "/login", json={"name": "ann", "password": PASSWORD}).status_code == 401
        assert httpx.post(url + "/login", json={"name": "ann", "password": NEW_PASSWORD}).status_code == 200
        ann.goto(url + "/")
        expect(ann.get_by_placeholder("Message Parley")).to_be_visible()

        # -- admin: the usage table shows ann's tokens; disabling bob logs him out and refuses his login
        open_user_menu(ann, "ann", "Admin")
        ann.wait_for_url(url + "/admin")
        usage_row = ann.locator(".q-table tbody tr", has_text="ann")
        expect(usage_row).to_contain_text(f"{tokens:,} · 1")
        bob_row = ann.locator(".nicegui-row", has_text="bob").filter(has=ann.get_by_role("button", name="Disable"))
        bob_row.last.get_by_role("button", name="Disable").click()
        expect(ann.get_by_role("button", name="Enable")).to_be_visible()
        with opened_store(data_dir) as store:
            assert store.user_by_name("bob").disabled  # type: ignore[union-attr]
        bob.reload()
        bob.wait_for_url(f"{url}/login?next=/")
        log_in(bob, "bob", PASSWORD)
        expect(bob.get_by_role("alert")).to_have_text("Wrong user name or password.")
        # too many failed logins for a name: the form says when to try again, and keeps what was typed
        for _ in range(4):
            assert httpx.post(url + "/login", json={"name": "bob", "password": "guess"}).status_code == 401
        bob.get_by_role("button", name="Log in").click()
        expect(bob.get_by_role("alert")).to_contain_text("Too many failed logins. Try again in")
        expect(bob.get_by_label("Name")).to_have_value("bob")
        expect(bob.get_by_label("Password")).to_have_value(PASSWORD)

        # -- logging out: back to the login page, and / needs a login again
        open_user_menu(ann, "ann", "Log out")
        ann.wait_for_url(url + "/login")
        ann.goto(url + "/")
        ann.wait_for_url(f"{url}/login?next=/")

        assert not ann.errors and not bob.errors, (ann.errors, bob.errors)  # type: ignore[attr-defined]
        assert_no_errors(process)
