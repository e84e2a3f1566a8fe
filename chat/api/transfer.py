"""Export and import of conversations, under ``/api`` (``chat/transfer`` does the formats).

* ``GET /api/conversations/{id}/export?format=json|markdown`` — one conversation of yours: Parley JSON (lossless:
  the whole tree) or Markdown (the shown path), as a download (``Content-Disposition: attachment``).
* ``GET /api/export?format=json|markdown`` — all of yours: one Parley JSON document, or a zip of Markdown files.
* ``POST /api/import`` — a file as a multipart upload (form field ``file``) or as the raw request body (JSON, or the
  zip an export came as): Parley JSON, ChatGPT's or Claude's ``conversations.json``, an Open WebUI chat export.
  Answers ``{"format", "imported", "skipped", "messages", "conversation_ids"}``; a conversation you already imported
  (same source id) is skipped. One transaction: when it fails nothing is imported, and the answer says why —
  400 (not JSON, not a known format), 413 (over a limit: ``Limits``), 422 (a field that is wrong, named with its
  conversation), 409 (another import of the same conversations ran at the same time).

Every route is authenticated and reads only the caller's conversations (another user's id is 404, as in
``rest.py``). Reading, checking and writing run in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from ..store.transfer import owned_conversations
from ..transfer import ImportTooLarge, Limits, import_file, markdown, markdown_zip, parley_document
from ..transfer.base import UnreadableImport
from ..transfer.export import filename, json_bytes
from ..transfer.importing import DEFAULT_LIMITS
from .dependencies import CurrentAccount, EngineDep, StoreDep, current_account
from .errors import ApiRoute, ErrorOut
from .rest import NOT_FOUND, UNAUTHORIZED, OwnedConversation

router = APIRouter(
    prefix="/api",
    tags=["export and import"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)

Format = Annotated[
    Literal["json", "markdown"],
    Query(description="`json`: Parley JSON, everything (to import again); `markdown`: the shown path, to read."),
]
MARKDOWN = "text/markdown; charset=utf-8"
LIMITS: Limits = DEFAULT_LIMITS


class ImportOut(BaseModel):
    """What an import did."""

    format: str
    imported: int
    skipped: int
    messages: int
    conversation_ids: list[int]
    attachments: int = Field(0, description="Attached files imported (each read again: images re-encoded).")
    attachments_skipped: int = Field(0, description="Attached files left out: refused when read again.")
    warnings: list[str] = Field([], description="What was left out, in words, each naming its conversation.")


def attachment(name: str) -> dict[str, str]:
    """``Content-Disposition`` for a download named ``name`` (an ASCII fallback and the UTF-8 name, RFC 6266 §4.3)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return {"Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"}


@router.get(
    "/conversations/{conversation_id}/export",
    responses={**NOT_FOUND, 200: {"content": {"application/json": {}, "text/markdown": {}}}},
    response_class=Response,
)
async def export_conversation(
    conversation: OwnedConversation, account: CurrentAccount, store: StoreDep, format: Format = "json"
) -> Response:
    """One conversation of yours as a download: Parley JSON or Markdown."""

    def build() -> tuple[bytes, str, str]:
        [(row, messages)] = owned_conversations(store, account.owner, [conversation.id])  # type: ignore[list-item]
        if format == "markdown":
            return markdown(row, messages).encode(), MARKDOWN, filename(row, "md")
        return json_bytes(parley_document([(row, messages)])), "application/json", filename(row, "json")

    body, media_type, name = await asyncio.to_thread(build)
    return Response(body, media_type=media_type, headers=attachment(name))


@router.get(
    "/export",
    responses={200: {"content": {"application/json": {}, "application/zip": {}}}},
    response_class=Response,
)
async def export_all(account: CurrentAccount, store: StoreDep, format: Format = "json") -> Response:
    """All of your conversations: one Parley JSON document, or a zip of one Markdown file per conversation."""

    def build() -> tuple[bytes, str, str]:
        conversations = owned_conversations(store, account.owner)
        if format == "markdown":
            return markdown_zip(conversations), "application/zip", "parley-conversations.zip"
        return json_bytes(parley_document(conversations)), "application/json", "parley-conversations.json"

    body, media_type, name = await asyncio.to_thread(build)
    return Response(body, media_type=media_type, headers=attachment(name))


async def uploaded(request: Request, limit: int) -> bytes:
    """The file of an import request: the multipart form's ``file``, else the raw body; at most ``limit`` bytes.

    Raises:
        ImportTooLarge: over ``limit``.
        UnreadableImport: a form without a ``file``, or nothing sent.
    """
    declared = request.headers.get("content-length", "")
    too_large = ImportTooLarge(f"The file is larger than the limit of {limit:,} bytes.")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:  # room for a form's boundaries and headers
        raise too_large
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UnreadableImport("Send the file as the form field “file”.")
            if upload.size is not None and upload.size > limit:
                raise too_large
            raw = await upload.read(limit + 1)
        finally:
            await form.close()
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        raw = b"".join(chunks)
    if len(raw) > limit:
        raise too_large
    if not raw.strip():
        raise UnreadableImport("The file is empty.")
    return raw


@router.post(
    "/import",
    response_model=ImportOut,
    responses={
        400: {"model": ErrorOut, "description": "Not JSON (nor a zip of it), or not a format Parley reads."},
        409: {"model": ErrorOut, "description": "Another import wrote the same conversations meanwhile."},
        413: {"model": ErrorOut, "description": "Over a limit: file size, conversations, messages per conversation."},
        422: {"model": ErrorOut, "description": "A field that is wrong; the message names it and its conversation."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }  # fmt: skip
                },
                "application/json": {"schema": {"description": "The export itself."}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def import_conversations(request: Request, account: CurrentAccount, store: StoreDep, engine: EngineDep) -> Any:
    """Import an export file (Parley, ChatGPT, Claude, Open WebUI) as your conversations, all or nothing."""
    raw = await uploaded(request, LIMITS.max_bytes)
    name, result = await asyncio.to_thread(import_file, store, account.user_id, raw, limits=LIMITS)
    for conversation_id, title in zip(result.conversation_ids, result.titles, strict=True):
        engine.notify(conversation_id, "created", account.user_id, title)
    return ImportOut(format=name, imported=result.imported, skipped=result.skipped, messages=result.messages,
                     conversation_ids=result.conversation_ids, attachments=result.attachments,
                     attachments_skipped=result.attachments_skipped, warnings=result.warnings)  # fmt: skip
