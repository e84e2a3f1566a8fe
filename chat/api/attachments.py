"""Files attached to messages, under ``/api``: thin views over ``Engine.attach`` and ``chat/store/attachments.py``.

* ``POST /api/attachments`` (multipart/form-data, field ``file``) reads and stores a file for your next message and
  answers its description (201); send its ``id`` in a message's ``attachments``. A message may also carry files
  inline, base64 (``files`` of ``POST /api/conversations/{id}/messages``). A file never sent is deleted after a day.
* ``GET /api/attachments/{id}`` describes one; ``GET /api/attachments/{id}/content`` and ``…/thumbnail`` (images only)
  answer its bytes; ``DELETE /api/attachments/{id}`` deletes one not sent yet.

What is kept of a file (``chat/attachments/files.py``): an image re-encoded without metadata (EXIF, GPS) and scaled
to ``--max-image-side``; a document's text (PDF through pypdf, or UTF-8 text) and its bytes. Bytes are served only to
their owner (another user's id is 404, as a missing one), ``Cache-Control: private``, with a type Parley chose
(``image/png`` or ``image/jpeg`` for images it wrote itself; documents as downloads, ``Content-Disposition:
attachment``), ``X-Content-Type-Options: nosniff`` and a ``Content-Security-Policy`` that runs nothing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Response, UploadFile
from fastapi import Path as PathParam

from ..attachments import AttachmentTooLarge
from ..engine.attaching import sent_text
from ..store import Attachment, NotFound
from ..store import attachments as stored
from .dependencies import CurrentAccount, EngineDep, StoreDep, current_account
from .errors import ApiRoute, ErrorOut
from .rest import UNAUTHORIZED, AttachmentOut, attachment_out

router = APIRouter(
    prefix="/api",
    tags=["attachments"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)

AttachmentId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="An attachment's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such file (or not yours)."}}
#: How long a browser may keep an attachment's bytes: they never change under an id.
MAX_AGE = 86_400
#: Headers of every response with an attachment's bytes.
SAFE_HEADERS = {
    "Cache-Control": f"private, max-age={MAX_AGE}",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@router.post(
    "/attachments",
    status_code=201,
    response_model=AttachmentOut,
    responses={
        413: {"model": ErrorOut, "description": "Larger than --max-attachment-mb (or too many pixels, or text)."},
        422: {"model": ErrorOut, "description": "Not a type Parley reads, empty, or unreadable."},
    },
)
async def upload(
    account: CurrentAccount, engine: EngineDep, file: Annotated[UploadFile, File(description="The file.")]
) -> Any:
    """Read and store a file for your next message (images: PNG, JPEG, GIF, WebP, BMP, TIFF; documents: PDF, UTF-8
    text). The type is read from the content, not the name."""
    limit = engine.attachments.limits.max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise AttachmentTooLarge(f"{file.filename or 'The file'} is larger than {limit // (1024 * 1024)} MB, the "
                                 "most a file may be.")  # fmt: skip
    row = await engine.attach(data, file.filename or "file", account)
    return attachment_out(row)


@router.get("/attachments/{attachment_id}", response_model=AttachmentOut, responses=NOT_FOUND)
async def describe(attachment_id: AttachmentId, account: CurrentAccount, store: StoreDep) -> Any:
    """One file's description."""
    row = await asyncio.to_thread(stored.get_attachment, store, attachment_id, owner=account.owner)
    return attachment_out(row)


BYTES_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The bytes.", "content": {"application/octet-stream": {"schema": {"type": "string"}}}},
    **NOT_FOUND,
}


@router.get("/attachments/{attachment_id}/content", response_class=Response, responses=BYTES_RESPONSE)
async def content(attachment_id: AttachmentId, account: CurrentAccount, store: StoreDep) -> Response:
    """A file's bytes: an image as Parley re-encoded it (shown in the page), a document as a download."""
    row, data = await asyncio.to_thread(stored.attachment_bytes, store, attachment_id, owner=account.owner)
    return _bytes_response(row, data, thumbnail=False)


@router.get("/attachments/{attachment_id}/text", response_class=Response, responses=BYTES_RESPONSE)
async def text(attachment_id: AttachmentId, account: CurrentAccount, store: StoreDep) -> Response:
    """A document's text as the model got it (cut when it did not fit), ``text/plain``; 404 for an image."""
    row = await asyncio.to_thread(stored.get_attachment, store, attachment_id, owner=account.owner)
    if row.kind != "document":
        raise NotFound(f"attachment {attachment_id} has no text")
    headers = {**SAFE_HEADERS, "Content-Disposition": "inline"}
    return Response(sent_text(row), media_type="text/plain; charset=utf-8", headers=headers)


@router.get("/attachments/{attachment_id}/thumbnail", response_class=Response, responses=BYTES_RESPONSE)
async def thumbnail(attachment_id: AttachmentId, account: CurrentAccount, store: StoreDep) -> Response:
    """An image's thumbnail (at most 320 pixels a side); 404 for a document."""
    row, data = await asyncio.to_thread(
        stored.attachment_bytes, store, attachment_id, owner=account.owner, thumbnail=True
    )
    return _bytes_response(row, data, thumbnail=True)


@router.delete("/attachments/{attachment_id}", status_code=204, responses=NOT_FOUND)
async def delete(attachment_id: AttachmentId, account: CurrentAccount, engine: EngineDep) -> Response:
    """Delete a file not sent yet (removed from the message being written); one sent goes with its message."""
    await engine.detach(attachment_id, account)
    return Response(status_code=204)


def _bytes_response(row: Attachment, data: bytes, *, thumbnail: bool) -> Response:
    """The bytes with a type Parley chose: its own images as themselves, anything else as a download."""
    headers = dict(SAFE_HEADERS)
    if row.kind == "image":
        media_type = ("image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png") if thumbnail else row.media_type
        headers["Content-Disposition"] = "inline"
    else:
        media_type = "application/pdf" if row.media_type == "application/pdf" else "application/octet-stream"
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(row.name)}"
    return Response(data, media_type=media_type, headers=headers)
