"""The database tables: conversations and their messages; users, their login sessions, API tokens and daily usage.

Messages form a tree through ``parent_id`` (the message they answer or follow), as in the
chat UIs people know: regenerating an assistant turn adds a *variant*, a sibling with the same
parent. Exactly one sibling of each group is ``selected``; the conversation shown is the path
that starts at the selected root and follows the selected child at each step.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


class Role(StrEnum):
    """Who wrote a message: the chat completion roles."""

    system = "system"
    user = "user"
    assistant = "assistant"


class Status(StrEnum):
    """Where a message is in its life. Only assistant messages are ever anything but ``complete``."""

    streaming = "streaming"  # being generated now
    complete = "complete"  # the upstream finished it (see finish_reason)
    cancelled = "cancelled"  # stopped by the user; the partial text is kept
    error = "error"  # the upstream failed; the partial text and the reason are kept
    interrupted = "interrupted"  # Parley stopped (crash, restart) while it streamed; last checkpoint kept


def _owner_column() -> Column:
    """The ``user_id`` column of a row that belongs to a user and goes with them."""
    return Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)


class User(SQLModel, table=True):
    """A person who logs in (team mode: Parley requires a login once one user exists)."""

    __tablename__ = "users"  # "user" is a reserved word in PostgreSQL

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    password_hash: str  # argon2id, in the PHC string format ("$argon2id$v=19$m=...")
    is_admin: bool = False
    disabled: bool = False
    models: str | None = None  # the models this user may use, one per line; None: every model
    tools: str | None = None  # the tools this user may use, one name per line; None: every tool
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None

    @property
    def allowed_models(self) -> frozenset[str] | None:
        """The models this user may use, or None for every model."""
        return None if self.models is None else frozenset(line for line in self.models.splitlines() if line)

    @property
    def allowed_tools(self) -> frozenset[str] | None:
        """The tools this user may use (by the name the model sees), or None for every tool."""
        return None if self.tools is None else frozenset(line for line in self.tools.splitlines() if line)


class LoginSession(SQLModel, table=True):
    """A browser logged in as a user. The browser holds the token in Parley's signed session cookie; the database
    holds only its SHA-256, so a copy of the database logs nobody in."""

    __tablename__ = "login_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)  # hex SHA-256 of the token
    user_id: int = Field(sa_column=_owner_column())
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A user's token for ``Authorization: Bearer …`` on ``/api`` and ``/v1``: shown once, stored as its SHA-256."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=_owner_column())
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)  # the token's first characters, to recognise it in a list
    token_hash: str = Field(max_length=64, unique=True, index=True)  # hex SHA-256 of the token
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class DailyUsage(SQLModel, table=True):
    """Tokens a user's answers used on one day (UTC), stored or not (``/v1`` with ``store: false``)."""

    __tablename__ = "daily_usage"
    __table_args__ = (UniqueConstraint("user_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=_owner_column())
    day: date
    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # US dollars (answers of models with a price)


class Conversation(SQLModel, table=True):
    """A conversation: its settings and its messages. An imported one remembers its ``source_id`` (unique per owner),
    so importing the same file again skips it."""

    __table_args__ = (UniqueConstraint("user_id", "source_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(  # its owner; None: made without accounts (personal mode)
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    title: str = Field(default="New chat", max_length=200)
    system_prompt: str = ""
    model: str | None = None  # None: the app's default model
    temperature: float = 0.7
    tools: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # on here; None: the default
    pinned: bool = False  # listed first in the drawer
    archived: bool = False  # left out of the drawer's list (shown under "Archived")
    source_id: str | None = Field(default=None, max_length=200)  # where an import came from ("chatgpt:<id>")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Message(SQLModel, table=True):
    """One message of a conversation; an assistant message also records how it was generated."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(
        sa_column=Column(Integer, ForeignKey("conversation.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    parent_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("message.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    selected: bool = True  # the sibling shown on the conversation's path
    role: Role
    content: str = ""
    status: Status = Status.complete
    error: str | None = None  # short human reason when status is error / interrupted
    error_status: int | None = None  # the upstream's HTTP status when it refused the request (status error)
    error_code: str | None = None  # "context_length_exceeded" when the request did not fit the context window
    model: str | None = None
    temperature: float | None = None
    finish_reason: str | None = None  # "stop", "length", "content_filter", ... as the upstream said
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft: float | None = None  # time to first token, seconds
    duration: float | None = None  # request to last chunk, seconds
    omitted_messages: int | None = None  # earlier messages left out of the request to fit the context window
    cost: float | None = None  # US dollars, from the price table (``engine/pricing.py``); None: the price is unknown
    cost_estimated: bool = False  # the upstream sent no usage: the tokens were counted by Parley
    # the answer's content events when it has more than text (reasoning, tool calls): ``engine/events.py``'s JSON
    events: list[dict] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    comparing: bool = False  # one of the answers of a side-by-side comparison that none was picked of yet
    created_at: datetime = Field(default_factory=utcnow)


class ToolApproval(SQLModel, table=True):
    """A tool its user chose to "always allow": calls of it run without asking, as long as the tool is the same
    (``fingerprint``: its description and input schema, ``chat/tools``); a changed tool asks again."""

    __tablename__ = "tool_approval"
    __table_args__ = (UniqueConstraint("user_id", "tool"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(  # None: personal mode
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    tool: str = Field(max_length=64)
    fingerprint: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class ShareLink(SQLModel, table=True):
    """A read-only link to a conversation as it was when shared: a snapshot of its shown path (``snapshot``: ``{"title",
    "messages": [{"role", "content", "events", "model", "created_at"}]}``), behind a token of which only the SHA-256
    is stored. ``audience``: ``"users"`` (anyone logged in to this Parley) or ``"anyone"`` (anyone with the link)."""

    __tablename__ = "share_link"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)  # hex SHA-256 of the token
    conversation_id: int = Field(
        sa_column=Column(Integer, ForeignKey("conversation.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    user_id: int | None = Field(  # its owner; None: personal mode
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    audience: str = Field(default="users", max_length=16)
    snapshot: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class SavedPrompt(SQLModel, table=True):
    """A prompt of a user's library: ``text`` may hold ``{{placeholders}}``, filled in when it is inserted. With
    ``published`` (an admin's), every user has it."""

    __tablename__ = "saved_prompt"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(  # its owner; None: personal mode
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    name: str = Field(max_length=100)
    text: str
    published: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Preset(SQLModel, table=True):
    """Settings to start a conversation from: system prompt, model, temperature, tools. One of a user's may be their
    default; with ``published`` (an admin's), every user has it."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(  # its owner; None: personal mode
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    name: str = Field(max_length=100)
    system_prompt: str = ""
    model: str | None = None  # None: the default model
    temperature: float | None = None  # None: the default temperature
    tools: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    is_default: bool = False
    published: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Blob(SQLModel, table=True):
    """The bytes of an attachment (or of its thumbnail), stored once by their SHA-256 however often they are attached.
    A blob no attachment refers to any more is deleted (``Store.collect_blobs``). In the database, not on a disk: a
    database backup holds everything, and several replicas need no shared folder."""

    sha256: str = Field(primary_key=True, max_length=64)  # hex
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int  # bytes
    created_at: datetime = Field(default_factory=utcnow)


class Attachment(SQLModel, table=True):
    """A file attached to a user message: an image (re-encoded, ``chat/attachments/files.py``) or a document (its
    text extracted). Uploaded first (``message_id`` None), then sent with a message; deleted with the message (and
    with it, with the conversation and with the user)."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(  # its owner; None: personal mode
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    message_id: int | None = Field(  # the user message it was sent with; None: uploaded, not sent yet
        default=None, sa_column=Column(Integer, ForeignKey("message.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    kind: str = Field(max_length=16)  # "image" or "document"
    name: str = Field(max_length=200)
    media_type: str = Field(max_length=100)
    size: int  # bytes of the stored data
    sha256: str = Field(sa_column=Column(String(64), ForeignKey("blob.sha256"), nullable=False, index=True))
    thumbnail_sha256: str | None = Field(
        default=None, sa_column=Column(String(64), ForeignKey("blob.sha256"), nullable=True, index=True)
    )
    width: int | None = None  # an image's, pixels
    height: int | None = None
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # a document's text
    tokens: int | None = None  # a document's text in tokens as counted when it was attached (an image: an estimate)
    sent_chars: int | None = None  # the document was cut to its first this many characters to fit; None: whole
    created_at: datetime = Field(default_factory=utcnow)
