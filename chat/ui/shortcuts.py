"""Keyboard shortcuts of the chat pages, and the dialog that lists them (``?`` or Ctrl+/).

The keys are read in the browser (``shortcuts.js``), which does what needs no server itself (new chat, open the
search palette, focus the message box, copy the last answer, previous and next conversation) and sends the page a
``stop``, ``regenerate`` or ``help`` event for the rest. The bindings follow the chat UIs people know (ChatGPT, Open
WebUI): Ctrl+Shift+O, Shift+Esc, Ctrl+Shift+C, Ctrl+K (search); Ctrl is ⌘ on a Mac.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nicegui import ui
from nicegui.element import Element

from .text import Text


@dataclass(frozen=True)
class Shortcut:
    """One keyboard shortcut.

    Attributes:
        action: what it does, as the browser and the page name it (``"new-chat"``, ``"stop"``, …).
        keys: its key combinations, any of which works: modifiers ``Ctrl``, ``Alt``, ``Shift`` joined by ``+`` to a
            key named as ``KeyboardEvent.key`` names it (``O``, ``Escape``, ``ArrowUp``, ``?``, ``/``).
        description: what the shortcuts dialog says it does.
    """

    action: str
    keys: tuple[str, ...]
    description: str


SHORTCUTS = (
    Shortcut("new-chat", ("Ctrl+Shift+O",), "New chat"),
    Shortcut("search", ("Ctrl+K",), "Search conversations"),
    Shortcut("focus-composer", ("Shift+Escape",), "Focus the message box"),
    Shortcut("stop", ("Escape",), "Stop the answer while it streams"),
    Shortcut("regenerate", ("Alt+R",), "Regenerate the last answer"),
    Shortcut("copy-last", ("Ctrl+Shift+C",), "Copy the last answer"),
    Shortcut("previous-conversation", ("Alt+ArrowUp",), "Previous conversation in the list"),
    Shortcut("next-conversation", ("Alt+ArrowDown",), "Next conversation in the list"),
    Shortcut("help", ("?", "Ctrl+/"), "Show these shortcuts"),
)

#: Keys of the message box itself, listed in the dialog too.
COMPOSER_KEYS = (("Enter",), "Send the message"), (("Shift+Enter",), "New line in the message")

#: How the dialog shows a key name.
KEY_LABELS = {"Escape": "Esc", "ArrowUp": "↑", "ArrowDown": "↓"}

#: The actions the page carries out (the browser does the others itself).
PAGE_ACTIONS = ("stop", "regenerate", "help")


def show_keys(combination: str) -> None:
    """Show ``"Ctrl+Shift+O"`` as three ``<kbd>`` keys joined by ``+``."""
    with ui.row().classes("items-center gap-1 no-wrap"):
        for index, key in enumerate(combination.split("+") if combination != "+" else ["+"]):
            if index:
                ui.label("+").classes("parley-muted text-xs")
            Text(KEY_LABELS.get(key, key), "kbd").classes("parley-key")


async def show_shortcuts() -> None:
    """Show the dialog that lists every shortcut, until it is closed."""
    with ui.dialog() as dialog, ui.card().classes("min-w-[min(440px,90vw)]").mark("shortcuts-dialog"):
        with ui.row().classes("w-full items-center no-wrap"):
            ui.label("Keyboard shortcuts").classes("text-lg flex-grow").props('role="heading" aria-level="2"')
            ui.button(icon="close", on_click=dialog.close).props('flat round dense aria-label="Close" title="Close"')
        with ui.grid(columns="auto 1fr").classes("items-center gap-x-6 gap-y-2"):
            for keys, description in [(s.keys, s.description) for s in SHORTCUTS] + list(COMPOSER_KEYS):
                with ui.row().classes("items-center gap-2 no-wrap"):
                    for index, combination in enumerate(keys):
                        if index:
                            ui.label("or").classes("parley-muted text-xs")
                        show_keys(combination)
                ui.label(description)
        ui.label("On a Mac, Ctrl is ⌘.").classes("parley-muted text-sm")
    dialog.open()
    await dialog
    dialog.delete()


class Shortcuts(Element, component="shortcuts.js"):
    """Listens for the chat pages' keyboard shortcuts (``SHORTCUTS``) in the browser, and opens their dialog.

    Args:
        composer: the message box (Shift+Esc focuses it).
        on_stop: stops the answer streaming in this conversation (Esc; the browser sends it only while an answer on
            the page streams and no dialog or menu is open, since Esc closes those).
        on_regenerate: regenerates the last answer (Alt+R).
    """

    def __init__(
        self,
        *,
        composer: Element,
        on_stop: Callable[[], Awaitable[None]],
        on_regenerate: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__()
        self._props["shortcuts"] = [{"action": s.action, "keys": list(s.keys)} for s in SHORTCUTS]
        self._props["pageActions"] = list(PAGE_ACTIONS)
        self._props["composer"] = composer.id
        self.on("stop", on_stop)
        self.on("regenerate", on_regenerate)
        self.on("help", show_shortcuts)
        self.mark("shortcuts")
