"""Images and files in ``/v1`` requests, in OpenAI's content-part shapes (Chat Completions reference, "Messages":
``ChatCompletionContentPartImageParam`` and ``…FileParam``)::

    {"type": "text", "text": "What is in this picture?"}
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR…", "detail": "auto"}}
    {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBER…"}}

Images and files come inside the request as ``data:`` URLs (base64). Parley does not fetch ``http(s)`` image URLs
(a server that fetches what a request names can be pointed at private addresses) and has no Files API
(``file_id``): both are refused with a 400 that says so. Every file is read as an upload is
(``attachments.files``: an image re-encoded without metadata, a document's text extracted); the last user
message's files are stored with it (``Engine.attach``), earlier turns' are sent and not stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..attachments import DocumentText, FileLimits, ImageData, decode_data_url, prepare, user_content


class PartRefused(ValueError):
    """A content part Parley does not take; ``str(error)`` says why and what would work (a 400)."""


@dataclass(frozen=True, slots=True)
class PartFile:
    """A file of a message's content parts: its name (``image`` for an image part) and its bytes."""

    name: str
    data: bytes


def split_parts(content: object) -> tuple[object, list[PartFile]]:
    """A message's ``content`` as its text (text parts joined; a string as it is) and its files, in order.

    Raises:
        PartRefused: a part of another type (audio), an image by ``http(s)`` URL, a ``file_id``, a broken data URL.
    """
    if not isinstance(content, list):
        return content, []
    texts: list[str] = []
    files: list[PartFile] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            files.append(PartFile(f"image-{len(files) + 1}", _data_of(url, "an image_url")))
        elif kind == "file":
            file = part.get("file") if isinstance(part.get("file"), dict) else {}
            if file.get("file_id"):
                raise PartRefused(
                    "Parley has no Files API: send a file's bytes as file_data (a data: URL), not file_id"
                )
            name = str(file.get("filename") or f"file-{len(files) + 1}")
            files.append(PartFile(name, _data_of(file.get("file_data"), "a file's file_data")))
        else:
            raise PartRefused(
                f"Parley takes text, image_url and file parts, not {kind!r}"
                if kind not in ("text",)
                else "a text part needs its text"
            )
    return "".join(texts), files


def _data_of(url: object, what: str) -> bytes:
    if not isinstance(url, str) or not url.strip():
        raise PartRefused(f"{what} needs a data: URL")
    if not url.strip().startswith("data:"):
        raise PartRefused(
            f"{what} must be a data: URL (data:image/png;base64,…): Parley does not fetch URLs from a request"
        )
    try:
        return decode_data_url(url)[1]
    except ValueError as error:
        raise PartRefused(f"{what}: {error}") from error


async def content_with(text: str, files: list[PartFile], limits: FileLimits) -> str | list[dict[str, Any]]:
    """``text`` and ``files`` as a user message's content for the upstream: each file read as an upload is (in a
    thread), documents before the text, images as parts (``attachments.parts.user_content``).

    Raises:
        AttachmentRefused, AttachmentTooLarge: a file Parley does not read.
    """
    if not files:
        return text

    def read() -> str | list[dict[str, Any]]:
        documents, images = [], []
        for file in files:
            prepared = prepare(file.data, file.name, limits)
            if prepared.kind == "image":
                images.append(ImageData(prepared.media_type, prepared.data))
            else:
                documents.append(DocumentText(prepared.name, prepared.text or ""))
        return user_content(text, documents, images)

    return await asyncio.to_thread(read)
