"""Files on the page: the composer's tray of files to send (paperclip, paste, drop: ``attach_files.js``), and the
files of a sent message (an image's thumbnail, enlarged on a click; a document's chip with its size in tokens, and
what was sent of it when it was cut to fit the context window).

The browser uploads each file to ``POST /api/attachments`` itself (with the page's login cookie), so the bytes never
go through the page's socket; the server reads it there (``Engine.attach``) and the tray shows what it answered.
Images are shown from ``/api/attachments/{id}/thumbnail`` and ``…/content``, which answer their owner only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nicegui import ui
from nicegui.element import Element
from nicegui.events import GenericEventArguments

from ..engine import LOCAL, Account, Engine
from ..store import Attachment
from .notices import show_error

#: Where the browser uploads files (``chat/api/attachments.py``).
UPLOAD_URL = "/api/attachments"


@dataclass(frozen=True, slots=True)
class ShownFile:
    """What the page shows of a file: from the upload's answer (``AttachmentOut``) or a stored ``Attachment``."""

    id: int
    kind: str
    name: str
    tokens: int | None = None
    sent_chars: int | None = None
    text_chars: int | None = None

    @classmethod
    def of(cls, row: Attachment | dict[str, Any]) -> ShownFile:
        """From a stored row, or from ``POST /api/attachments``'s JSON answer (untrusted shape: checked)."""
        if isinstance(row, Attachment):
            assert row.id is not None
            return cls(row.id, row.kind, row.name, row.tokens, row.sent_chars, len(row.text) if row.text else None)
        number = row.get("id")
        if not isinstance(number, int) or row.get("kind") not in ("image", "document"):
            raise ValueError("not an attachment's description")
        tokens, sent, chars = row.get("tokens"), row.get("sent_chars"), row.get("text_chars")
        return cls(number, str(row["kind"]), str(row.get("name") or "file"),
                   tokens if isinstance(tokens, int) else None, sent if isinstance(sent, int) else None,
                   chars if isinstance(chars, int) else None)  # fmt: skip

    @property
    def cut_note(self) -> str | None:
        """What the page says of a document cut to fit the context window, or None when it was sent whole."""
        if self.sent_chars is None or not self.text_chars:
            return None
        share = max(1, round(100 * self.sent_chars / self.text_chars))
        return f"cut to fit the model's context window: its first {share}% was sent"


def file_label(file: ShownFile) -> str:
    """A document chip's text: ``report.pdf · 1,234 tokens``."""
    return f"{file.name} · {file.tokens:,} tokens" if file.tokens else file.name


class AttachFiles(Element, component="attach_files.js"):
    """The paperclip button, and paste and drop of files (see ``attach_files.js``).

    Args:
        textarea: the message box, where a paste of files is taken.
    """

    def __init__(self) -> None:
        super().__init__()
        self._props["url"] = UPLOAD_URL

    def watch(self, textarea: ui.textarea) -> None:
        """Take pastes of files in ``textarea`` (built after the button, which comes first in the row)."""
        self._props["target"] = textarea.id
        self.update()


class AttachmentTray:
    """The files waiting to go with the next message, above the message box: thumbnails and chips, each removable.

    The tray's row is built where it is made; ``make_button`` builds the paperclip where it is called.

    Args:
        engine: deletes a removed file (``Engine.detach``).
        account: whose files they are.
    """

    def __init__(self, engine: Engine, account: Account = LOCAL) -> None:
        self.engine = engine
        self.account = account
        self.files: list[ShownFile] = []
        self.uploading = 0  # files the browser is uploading now
        self.row = ui.row().classes("w-full max-w-3xl mx-auto gap-2 items-center parley-tray").mark("attachment-tray")
        self.row.set_visibility(False)

    def make_button(self) -> AttachFiles:
        """The paperclip button (and paste and drop), here; ``AttachFiles.watch`` names the message box."""
        self.button = AttachFiles().mark("attach")
        self.button.on("uploading", self._uploading)
        self.button.on("attached", self._attached)
        self.button.on("refused", self._refused)
        return self.button

    @property
    def ids(self) -> list[int]:
        """The ids of the files waiting, in the order they were added."""
        return [file.id for file in self.files]

    def _uploading(self, _event: GenericEventArguments) -> None:
        self.uploading += 1

    def _attached(self, event: GenericEventArguments) -> None:
        self.uploading = max(0, self.uploading - 1)
        try:
            self.add(ShownFile.of(event.args if isinstance(event.args, dict) else {}))
        except ValueError:
            ui.notify("The file could not be attached.", type="warning")

    def _refused(self, event: GenericEventArguments) -> None:
        self.uploading = max(0, self.uploading - 1)
        args = event.args if isinstance(event.args, dict) else {}
        ui.notify(str(args.get("detail") or "The file could not be attached."), type="warning", multi_line=True)

    def add(self, file: ShownFile) -> None:
        """Show ``file`` in the tray; it goes with the next message."""
        self.files.append(file)
        with self.row:
            with ui.element("div").classes("parley-tray-item").mark(f"tray-{file.id}") as item:
                file_preview(file)
                remove = ui.button(icon="close", on_click=lambda file=file, item=item: self.remove(file, item))
                remove.props("flat round dense size=xs").classes("parley-tray-remove").mark("remove-attachment")
                remove._props["aria-label"] = f"Remove {file.name}"
        self.row.set_visibility(True)

    async def remove(self, file: ShownFile, item: ui.element) -> None:
        """Take ``file`` out of the tray and delete it (it was never sent)."""
        if file in self.files:
            self.files.remove(file)
        item.delete()
        self.row.set_visibility(bool(self.files))
        try:
            await self.engine.detach(file.id, self.account)
        except Exception as error:  # already gone: nothing to do, but say what happened if it was a bug
            if not isinstance(error, LookupError):
                show_error(error)

    def clear(self) -> None:
        """Empty the tray after a Send (the files went with the message)."""
        self.files.clear()
        self.row.clear()
        self.row.set_visibility(False)


def file_preview(file: ShownFile, on_open: Callable[[], None] | None = None) -> None:
    """A file as the page shows it: an image's thumbnail, or a document's chip."""
    if file.kind == "image":
        image = ui.image(f"/api/attachments/{file.id}/thumbnail").classes("parley-thumbnail")
        image.props("no-spinner no-transition").mark("attachment-image")
        image._props["alt"] = file.name
        if on_open is not None:
            image.on("click", on_open).classes("cursor-pointer")
        return
    with ui.row().classes("parley-file-chip items-center gap-1 no-wrap").mark("attachment-document"):
        ui.icon("description")
        ui.link(file_label(file), f"/api/attachments/{file.id}/text", new_tab=True).classes("parley-file-name")
    if file.cut_note:
        ui.label(file.cut_note).classes("text-xs parley-warning").mark("attachment-cut")


def message_files(files: list[Attachment]) -> None:
    """The files of a sent user message, under its text: thumbnails (a click shows the image whole, in a dialog) and
    document chips."""
    with ui.row().classes("gap-2 justify-end parley-message-files").mark("message-files"):
        for row in files:
            file = ShownFile.of(row)
            with ui.column().classes("gap-0 items-end"):
                file_preview(file, on_open=(lambda file=file: enlarge(file)) if file.kind == "image" else None)


def enlarge(file: ShownFile) -> None:
    """The image ``file`` whole, in a dialog (closed by a click outside or Esc)."""
    with ui.dialog() as dialog, ui.card().classes("p-1 parley-image-dialog"):
        whole = ui.image(f"/api/attachments/{file.id}/content").props("fit=contain").classes("parley-image-whole")
        whole.mark("attachment-whole")._props["alt"] = file.name
        ui.label(file.name).classes("text-xs parley-muted self-center")
    dialog.on("hide", dialog.delete)
    dialog.open()
