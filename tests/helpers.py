"""Helpers shared by the tests; test modules import each other for nothing, only this (and the modules below).

* Waiting: ``wait_for`` (async tests) and ``wait_until`` (sync tests) poll a condition until it holds. No test waits
  for something by sleeping a fixed time; the few sleeps left let time pass on purpose, and each says why.
* The app's database, read by the test: ``app_store``, ``opened_store``, ``stored_path``.
* NiceGUI's simulated user: ``send``, ``not_found``, ``handlers_done``.
* Team mode (users in the database): ``PASSWORD``, ``add_users``, ``api_token``, ``logged_in``, and a running team
  (``start_team``, ``Team``) reached with ``read_answer``, ``ws_url`` and ``ws_close_code``.

The other modules of ``tests/`` that are not tests: ``browser.py`` (the project's folder ``ROOT``, free ports, app.py
and other servers in a subprocess, headless Chromium), ``fake_upstream.py`` (the fake OpenAI-compatible upstream),
``postgres.py`` (the throwaway PostgreSQL server), ``a11y.py`` (what the layout tests measure in a page).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from nicegui import background_tasks
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from chat.auth import Accounts
from chat.engine import Account
from chat.store import Store

from .browser import free_port, serve

if TYPE_CHECKING:
    from nicegui.testing import User

    from .fake_upstream import FakeUpstream

# -- waiting ---------------------------------------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], Any], timeout: float = 10, what: str = "the condition") -> Any:
    """Poll ``predicate()`` (without blocking the event loop: the answer streams in a background task) until it returns
    something truthy, and return that; fail the test after ``timeout`` s. ``predicate`` may return an awaitable (e.g.
    a request to a fake upstream in another process), which is awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05, what: str = "the condition"):
    """Poll ``predicate()`` until it returns something truthy, and return that; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- the app's database ----------------------------------------------------------------------------------------------


def app_store(data_dir: Path) -> Store:
    """A second Store on the app's own database file, for asserting what it holds."""
    return Store(f"sqlite:///{data_dir / 'parley.db'}")


@contextlib.contextmanager
def opened_store(data_dir: Path) -> Iterator[Store]:
    """``app_store`` as a context manager that closes it."""
    store = app_store(data_dir)
    try:
        yield store
    finally:
        store.close()


def stored_path(data_dir: Path, conversation_id: int = 1):
    """The messages of a conversation's current path, as the app's database holds them now."""
    with opened_store(data_dir) as store:
        return store.path(conversation_id)


# -- NiceGUI's simulated user ----------------------------------------------------------------------------------------


async def send(user: User, text: str) -> None:
    """Type ``text`` in the composer and press Enter."""
    user.find(marker="composer").type(text)
    user.find(marker="composer").trigger("keydown.enter.exact.prevent")


async def not_found(user: User, path: str) -> str:
    """The page at ``path``, which must answer 404 (``User.open`` takes only a 200); returns its HTML, where NiceGUI
    puts the page's elements."""
    response = await user.http_client.get(path, follow_redirects=True)
    assert response.status_code == 404, (path, response.status_code)
    assert response.headers.get("X-Nicegui-Content") == "page"  # Parley's page, not a bare error
    return response.text


@contextlib.asynccontextmanager
async def handlers_done(timeout: float = 10) -> AsyncIterator[None]:
    """On leaving the block, wait until the event handlers started in it (by ``trigger`` or ``click``) have ended.

    NiceGUI runs an async handler as a background task: when ``trigger`` returns, the event has not been handled yet.
    What the block's events did (or did not do) is all there once this returns."""
    before = set(background_tasks.running_tasks)
    yield
    started = background_tasks.running_tasks - before
    if started:
        _, pending = await asyncio.wait(started, timeout=timeout)
        if pending:
            pytest.fail(f"event handlers still running after {timeout:g} s: {[t.get_name() for t in pending]}")


# -- team mode -------------------------------------------------------------------------------------------------------

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


@contextlib.contextmanager
def team_accounts(data_dir: Path) -> Iterator[Accounts]:
    """``Accounts`` (team mode) on the SQLite database of ``data_dir``."""
    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    try:
        yield Accounts(store, enabled=True)
    finally:
        store.close()


@dataclass
class Team:
    """A running Parley in team mode: its URL, data folder and users (``Account`` by name)."""

    url: str
    data_dir: Path
    users: dict[str, Account]

    def token(self, name: str) -> str:
        """A new API token of the user ``name``."""
        return api_token(self.data_dir, self.users[name])

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        """An httpx client on the server, with ``Authorization: Bearer <token>`` when ``token`` is given."""
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def sdk(self, api_key: str, **options: Any) -> openai.OpenAI:
        """The openai SDK pointed at the server's ``/v1``."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, timeout=30, **options)

    def accounts(self) -> contextlib.AbstractContextManager[Accounts]:
        """``Accounts`` on the server's database (to revoke tokens, disable users...), as a context manager."""
        return team_accounts(self.data_dir)

    def db(self) -> sqlite3.Connection:
        """A plain SQLite connection on the server's database, rows as dicts (``with`` commits, does not close)."""
        connection = sqlite3.connect(self.data_dir / "parley.db", timeout=10)
        connection.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
        return connection


@contextlib.contextmanager
def start_team(
    tmp_path: Path, upstream: FakeUpstream, names: tuple[str, ...], models: dict[str, list[str]] | None = None,
    **env: str,
) -> Iterator[tuple[subprocess.Popen, Team]]:  # fmt: skip
    """Create the users ``names`` (the first one an admin; ``models``: the models some may use) in a new data folder,
    start app.py on it (``serve``, ``env`` added) and yield ``(process, team)``."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    users = add_users(data_dir, *names, admins=names[:1])
    if models:
        with team_accounts(data_dir) as accounts:
            for name, allowed in models.items():
                user_id = users[name].user_id
                assert user_id is not None
                accounts.set_models(user_id, allowed)
    port = free_port()
    with serve(tmp_path, upstream, port, PARLEY_CHECKPOINT_INTERVAL="0.2", **env) as process:
        yield process, Team(f"http://127.0.0.1:{port}", data_dir, users)


def ws_url(team_url: str, message_id: int) -> str:
    """The WebSocket URL of an answer's stream."""
    return team_url.replace("http://", "ws://") + f"/api/messages/{message_id}/stream"


def next_answer_url(base_url: str, token: str = "t" * 24) -> str:
    """The WebSocket URL of a page's next-answer socket with ``token`` (well-formed by default)."""
    return base_url.replace("http://", "ws://") + f"/api/answers/next?spare={token}"


def ws_close_code(url: str, headers: dict[str, str] | None = None) -> int:
    """Open the WebSocket ``url``, read until the server closes it, and return the close code (minus the HTTP status
    when the handshake is refused)."""
    try:
        with ws_connect(url, additional_headers=headers or {}, open_timeout=10) as socket:
            try:
                while True:
                    socket.recv(timeout=15)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None, "closed without a close frame"
                return closed.rcvd.code
    except InvalidStatus as refused:
        return -refused.response.status_code
    raise AssertionError("not reached")


def read_answer(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Send a request answered with SSE and read it to the end; returns ``message_start``'s data and ``text``."""
    start: dict[str, Any] = {}
    text = ""
    with connect_sse(client, method, path, json=body) as source:
        assert source.response.status_code == 200, source.response.read()
        for event in source.iter_sse():
            data = json.loads(event.data)
            if event.event == "message_start":
                start = data
            elif event.event == "text_delta":
                text += data["delta"]
            elif event.event == "done":
                assert data["status"] == "complete", data
    return {**start, "text": text}
