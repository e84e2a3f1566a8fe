"""Sharing from the pages: the Share dialog of a conversation and the list of share links (``ShareList``), which the
dialog shows for its conversation and the Account page for all of a user's links.

* **The dialog** (``open_share_dialog``): with accounts, the owner chooses who may open the link — "People logged in
  to this Parley" (the default) or "Anyone with the link"; without accounts (personal mode) the link opens for anyone
  who reaches this Parley, which listens on this computer only, and the dialog says so. "Create link" stores a
  snapshot of the shown path (``chat/store/sharing.py``) and shows the link once, with a Copy button: Parley keeps
  only a hash of its token. Under it, the conversation's links that still work, each with Revoke.
* **The list**: the conversation's title when shared, who may open it, when it was made, and Revoke (confirmed).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nicegui import ui

from ..engine import Account, Engine
from ..store import NotFound, ShareLink, Store
from ..store.sharing import create_share, list_shares, revoke_share, share_path
from .access import Guard, always_signed_in
from .confirm import confirm
from .notices import show_error

#: How each audience is said on the pages.
AUDIENCE_LABELS = {"users": "People logged in to this Parley", "anyone": "Anyone with the link"}
#: What the dialog says in personal mode, where there is no login to ask for.
PERSONAL_NOTE = (
    "Parley runs without accounts, so anyone who can open this Parley can open the link. Without accounts it "
    "listens on this computer only (loopback): others can open the link only once you expose it."
)


def when(moment: datetime) -> str:
    """A stored time as the list shows it: ``2026-11-23 15:58 UTC`` (as the Account page shows its tokens'; a naive
    time, as SQLite gives back, is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class ShareList:
    """A list of share links that still work, each with Revoke (asked first); built inside the current container.

    Args:
        store: reads and revokes the links.
        account: whose links (``account.owner``; personal mode: every link).
        conversation_id: only this conversation's links (the dialog); None: every one of the account's (the Account
            page, with each title linking to its conversation).
        guard: checks that the page's login still holds before a Revoke.
    """

    def __init__(
        self, store: Store, account: Account, conversation_id: int | None = None, guard: Guard = always_signed_in
    ) -> None:
        self.store = store
        self.account = account
        self.conversation_id = conversation_id
        self.guard = guard
        self.list = ui.column().classes("w-full gap-0").mark("share-list")

    def render(self, links: list[ShareLink]) -> None:
        """Show ``links`` (newest first)."""
        self.list.clear()
        with self.list:
            if not links:
                ui.label("No shared links.").classes("parley-muted text-sm py-2").mark("no-shares")
            for link in links:
                title = str(link.snapshot.get("title") or "Untitled")
                with ui.row().classes("w-full items-center no-wrap gap-3 py-1 border-b").mark(f"share-{link.id}"):
                    with ui.column().classes("flex-grow gap-0 min-w-0"):
                        if self.conversation_id is None:
                            ui.link(title, f"/c/{link.conversation_id}").classes("font-medium").mark("share-label")
                        else:
                            ui.label(title).classes("font-medium").mark("share-label")
                        audience = AUDIENCE_LABELS.get(link.audience, link.audience)
                        ui.label(f"{audience} · created {when(link.created_at)}").classes("text-xs parley-muted")
                    ui.button("Revoke", on_click=lambda link=link: self.revoke(link)).props(
                        "flat dense no-caps color=negative"
                    ).mark("revoke-share")

    async def refresh(self) -> None:
        """Read the links again and show them."""
        links = await asyncio.to_thread(
            list_shares, self.store, self.account.owner, conversation_id=self.conversation_id
        )
        if not self.list.is_deleted:
            self.render(links)

    async def revoke(self, link: ShareLink) -> None:
        """Ask for confirmation, then revoke ``link``: its page answers 404 from then on."""
        title = str(link.snapshot.get("title") or "Untitled")
        question = f"Revoke the link to “{title}”?"
        consequence = "Whoever has the link can no longer open it. This cannot be undone."
        if not await confirm(question, consequence, "Revoke", mark="confirm-revoke-share") or not await self.guard():
            return
        assert link.id is not None
        try:
            await asyncio.to_thread(revoke_share, self.store, link.id, self.account.owner)
        except NotFound:
            pass  # revoked meanwhile (another tab): the list shows it gone
        except Exception as error:
            show_error(error)
            return
        ui.notify("Link revoked", type="positive")
        await self.refresh()


def shares_card(store: Store, account: Account, guard: Guard = always_signed_in) -> ShareList:
    """The Account page's "Shared links" card, listing every link of ``account`` (call ``refresh()`` to fill it)."""
    with ui.card().classes("w-full").mark("shared-links"):
        ui.label("Shared links").classes("text-lg")
        ui.label(
            "Read-only links to conversations as they were when shared. Share one from its header (the share icon)."
        ).classes("parley-muted text-sm")
        return ShareList(store, account, guard=guard)


async def open_share_dialog(
    engine: Engine, store: Store, conversation_id: int, account: Account, *, guard: Guard = always_signed_in
) -> None:
    """Open the Share dialog of a conversation and return when it is closed.

    Args:
        engine: the page's engine (unused for now: sharing only reads the conversation and writes the link).
        store: reads the conversation and its links, stores new links.
        conversation_id: the conversation to share.
        account: who shares it (team mode: must own it; personal mode: ``LOCAL``, no audience to choose).
        guard: checks that the page's login still holds before Create link and Revoke.

    Raises:
        NotFound: no such conversation, or another user's (nothing is shown then).
    """
    del engine
    conversation = await asyncio.to_thread(store.get_conversation, conversation_id, owner=account.owner)
    personal = account.user_id is None
    origin = ""
    request = getattr(ui.context.client, "request", None)
    if request is not None:
        origin = str(request.base_url).rstrip("/")
    with ui.dialog() as dialog, ui.card().classes("min-w-[480px] max-w-full gap-3").mark("share-dialog"):
        ui.label(f"Share “{conversation.title}”").classes("text-lg")
        ui.label(
            "The link shows this conversation as it is now, read-only: messages written later are not shown, and "
            "neither are your settings, system prompt or other conversations."
        ).classes("parley-muted text-sm")
        if personal:
            ui.label(PERSONAL_NOTE).classes("text-sm parley-warning").mark("share-personal-note")
            audience = None
        else:
            audience = ui.radio(AUDIENCE_LABELS, value="users").mark("share-audience")

        async def create() -> None:
            if not await guard():
                return
            chosen = "anyone" if audience is None else str(audience.value)
            try:
                token, _ = await asyncio.to_thread(create_share, store, conversation_id, account.owner, chosen)
            except Exception as error:
                show_error(error)
                return
            url = origin + share_path(token)
            result.clear()
            with result:
                ui.label("Copy the link now: Parley keeps only a hash of it, so it cannot show it again.").classes(
                    "text-sm parley-warning"
                )
                with ui.row().classes("w-full items-center no-wrap gap-2"):
                    ui.input(value=url).props("readonly outlined dense").classes("flex-grow font-mono").mark(
                        "share-url"
                    )
                    ui.button(
                        icon="content_copy",
                        on_click=lambda: (ui.clipboard.write(url), ui.notify("Copied", type="positive")),
                    ).props('flat round title="Copy" aria-label="Copy the link"').mark("copy-share")
            await links.refresh()

        ui.button("Create link", icon="link", on_click=create).props("unelevated no-caps").mark("create-share")
        result = ui.column().classes("w-full gap-1")
        ui.separator()
        ui.label("Links to this conversation").classes("font-medium")
        links = ShareList(store, account, conversation_id, guard)
        with ui.row().classes("w-full justify-end"):
            ui.button("Done", on_click=lambda: dialog.submit(None)).props("flat no-caps").mark("share-done")
    await links.refresh()
    dialog.open()
    await dialog
    dialog.delete()  # the link's token leaves the page with it
