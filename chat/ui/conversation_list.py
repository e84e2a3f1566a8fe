"""The left drawer: New chat, Search (the palette, ``search_palette.py``), a filter box, then the conversations: pinned
ones first (with a pin), then the newest first; each row's menu renames, pins, archives and deletes (confirmed). The
archived ones are under "Archived", read when it is opened."""

from __future__ import annotations

import asyncio

from nicegui import background_tasks, ui

from ..engine import DEFAULT_TITLE, LOCAL, Account, Change, Engine
from ..store import Store
from .confirm import confirm
from .notices import show_error
from .search_palette import SearchPalette
from .transfer_dialog import export_conversation


class ConversationList:
    """The drawer's list; follows every conversation of its account created, renamed, pinned, archived, deleted or
    answered.

    ``load()`` reads the list once (in a thread). After that it subscribes to its account's conversations only
    (``Engine.watch_conversations``) and applies each change from what the change carries, item by item (a new row,
    a new title, a row moved to the top, a row removed), and a few hundred bytes to the browser per change, not the
    whole list again. An ``updated`` change carries only the title: the row is read again (one row, in a thread) to
    learn whether it was pinned or archived, and moved to its place.

    The filter box hides the rows whose title does not hold what is typed (case-insensitively; no database read).

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
        self.pins: dict[int, ui.icon] = {}
        self.pinned: set[int] = set()
        self.archived: set[int] = set()
        self.current_id = current_id
        ui.button("New chat", icon="add", on_click=lambda: ui.navigate.to("/")).props("outline no-caps").classes(
            "w-full"
        ).mark("new-chat")
        self.search = SearchPalette(store, account=account)
        self.filter = (
            ui.input(placeholder="Filter by title", on_change=lambda: self._apply_filter())
            .props('dense clearable aria-label="Filter conversations by title"')
            .classes("w-full")
            .mark("conversation-filter")
        )
        self.list = ui.column().classes("w-full gap-0 mt-2").mark("conversation-list")
        with (
            ui.expansion("Archived", icon="inventory_2", on_value_change=self._archived_toggled)
            .classes("w-full mt-2")
            .props("dense")
            .mark("show-archived") as self.archive_section
        ):
            self.archived_list = ui.column().classes("w-full gap-0").mark("archived-list")
        self.archived_loaded = False

    async def load(self) -> None:
        """Show the account's conversations, newest first, then follow their changes."""
        conversations = await asyncio.to_thread(self.store.list_conversations, owner=self.account.owner, archived=False)
        with self.list:
            for conversation in conversations:
                assert conversation.id is not None
                self._item(conversation.id, conversation.title, pinned=conversation.pinned)
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
            self._place(change.conversation_id)
        elif change.kind == "updated":
            if (
                row is not None
                and change.title is not None
                and self.titles[change.conversation_id].text != change.title
            ):
                self.titles[change.conversation_id].set_text(change.title)
                self._apply_filter(change.conversation_id)
            background_tasks.create(self._reread(change.conversation_id), name="conversation-list-reread")
        elif change.kind == "deleted" and row is not None:
            self._forget(change.conversation_id)
        elif change.kind == "message" and row is not None and change.conversation_id not in self.archived:
            self._place(change.conversation_id)  # a new message: the conversation is the most recent

    def _forget(self, conversation_id: int) -> None:
        self.rows.pop(conversation_id).delete()
        for table in (self.titles, self.pins):
            table.pop(conversation_id, None)
        self.pinned.discard(conversation_id)
        self.archived.discard(conversation_id)

    def _place(self, conversation_id: int) -> None:
        """Move a row of the main list to the top of its group: the pinned ones, or (just below them) the others."""
        row = self.rows[conversation_id]
        pinned_rows = {id(self.rows[key]) for key in self.pinned if key in self.rows and key != conversation_id}
        pinned_above = sum(1 for child in self.list.default_slot.children if id(child) in pinned_rows)  # O(rows)
        index = 0 if conversation_id in self.pinned else pinned_above
        children = self.list.default_slot.children
        if row.parent_slot is not self.list.default_slot or children.index(row) != index:
            row.move(self.list, target_index=index)

    async def _reread(self, conversation_id: int) -> None:
        """Read one conversation again (pinned? archived? still there?) and put its row where it belongs now."""
        try:
            conversation = await asyncio.to_thread(
                self.store.get_conversation, conversation_id, owner=self.account.owner
            )
        except Exception:  # deleted meanwhile: its "deleted" change removes the row
            return
        if self.list.is_deleted:
            return
        if conversation.id not in self.rows:
            if conversation.archived and not self.archived_loaded:
                return
            with self.archived_list if conversation.archived else self.list:
                self._item(conversation_id, conversation.title)
        self._set_pinned(conversation_id, conversation.pinned)
        if conversation.archived:
            self.archived.add(conversation_id)
            if not self.archived_loaded:
                self._forget(conversation_id)
            else:
                self.rows[conversation_id].move(self.archived_list, target_index=0)
        else:
            self.archived.discard(conversation_id)
            self._place(conversation_id)

    def _set_pinned(self, conversation_id: int, pinned: bool) -> None:
        if pinned:
            self.pinned.add(conversation_id)
        else:
            self.pinned.discard(conversation_id)
        self.pins[conversation_id].set_visibility(pinned)

    async def _archived_toggled(self) -> None:
        """Read the archived conversations the first time "Archived" is opened (then changes keep it up to date)."""
        if not self.archive_section.value or self.archived_loaded:
            return
        self.archived_loaded = True
        conversations = await asyncio.to_thread(self.store.list_conversations, owner=self.account.owner, archived=True)
        with self.archived_list:
            for conversation in conversations:
                assert conversation.id is not None
                if conversation.id not in self.rows:
                    self._item(conversation.id, conversation.title, pinned=conversation.pinned)
                    self.archived.add(conversation.id)
        if not conversations:
            with self.archived_list:
                ui.label("Nothing archived.").classes("parley-muted text-sm p-2").mark("nothing-archived")

    def _apply_filter(self, only: int | None = None) -> None:
        """Show only the rows whose title holds the filter's text (all of them when it is empty)."""
        wanted = (self.filter.value or "").strip().casefold()
        for conversation_id, row in self.rows.items():
            if only is None or conversation_id == only:
                row.set_visibility(not wanted or wanted in self.titles[conversation_id].text.casefold())

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

    def _item(self, conversation_id: int, title: str, *, pinned: bool = False) -> None:
        """One row: a pin when pinned, the title as a plain link (the browser navigates; no server round trip, no
        listener to send) and the ⋮ button of its menu."""
        with (
            ui.row()
            .classes("parley-conversation-row")  # styled in parley.css: short class lists, fewer bytes per new row
            .mark(f"conversation-{conversation_id}") as row
        ):
            pin = ui.icon("push_pin", size="xs").classes("parley-muted").props('aria-label="Pinned"').mark("pinned")
            self.pins[conversation_id] = pin
            self.titles[conversation_id] = (
                ui.link(title, f"/c/{conversation_id}").classes("parley-conversation-link").mark("conversation-title")
            )
            button = ui.button(icon="more_vert", on_click=lambda: self._open_menu(conversation_id, button))
            button.props('flat dense round size=sm aria-label="Conversation menu"').mark("conversation-menu")
        self.rows[conversation_id] = row
        self._set_pinned(conversation_id, pinned)
        self._mark(conversation_id, row)
        self._apply_filter(conversation_id)

    def _open_menu(self, conversation_id: int, button: ui.button) -> None:
        """Rename / Pin / Archive / Delete, built on each click (a list of hundreds carries no hidden menus; the labels
        follow the row's state: Unpin, Unarchive)."""
        for child in list(button.default_slot.children):
            if isinstance(child, ui.menu):
                child.delete()
        pinned, archived = conversation_id in self.pinned, conversation_id in self.archived
        with button, ui.menu() as menu:
            ui.menu_item("Rename", lambda: self.rename(conversation_id)).mark("rename-conversation")
            pin = ui.menu_item("Unpin" if pinned else "Pin", lambda: self.set_flag(conversation_id, pinned=not pinned))
            pin.mark("pin-conversation")
            archive = "Unarchive" if archived else "Archive"
            ui.menu_item(archive, lambda: self.set_flag(conversation_id, archived=not archived)).mark(
                "archive-conversation"
            )
            ui.menu_item("Export as Markdown", lambda: export_conversation(conversation_id, "markdown")).mark(
                "export-markdown"
            )
            ui.menu_item("Export as Parley JSON", lambda: export_conversation(conversation_id, "json")).mark(
                "export-json"
            )
            ui.menu_item("Delete", lambda: self.delete(conversation_id)).mark("delete-conversation")
        menu.open()

    async def set_flag(self, conversation_id: int, **flag: bool) -> None:
        """Pin or unpin (``pinned=``), archive or unarchive (``archived=``) a conversation; the engine's "updated"
        change moves its row (in every tab)."""
        try:
            await self.engine.update_conversation(conversation_id, self.account, **flag)
        except Exception as error:
            show_error(error)

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
