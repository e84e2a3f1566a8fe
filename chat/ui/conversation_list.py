"""The left drawer: conversations newest first, with New, Rename and Delete (confirmed)."""

from __future__ import annotations

from nicegui import background_tasks, ui

from ..engine import LOCAL, Account, Change, Engine
from ..store import Conversation, Store
from .chat_view import show_error
from .confirm import confirm


class ConversationList:
    """The drawer's list; follows every conversation created, renamed, deleted or answered.

    Changes are applied item by item (a new row, a new title, a row moved to the top), never by rebuilding the
    list, so a page with hundreds of conversations gets a few hundred bytes per change, not the whole list again.

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
        self.current_id = current_id
        self.rows: dict[int, ui.row] = {}
        self.titles: dict[int, ui.link] = {}
        self.order: list[int] = []  # ids of the listed conversations, top first
        ui.button("New chat", icon="add", on_click=lambda: ui.navigate.to("/")).props("outline no-caps").classes(
            "w-full"
        ).mark("new-chat")
        self.list = ui.column().classes("w-full gap-0 mt-2").mark("conversation-list")
        self.render()
        stop_watching = engine.watch(self._on_change)
        ui.context.client.on_delete(stop_watching)

    def _on_change(self, change: Change) -> None:
        # a new message only moves its conversation to the top: nothing to do when it is there already
        if change.kind == "message" and self.order and self.order[0] == change.conversation_id:
            return
        # team mode: another user's conversation (never listed here) changed: nothing to do (a new one may be ours)
        if self.account.owner is not None and change.kind != "created" and change.conversation_id not in self.rows:
            return
        if change.kind in {"created", "updated", "deleted", "message"}:
            background_tasks.create(self._render_later(), name="conversation-list-render")

    async def _render_later(self) -> None:
        if not self.list.is_deleted:
            self.render()

    def render(self) -> None:
        """Make the list match the store: add new rows, drop deleted ones, update titles, move rows into order."""
        conversations = self.store.list_conversations(owner=self.account.owner)
        ids = [c.id for c in conversations if c.id is not None]
        for gone in set(self.rows) - set(ids):
            self.rows.pop(gone).delete()
            self.titles.pop(gone, None)
        with self.list:
            for conversation in conversations:
                assert conversation.id is not None
                if conversation.id not in self.rows:
                    self._item(conversation)
                elif self.titles[conversation.id].text != conversation.title:
                    self.titles[conversation.id].set_text(conversation.title)
                current = conversation.id == self.current_id
                row = self.rows[conversation.id]
                if current != ("parley-current" in row.classes):
                    row.classes(**{"add" if current else "remove": "parley-current"})
                    link = self.titles[conversation.id]  # screen readers say which conversation is open
                    if current:
                        link.props('aria-current="page"')
                    else:
                        link.props(remove="aria-current")
        if [r.id for r in self.list.default_slot.children] != [self.rows[i].id for i in ids]:
            for index, conversation_id in enumerate(ids):
                if self.list.default_slot.children.index(self.rows[conversation_id]) != index:
                    self.rows[conversation_id].move(self.list, target_index=index)
        self.order = ids

    def _item(self, conversation: Conversation) -> None:
        """One row: the title as a plain link (the browser navigates; no server round trip, no listener to send)
        and the ⋮ button of its menu."""
        assert conversation.id is not None
        with (
            ui.row()
            .classes("w-full items-center no-wrap rounded px-2 py-1 parley-conversation-row")
            .mark(f"conversation-{conversation.id}") as row
        ):
            self.titles[conversation.id] = (
                ui.link(conversation.title, f"/c/{conversation.id}")
                .classes("parley-conversation-link flex-grow min-w-0 truncate text-sm text-inherit no-underline py-1")
                .mark("conversation-title")
            )
            button = ui.button(icon="more_vert", on_click=lambda: self._open_menu(conversation, button))
            button.props('flat dense round size=sm aria-label="Conversation menu"').mark("conversation-menu")
        self.rows[conversation.id] = row

    def _open_menu(self, conversation: Conversation, button: ui.button) -> None:
        """Rename / Delete, built on the first click only (a list of hundreds carries no hidden menus)."""
        menu = next((child for child in button.default_slot.children if isinstance(child, ui.menu)), None)
        if menu is None:
            with button, ui.menu() as menu:
                ui.menu_item("Rename", lambda: self.rename(self._current(conversation))).mark("rename-conversation")
                ui.menu_item("Delete", lambda: self.delete(self._current(conversation))).mark("delete-conversation")
        menu.open()

    def _current(self, conversation: Conversation) -> Conversation:
        """``conversation`` with the title shown now (it may have been renamed since its row was built)."""
        assert conversation.id is not None
        label = self.titles.get(conversation.id)
        return conversation.model_copy(update={"title": label.text}) if label is not None else conversation

    async def rename(self, conversation: Conversation) -> None:
        """Ask for a new title and save it."""
        with ui.dialog() as dialog, ui.card().classes("min-w-[360px]"):
            ui.label("Rename conversation").classes("text-lg")
            title = ui.input("Title", value=conversation.title).classes("w-full").mark("rename-input")
            title.on("keydown.enter", lambda: dialog.submit(title.value))
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
                ui.button("Save", on_click=lambda: dialog.submit(title.value)).mark("rename-save")
        new_title = await dialog
        dialog.delete()
        if new_title is None:
            return
        try:
            assert conversation.id is not None
            self.engine.update_conversation(conversation.id, self.account, title=new_title)
        except Exception as error:
            show_error(error)

    async def delete(self, conversation: Conversation) -> None:
        """Ask for confirmation, then delete the conversation and all its messages."""
        question = f"Delete “{conversation.title}”?"
        if not await confirm(question, "Its messages are deleted too. This cannot be undone.", "Delete",
                             mark="confirm-delete"):  # fmt: skip
            return
        try:
            assert conversation.id is not None
            await self.engine.delete_conversation(conversation.id, self.account)
        except Exception as error:
            show_error(error)
            return
        if conversation.id == self.current_id:
            ui.navigate.to("/")
