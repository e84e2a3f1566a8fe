"""The left drawer: conversations newest first, with New, Rename and Delete (confirmed)."""

from __future__ import annotations

import asyncio

from nicegui import ui

from ..engine import DEFAULT_TITLE, LOCAL, Account, Change, Engine
from ..store import Store
from .confirm import confirm
from .notices import show_error


class ConversationList:
    """The drawer's list; follows every conversation of its account created, renamed, deleted or answered.

    ``load()`` reads the list once (in a thread). After that it subscribes to its account's conversations only
    (``Engine.watch_conversations``) and applies each change from what the change carries, item by item (a new row,
    a new title, a row moved to the top, a row removed): no database read, and a few hundred bytes to the browser per
    change, not the whole list again.

    Args:
        engine: creates, renames and deletes conversations; tells about changes.
        store: lists the conversations.
        current_id: the conversation on this page (highlighted), or None.
        account: whose conversations are listed (default ``LOCAL``: every conversation, personal mode).
    """

    def __init__(self, engine: Engine, store: Store, current_id: int | None, *, account: Account = LOCAL) -> None:
        self.engine = engine
        self.account = account
        self.store = store
        self.rows: dict[int, ui.row] = {}
        self.titles: dict[int, ui.link] = {}
        self.current_id = current_id
        ui.button("New chat", icon="add", on_click=lambda: ui.navigate.to("/")).props("outline no-caps").classes(
            "w-full"
        ).mark("new-chat")
        self.list = ui.column().classes("w-full gap-0 mt-2").mark("conversation-list")

    async def load(self) -> None:
        """Show the account's conversations, newest first, then follow their changes."""
        conversations = await asyncio.to_thread(self.store.list_conversations, owner=self.account.owner)
        with self.list:
            for conversation in conversations:
                assert conversation.id is not None
                self._item(conversation.id, conversation.title)
        stop_watching = self.engine.watch_conversations(self.account, self._on_change)
        self.list.client.on_delete(stop_watching)

    def _on_change(self, change: Change) -> None:
        # called synchronously inside whichever tab or task made the change: only small updates of this page's
        # elements, which NiceGUI sends with its next batch
        if self.list.is_deleted:
            return
        row = self.rows.get(change.conversation_id)
        if change.kind == "created" and row is None:
            with self.list:
                self._item(change.conversation_id, change.title or DEFAULT_TITLE)
            self.rows[change.conversation_id].move(self.list, target_index=0)
        elif change.kind == "updated" and row is not None and change.title is not None:
            if self.titles[change.conversation_id].text != change.title:
                self.titles[change.conversation_id].set_text(change.title)
        elif change.kind == "deleted" and row is not None:
            self.rows.pop(change.conversation_id).delete()
            self.titles.pop(change.conversation_id, None)
        elif change.kind == "message" and row is not None and self.list.default_slot.children[0] is not row:
            row.move(self.list, target_index=0)  # a new message: the conversation is the most recent

    @property
    def current_id(self) -> int | None:
        """The conversation on this page (highlighted, ``aria-current``), or None."""
        return self._current_id

    @current_id.setter
    def current_id(self, conversation_id: int | None) -> None:
        self._current_id = conversation_id
        for listed, row in self.rows.items():
            self._mark(listed, row)

    def _mark(self, conversation_id: int, row: ui.row) -> None:
        current = conversation_id == self._current_id
        if current != ("parley-current" in row.classes):
            row.classes(**{"add" if current else "remove": "parley-current"})
            link = self.titles[conversation_id]  # screen readers say which conversation is open
            if current:
                link.props('aria-current="page"')
            else:
                link.props(remove="aria-current")

    def _item(self, conversation_id: int, title: str) -> None:
        """One row: the title as a plain link (the browser navigates; no server round trip, no listener to send)
        and the ⋮ button of its menu."""
        with (
            ui.row()
            .classes("parley-conversation-row")  # styled in parley.css: short class lists, fewer bytes per new row
            .mark(f"conversation-{conversation_id}") as row
        ):
            self.titles[conversation_id] = (
                ui.link(title, f"/c/{conversation_id}").classes("parley-conversation-link").mark("conversation-title")
            )
            button = ui.button(icon="more_vert", on_click=lambda: self._open_menu(conversation_id, button))
            button.props('flat dense round size=sm aria-label="Conversation menu"').mark("conversation-menu")
        self.rows[conversation_id] = row
        self._mark(conversation_id, row)

    def _open_menu(self, conversation_id: int, button: ui.button) -> None:
        """Rename / Delete, built on the first click only (a list of hundreds carries no hidden menus)."""
        menu = next((child for child in button.default_slot.children if isinstance(child, ui.menu)), None)
        if menu is None:
            with button, ui.menu() as menu:
                ui.menu_item("Rename", lambda: self.rename(conversation_id)).mark("rename-conversation")
                ui.menu_item("Delete", lambda: self.delete(conversation_id)).mark("delete-conversation")
        menu.open()

    def _title(self, conversation_id: int) -> str:
        """The title shown now (it may have been renamed since its row was built)."""
        label = self.titles.get(conversation_id)
        return label.text if label is not None else DEFAULT_TITLE

    async def rename(self, conversation_id: int) -> None:
        """Ask for a new title and save it."""
        with ui.dialog() as dialog, ui.card().classes("min-w-[min(360px,90vw)]"):
            ui.label("Rename conversation").classes("text-lg")
            title = ui.input("Title", value=self._title(conversation_id)).classes("w-full").mark("rename-input")
            title.on("keydown.enter", lambda: dialog.submit(title.value))
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
                ui.button("Save", on_click=lambda: dialog.submit(title.value)).mark("rename-save")
        new_title = await dialog
        dialog.delete()
        if new_title is None:
            return
        try:
            await self.engine.update_conversation(conversation_id, self.account, title=new_title)
        except Exception as error:
            show_error(error)

    async def delete(self, conversation_id: int) -> None:
        """Ask for confirmation, then delete the conversation and all its messages."""
        question = f"Delete “{self._title(conversation_id)}”?"
        if not await confirm(question, "Its messages are deleted too. This cannot be undone.", "Delete",
                             mark="confirm-delete"):  # fmt: skip
            return
        try:
            await self.engine.delete_conversation(conversation_id, self.account)
        except Exception as error:
            show_error(error)
            return
        if conversation_id == self.current_id:
            ui.navigate.to("/")
