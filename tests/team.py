"""Helpers for tests of team mode (accounts): users made straight in the data folder's database, logins over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from chat.auth import Accounts
from chat.engine import Account
from chat.store import Store

#: Every test user's password.
PASSWORD = "correct horse battery staple"


def add_users(data_dir: Path, *names: str, admins: tuple[str, ...] = ()) -> dict[str, Account]:
    """Create users (password ``PASSWORD``) in ``data_dir``'s SQLite database, before the server starts (a server
    started on a database with users requires logins). Returns each user's engine ``Account``."""
    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    store.migrate()
    accounts = Accounts(store, enabled=True)
    made = {}
    for name in names:
        user = accounts.add_user(name, PASSWORD, is_admin=name in admins)
        made[name] = Account(user_id=user.id, name=user.name, is_admin=user.is_admin)
    store.close()
    return made


def api_token(data_dir: Path, account: Account, name: str = "test") -> str:
    """A new API token of ``account`` (its secret, for ``Authorization: Bearer``)."""
    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    try:
        return Accounts(store, enabled=True).create_token(account, name).secret
    finally:
        store.close()


def logged_in(base_url: str, name: str, password: str = PASSWORD) -> httpx.Client:
    """An httpx client logged in as ``name`` through ``POST /login`` (it carries the session cookie)."""
    client = httpx.Client(base_url=base_url, timeout=30)
    response = client.post("/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    return client
