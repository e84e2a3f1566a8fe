"""Export and import on the page: downloads through ``/api`` (``chat/api/transfer.py``) and the Import dialog.

* ``export_conversation(id, format)`` and ``export_all(format)`` start a download of ``/api/…/export`` (the browser's
  login session cookie authenticates it, as it does every ``/api`` request from the page).
* ``open_import_dialog(account)`` shows a file picker (NiceGUI's ``ui.upload``); the chosen file is read, checked and
  written in a thread (``chat.transfer.import_file``) while a progress bar follows it, then the dialog says what was
  imported, or why nothing was. The drawer shows the new conversations (the engine's ``created`` changes).

The engine and store are the app's (``app.state.parley``, installed by ``chat.api.register_api``) unless given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from nicegui import app, events, ui

from ..engine import LOCAL, Account, Engine
from ..refusals import Refusal
from ..store import Store
from ..transfer import import_file
from ..transfer.importing import DEFAULT_LIMITS

log = logging.getLogger(__name__)
Format = Literal["json", "markdown"]
#: Seconds between two updates of the progress bar.
PROGRESS_INTERVAL = 0.1
_FORMATS = {"parley": "Parley", "chatgpt": "ChatGPT", "claude": "Claude", "openwebui": "Open WebUI", "empty": "empty"}


def export_conversation(conversation_id: int, format: Format = "json") -> None:
    """Download one conversation: ``json`` (Parley JSON, everything) or ``markdown`` (the shown path)."""
    ui.download.from_url(f"/api/conversations/{conversation_id}/export?format={format}")


def export_all(format: Format = "json") -> None:
    """Download all of the user's conversations: Parley JSON, or a zip of Markdown files."""
    ui.download.from_url(f"/api/export?format={format}")


def export_all_link(account: Account = LOCAL) -> None:
    """An "Export and import" button for a header without the user menu (personal mode): a menu of Export all in
    either format and Import… (``open_import_dialog`` for ``account``)."""
    label = "Export and import"
    button = ui.button(icon="import_export").props(f'flat round aria-label="{label}" title="{label}"')
    with button.mark("export-import"), ui.menu():
        ui.menu_item("Export all (Parley JSON)", lambda: export_all("json")).mark("menu-export-json")
        ui.menu_item("Export all (Markdown, zip)", lambda: export_all("markdown")).mark("menu-export-markdown")
        ui.menu_item("Import…", lambda: open_import_dialog(account)).mark("menu-import")


def _summary(format: str, imported: int, skipped: int, files_left_out: int = 0, warnings: Sequence[str] = ()) -> str:
    """What the dialog says after an import: how many conversations, and which attached files were left out."""
    done = f"Imported {imported} conversation{'s' * (imported != 1)} ({_FORMATS.get(format, format)})"
    done += f"; {skipped} already here, skipped." if skipped else "."
    if files_left_out:
        done += f" {files_left_out} attached file{'s' * (files_left_out != 1)} left out: " + " ".join(warnings[:5])
        if len(warnings) > 5:
            done += f" (and {len(warnings) - 5} more)"
    return done


def open_import_dialog(account: Account = LOCAL, *, engine: Engine | None = None, store: Store | None = None) -> None:
    """Show the Import dialog for ``account``.

    Args:
        account: whose conversations the import becomes.
        engine: told about each new conversation (default: the app's).
        store: written to (default: the app's).
    """
    services = getattr(app.state, "parley", None)
    engine = engine or services.engine
    store = store or services.store
    progress = {"stage": "", "done": 0, "total": 0}
    busy = [False]

    def stage(name: str, done: int, total: int) -> None:  # called from the import's thread
        progress.update(stage=name, done=done, total=total)

    with ui.dialog() as dialog, ui.card().classes("w-[28rem] max-w-full").mark("import-dialog"):
        ui.label("Import conversations").classes("text-lg")
        ui.label(
            "A Parley JSON export, ChatGPT's or Claude's conversations.json (or the export's zip), or an Open WebUI "
            "chat export. Conversations you imported before are skipped."
        ).classes("parley-muted text-sm")
        bar = ui.linear_progress(value=0, show_value=False).props("instant-feedback").mark("import-progress")
        bar.set_visibility(False)
        status = ui.label("").classes("text-sm").mark("import-status")

        def show_progress() -> None:
            if progress["total"]:
                bar.set_value(progress["done"] / progress["total"])
                word = "Checking" if progress["stage"] == "reading" else "Writing"
                status.set_text(f"{word} {progress['done']:,} of {progress['total']:,} conversations…")

        timer = ui.timer(PROGRESS_INTERVAL, show_progress, active=False)

        async def uploaded(event: events.UploadEventArguments) -> None:
            picker.set_visibility(False)
            bar.set_visibility(True)
            status.set_text(f"Reading {event.file.name}…")
            status.classes(remove="parley-warning")
            timer.activate()
            busy[0] = True
            try:
                raw = await event.file.read()
                name, result = await asyncio.to_thread(import_file, store, account.user_id, raw, stages=stage)
            except Refusal as refusal:
                status.set_text(f"Nothing was imported: {refusal}")
                status.classes("parley-warning")
                return
            except Exception as error:
                log.exception("import failed")
                status.set_text(f"Nothing was imported: something went wrong ({type(error).__name__}).")
                status.classes("parley-warning")
                return
            finally:
                busy[0] = False
                timer.deactivate()
                bar.set_visibility(False)
                picker.reset()  # another file may follow
                picker.set_visibility(True)
            for conversation_id, title in zip(result.conversation_ids, result.titles, strict=True):
                engine.notify(conversation_id, "created", account.user_id, title)
            status.set_text(_summary(name, result.imported, result.skipped, result.attachments_skipped,
                                     result.warnings))  # fmt: skip

        megabytes = DEFAULT_LIMITS.max_bytes // (1024 * 1024)
        picker = ui.upload(
            label="Choose a file", auto_upload=True, max_file_size=DEFAULT_LIMITS.max_bytes, on_upload=uploaded,
            on_rejected=lambda: status.set_text(f"That file is larger than the limit of {megabytes} MB."),
        ).props('accept=".json,.zip"').classes("w-full").mark("import-upload")  # fmt: skip
        with ui.row().classes("w-full justify-end"):
            ui.button("Close", on_click=dialog.close).props("flat").mark("import-close")
    dialog.on("hide", lambda: None if busy[0] else dialog.delete())  # a running import finishes in it
    dialog.open()
