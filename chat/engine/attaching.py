"""Files attached to messages, for the engine: reading an upload, checking a message's files before anything is
stored or sent, cutting documents to fit the context window, and the content parts of each user message.

Reading a file is ``attachments.files``; storing it ``store.attachments``; its parts ``attachments.parts``. This
module decides, for a model: may it have images (``Provider.takes_images``), how much of each document fits.
Every method but ``attach`` blocks (database, tokenizer): call it in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..attachments import AttachmentTooLarge, DocumentText, FileLimits, ImageData, prepare, user_content
from ..attachments.files import megabytes
from ..attachments.parts import IMAGE_TOKENS, document_block, image_parts, without_images
from ..provider import Provider
from ..provider.context import reserve_for, tools_tokens
from ..refusals import Refusal
from ..store import Attachment, Store
from ..store import attachments as stored
from .policy import Account

#: Tokens kept free besides the counted ones when documents are cut to fit: what tool definitions and the chat
#: template add, which the cut does not count (a share of the window).
FIT_MARGIN = 0.05


class ImagesNotSupported(Refusal, ValueError):
    """Raised before anything is sent when a message has images and its model takes none (configured, the embedded
    model, or refused by its server before)."""

    status = 422
    code = "images_not_supported"


def images_refusal(model: str) -> ImagesNotSupported:
    """The refusal for images sent to ``model``."""
    return ImagesNotSupported(
        f"{model} does not take images. Remove the image (your text is kept), or choose a model that takes images.",
        field="attachments",
    )


class Attachments:
    """The engine's part in attachments.

    Args:
        store: the database.
        provider: knows which models take images, their windows and their tokenizers.
        limits: what one file may be.
        max_per_message: most files one message may carry.
        default_model: the default model now (documents are counted in its tokens when uploaded).
    """

    def __init__(
        self,
        store: Store,
        provider: Provider,
        limits: FileLimits,
        max_per_message: int,
        default_model: Callable[[], str],
    ) -> None:
        self.store = store
        self.provider = provider
        self.limits = limits
        self.max_per_message = max_per_message
        self.max_message_bytes = 3 * limits.max_bytes
        self._default_model = default_model

    async def attach(self, data: bytes, name: str, account: Account) -> Attachment:
        """Read and store an uploaded file for ``account``'s next message (in a thread).

        Args:
            data: the file's bytes as uploaded.
            name: its name (shown only).
            account: its owner.

        Returns:
            The stored, unsent attachment (``tokens``: a document's in the default model's tokens).

        Raises:
            AttachmentRefused, AttachmentTooLarge: see ``attachments.files.prepare``.
        """

        def read_and_store() -> Attachment:
            stored.delete_unsent(self.store)  # files of tabs closed before Send, a day later (one indexed query)
            file = prepare(data, name, self.limits)
            tokens = IMAGE_TOKENS if file.text is None else self._count(self._default_model(), file.name, file.text)
            return stored.add_attachment(self.store, file, user_id=account.user_id, tokens=tokens)

        return await asyncio.to_thread(read_and_store)

    def _count(self, model: str, name: str, text: str) -> int:
        counter = self.provider.counters.get(model)
        return counter.count_message({"role": "user", "content": document_block(DocumentText(name, text))})

    def check(self, ids: Sequence[int], model: str, account: Account) -> list[Attachment]:
        """The unsent attachments ``ids`` of ``account`` a message of ``model`` may carry.

        Raises:
            NotFound: one is missing, another user's, or sent already.
            AttachmentTooLarge: more files than ``max_per_message``, or more bytes together than ``max_message_bytes``.
            ImagesNotSupported: one is an image and ``model`` takes none.
        """
        if len(ids) > self.max_per_message:
            raise AttachmentTooLarge(f"A message may carry at most {self.max_per_message} files; this one has "
                                     f"{len(ids)}.")  # fmt: skip
        rows = stored.pending(self.store, ids, owner=account.owner)
        total = sum(row.size for row in rows)
        if total > self.max_message_bytes:
            raise AttachmentTooLarge(f"These files are {megabytes(total)} together; a message may carry at most "
                                     f"{megabytes(self.max_message_bytes)}.")  # fmt: skip
        if any(row.kind == "image" for row in rows) and not self.provider.takes_images(model):
            raise images_refusal(model)
        return rows

    def check_request(self, messages: Iterable[dict[str, Any]], model: str) -> None:
        """Raise ImagesNotSupported when ``messages`` (a request's, with content parts) have images and ``model``
        takes none."""
        if any(image_parts(message.get("content")) for message in messages) and not self.provider.takes_images(model):
            raise images_refusal(model)

    def fit_documents(
        self, rows: Sequence[Attachment], model: str, text: str, system_prompt: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[int, int]:  # fmt: skip
        """Cut the documents of a new message so that the message fits ``model``'s context window (the answer's
        reserve, the ``tools`` definitions the request carries and a margin kept free); earlier turns are then left
        out as usual. Each document gets an equal share of the room, a small one keeping what it does not need for the
        others. Records the cuts (``sent_chars``).

        Returns:
            attachment id -> characters sent, for the documents cut (empty: all fit, or the window is unknown).
        """
        documents = [row for row in rows if row.kind == "document" and row.text]
        window = self.provider.window_for(model)
        if any(row.sent_chars is not None for row in documents):  # cut for an earlier try (another model): undone
            stored.set_sent_chars(self.store, {row.id: None for row in documents if row.id is not None})
            for row in documents:
                row.sent_chars = None
        if not documents or window is None:
            return {}
        counter = self.provider.counters.get(model)
        fixed = counter.request_tokens(bool(system_prompt.strip())) + counter.count_message(
            {"role": "user", "content": text}
        )
        if system_prompt.strip():
            fixed += counter.count_message({"role": "system", "content": system_prompt})
        fixed += IMAGE_TOKENS * sum(1 for row in rows if row.kind == "image") + tools_tokens(tools, counter)
        room = window - reserve_for(window, self.provider.max_tokens) - fixed - int(window * FIT_MARGIN)
        sizes = {row.id: self._count(model, row.name, row.text or "") for row in documents}
        if sum(sizes.values()) <= room or room <= 0:
            return {}
        cuts: dict[int, int] = {}
        left, waiting = room, sorted(documents, key=lambda row: sizes[row.id])
        while waiting:
            share = left // len(waiting)
            row = waiting.pop(0)
            if sizes[row.id] <= share:
                left -= sizes[row.id]
                continue
            cuts[row.id] = self._cut(model, row, share, sizes[row.id])
            left -= share
        stored.set_sent_chars(self.store, cuts)  # type: ignore[arg-type]
        for row in documents:
            if row.id in cuts:
                row.sent_chars = cuts[row.id]
        return cuts  # type: ignore[return-value]

    def _cut(self, model: str, row: Attachment, allowance: int, tokens: int) -> int:
        """How many characters of ``row``'s text fit in ``allowance`` tokens (counted, a few tries)."""
        text = row.text or ""
        chars = int(len(text) * allowance / max(tokens, 1))
        for _ in range(8):
            counted = self._count(model, row.name, text[:chars])
            if counted <= allowance or chars == 0:
                return chars
            chars = int(chars * allowance / counted * 0.97)
        return chars

    def contents(self, messages: dict[int, str], model: str) -> dict[int, str | list[dict[str, Any]]]:
        """The ``content`` of each user message that has attachments, for a request to ``model``: its documents
        (as cut when sent) before its text, its images as parts when ``model`` takes images, else a note where each
        was.

        Args:
            messages: user message id -> its text.
            model: the request's model.

        Returns:
            message id -> content, for the messages with attachments only.
        """
        found = stored.attachments_of(self.store, messages)
        if not found:
            return {}
        images_ok = self.provider.takes_images(model)
        data = (
            stored.blobs(self.store, (a.sha256 for rows in found.values() for a in rows if a.kind == "image"))
            if images_ok
            else {}
        )
        contents: dict[int, str | list[dict[str, Any]]] = {}
        for message_id, rows in found.items():
            documents = [DocumentText(a.name, sent_text(a)) for a in rows if a.kind == "document"]
            images = [ImageData(a.media_type, data[a.sha256]) for a in rows if a.kind == "image" and a.sha256 in data]
            content = user_content(messages[message_id], documents, images)
            if not images_ok and any(a.kind == "image" for a in rows):
                notes = [f"[the image {a.name} was attached here; this model does not see images]"
                         for a in rows if a.kind == "image"]  # fmt: skip
                content = "\n\n".join([str(without_images(content)), *notes])
            contents[message_id] = content
        return contents


def sent_text(attachment: Attachment) -> str:
    """A document's text as the model gets it: cut to ``sent_chars`` when it was cut to fit."""
    text = attachment.text or ""
    return text if attachment.sent_chars is None else text[: attachment.sent_chars]
