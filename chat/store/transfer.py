"""The database side of export and import: read a user's conversations with every message, and write a whole import
in one transaction.

``chat/transfer`` turns files into ``NewConversation``\\ s (and conversations into files); only this module reads and
writes the rows. An import is all or nothing: every conversation of a file is written in one transaction, or none is
(a failure rolls it back). A conversation whose ``source_id`` the owner already has is skipped, so importing the same
file twice does not duplicate it. A message's attachments (``NewAttachment``, files the importer has read again) are
written with it, their bytes once per SHA-256 (a blob already stored is not written again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..attachments.files import PreparedFile
from ..refusals import Refusal
from .models import Attachment, Blob, Conversation, Message, Role, Status, utcnow
from .store import NotFound, Store

#: Conversations written per step of an import (progress is reported after each step).
CHUNK = 200
#: Most values in one ``IN (…)`` list (SQLite allows 32,766 bound parameters, PostgreSQL 65,535).
IN_LIMIT = 5000
#: Most blobs read or written by one statement (their bytes are in memory together).
BLOB_CHUNK = 100

#: Every column of ``message`` an import sets, with the value it gets when the file has none (one executemany needs
#: the same keys in every row).
MESSAGE_DEFAULTS: dict[str, Any] = {
    "content": "", "status": Status.complete, "error": None, "error_status": None, "error_code": None, "model": None,
    "temperature": None, "finish_reason": None, "prompt_tokens": None, "completion_tokens": None, "ttft": None,
    "duration": None, "omitted_messages": None, "events": None, "comparing": False,
}  # fmt: skip
#: Every column of ``conversation`` an import sets, with its default.
CONVERSATION_DEFAULTS: dict[str, Any] = {
    "title": "Imported chat", "system_prompt": "", "model": None, "temperature": 0.7, "tools": None, "pinned": False,
    "archived": False,
}  # fmt: skip


class ImportConflict(Refusal):
    """Raised when another import wrote one of the same conversations while this one ran (nothing was written)."""

    status = 409
    code = "import_conflict"


@dataclass
class NewAttachment:
    """A file attached to a message to import, owned by the importing user.

    Attributes:
        file: the file as Parley keeps it, made by ``chat.attachments.prepare`` from the bytes the import file holds
            (never its claims): its kind, name, media type, data, size, text and thumbnail.
        tokens: its tokens as counted when it was attached (shown only), or None.
        sent_chars: a document's text was cut to its first this many characters when sent (at most its length), or
            None: whole.
        created_at: when it was attached (aware datetime), or None for its message's time.
    """

    file: PreparedFile
    tokens: int | None = None
    sent_chars: int | None = None
    created_at: datetime | None = None


@dataclass
class NewMessage:
    """A message to import.

    Attributes:
        key: its id within the file (any string, unique in its conversation).
        parent: the key of the message it follows, or None for a first message.
        role: user, assistant or system.
        selected: shown among its siblings (exactly one of each group should be).
        created_at: when it was written (aware datetime), or None for the time of the import.
        fields: any other ``Message`` columns (``MESSAGE_DEFAULTS`` names them: content, status, events, …).
        attachments: its files (a user message's), in the order they were attached.
    """

    key: str
    parent: str | None
    role: Role
    selected: bool = True
    created_at: datetime | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    attachments: list[NewAttachment] = field(default_factory=list)


@dataclass
class NewConversation:
    """A conversation to import.

    Attributes:
        source_id: where it comes from (``"chatgpt:<id>"``; at most 200 characters), unique per owner.
        messages: its messages, each parent before its children, siblings oldest first.
        created_at / updated_at: aware datetimes, or None for the time of the import.
        fields: any other ``Conversation`` columns (``CONVERSATION_DEFAULTS``: title, system_prompt, model, …).
        attachments_skipped: files of its messages the importer left out (refused when read again).
        warnings: what was left out of it, in words, each naming the conversation (``ImportResult.warnings``).
    """

    source_id: str
    messages: list[NewMessage] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    attachments_skipped: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    """What an import did: ``imported`` conversations written (their new ids in ``conversation_ids``, their titles in
    ``titles``), ``skipped`` ones already there (same source id), ``messages`` written, ``attachments`` written and
    ``attachments_skipped`` left out (a file refused when read again), and ``warnings``: what was left out of the
    conversations written, in words (``'conversation 2 ("Trip"), message 5: the attached file "p.jpg" was left out:
    p.jpg could not be read as an image (…).'``). Nothing of a conversation skipped as already there is counted or
    warned about."""

    imported: int = 0
    skipped: int = 0
    messages: int = 0
    conversation_ids: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    attachments: int = 0
    attachments_skipped: int = 0
    warnings: list[str] = field(default_factory=list)


Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)``: conversations handled so far, of how many."""


def _owned(owner: int | None):
    """The ``WHERE`` clause for conversations of ``owner`` (None: personal mode's, which have no owner)."""
    return col(Conversation.user_id).is_(None) if owner is None else col(Conversation.user_id) == owner


def existing_source_ids(session: Session, owner: int | None, source_ids: Iterable[str]) -> set[str]:
    """Which of ``source_ids`` the conversations of ``owner`` already have."""
    wanted = list(dict.fromkeys(source_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), IN_LIMIT):
        chunk = wanted[start : start + IN_LIMIT]
        query = select(Conversation.source_id).where(_owned(owner), col(Conversation.source_id).in_(chunk))
        found.update(value for value in session.exec(query) if value is not None)
    return found


def import_conversations(
    store: Store, owner: int | None, conversations: Sequence[NewConversation], progress: Progress | None = None
) -> ImportResult:
    """Write ``conversations`` as ``owner``'s, in ONE transaction; skip those whose source id ``owner`` has (and a
    second one with the same source id in ``conversations``).

    Args:
        store: the database.
        owner: the user id the conversations belong to (None: personal mode).
        conversations: what to write (see ``NewConversation``); a message's parent must come before it.
        progress: told ``(done, total)`` after each ``CHUNK`` of conversations.

    Returns:
        Counts, the new conversations' ids, and the warnings of the conversations written.

    Raises:
        ImportConflict: another import wrote one of these conversations meanwhile (this one wrote nothing).
        KeyError: a message names a parent key that is not before it in its conversation (a bug of the importer).
    """
    total = len(conversations)
    result = ImportResult()
    with Session(store.engine, expire_on_commit=False) as session:
        existing = existing_source_ids(session, owner, (c.source_id for c in conversations))
        todo: list[NewConversation] = []
        for conversation in conversations:
            if conversation.source_id in existing:
                result.skipped += 1
            else:
                existing.add(conversation.source_id)
                todo.append(conversation)
        if progress is not None:
            progress(result.skipped, total)
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            ids = _insert_conversations(session, owner, chunk)
            messages, attachments = _insert_messages(session, owner, chunk, ids)
            result.messages += messages
            result.attachments += attachments
            result.attachments_skipped += sum(c.attachments_skipped for c in chunk)
            result.warnings += [warning for c in chunk for warning in c.warnings]
            result.conversation_ids += ids
            result.titles += [c.fields.get("title", CONVERSATION_DEFAULTS["title"]) for c in chunk]
            result.imported += len(chunk)
            if progress is not None:
                progress(result.skipped + result.imported, total)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise ImportConflict("Another import wrote some of these conversations meanwhile: try again.") from None
    return result


def _insert_conversations(session: Session, owner: int | None, chunk: Sequence[NewConversation]) -> list[int]:
    """Insert the conversations of ``chunk``; their new ids, in order."""
    now = utcnow()
    rows = []
    for conversation in chunk:
        created = conversation.created_at or now
        rows.append({**CONVERSATION_DEFAULTS, **conversation.fields, "user_id": owner,
                     "source_id": conversation.source_id, "created_at": created,
                     "updated_at": conversation.updated_at or created})  # fmt: skip
    statement = insert(Conversation).returning(col(Conversation.id), sort_by_parameter_order=True)
    return list(session.execute(statement, rows).scalars())


def _insert_messages(
    session: Session, owner: int | None, chunk: Sequence[NewConversation], ids: Sequence[int]
) -> tuple[int, int]:
    """Insert the messages of ``chunk`` (conversation ``chunk[i]`` has id ``ids[i]``), one statement per depth of the
    trees, then their attachments (owned by ``owner``); returns how many messages and attachments."""
    now = utcnow()
    levels: list[list[tuple[int, int, NewMessage]]] = []  # depth -> (conversation index, message index, message)
    depths: list[dict[str, int]] = []
    for index, conversation in enumerate(chunk):
        depth_of: dict[str, int] = {}
        for position, message in enumerate(conversation.messages):
            depth = 0 if message.parent is None else depth_of[message.parent] + 1
            depth_of[message.key] = depth
            if depth == len(levels):
                levels.append([])
            levels[depth].append((index, position, message))
        depths.append(depth_of)
    new_ids: list[dict[str, int]] = [{} for _ in chunk]
    statement = insert(Message).returning(col(Message.id), sort_by_parameter_order=True)
    count = 0
    attached: list[tuple[int, datetime, NewAttachment]] = []  # (message id, its time, attachment)
    for level in levels:
        rows = []
        for index, _, message in level:
            parent_id = None if message.parent is None else new_ids[index][message.parent]
            rows.append({**MESSAGE_DEFAULTS, **message.fields, "conversation_id": ids[index], "parent_id": parent_id,
                         "role": message.role, "selected": message.selected,
                         "created_at": message.created_at or now})  # fmt: skip
        for (index, _, message), new_id in zip(level, session.execute(statement, rows).scalars(), strict=True):
            new_ids[index][message.key] = new_id
            attached += [(new_id, message.created_at or now, attachment) for attachment in message.attachments]
        count += len(rows)
    return count, _insert_attachments(session, owner, attached)


def _insert_blobs(session: Session, blobs: dict[str, bytes]) -> None:
    """Insert the blobs (SHA-256 -> bytes) not stored yet; one written meanwhile by another transaction is kept."""
    wanted = list(blobs)
    now = utcnow()
    dialect = session.get_bind().dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else None
    for start in range(0, len(wanted), BLOB_CHUNK):
        keys = wanted[start : start + BLOB_CHUNK]
        stored = set(session.exec(select(Blob.sha256).where(col(Blob.sha256).in_(keys))))
        rows = [{"sha256": key, "data": blobs[key], "size": len(blobs[key]), "created_at": now}
                for key in keys if key not in stored]  # fmt: skip
        if rows:
            statement = insert(Blob) if maker is None else maker(Blob).on_conflict_do_nothing(index_elements=["sha256"])
            session.execute(statement, rows)


def _insert_attachments(
    session: Session, owner: int | None, attached: Sequence[tuple[int, datetime, NewAttachment]]
) -> int:
    """Insert the attachments (``(message id, the message's time, attachment)``) of ``owner`` and the blobs they
    need; returns how many."""
    if not attached:
        return 0
    blobs: dict[str, bytes] = {}
    rows = []
    for message_id, when, attachment in attached:
        file = attachment.file
        sha = hashlib.sha256(file.data).hexdigest()
        blobs[sha] = file.data
        thumbnail_sha = None
        if file.thumbnail is not None:
            thumbnail_sha = hashlib.sha256(file.thumbnail).hexdigest()
            blobs[thumbnail_sha] = file.thumbnail
        rows.append({"user_id": owner, "message_id": message_id, "kind": file.kind, "name": file.name,
                     "media_type": file.media_type, "size": len(file.data), "sha256": sha,
                     "thumbnail_sha256": thumbnail_sha, "width": file.width, "height": file.height, "text": file.text,
                     "tokens": attachment.tokens, "sent_chars": attachment.sent_chars,
                     "created_at": attachment.created_at or when})  # fmt: skip
    _insert_blobs(session, blobs)
    session.execute(insert(Attachment), rows)
    return len(rows)


class ConversationMessages(list[Message]):
    """Every message of a conversation (a list, as ``Store.messages`` gives: every variant, oldest first), with the
    attachments of its messages; their bytes are read when asked for (``blobs``), so what needs none (Markdown)
    holds none.

    Attributes:
        attachments: message id -> its attachments, in the order they were attached (messages without any left out).
    """

    def __init__(
        self,
        messages: Iterable[Message] = (),
        attachments: dict[int, list[Attachment]] | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(messages)
        self.attachments: dict[int, list[Attachment]] = attachments or {}
        self._store = store

    def blobs(self) -> dict[str, bytes]:
        """The bytes of these attachments and of their thumbnails, read from the database now (SHA-256 -> bytes;
        one deleted meanwhile, with its message, is left out)."""
        hashes = {sha for rows in self.attachments.values() for row in rows
                  for sha in (row.sha256, row.thumbnail_sha256) if sha is not None}  # fmt: skip
        if not hashes or self._store is None:
            return {}
        wanted = sorted(hashes)
        found: dict[str, bytes] = {}
        with Session(self._store.engine) as session:
            for start in range(0, len(wanted), BLOB_CHUNK):
                keys = wanted[start : start + BLOB_CHUNK]
                found.update(session.execute(select(Blob.sha256, Blob.data).where(col(Blob.sha256).in_(keys))).all())
        return found


def owned_conversations(
    store: Store, owner: int | None, conversation_ids: Sequence[int] | None = None
) -> list[tuple[Conversation, ConversationMessages]]:
    """Conversations of ``owner`` (personal mode, None: every conversation) with all their messages (every variant,
    oldest first) and their attachments (``ConversationMessages``; not their bytes, read per conversation when asked
    for), oldest conversation first: the given ids only, or all of them.

    Args:
        store: the database.
        owner: whose conversations (a user id; None: personal mode, every conversation).
        conversation_ids: these conversations only (None: all of ``owner``'s).

    Returns:
        ``[(conversation, messages)]``, oldest conversation first.

    Raises:
        NotFound: one of ``conversation_ids`` does not exist or is another user's.
    """
    with Session(store.engine, expire_on_commit=False) as session:
        query = select(Conversation).order_by(col(Conversation.created_at), col(Conversation.id))
        if owner is not None:
            query = query.where(col(Conversation.user_id) == owner)
        if conversation_ids is not None:
            query = query.where(col(Conversation.id).in_(list(conversation_ids)))
        conversations = list(session.exec(query))
        if conversation_ids is not None and len(conversations) != len(set(conversation_ids)):
            missing = sorted(set(conversation_ids) - {c.id for c in conversations})
            raise NotFound(f"conversation {missing[0]} not found")
        by_conversation = {c.id: ConversationMessages(store=store) for c in conversations}
        conversation_of: dict[int, int] = {}  # message id -> its conversation's
        keys = list(by_conversation)
        for start in range(0, len(keys), IN_LIMIT):
            chunk = keys[start : start + IN_LIMIT]
            messages = select(Message).where(col(Message.conversation_id).in_(chunk)).order_by(col(Message.id))
            for message in session.exec(messages):
                by_conversation[message.conversation_id].append(message)
                conversation_of[message.id] = message.conversation_id  # type: ignore[index]
        message_ids = list(conversation_of)
        for start in range(0, len(message_ids), IN_LIMIT):
            chunk = message_ids[start : start + IN_LIMIT]
            attachments = select(Attachment).where(col(Attachment.message_id).in_(chunk)).order_by(col(Attachment.id))
            for row in session.exec(attachments):
                assert row.message_id is not None
                by_conversation[conversation_of[row.message_id]].attachments.setdefault(row.message_id, []).append(row)
        return [(c, by_conversation[c.id]) for c in conversations]  # type: ignore[index]
