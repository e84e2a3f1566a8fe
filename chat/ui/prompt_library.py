"""The composer's ``/`` library of saved prompts, and its "Prompts" dialog.

Typing ``/`` at the start of the message box (or after a space) opens a menu above the box of the user's prompts
(``chat/store/prompts.py``: their own and the published ones), filtered by what follows the ``/`` as it is typed;
Up/Down move the highlight, Enter (or a click) chooses, Esc closes. A prompt with ``{{placeholders}}`` opens a small
form with one field per placeholder; the filled text then replaces the ``/…`` just typed (it is not sent). The
detection runs on the server, on the box's value (what the browser sends as it is typed), so it works the same with
NiceGUI's simulated user.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from nicegui import ui

from ..engine import Account
from ..store import SavedPrompt, Store
from ..store import prompts as library
from .notices import show_error

#: A ``/`` command being typed at the end of the box: at its start or after whitespace; group 1 is the filter.
SLASH = re.compile(r"(?:^|(?<=\s))/([^\s/]*)$")
#: Prompts shown in the menu at most.
MENU_SIZE = 8


class PromptLibrary:
    """The ``/`` menu and the dialogs of one composer.

    Args:
        store: where the prompts are.
        account: whose prompts.
        get_text: the box's text now.
        set_text: puts a text in the box (not sent).
    """

    def __init__(
        self, store: Store, account: Account, get_text: Callable[[], str], set_text: Callable[[str], None]
    ) -> None:
        self.store = store
        self.account = account
        self.get_text = get_text
        self.set_text = set_text
        self.prompts: list[SavedPrompt] = []
        self.matches: list[SavedPrompt] = []
        self.highlight = 0
        self.is_open = False
        self._loaded = False
        self.menu = ui.column().classes("parley-slash-menu gap-0 w-full max-w-3xl mx-auto").mark("slash-menu")
        self.menu.props('role="listbox" aria-label="Saved prompts"')
        self.menu.set_visibility(False)
        self.dialogs = ui.element("div")  # the dialogs' home: not in the menu, which is rebuilt as it filters

    # -- the menu ----------------------------------------------------------------------------------

    async def on_text(self, text: str) -> None:
        """Open, filter or close the menu for the box's new ``text``."""
        match = SLASH.search(text)
        if match is None:
            self.close()
            return
        if not self._loaded or not self.is_open:
            await self.reload()
        query = match.group(1).casefold()
        self.matches = [p for p in self.prompts if query in p.name.casefold()][:MENU_SIZE]
        self.highlight = min(self.highlight, max(len(self.matches) - 1, 0))
        self.is_open = True
        self._render()

    async def reload(self) -> None:
        """Read the prompts again (in a thread)."""
        self.prompts = await asyncio.to_thread(library.list_prompts, self.store, self.account)
        self._loaded = True

    def close(self) -> None:
        """Hide the menu."""
        if self.is_open:
            self.is_open = False
            self.highlight = 0
            self.menu.set_visibility(False)

    def move(self, step: int) -> None:
        """Move the highlight by ``step`` (Up: -1, Down: +1), wrapping around."""
        if self.is_open and self.matches:
            self.highlight = (self.highlight + step) % len(self.matches)
            self._render()

    async def choose_highlighted(self) -> None:
        """Choose the highlighted prompt (Enter)."""
        if self.matches:
            await self.choose(self.matches[self.highlight])
        else:
            self.close()

    def _render(self) -> None:
        self.menu.clear()
        with self.menu:
            if not self.matches:
                ui.label("No saved prompt matches").classes("parley-muted px-3 py-1")
            for index, prompt in enumerate(self.matches):
                item = ui.item(prompt.name, on_click=lambda p=prompt: self.choose(p)).mark("slash-item")
                item.props(f'role="option" aria-selected="{str(index == self.highlight).lower()}"')
                if index == self.highlight:
                    item.classes("parley-slash-active bg-primary/10")
            ui.item("Manage prompts…", on_click=self.manage).classes("parley-muted").mark("manage-prompts")
        self.menu.set_visibility(True)

    # -- inserting -----------------------------------------------------------------------------------

    async def choose(self, prompt: SavedPrompt) -> None:
        """Insert ``prompt``: at once, or after its placeholders' form."""
        self.close()
        names = library.placeholders(prompt.text)
        if not names:
            self._insert(prompt.text)
            return
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("min-w-80").mark("placeholder-form"):
            ui.label(prompt.name).classes("text-lg")
            fields = {name: ui.input(name).props("outlined dense").classes("w-full").mark(f"placeholder-{name}")
                      for name in names}  # fmt: skip

            def insert() -> None:
                self._insert(library.fill(prompt.text, {name: field.value or "" for name, field in fields.items()}))
                dialog.close()

            with ui.row().classes("justify-end w-full"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Insert", on_click=insert).mark("placeholder-insert")
        dialog.on("hide", dialog.delete)
        dialog.open()

    def _insert(self, text: str) -> None:
        """Replace the ``/…`` being typed with ``text``."""
        current = self.get_text()
        match = SLASH.search(current)
        before = current[: match.start()] if match else current
        self.set_text(before + text)

    # -- the Prompts dialog ----------------------------------------------------------------------------

    async def manage(self) -> None:
        """Open the "Prompts" dialog: the user's prompts to add, edit or delete."""
        self.close()
        await self.reload()
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("w-full max-w-2xl").mark("prompts-dialog"):
            ui.label("Prompts").classes("text-lg")
            listing = ui.column().classes("w-full gap-1")
            name = ui.input("Name").props("outlined dense").classes("w-full").mark("prompt-name")
            text = ui.textarea("Text (use {{placeholders}})").props("outlined dense").classes("w-full")
            text.mark("prompt-text")
            published = ui.checkbox("Publish to everyone").mark("prompt-published")
            published.visible = self.account.is_admin and self.account.owner is not None
            editing: dict[str, int | None] = {"id": None}

            def edit(prompt: SavedPrompt | None) -> None:
                editing["id"] = prompt.id if prompt else None
                name.value, text.value = (prompt.name, prompt.text) if prompt else ("", "")
                published.value = bool(prompt and prompt.published)

            def show() -> None:
                listing.clear()
                with listing:
                    for prompt in self.prompts:
                        mine = self.account.owner is None or prompt.user_id == self.account.owner
                        with ui.row().classes("w-full items-center no-wrap").mark("prompt-row"):
                            ui.label(prompt.name).classes("flex-grow")
                            if mine:
                                ui.button(icon="edit", on_click=lambda p=prompt: edit(p)).props("flat dense round")
                                ui.button(icon="delete", on_click=lambda p=prompt: delete(p)).props(
                                    'flat dense round aria-label="Delete"'
                                ).mark("prompt-delete")

            async def save() -> None:
                fields = {"name": name.value or "", "text": text.value or ""}
                if published.visible:
                    fields["published"] = published.value
                try:
                    if editing["id"] is None:
                        await asyncio.to_thread(lambda: library.create_prompt(self.store, self.account, **fields))
                    else:
                        key = editing["id"]
                        await asyncio.to_thread(lambda: library.update_prompt(self.store, self.account, key, **fields))
                except Exception as error:
                    show_error(error)
                    return
                edit(None)
                await self.reload()
                show()

            async def delete(prompt: SavedPrompt) -> None:
                assert prompt.id is not None
                try:
                    await asyncio.to_thread(library.delete_prompt, self.store, self.account, prompt.id)
                except Exception as error:
                    show_error(error)
                await self.reload()
                show()

            show()
            with ui.row().classes("justify-end w-full"):
                ui.button("New", on_click=lambda: edit(None)).props("flat")
                ui.button("Close", on_click=dialog.close).props("flat")
                ui.button("Save", on_click=save).mark("prompt-save")
        dialog.on("hide", dialog.delete)
        dialog.open()
