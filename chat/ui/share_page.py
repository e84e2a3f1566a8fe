"""``/s/{token}``: a shared conversation, read-only (``chat/store/sharing.py`` makes the links).

The page shows the link's snapshot and nothing else of the owner's: the title, "Shared by <name> on <date>" (no name
in personal mode), then each message — a user's as a plain label (text, never markup), an answer through the same
safe renderer as the chat page (``StreamingMessage``: markdown-it, then DOMPurify in the browser; its steps from the
message's content events). No composer, drawer, settings, user menu or conversation list; the only control is the
theme button.

* An unknown or revoked token is a 404 page that says so (the same for both, so revoked links cannot be told apart).
* Audience ``users`` in team mode needs a login: a request without one is redirected to ``/login?next=/s/<token>``.
  Audience ``anyone`` is open to anyone with the link. In personal mode (no accounts) nobody logs in, and every link
  opens for whoever reaches this Parley (personal mode listens on loopback only).
* The page asks the browser not to send its address onward (``<meta name="referrer" content="no-referrer">``), so a
  link in an answer does not hand the token to another site; the token is in no log line of Parley's own.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from nicegui import ui
from starlette.requests import Request
from starlette.responses import Response

from ..auth import Accounts
from ..store import NotFound, ShareLink, Store
from ..store.sharing import shared
from .access import login_redirect, page_account
from .streaming_message import StreamingMessage
from .theme import ThemeToggle

#: Asks the browser to send no ``Referer`` from the shared page (its URL holds the token).
NO_REFERRER = '<meta name="referrer" content="no-referrer">'


def shared_on(created_at: datetime) -> str:
    """The date a link was made, as the page says it: ``2026-11-23`` (UTC; a naive time is taken as UTC)."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return created_at.astimezone(UTC).strftime("%Y-%m-%d")


def byline(owner_name: str | None, created_at: datetime) -> str:
    """``"Shared by ann on 2026-11-23"``, or ``"Shared on 2026-11-23"`` without a name (personal mode)."""
    by = f" by {owner_name}" if owner_name else ""
    return f"Shared{by} on {shared_on(created_at)}"


def _owner_name(store: Store, link: ShareLink) -> str | None:
    if link.user_id is None:
        return None
    try:
        return store.get_user(link.user_id).name
    except NotFound:  # deleted meanwhile (the link goes with the user)
        return None


def gone_notice() -> None:
    """The 404 page of an unknown or revoked link."""
    ui.context.client.status_code = 404
    ui.page_title("Link not found · Parley")
    ui.label("This shared link does not exist, or its owner revoked it.").classes("m-8 text-lg").mark("share-gone")


def shared_conversation(snapshot: dict[str, Any], owner_name: str | None, created_at: datetime) -> None:
    """Build the read-only view of a snapshot (``sharing.snapshot_of``'s shape): header, byline, messages.

    Args:
        snapshot: ``{"title", "messages": [{"role", "content", "events", "model", "created_at", "status"}]}``; its
            text is untrusted (model output, what users typed) and is only ever shown as text or through the
            sanitizing Markdown renderer.
        owner_name: who shared it (None: personal mode).
        created_at: when it was shared.
    """
    title = str(snapshot.get("title") or "Shared conversation")
    ui.page_title(f"{title} · Parley")
    ui.add_head_html(NO_REFERRER)
    with ui.header(wrap=False).classes("parley-header items-center"):
        ui.label(title).classes("parley-header-title text-base font-medium").mark("share-title")
        ThemeToggle()
    with ui.column().classes("parley-chat pt-4").mark("shared-conversation"):
        ui.label(byline(owner_name, created_at)).classes("parley-muted text-sm").mark("share-byline")
        messages = snapshot.get("messages") or []
        if not messages:
            ui.label("This conversation had no messages when it was shared.").classes("parley-muted")
        for message in messages:
            content = str(message.get("content") or "")
            with ui.column().classes("w-full gap-1 parley-message"):
                if message.get("role") == "user":
                    with ui.row().classes("parley-user-row self-end"):
                        ui.label(content).classes("parley-user-message").mark("user-message")
                else:
                    events = message.get("events")
                    body = StreamingMessage(content, events=events if isinstance(events, list) and events else None)
                    body.classes("w-full").mark("assistant-message")
                    if message.get("model"):
                        ui.label(str(message["model"])).classes("text-xs parley-muted").mark("message-model")


def register_share_page(store: Store, accounts: Accounts) -> None:
    """Declare the page ``/s/{token}`` on NiceGUI's app (call it from ``register_pages``, after ``install_theme``).

    Args:
        store: reads the links (``sharing.shared``) and the sharer's name.
        accounts: whether Parley runs with accounts, and who a request is (audience ``users`` needs a login).
    """

    @ui.page("/s/{token}", title="Shared conversation · Parley")
    async def shared_page(request: Request, token: str) -> Response | None:
        link = await asyncio.to_thread(shared, store, token)
        if link is None:
            gone_notice()
            return None
        if link.audience != "anyone" and accounts.enabled and await page_account(request, accounts) is None:
            return login_redirect(request)
        owner_name = await asyncio.to_thread(_owner_name, store, link)
        shared_conversation(link.snapshot, owner_name, link.created_at)
        return None
