"""The one confirmation dialog: "Delete …?" and the like, before something that cannot be undone."""

from __future__ import annotations

from nicegui import ui


async def confirm(question: str, consequence: str, action: str, *, mark: str) -> bool:
    """Ask ``question`` with ``consequence`` under it and the buttons Cancel and ``action`` (red).

    Args:
        question: the dialog's title, e.g. "Delete “Trip plans”?".
        consequence: what the action does, in a sentence.
        action: the confirming button's label, e.g. "Delete".
        mark: the NiceGUI test marker of the confirming button.

    Returns:
        True when the user clicked ``action``; False for Cancel, Escape or a click outside. The dialog is gone
        either way.
    """
    with ui.dialog() as dialog, ui.card():
        ui.label(question).classes("text-lg")
        ui.label(consequence).classes("parley-muted")
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=lambda: dialog.submit(False)).props("flat")
            ui.button(action, color="negative", on_click=lambda: dialog.submit(True)).mark(mark)
    confirmed = await dialog
    dialog.delete()
    return bool(confirmed)
