"""The only code that touches the database.

Every method opens its own short session, so a ``Store`` can be called from any thread
(the engine calls it through ``asyncio.to_thread`` to keep the event loop free). Objects it
returns are detached snapshots: reading them never queries the database again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, bindparam, delete, event, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, create_engine, select

from ..refusals import InvalidRequest, Refusal
from . import models
from .models import (
    ApiToken,
    Attachment,
    Blob,
    Conversation,
    DailyUsage,
    LoginSession,
    Message,
    Role,
    Status,
    User,
    utcnow,
)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
T = TypeVar("T", Conversation, Message, User, ApiToken)
#: Seconds between two saves of a login session's or API token's "last used" time (not one write per request).
LAST_USED_RESOLUTION = 60.0
#: A login session unused for this long has ended (the browser's cookie lasts 14 days after its last use too).
SESSION_IDLE_LIMIT = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class MessageNode:
    """The light part of a message: where it is in its conversation's tree and what a page needs to know about it
    without its text (``Store.message_nodes``). About 100 bytes, however long the message.

    Attributes:
        id: the message's id.
        parent_id: the message it follows (None: a first message).
        selected: the shown one among its siblings.
        role: who wrote it.
        status: where it is in its life.
        comparing: one of the answers of a side-by-side comparison not decided yet.
        cost: US dollars, None when the price is unknown.
        cost_estimated: the tokens of ``cost`` were counted by Parley.
    """

    id: int
    parent_id: int | None
    selected: bool
    role: Role
    status: Status
    comparing: bool = False
    cost: float | None = None
    cost_estimated: bool = False

    @classmethod
    def of(cls, message: Message) -> MessageNode:
        """The node of a stored ``message`` (its id set)."""
        assert message.id is not None
        return cls(message.id, message.parent_id, message.selected, message.role, message.status, message.comparing,
                   message.cost, message.cost_estimated)  # fmt: skip


class NotFound(Refusal, LookupError):
    """Raised when a conversation, message, user or token id does not exist, or belongs to another user (the same
    answer, so ids of other people's conversations cannot be probed)."""

    status = 404
    code = "not_found"


class NameTaken(Refusal, ValueError):
    """Raised when a user name is already in use."""

    status = 409
    code = "name_taken"


def normalize_url(url: str) -> str:
    """``url`` with a PostgreSQL URL that names no driver (``postgresql://``, or ``postgres://`` as some hosts write it)
    sent to psycopg 3, the driver Parley installs (SQLAlchemy's default for them is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str) -> Engine:
    """Create the SQLAlchemy engine for ``url`` (see ``normalize_url``).

    SQLite is opened in WAL mode (readers never wait for the writer), with foreign keys enforced
    and a busy timeout of ``SQLITE_BUSY_TIMEOUT_MS`` milliseconds. The parent folder of an SQLite
    file is created when missing. A server database's pooled connections are checked before use
    (``pool_pre_ping``), so a restarted server costs no failed request.
    """
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration for Parley's migrations that runs on ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


class Store:
    """Conversations and messages in an SQL database (SQLite by default, PostgreSQL by URL).

    Args:
        url: an SQLAlchemy database URL, e.g. ``sqlite:///data/parley.db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        self.writes = 0
        """Write transactions committed since this Store was created (reads never commit)."""
        event.listen(self.engine, "commit", self._count_write)

    def _count_write(self, _connection: Any) -> None:
        self.writes += 1

    def migrate(self) -> None:
        """Upgrade the database schema to the newest Alembic revision (creates it when empty)."""
        command.upgrade(alembic_config(self.engine), "head")

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _update(self, table: type[T], key: int, fields: dict[str, Any]) -> T:
        """Set ``fields`` (column name -> value) on the row of ``table`` with primary key ``key``, in one transaction;
        return the row. Raises NotFound."""
        with self._session() as session:
            row = _require(session, table, key)
            for name, value in fields.items():
                setattr(row, name, value)
            session.add(row)
            session.commit()
            return row

    # -- conversations ---------------------------------------------------------------------------

    def create_conversation(self, **fields: Any) -> Conversation:
        """Create a conversation; ``fields`` are any of Conversation's columns (title, system_prompt, ...)."""
        with self._session() as session:
            conversation = Conversation(**fields)
            session.add(conversation)
            session.commit()
            return conversation

    def list_conversations(
        self, limit: int = 500, *, owner: int | None = None, archived: bool | None = None
    ) -> list[Conversation]:
        """Pinned conversations first, then the most recently updated first, at most ``limit``; with ``owner``, only
        that user's; with ``archived`` True or False, only the archived ones or only the others (None: both)."""
        with self._session() as session:
            query = select(Conversation).order_by(
                col(Conversation.pinned).desc(), col(Conversation.updated_at).desc(), col(Conversation.id).desc()
            )
            if owner is not None:
                query = query.where(Conversation.user_id == owner)
            if archived is not None:
                query = query.where(col(Conversation.archived) == archived)
            return list(session.exec(query.limit(limit)))

    def get_conversation(self, conversation_id: int, *, owner: int | None = None) -> Conversation:
        """The conversation with this id. Raises NotFound, also when ``owner`` is given and is not its owner."""
        with self._session() as session:
            conversation = _require(session, Conversation, conversation_id)
            if owner is not None and conversation.user_id != owner:
                raise NotFound(f"conversation {conversation_id} not found")
            return conversation

    def update_conversation(self, conversation_id: int, **fields: Any) -> Conversation:
        """Set some of a conversation's columns (title, system_prompt, model, temperature). Raises NotFound."""
        return self._update(Conversation, conversation_id, {**fields, "updated_at": utcnow()})

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and all its messages. Raises NotFound."""
        with self._session() as session:
            conversation = _require(session, Conversation, conversation_id)
            session.delete(conversation)
            session.commit()
        self.collect_blobs()

    # -- messages --------------------------------------------------------------------------------

    def get_message(self, message_id: int, *, owner: int | None = None) -> Message:
        """The message with this id. Raises NotFound, also when ``owner`` is given and does not own its
        conversation."""
        with self._session() as session:
            message = _require(session, Message, message_id)
            if owner is not None and session.get(Conversation, message.conversation_id).user_id != owner:  # type: ignore[union-attr]
                raise NotFound(f"message {message_id} not found")
            return message

    def messages(self, conversation_id: int) -> list[Message]:
        """Every message of a conversation, every variant included, oldest first."""
        with self._session() as session:
            query = select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.id))
            return list(session.exec(query))

    def message_nodes(self, conversation_id: int) -> list[MessageNode]:
        """Every message of a conversation without its text or details (``MessageNode``), oldest first: enough for
        ``selected_path``, sibling counts and the running cost. Reads no content: a 10,000-message conversation is
        about 1 MB of nodes whatever its text."""
        columns = (Message.id, Message.parent_id, Message.selected, Message.role, Message.status, Message.comparing,
                   Message.cost, Message.cost_estimated)  # fmt: skip
        query = select(*columns).where(Message.conversation_id == conversation_id).order_by(col(Message.id))
        with self._session() as session:
            return [MessageNode(*row) for row in session.exec(query)]

    def messages_by_id(self, conversation_id: int, ids: Iterable[int]) -> dict[int, Message]:
        """The messages ``ids`` of a conversation, whole (id -> message); ids that are not its messages (deleted
        meanwhile, another conversation's) are left out."""
        wanted = sorted(set(ids))
        found: dict[int, Message] = {}
        with self._session() as session:
            for chunk in range(0, len(wanted), 500):  # a bounded IN list on every database
                query = select(Message).where(
                    Message.conversation_id == conversation_id, col(Message.id).in_(wanted[chunk : chunk + 500])
                )
                found.update((m.id, m) for m in session.exec(query) if m.id is not None)
        return found

    def message_labels(self, conversation_id: int, chars: int, ids: Iterable[int] | None = None) -> dict[int, str]:
        """The first ``chars`` characters of messages of a conversation (id -> text): all of them, or those of ``ids``
        (others left out); for lists that show each message's first words (the tree panel)."""
        prefix = select(Message.id, func.substr(Message.content, 1, chars)).where(
            Message.conversation_id == conversation_id
        )
        wanted = None if ids is None else sorted(set(ids))
        queries = [prefix] if wanted is None else [
            prefix.where(col(Message.id).in_(wanted[chunk : chunk + 500])) for chunk in range(0, len(wanted), 500)
        ]  # fmt: skip
        with self._session() as session:
            return {key: text or "" for query in queries for key, text in session.exec(query)}

    def path(self, conversation_id: int) -> list[Message]:
        """The conversation as shown: the selected message at each step, oldest first."""
        return selected_path(self.messages(conversation_id))

    def variants(self, message_id: int) -> list[Message]:
        """A message and its siblings (same parent), oldest first. Raises NotFound."""
        message = self.get_message(message_id)
        with self._session() as session:
            query = select(Message).where(
                Message.conversation_id == message.conversation_id, Message.parent_id == message.parent_id
            )
            return list(session.exec(query.order_by(col(Message.id))))

    def add_exchange(
        self,
        conversation_id: int | None,
        content: str,
        *,
        model: str | None,
        temperature: float | None,
        first_title: str | None = None,
        new_conversation: Conversation | None = None,
        history: Sequence[tuple[Role, str] | tuple[Role, str, list[dict] | None]] = (),
        after: int | None = None,
        attachments: Sequence[int] = (),
        owner: int | None = None,
        compare: Sequence[str] = (),
    ) -> tuple[Message, Message]:
        """Store a user message and an empty assistant answer to it, in one transaction: at the end of the shown path,
        or below the message ``after`` (a new branch when it has children already).

        ``first_title``, when given, becomes the conversation's title if this is its first message.
        With ``conversation_id`` None, ``new_conversation`` (not yet stored) is created in the same transaction.
        ``history`` (earlier turns written elsewhere, e.g. sent with an API request: ``(role, content)`` pairs, oldest
        first; an assistant turn may carry its content events, ``(role, content, events)``, see ``Message.events``) is
        stored before the message as a chain of ``complete`` messages, each the shown one among its siblings.
        ``attachments``: ids of uploaded, not yet sent attachments of ``owner`` (None: personal mode), sent with the
        message. ``compare``: more models to answer the message side by side (``add_comparison``).

        Returns:
            ``(user_message, assistant_message)``; the assistant message has status ``streaming``.

        Raises:
            NotFound: no such conversation, ``after`` is not one of its messages, or an attachment is not an unsent
                one of ``owner``'s.
        """
        user, answers = self.add_comparison(
            conversation_id, content, [model, *compare], temperature=temperature, first_title=first_title,
            new_conversation=new_conversation, history=history, after=after, attachments=attachments, owner=owner,
        )  # fmt: skip
        return user, answers[0]

    def add_comparison(
        self,
        conversation_id: int | None,
        content: str,
        models: Sequence[str | None],
        *,
        temperature: float | None,
        first_title: str | None = None,
        new_conversation: Conversation | None = None,
        history: Sequence[tuple[Role, str] | tuple[Role, str, list[dict] | None]] = (),
        after: int | None = None,
        attachments: Sequence[int] = (),
        owner: int | None = None,
    ) -> tuple[Message, list[Message]]:
        """Store a user message and one empty, ``streaming`` answer to it per model of ``models``, in one
        transaction (the arguments as ``add_exchange``'s). With more than one model the answers are a side-by-side
        comparison: siblings marked ``comparing``, the first one shown, until one is picked (``pick``).

        Returns:
            ``(user_message, answers)``, the answers in the order of ``models``.

        Raises:
            NotFound: as ``add_exchange``.
        """
        with self._session() as session:
            if conversation_id is None:
                if new_conversation is None:
                    raise ValueError("add_exchange needs a conversation id or a new conversation")
                conversation = new_conversation
                session.add(conversation)
                session.flush()
                assert conversation.id is not None
                conversation_id = conversation.id
                path: list[Message] = []
                parent_id = None
            else:
                conversation = _require(session, Conversation, conversation_id)
                light = select(Message.id, Message.parent_id, Message.selected)  # the path's end, not its text
                path = selected_path(session.exec(light.where(Message.conversation_id == conversation_id)))
                parent_id = path[-1].id if path else None
                if after is not None:
                    below = session.get(Message, after)
                    if below is None or below.conversation_id != conversation_id:
                        raise NotFound(f"message {after} not found")
                    parent_id = after
            if parent_id is not None:
                self._end_comparison(session, parent_id)
            for role, text, *events in history:
                earlier = Message(conversation_id=conversation_id, parent_id=parent_id, role=role, content=text,
                                  events=events[0] if events else None)  # fmt: skip
                self._unselect_siblings(session, earlier.conversation_id, earlier.parent_id)
                session.add(earlier)
                session.flush()
                parent_id = earlier.id
            user = Message(conversation_id=conversation_id, parent_id=parent_id, role=Role.user, content=content)
            self._unselect_siblings(session, user.conversation_id, user.parent_id)
            session.add(user)
            session.flush()
            if attachments:
                self._claim_attachments(session, attachments, owner, user)
            answers = [
                Message(
                    conversation_id=conversation_id, parent_id=user.id, role=Role.assistant, status=Status.streaming,
                    model=model, temperature=temperature, selected=index == 0, comparing=len(models) > 1,
                )
                for index, model in enumerate(models)
            ]  # fmt: skip
            session.add_all(answers)
            if first_title is not None and not path:
                conversation.title = first_title
            conversation.updated_at = utcnow()
            session.add(conversation)
            session.commit()
            return user, answers

    @staticmethod
    def _claim_attachments(session: Session, ids: Sequence[int], owner: int | None, user: Message) -> None:
        """Attach the unsent attachments ``ids`` of ``owner`` to the user message ``user``. Raises NotFound."""
        rows = list(session.exec(select(Attachment).where(col(Attachment.id).in_(list(ids)))))
        found = {row.id: row for row in rows if row.message_id is None and (owner is None or row.user_id == owner)}
        for key in ids:
            if key not in found:
                raise NotFound(f"attachment {key} not found (or already sent)")
        for key in ids:
            found[key].message_id = user.id
            session.add(found[key])

    @staticmethod
    def _copy_attachments(session: Session, source_id: int | None, target: Message) -> None:
        """Give ``target`` copies of the attachments of the message ``source_id`` (the same blobs)."""
        if source_id is None:
            return
        for row in session.exec(select(Attachment).where(Attachment.message_id == source_id).order_by(
                col(Attachment.id))):  # fmt: skip
            fields = row.model_dump(exclude={"id", "message_id", "created_at"})
            session.add(Attachment(**fields, message_id=target.id))

    @staticmethod
    def _end_comparison(session: Session, answer_id: int) -> None:
        """A comparison whose shown answer ``answer_id`` is continued from is over: its answers are variants now."""
        answer = session.get(Message, answer_id)
        if answer is None or not answer.comparing:
            return
        for sibling in session.exec(select(Message).where(
                Message.conversation_id == answer.conversation_id, Message.parent_id == answer.parent_id)):  # fmt: skip
            if sibling.comparing:
                sibling.comparing = False
                session.add(sibling)

    def pick(self, message_id: int) -> Message:
        """Keep the answer ``message_id`` of a side-by-side comparison: it becomes the shown one, the conversation
        continues from it, and the others are its variants (‹ 2/3 ›). Returns it. Raises NotFound."""
        with self._session() as session:
            message = _require(session, Message, message_id)
            self._unselect_siblings(session, message.conversation_id, message.parent_id)
            message.selected = True
            session.add(message)
            session.flush()
            self._end_comparison(session, message_id)
            session.commit()
            session.refresh(message)
            return message

    def collect_blobs(self) -> int:
        """Delete the blobs no attachment refers to any more (after messages, conversations or users were deleted);
        return how many."""
        images = select(Attachment.sha256)
        thumbnails = select(Attachment.thumbnail_sha256).where(col(Attachment.thumbnail_sha256).is_not(None))
        with self._session() as session:
            result = session.execute(
                delete(Blob).where(col(Blob.sha256).not_in(images), col(Blob.sha256).not_in(thumbnails))
            )
            session.commit()
            return result.rowcount or 0

    def continuation(self, owner: int | None, system_prompt: str, turns: Sequence[tuple[Role, str]],
                     limit: int = 50) -> tuple[int, int, int] | None:  # fmt: skip
        """The stored conversation a request's earlier ``turns`` continue: among ``owner``'s ``limit`` most recent
        conversations with this system prompt, the one whose tree holds the longest chain of messages from a root
        equal (role and content) to the first turns, at least one exchange long.

        Returns:
            ``(conversation_id, last_matching_message_id, turns_matched)``, or None when none matches.
        """
        best: tuple[int, int, int] | None = None
        for conversation in self.list_conversations(limit, owner=owner):
            if conversation.system_prompt != system_prompt or conversation.id is None:
                continue
            children: dict[int | None, list[Message]] = defaultdict(list)
            for message in self.messages(conversation.id):
                children[message.parent_id].append(message)
            node_id, matched = None, 0
            for role, text in turns:
                found = [m for m in children.get(node_id, []) if m.role == role and m.content == text]
                if not found:
                    break
                node = next((m for m in found if m.selected), found[-1])
                node_id, matched = node.id, matched + 1
            if matched >= 2 and node_id is not None and (best is None or matched > best[2]):
                best = (conversation.id, node_id, matched)
        return best

    def add_variant(self, message_id: int, *, model: str | None, temperature: float | None) -> Message:
        """Add a new, selected, ``streaming`` sibling of an assistant message (a regenerated answer).

        Raises:
            NotFound: no such message.
            InvalidRequest: the message is not an assistant message.
        """
        with self._session() as session:
            original = _require(session, Message, message_id)
            if original.role != Role.assistant:
                raise InvalidRequest(
                    f"message {message_id} is a user message: only an answer can be regenerated", field="message_id"
                )
            self._unselect_siblings(session, original.conversation_id, original.parent_id)
            variant = Message(
                conversation_id=original.conversation_id,
                parent_id=original.parent_id,
                role=Role.assistant,
                status=Status.streaming,
                model=model,
                temperature=temperature,
            )
            session.add(variant)
            self._touch(session, original.conversation_id)
            session.commit()
            return variant

    def add_edit(
        self, message_id: int, content: str, *, model: str | None, temperature: float | None
    ) -> tuple[Message, Message]:
        """Store an edited user message as a new, selected sibling of ``message_id`` (the original and everything
        under it kept) with an empty, ``streaming`` answer to it, in one transaction.

        Returns:
            ``(user_message, assistant_message)``.

        Raises:
            NotFound: no such message.
        """
        with self._session() as session:
            original = _require(session, Message, message_id)
            self._unselect_siblings(session, original.conversation_id, original.parent_id)
            user = Message(conversation_id=original.conversation_id, parent_id=original.parent_id, role=Role.user,
                           content=content)  # fmt: skip
            session.add(user)
            session.flush()
            self._copy_attachments(session, original.id, user)
            assistant = Message(conversation_id=original.conversation_id, parent_id=user.id, role=Role.assistant,
                                status=Status.streaming, model=model, temperature=temperature)  # fmt: skip
            session.add(assistant)
            self._touch(session, original.conversation_id)
            session.commit()
            return user, assistant

    def delete_subtree(self, message_id: int) -> int:
        """Delete a message and every message under it; when it was the shown one of its siblings, the newest other
        sibling is shown instead. Returns how many messages were deleted. Raises NotFound."""
        with self._session() as session:
            message = _require(session, Message, message_id)
            every = list(session.exec(select(Message).where(Message.conversation_id == message.conversation_id)))
            children: dict[int | None, list[Message]] = defaultdict(list)
            for row in every:
                children[row.parent_id].append(row)
            doomed, stack = [], [message]
            while stack:
                row = stack.pop()
                doomed.append(row.id)
                stack.extend(children.get(row.id, []))
            if message.selected:
                others = [row for row in children[message.parent_id] if row.id != message.id]
                if others:
                    newest = max(others, key=lambda row: row.id or 0)
                    newest.selected = True
                    session.add(newest)
            session.execute(delete(Message).where(col(Message.id).in_(doomed)))
            self._touch(session, message.conversation_id)
            session.commit()
        self.collect_blobs()
        return len(doomed)

    def select_path_to(self, message_id: int) -> Message:
        """Show the branch that holds ``message_id``: it and each of its ancestors become the shown one among their
        siblings (the branches below keep what they showed). Returns the message. Raises NotFound."""
        with self._session() as session:
            message = _require(session, Message, message_id)
            conversation_id = message.conversation_id
            light = select(Message.id, Message.parent_id, Message.selected)  # the tree, not the texts
            by_id = {row.id: row for row in session.exec(light.where(Message.conversation_id == conversation_id))}
            key: int | None = message_id
            while key is not None:
                row = by_id[key]
                if not row.selected:
                    self._unselect_siblings(session, conversation_id, row.parent_id)
                    session.execute(update(Message).where(col(Message.id) == key).values(selected=True))
                key = row.parent_id
            session.commit()
            session.refresh(message)
            return message

    def fork(self, message_id: int, *, user_id: int | None, title: str) -> Conversation:
        """A new conversation (of ``user_id``) holding a copy of the shown path up to and including ``message_id``,
        with the original's system prompt, model, temperature and tools, titled ``title``. Raises NotFound."""
        with self._session() as session:
            message = _require(session, Message, message_id)
            original = _require(session, Conversation, message.conversation_id)
            by_id = {row.id: row for row in session.exec(
                select(Message).where(Message.conversation_id == message.conversation_id))}  # fmt: skip
            chain: list[Message] = []
            node: Message | None = message
            while node is not None:
                chain.append(node)
                node = by_id.get(node.parent_id)
            copy = Conversation(
                user_id=user_id, title=title, system_prompt=original.system_prompt, model=original.model,
                temperature=original.temperature, tools=original.tools,
            )  # fmt: skip
            session.add(copy)
            session.flush()
            parent_id = None
            for row in reversed(chain):
                fields = row.model_dump(exclude={"id", "conversation_id", "parent_id", "selected"})
                if fields["status"] == Status.streaming:
                    fields["status"] = Status.interrupted
                fields["comparing"] = False
                new = Message(**fields, conversation_id=copy.id, parent_id=parent_id, selected=True)
                session.add(new)
                session.flush()
                self._copy_attachments(session, row.id, new)
                parent_id = new.id
            session.commit()
            session.refresh(copy)
            return copy

    def select_variant(self, message_id: int) -> Message:
        """Make this message the shown one among its siblings. Raises NotFound."""
        with self._session() as session:
            message = _require(session, Message, message_id)
            self._unselect_siblings(session, message.conversation_id, message.parent_id)
            message.selected = True
            session.add(message)
            session.commit()
            return message

    def checkpoint(self, message_id: int, content: str) -> None:
        """Save the partial text of one streaming answer (see ``checkpoint_many``)."""
        self.checkpoint_many({message_id: content})

    def checkpoint_many(self, contents: dict[int, str], events: dict[int, list[dict]] | None = None) -> None:
        """Save the partial text of several streaming answers in one transaction.

        Only a message still ``streaming`` is changed, so a late checkpoint can never overwrite the
        final text stored by ``finish_message``.

        Args:
            contents: message id -> its text so far.
            events: message id -> its content events so far (``Message.events``), for the answers with more than text.
        """
        if not contents:
            return
        events = events or {}
        plain = [{"message_id": key, "partial": text} for key, text in contents.items() if key not in events]
        rich = [
            {"message_id": key, "partial": text, "log": events[key]} for key, text in contents.items() if key in events
        ]
        where = (col(Message.id) == bindparam("message_id"), col(Message.status) == Status.streaming)
        with self.engine.begin() as connection:  # Core executemany: one statement, one commit, for all of them
            if plain:
                connection.execute(update(Message).where(*where).values(content=bindparam("partial")), plain)
            if rich:
                statement = update(Message).where(*where).values(content=bindparam("partial"), events=bindparam("log"))
                connection.execute(statement, rich)

    def finish_message(self, message_id: int, **fields: Any) -> Message:
        """Store how an answer ended: content, status, error, finish_reason, usage, ttft, duration.

        Raises:
            NotFound: no such message.
        """
        return self._update(Message, message_id, fields)

    def streaming_answers(self, created_before: datetime | None = None) -> list[tuple[int, int, int | None]]:
        """The answers ``streaming`` now (made before ``created_before``, when given): ``(message id, conversation id,
        owner id)`` each (for the replicas' check of dead ones)."""
        with self._session() as session:
            query = (
                select(Message.id, Message.conversation_id, Conversation.user_id)
                .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
                .where(col(Message.status) == Status.streaming)
            )
            if created_before is not None:
                query = query.where(col(Message.created_at) < created_before)
            return [(row[0], row[1], row[2]) for row in session.exec(query)]  # type: ignore[misc]

    def count_streaming(self, user_id: int) -> int:
        """How many answers of ``user_id``'s conversations are ``streaming`` now (on any replica)."""
        with self._session() as session:
            query = (
                select(func.count())
                .select_from(Message)
                .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
                .where(col(Message.status) == Status.streaming, Conversation.user_id == user_id)
            )
            return int(session.exec(query).one())  # type: ignore[call-overload]

    def interrupt(self, message_ids: Sequence[int], reason: str) -> list[int]:
        """Mark those of ``message_ids`` still ``streaming`` as ``interrupted`` with ``reason``, keeping their text;
        return the ids marked."""
        if not message_ids:
            return []
        with self._session() as session:
            still = list(session.exec(select(Message.id).where(
                col(Message.id).in_(list(message_ids)), col(Message.status) == Status.streaming)))  # fmt: skip
            if still:
                where = (col(Message.id).in_(still), col(Message.status) == Status.streaming)
                session.execute(update(Message).where(*where).values(status=Status.interrupted, error=reason))
            session.commit()
            return [key for key in still if key is not None]

    def interrupt_streaming(self, reason: str = "Parley stopped while this answer was streaming.") -> int:
        """Mark every message still ``streaming`` as ``interrupted``, keeping its text.

        Called at start-up: a message can only be streaming while the process that writes it runs.

        Returns:
            How many messages were marked.
        """
        with self._session() as session:
            result = session.execute(
                update(Message)
                .where(col(Message.status) == Status.streaming)
                .values(status=Status.interrupted, error=reason)
            )
            session.commit()
            return result.rowcount or 0

    def count_messages(self) -> int:
        """The number of messages in the database, every conversation and variant included."""
        with self._session() as session:
            return session.exec(select(func.count()).select_from(Message)).one()

    # -- users -----------------------------------------------------------------------------------------

    def count_users(self) -> int:
        """How many users exist (disabled ones included): 0 means Parley runs without logins (personal mode)."""
        with self._session() as session:
            return session.exec(select(func.count()).select_from(User)).one()

    def create_user(self, name: str, password_hash: str, *, is_admin: bool = False) -> User:
        """Create a user. The first user also becomes the owner of every conversation made before accounts existed.

        Raises:
            NameTaken: a user with this name exists.
        """
        with self._session() as session:
            if session.exec(select(User).where(User.name == name)).first() is not None:
                raise NameTaken(f"a user named {name!r} exists already")
            first = session.exec(select(func.count()).select_from(User)).one() == 0
            user = User(name=name, password_hash=password_hash, is_admin=is_admin)
            session.add(user)
            session.flush()
            if first:
                session.execute(update(Conversation).where(col(Conversation.user_id).is_(None)).values(user_id=user.id))
            try:
                session.commit()
            except IntegrityError:  # created by another process meanwhile
                raise NameTaken(f"a user named {name!r} exists already") from None
            return user

    def get_user(self, user_id: int) -> User:
        """The user with this id. Raises NotFound."""
        with self._session() as session:
            return _require(session, User, user_id)

    def user_by_name(self, name: str) -> User | None:
        """The user with this name (exact, case-sensitive), or None."""
        with self._session() as session:
            return session.exec(select(User).where(User.name == name)).first()

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self._session() as session:
            return list(session.exec(select(User).order_by(col(User.name))))

    def update_user(self, user_id: int, **fields: Any) -> User:
        """Set some of a user's columns (password_hash, is_admin, disabled, models, last_login_at). Raises NotFound."""
        return self._update(User, user_id, fields)

    def delete_user(self, user_id: int) -> None:
        """Delete a user with their conversations, sessions, tokens and usage. Raises NotFound."""
        with self._session() as session:
            session.delete(_require(session, User, user_id))
            session.commit()
        self.collect_blobs()

    # -- login sessions and API tokens ------------------------------------------------------------

    def add_login_session(self, user_id: int, token_hash: str) -> None:
        """Store a new login session of ``user_id`` by its token's hash; also records the user's login time."""
        with self._session() as session:
            session.add(LoginSession(user_id=user_id, token_hash=token_hash))
            session.execute(update(User).where(col(User.id) == user_id).values(last_login_at=utcnow()))
            session.commit()

    def session_user(self, token_hash: str) -> User | None:
        """The user logged in by the session with this token hash, or None (no such session, or unused for
        ``SESSION_IDLE_LIMIT``: then it is deleted). Records when it was last used (at most once a minute)."""
        with self._session() as session:
            row = session.exec(select(LoginSession).where(LoginSession.token_hash == token_hash)).first()
            if row is None:
                return None
            now = utcnow()
            if now - _aware(row.last_seen_at) > SESSION_IDLE_LIMIT:
                session.delete(row)
                session.commit()
                return None
            if (now - _aware(row.last_seen_at)).total_seconds() > LAST_USED_RESOLUTION:
                row.last_seen_at = now
                session.add(row)
                session.commit()
            return session.get(User, row.user_id)

    def delete_login_sessions(self, *, token_hash: str | None = None, user_id: int | None = None,
                              keep: str | None = None) -> int:  # fmt: skip
        """Log out: delete the session with ``token_hash``, or every session of ``user_id`` but the one whose hash is
        ``keep``. Returns how many were deleted."""
        statement = delete(LoginSession)
        if token_hash is not None:
            statement = statement.where(col(LoginSession.token_hash) == token_hash)
        elif user_id is not None:
            statement = statement.where(col(LoginSession.user_id) == user_id)
            if keep is not None:
                statement = statement.where(col(LoginSession.token_hash) != keep)
        else:
            raise ValueError("delete_login_sessions needs token_hash or user_id")
        with self._session() as session:
            result = session.execute(statement)
            session.commit()
            return result.rowcount or 0

    def add_api_token(self, user_id: int, name: str, prefix: str, token_hash: str) -> ApiToken:
        """Store a new API token of ``user_id`` by its hash."""
        with self._session() as session:
            token = ApiToken(user_id=user_id, name=name, prefix=prefix, token_hash=token_hash)
            session.add(token)
            session.commit()
            return token

    def api_tokens(self, user_id: int) -> list[ApiToken]:
        """A user's API tokens, newest first."""
        with self._session() as session:
            query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(col(ApiToken.id).desc())
            return list(session.exec(query))

    def token_user(self, token_hash: str) -> User | None:
        """The user an API token with this hash belongs to, or None; records when the token was last used."""
        with self._session() as session:
            token = session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()
            if token is None:
                return None
            now = utcnow()
            if token.last_used_at is None or (now - _aware(token.last_used_at)).total_seconds() > LAST_USED_RESOLUTION:
                token.last_used_at = now
                session.add(token)
                session.commit()
            return session.get(User, token.user_id)

    def delete_api_token(self, token_id: int, *, owner: int) -> None:
        """Revoke (delete) one of ``owner``'s API tokens. Raises NotFound (no such token of that user)."""
        with self._session() as session:
            token = session.get(ApiToken, token_id)
            if token is None or token.user_id != owner:
                raise NotFound(f"API token {token_id} not found")
            session.delete(token)
            session.commit()

    # -- usage ------------------------------------------------------------------------------------

    def add_usage(
        self, user_id: int, prompt_tokens: int, completion_tokens: int, day: date | None = None, *, cost: float = 0.0
    ) -> None:
        """Add one answer's tokens and cost (dollars) to ``user_id``'s count for ``day`` (default: today, UTC)."""
        day = day or utcnow().date()
        values = {
            "answers": DailyUsage.answers + 1,
            "prompt_tokens": DailyUsage.prompt_tokens + prompt_tokens,
            "completion_tokens": DailyUsage.completion_tokens + completion_tokens,
            "cost": DailyUsage.cost + cost,
        }
        where = (col(DailyUsage.user_id) == user_id, col(DailyUsage.day) == day)
        for _ in range(2):  # a concurrent first insert of the day: the second try updates its row
            with self._session() as session:
                if (session.execute(update(DailyUsage).where(*where).values(values)).rowcount or 0) == 0:
                    session.add(DailyUsage(user_id=user_id, day=day, answers=1, prompt_tokens=prompt_tokens,
                                           completion_tokens=completion_tokens, cost=cost))  # fmt: skip
                try:
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()

    def usage(self, days: int = 14) -> list[DailyUsage]:
        """Every user's daily usage over the last ``days`` days (UTC, today included), newest day first."""
        since = utcnow().date() - timedelta(days=days - 1)
        with self._session() as session:
            query = select(DailyUsage).where(col(DailyUsage.day) >= since)
            return list(session.exec(query.order_by(col(DailyUsage.day).desc(), col(DailyUsage.user_id))))

    # -- tool approvals ---------------------------------------------------------------------------

    def tool_approvals(self, user_id: int | None) -> dict[str, str]:
        """The tools ``user_id`` (None: personal mode) always allows: tool name -> the fingerprint it was allowed at."""
        with self._session() as session:
            rows = session.exec(select(models.ToolApproval).where(col(models.ToolApproval.user_id) == user_id))
            return {row.tool: row.fingerprint for row in rows}

    def allow_tool(self, user_id: int | None, tool: str, fingerprint: str) -> None:
        """Remember that ``user_id`` always allows ``tool`` as it is now (``fingerprint``); replaces an older one."""
        with self._session() as session:
            row = models.ToolApproval
            session.execute(delete(row).where(col(row.user_id) == user_id, col(row.tool) == tool))
            session.add(models.ToolApproval(user_id=user_id, tool=tool, fingerprint=fingerprint))
            session.commit()

    @staticmethod
    def _unselect_siblings(session: Session, conversation_id: int, parent_id: int | None) -> None:
        """Unselect every message of ``conversation_id`` whose parent is ``parent_id`` (None: the first messages)."""
        session.execute(
            update(Message)
            .where(
                col(Message.conversation_id) == conversation_id,
                col(Message.parent_id).is_(None) if parent_id is None else col(Message.parent_id) == parent_id,
            )
            .values(selected=False)
        )

    @staticmethod
    def _touch(session: Session, conversation_id: int) -> None:
        session.execute(update(Conversation).where(col(Conversation.id) == conversation_id).values(updated_at=utcnow()))


def _aware(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (SQLite gives back naive ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _require(session: Session, table: type[T], key: int) -> T:
    """The row of ``table`` with primary key ``key``. Raises NotFound."""
    row = session.get(table, key)
    if row is None:
        raise NotFound(f"{table.__name__.lower()} {key} not found")
    return row


class TreeNode(Protocol):
    """What ``selected_path`` reads of a message: a ``Message``, a ``MessageNode``, or a row of these columns."""

    @property
    def id(self) -> int | None: ...
    @property
    def parent_id(self) -> int | None: ...
    @property
    def selected(self) -> bool: ...


N = TypeVar("N", bound=TreeNode)


def selected_path(messages: Iterable[N]) -> list[N]:
    """Walk from the selected root through the selected child at each step.

    Args:
        messages: every message of one conversation, in any order (``Message``s or ``MessageNode``s).

    Returns:
        The shown messages, oldest first. Where no sibling is marked selected, the newest is taken.
    """
    children: dict[int | None, list[N]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: m.id or 0):
        children[message.parent_id].append(message)
    path: list[N] = []
    parent: int | None = None
    while children.get(parent):
        siblings: Sequence[N] = children[parent]
        chosen = next((m for m in reversed(siblings) if m.selected), siblings[-1])
        path.append(chosen)
        parent = chosen.id
    return path
