"""Attachments in the database: a file's bytes once per SHA-256 (``Blob``), its attachment to a user message
(``Attachment``).

Every function takes a ``Store`` and opens its own short session, so it may be called from any thread (the engine
calls them through ``asyncio.to_thread``). ``owner`` is a user id in team mode and None in personal mode, where it
matches every row; another user's attachment is ``NotFound``, the same answer as a missing id.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from ..attachments.files import PreparedFile
from .models import Attachment, Blob, utcnow
from .store import NotFound, Store


def _put_blob(session: Session, data: bytes, sha256: str) -> None:
    if session.get(Blob, sha256) is None:
        session.add(Blob(sha256=sha256, data=data, size=len(data)))
        session.flush()


def add_attachment(store: Store, file: PreparedFile, *, user_id: int | None, tokens: int | None) -> Attachment:
    """Store an uploaded file, not yet sent with a message (``Store.add_exchange`` attaches it).

    Args:
        store: the database.
        file: the file as ``attachments.files.prepare`` made it.
        user_id: its owner (None: personal mode).
        tokens: a document's text in tokens, as counted for the default model (an image: an estimate).

    Returns:
        The new attachment row (its ``text`` included).
    """
    thumbnail_sha = None
    with store._session() as session:
        _put_blob(session, file.data, file.sha256)
        if file.thumbnail is not None:
            thumbnail_sha = hashlib.sha256(file.thumbnail).hexdigest()
            _put_blob(session, file.thumbnail, thumbnail_sha)
        row = Attachment(
            user_id=user_id, kind=file.kind, name=file.name, media_type=file.media_type, size=len(file.data),
            sha256=file.sha256, thumbnail_sha256=thumbnail_sha, width=file.width, height=file.height, text=file.text,
            tokens=tokens,
        )  # fmt: skip
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def get_attachment(store: Store, attachment_id: int, *, owner: int | None = None) -> Attachment:
    """The attachment with this id. Raises NotFound, also when ``owner`` is given and is not its owner."""
    with store._session() as session:
        row = session.get(Attachment, attachment_id)
        if row is None or (owner is not None and row.user_id != owner):
            raise NotFound(f"attachment {attachment_id} not found")
        return row


def attachment_bytes(
    store: Store, attachment_id: int, *, owner: int | None = None, thumbnail: bool = False
) -> tuple[Attachment, bytes]:
    """An attachment and its bytes (``thumbnail``: its thumbnail's, an image's only). Raises NotFound (also for
    the thumbnail of a document)."""
    row = get_attachment(store, attachment_id, owner=owner)
    sha = row.thumbnail_sha256 if thumbnail else row.sha256
    if sha is None:
        raise NotFound(f"attachment {attachment_id} has no thumbnail")
    with store._session() as session:
        blob = session.get(Blob, sha)
        if blob is None:  # cannot happen while the row exists (a foreign key); said rather than assumed
            raise NotFound(f"attachment {attachment_id} not found")
        return row, blob.data


def pending(store: Store, ids: Sequence[int], *, owner: int | None = None) -> list[Attachment]:
    """The unsent attachments ``ids`` of ``owner``, in the order of ``ids``. Raises NotFound for any that is missing,
    another user's, or already sent with a message."""
    with store._session() as session:
        rows = {row.id: row for row in session.exec(select(Attachment).where(col(Attachment.id).in_(list(ids))))}
    found = []
    for key in ids:
        row = rows.get(key)
        if row is None or row.message_id is not None or (owner is not None and row.user_id != owner):
            raise NotFound(f"attachment {key} not found (or already sent)")
        found.append(row)
    return found


def attachments_of(store: Store, message_ids: Iterable[int]) -> dict[int, list[Attachment]]:
    """The attachments of each of ``message_ids`` (message id -> its attachments in the order they were added;
    messages without any are left out)."""
    ids = list(message_ids)
    if not ids:
        return {}
    found: dict[int, list[Attachment]] = defaultdict(list)
    with store._session() as session:
        query = select(Attachment).where(col(Attachment.message_id).in_(ids)).order_by(col(Attachment.id))
        for row in session.exec(query):
            assert row.message_id is not None
            found[row.message_id].append(row)
    return dict(found)


def blobs(store: Store, hashes: Iterable[str]) -> dict[str, bytes]:
    """The bytes of the blobs ``hashes`` (SHA-256 -> bytes)."""
    keys = list(set(hashes))
    if not keys:
        return {}
    with store._session() as session:
        return {blob.sha256: blob.data for blob in session.exec(select(Blob).where(col(Blob.sha256).in_(keys)))}


def set_sent_chars(store: Store, cuts: dict[int, int | None]) -> None:
    """Record that documents were cut to fit a context window: attachment id -> characters sent (None: whole)."""
    if not cuts:
        return
    with store._session() as session:
        for key, chars in cuts.items():
            row = session.get(Attachment, key)
            if row is not None:
                row.sent_chars = chars
                session.add(row)
        session.commit()


def delete_attachment(store: Store, attachment_id: int, *, owner: int | None = None) -> None:
    """Delete an unsent attachment (removed from the composer). Raises NotFound, also for one already sent."""
    row = get_attachment(store, attachment_id, owner=owner)
    if row.message_id is not None:
        raise NotFound(f"attachment {attachment_id} not found (or already sent)")
    with store._session() as session:
        session.execute(delete(Attachment).where(col(Attachment.id) == attachment_id))
        session.commit()
    store.collect_blobs()


def delete_unsent(store: Store, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete the attachments uploaded more than ``older_than`` ago and never sent (a tab closed before Send), and
    the blobs left unused; return how many."""
    with store._session() as session:
        result = session.execute(delete(Attachment).where(
            col(Attachment.message_id).is_(None), col(Attachment.created_at) < utcnow() - older_than))  # fmt: skip
        session.commit()
    deleted = result.rowcount or 0
    if deleted:
        store.collect_blobs()
    return deleted
