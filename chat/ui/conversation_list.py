"""The left drawer: conversations newest first, with New, Rename and Delete (confirmed)."""

from __future__ import annotations

from nicegui import background_tasks, ui

from ..engine import Change, Engine
from ..store import Conversation, Store
from .chat_view import show_error


class ConversationList:
    """The drawer's list; refreshes itself when any conversation is created, renamed, deleted or answered.

    Args:
        engine: creates, renames and deletes conversations; tells about changes.
        store: lists the conversations.
        current_id: the conversation on this page (highlighted), or None.
    """

    def __init__(self, engine: Engine, store: Store, current_id: int | None) -> None:
        self.engine = engine
        self.store = store
        self.current_id = current_id
        ui.button("New chat", icon="add", on_click=lambda: ui.navigate.to("/")).props("outline no-caps").classes(
            "w-full"
        ).mark("new-chat")
        self.list = ui.column().classes("w-full gap-0 mt-2").mark("conversation-list")
        self.render()
        stop_watching = engine.watch(self._on_change)
        ui.context.client.on_delete(stop_watching)

    def _on_change(self, change: Change) -> None:
        if change.kind in {"created", "updated", "deleted", "message"}:
            background_tasks.create(self._render_later(), name="conversation-list-render")

    async def _render_later(self) -> None:
        if not self.list.is_deleted:
            self.render()

    def render(self) -> None:
        """Rebuild the list from the store."""
        self.list.clear()
        with self.list:
            for conversation in self.store.list_conversations():
                self._item(conversation)

    def _item(self, conversation: Conversation) -> None:
        current = conversation.id == self.current_id
        with (
            ui.row()
            .classes(
                "w-full items-center no-wrap rounded px-2 py-1 hover:bg-grey-3 cursor-pointer"
                + (" bg-blue-1" if current else "")
            )
            .mark(f"conversation-{conversation.id}") as row
        ):
            row.on("click", lambda c=conversation: ui.navigate.to(f"/c/{c.id}"))
            ui.label(conversation.title).classes("flex-grow truncate text-sm").mark("conversation-title")
            with (
                ui.button(icon="more_vert")
                .props("flat dense round size=sm")
                .on("click.stop", lambda: None)
                .mark("conversation-menu")
            ):
                with ui.menu():
                    ui.menu_item("Rename", lambda c=conversation: self.rename(c)).mark("rename-conversation")
                    ui.menu_item("Delete", lambda c=conversation: self.delete(c)).mark("delete-conversation")

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
            self.engine.update_conversation(conversation.id, title=new_title)
        except Exception as error:
            show_error(error)

    async def delete(self, conversation: Conversation) -> None:
        """Ask for confirmation, then delete the conversation and all its messages."""
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Delete “{conversation.title}”?").classes("text-lg")
            ui.label("Its messages are deleted too. This cannot be undone.").classes("text-grey-7")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=lambda: dialog.submit(False)).props("flat")
                ui.button("Delete", color="red", on_click=lambda: dialog.submit(True)).mark("confirm-delete")
        confirmed = await dialog
        dialog.delete()
        if not confirmed:
            return
        try:
            assert conversation.id is not None
            await self.engine.delete_conversation(conversation.id)
        except Exception as error:
            show_error(error)
            return
        if conversation.id == self.current_id:
            ui.navigate.to("/")
