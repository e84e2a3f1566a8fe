"""Who an HTTP request or WebSocket is, and the login and logout routes.

* ``Authorization: Bearer parley_…`` (an API token) is looked at first, then the browser's login session (the token
  in the signed session cookie that ``POST /login`` set).
* ``POST /login`` takes JSON ``{"name", "password"}``: 200 ``{"ok": true}`` with the session cookie set, 401
  ``{"detail"}`` for a wrong name or password, 429 ``{"detail"}`` with ``Retry-After`` (seconds) after too many
  failed attempts from the address or for the name. The login page calls it with ``fetch``, so what was typed stays
  in the form whatever the answer.
* ``POST /logout`` ends the session and redirects (303) to ``/login``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from ..engine import Account, RateLimited
from .accounts import SESSION_KEY, Accounts, LoginFailed


def session_token(connection: HTTPConnection) -> str | None:
    """The login token kept in the connection's signed session cookie, or None."""
    session = connection.scope.get("session") or {}
    token = session.get(SESSION_KEY)
    return token if isinstance(token, str) else None


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (RFC 6750 §2.1), or None."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def connection_account(accounts: Accounts, connection: HTTPConnection) -> Account | None:
    """The account a request or WebSocket is made for: by its API token when it has an ``Authorization`` header
    (a wrong token is None even with a valid cookie), else by its login session. ``LOCAL`` in personal mode; None
    when it is not logged in."""
    if not accounts.enabled:
        return accounts.session_account(None)
    if connection.headers.get("authorization"):
        return await asyncio.to_thread(accounts.token_account, bearer_token(connection))
    token = session_token(connection)
    return await asyncio.to_thread(accounts.session_account, token) if token else None


def client_address(connection: HTTPConnection) -> str:
    """The client's IP address (behind a reverse proxy, uvicorn takes it from ``X-Forwarded-For`` when the proxy's
    address is in ``--forwarded-allow-ips``, by default 127.0.0.1)."""
    return connection.client.host if connection.client else "unknown"


class Login(BaseModel):
    """A login form."""

    name: str = Field(max_length=200)
    password: str = Field(max_length=1000)


def register_login(app: FastAPI, accounts: Accounts) -> None:
    """Add ``POST /login`` and ``POST /logout`` (see the module docstring) to ``app``."""

    @app.post("/login", include_in_schema=False)
    async def login(body: Login, request: Request) -> Any:
        try:
            token = await accounts.login(body.name, body.password, client_address(request))
        except (RateLimited, LoginFailed) as refusal:  # 429 with Retry-After, or 401
            return JSONResponse({"detail": str(refusal)}, status_code=refusal.status, headers=refusal.headers)
        request.session[SESSION_KEY] = token
        return {"ok": True}

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> RedirectResponse:
        token = session_token(request)
        if token:
            await asyncio.to_thread(accounts.logout, token)
            request.session.pop(SESSION_KEY, None)
        return RedirectResponse("/login", status_code=303)
