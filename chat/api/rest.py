"""Conversations over REST and answers as resumable server-sent events, under ``/api``.

Thin views over the engine and the store: every rule (what may be sent, when a conversation is busy, how a title is
cleaned) lives in ``Engine``; this module only maps HTTP to it and its results back to JSON.

**Conversations.** ``GET/POST /api/conversations``, ``GET/PATCH/DELETE /api/conversations/{id}`` (the detail holds
every message, every variant included, and ``path``, the ids of the messages shown).

**Answers as SSE.** ``POST /api/conversations/{id}/messages`` sends a message and ``POST
/api/messages/{id}/regenerate`` starts a new variant; both answer ``text/event-stream``, as does ``GET
/api/messages/{id}/stream`` (follow an answer, live or stored). Every event's ``data`` is one line of JSON (UTF-8,
non-ASCII kept as is but for U+0085, U+2028 and U+2029, sent as ``\\u`` escapes because some clients split lines on
them); its ``id`` is the answer's sequence number once the client has this event (``chat/engine/events.py``: for text,
how many characters, Unicode code points, the client has)::

    id: 0
    event: message_start
    data: {"conversation_id":1,"user_message_id":1,"assistant_message_id":2,"model":"fake-model","temperature":0.7}

    id: 0
    event: phase
    data: {"phase":"thinking"}

    id: 0
    event: phase
    data: {"phase":"streaming"}

    id: 5
    event: text_delta
    data: {"delta":"Ríos "}

    id: 5
    event: usage
    data: {"prompt_tokens":12,"completion_tokens":2}

    id: 5
    event: done
    data: {"status":"complete","finish_reason":"stop","length":5}

* ``message_start`` first, then the answer's events (``chat/engine/events.py``; README, "Answer events"), an ``error``
  (``{"reason": …}``) before ``done`` when the answer failed or was interrupted. The stream ends after ``done``.
* Resume: ``GET /api/messages/{id}/stream`` with ``Last-Event-ID: N`` (what a browser's ``EventSource`` sends by
  itself on reconnecting) or ``?after=N`` (``?offset=N`` too, its older name) sends the events after sequence number
  N, live or stored: nothing lost or doubled.
* A comment line (``: ping …``) every ``HEARTBEAT_SECONDS`` keeps idle connections open; ``Cache-Control: no-cache``
  and ``X-Accel-Buffering: no`` stop proxies from buffering.
* A client that disconnects does not stop the answer; ``POST /api/messages/{id}/cancel`` does.

**Authentication.** Without users (personal mode) nothing is asked. With users (team mode) every route needs an API
token (``Authorization: Bearer parley_…``) or the browser's login session; without one it answers 401 ``{"detail":
"Not logged in: …"}`` with ``WWW-Authenticate: Bearer`` (the router's dependency, ``dependencies.current_account``,
so no route can leave it out). Each user sees only their own conversations: the list is theirs, a new conversation is
theirs, and every route with an id reads it through one dependency (``owned_conversation``, ``owned_message``,
``owned_answer``) that answers another user's id with the same 404 as a missing one, before anything changes.

**Errors** are JSON: ``{"detail": "…"}`` for 401 (not logged in), 403 (a model an admin has not allowed you), 404
(unknown id, or another user's), 409 (the conversation is already answering) and 429 (with accounts: too many
messages — sends and regenerations — in the last minute, or too many answers running at once; ``Retry-After`` says
how many seconds to wait, and nothing is stored for the refused message); 422 has FastAPI's list of problems,
``{"detail": [{"loc": ["body", "temperature"], "msg": "…", "type": "…"}]}``, for what the schema rejects, for
messages the engine refuses (blank, too long) and for a user message's id where an answer's is needed.
"""

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..attachments import AttachmentRefused
from ..auth import Accounts
from ..engine import LOCAL, Account, Engine, Finished, PhaseChanged, TextDelta, UsageReported
from ..engine.events import ContentEvent, end_of, is_content, to_json
from ..refusals import InvalidRequest
from ..store import Attachment, Conversation, Message, NotFound, Role, Status, Store, selected_path
from ..store import attachments as stored_attachments
from .dependencies import (
    HEARTBEAT_SECONDS,
    ApiServices,
    CurrentAccount,
    EngineDep,
    StoreDep,
    api_services,
    current_account,
    install,
)
from .errors import ApiRoute, ErrorOut

#: Headers of every event stream: no caching, no proxy buffering (sse-starlette adds ``X-Accel-Buffering: no``).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: Line breaks that are not SSE line ends but that some clients split on (Python's ``str.splitlines``): sent escaped,
#: which is the same JSON string.
_LINE_SEPARATORS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _no_default(schema: dict[str, Any]) -> None:
    """Drop ``"default": null`` from a field that may be left out but not set to null."""
    schema.pop("default", None)


Temperature = Annotated[float, Field(ge=0, le=2, description="Sampling temperature, 0 to 2.")]
#: A row id: a positive 64-bit integer (a larger one would overflow the database's integer, a 500, not a 404).
ConversationId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A conversation's id.")]
MessageId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A message's id.")]
LastEventId = Annotated[
    int,
    Header(ge=0, description="The answer's sequence number the client has (for text: its characters, in code points)."),
]
After = Annotated[int, Query(ge=0, description="The same as Last-Event-ID, for a client that cannot set it.")]
Offset = Annotated[int, Query(ge=0, description="The older name of `after`.")]


# -- bodies ------------------------------------------------------------------------------------------


class ConversationCreate(BaseModel):
    """A new conversation; every field may be left out (title "New chat" until the first message names it, the
    default model, the default temperature)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(None, max_length=200, json_schema_extra=_no_default)
    system_prompt: str = Field(None, json_schema_extra=_no_default)
    model: str | None = Field(None, description="null: the server's default model")
    temperature: Temperature = Field(None, json_schema_extra=_no_default)
    tools: list[str] | None = Field(
        None, description="The tools on in this conversation, by name (GET /api/tools); null: every tool offered."
    )
    pinned: bool = Field(None, description="Listed first.", json_schema_extra=_no_default)
    archived: bool = Field(None, description="Left out of the drawer's list.", json_schema_extra=_no_default)


class ConversationUpdate(ConversationCreate):
    """The fields to change; those left out stay as they are (``"model": null`` goes back to the default model)."""


class InlineFile(BaseModel):
    """A file sent inside a message, base64 (RFC 4648), instead of uploaded first."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=500, description="Its name (shown only; the type is read from it).")
    data: str = Field(min_length=1, description="Its bytes, base64.")


class SendMessage(BaseModel):
    """A user message and, optionally, settings for this answer only."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(
        min_length=1, description="What the user wrote (not empty, at most the server's --max-message-length)."
    )
    temperature: Temperature | None = Field(None, description="Overrides the conversation's temperature.")
    model: str | None = Field(None, description="Overrides the conversation's model.")
    attachments: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        [], max_length=100, description="Ids of files uploaded with POST /api/attachments, not sent yet."
    )
    files: list[InlineFile] = Field([], max_length=100, description="Files sent inline, base64.")


class CompareModels(BaseModel):
    """One message to several models side by side."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, description="What the user wrote.")
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=2, max_length=4, description="2 to 4 models, in the order of the columns."
    )
    temperature: Temperature | None = Field(None, description="Overrides the conversation's temperature.")
    attachments: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field([], max_length=100)
    files: list[InlineFile] = Field([], max_length=100)


class Regenerate(BaseModel):
    """How to generate the new variant."""

    model_config = ConfigDict(extra="forbid")

    temperature: Temperature | None = Field(None, description="Default: the conversation's temperature.")


# -- responses ---------------------------------------------------------------------------------------


class ConversationOut(BaseModel):
    """A conversation's settings."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    system_prompt: str
    model: str | None
    temperature: float
    tools: list[str] | None = Field(description="The tools on in this conversation; null: every tool offered.")
    pinned: bool
    archived: bool
    created_at: datetime
    updated_at: datetime


class AttachmentOut(BaseModel):
    """A file attached (or to be attached) to a message."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str = Field(description="`image` or `document`.")
    name: str
    media_type: str = Field(description="What the stored bytes are (an image as Parley re-encoded it).")
    size: int = Field(description="Bytes stored.")
    width: int | None = Field(description="An image's width in pixels, after scaling.")
    height: int | None = Field(description="An image's height in pixels, after scaling.")
    tokens: int | None = Field(description="A document's text in tokens (an image: an estimate).")
    sent_chars: int | None = Field(
        description="The document was cut to its first this many characters to fit the model's context window; "
        "null: sent whole."
    )
    text_chars: int | None = Field(description="Characters of a document's text.")
    message_id: int | None = Field(description="The message it was sent with; null: not sent yet.")
    created_at: datetime


def attachment_out(row: Attachment) -> AttachmentOut:
    """``row`` as the API describes it."""
    return AttachmentOut.model_validate(
        {**row.model_dump(exclude={"text"}), "text_chars": len(row.text) if row.text is not None else None}
    )


class MessageOut(BaseModel):
    """One message; an assistant message also says how it was generated."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: int
    parent_id: int | None = Field(description="The message it answers or follows; variants share it.")
    role: Role
    content: str
    status: Status
    error: str | None
    error_status: int | None = Field(description="The model server's HTTP status, when it refused the request.")
    error_code: str | None = Field(
        description="`context_length_exceeded` when the request did not fit the model's context window."
    )
    selected: bool = Field(description="Shown among its variants (the siblings with the same parent).")
    model: str | None
    temperature: float | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft: float | None = Field(description="Seconds to the first token.")
    duration: float | None = Field(description="Seconds from the request to the last chunk.")
    omitted_messages: int | None = Field(description="Earlier messages left out to fit the context window.")
    cost: float | None = Field(description="US dollars, from the model's price; null when the price is unknown.")
    cost_estimated: bool = Field(description="The upstream sent no usage: the tokens were counted by Parley.")
    events: list[dict[str, Any]] | None = Field(
        description="An answer with more than text: its content events in order (reasoning, tool calls and their "
        "results; the README's Answer events), null for text only."
    )
    comparing: bool = Field(description="One of the answers of a side-by-side comparison none was picked of yet.")
    attachments: list[AttachmentOut] = Field(
        [], description="A user message's files (images, documents), in the order they were attached."
    )
    created_at: datetime


def message_out(message: Message, attachments: list[Attachment]) -> MessageOut:
    """``message`` with its ``attachments`` as the API describes them."""
    out = MessageOut.model_validate(message)
    out.attachments = [attachment_out(row) for row in attachments]
    return out


class Comparison(BaseModel):
    """The answers of a side-by-side comparison, each ``streaming``: follow each with ``GET
    /api/messages/{id}/stream``; keep one with ``POST /api/messages/{id}/pick``."""

    user_message_id: int
    answers: list[MessageOut]


class ConversationDetail(ConversationOut):
    """A conversation with all its messages."""

    messages: list[MessageOut] = Field(description="Every message, every variant included, oldest first.")
    path: list[int] = Field(description="Ids of the messages shown: the selected variant at each step.")
    cost: float = Field(description="US dollars of all its answers, every variant included (those with a price).")
    cost_estimated: bool = Field(description="Some of it was counted by Parley (the upstream sent no usage).")


class Cancelled(BaseModel):
    """The outcome of a cancel."""

    cancelled: bool = Field(description="True when the answer was running and is now stored as cancelled.")
    message: MessageOut


# -- the event stream --------------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any], seq: int) -> ServerSentEvent:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(_LINE_SEPARATORS)
    return ServerSentEvent(text, event=name, id=str(seq))


async def answer_events(
    engine: Engine, message: Message, position: int = 0, account: Account = LOCAL
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of the answer ``message`` after sequence number ``position`` (see the module docstring),
    followed as ``account`` (``Engine.follow``)."""
    start = {
        "conversation_id": message.conversation_id,
        "user_message_id": message.parent_id,
        "assistant_message_id": message.id,
        "model": message.model,
        "temperature": message.temperature,
    }
    yield _event("message_start", start, position)
    assert message.id is not None
    try:
        async for event in engine.follow(message.id, position, account):
            if isinstance(event, TextDelta):
                yield _event("text_delta", {"delta": event.text}, event.seq)
            elif is_content(event):
                name, data = content_event(event)  # type: ignore[arg-type]
                yield _event(name, data, event.seq)
            elif isinstance(event, PhaseChanged):
                yield _event("phase", {"phase": event.phase.value}, event.seq)
            elif isinstance(event, UsageReported):
                usage = {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens}
                yield _event("usage", usage, event.seq)
            elif isinstance(event, Finished):
                stored = event.message
                if stored.error:
                    yield _event("error", {"reason": stored.error}, event.seq)
                status = getattr(stored.status, "value", stored.status)
                done = {"status": status, "finish_reason": stored.finish_reason, "length": len(stored.content)}
                yield _event("done", done, event.seq)
                return
    except NotFound as missing:  # deleted while we followed it
        yield _event("error", {"reason": str(missing)}, position)


def content_event(event: ContentEvent) -> tuple[str, dict[str, Any]]:
    """The SSE event name and data of a content event that is not text: its ``kind`` and its fields, with the tool
    call's ``call_id`` as ``id`` and a delta's ``text`` as ``delta`` (README, "Answer events")."""
    data = to_json(event)
    name = data.pop("kind")
    data.pop("seq")
    if "call_id" in data:
        data["id"] = data.pop("call_id")
    if name in ("reasoning_delta", "tool_call_delta"):
        data["delta"] = data.pop("text")
    return name, data


UNAUTHORIZED: dict[str, Any] = {
    "model": ErrorOut,
    "description": "Not logged in (only when Parley has users): no API token, or one that is wrong, revoked or of "
    "a disabled user, and no login session.",
    "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
}

STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer as server-sent events: message_start, phase, text_delta, usage, error, done "
        "(see the API section of the README). Each event's id is the answer's sequence number so far.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    404: {"model": ErrorOut, "description": "No such conversation or message."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such conversation or message (or not yours)."}
}
BUSY: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The conversation is already answering."}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "You may not use this model (team mode)."},
    429: {
        "model": ErrorOut,
        "description": "Too many messages in the last minute, or too many answers running at once (team mode).",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
}


# -- the ownership checks: the one place that turns an id into a row of the caller's -------------------------------


async def owned_conversation(conversation_id: ConversationId, account: CurrentAccount, store: StoreDep) -> Conversation:
    """The caller's conversation ``conversation_id``; NotFound (404) when missing or another user's."""
    return await asyncio.to_thread(store.get_conversation, conversation_id, owner=account.owner)


async def owned_message(message_id: MessageId, account: CurrentAccount, store: StoreDep) -> Message:
    """The caller's message ``message_id``; NotFound (404) when missing or in another user's conversation."""
    return await asyncio.to_thread(store.get_message, message_id, owner=account.owner)


OwnedMessage = Annotated[Message, Depends(owned_message)]


async def owned_answer(message: OwnedMessage) -> Message:
    """The caller's assistant message ``message_id``; 404 as ``owned_message``, 422 for a user message."""
    if message.role != Role.assistant:
        raise InvalidRequest(
            f"message {message.id} is a {message.role.value} message, not an answer", field="message_id"
        )
    return message


OwnedConversation = Annotated[Conversation, Depends(owned_conversation)]
OwnedAnswer = Annotated[Message, Depends(owned_answer)]


ServicesDep = Annotated[ApiServices, Depends(api_services)]


def stream(services: ApiServices, message: Message, account: Account, position: int = 0) -> EventSourceResponse:
    """The answer ``message`` as an event stream response, from sequence number ``position`` on."""
    events = answer_events(services.engine, message, position, account)
    return EventSourceResponse(events, headers=STREAM_HEADERS, ping=services.heartbeat)


# -- routes ------------------------------------------------------------------------------------------

router = APIRouter(
    prefix="/api",
    tags=["conversations"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)


@router.get("/conversations", response_model=list[ConversationOut])
async def list_conversations(
    account: CurrentAccount,
    store: StoreDep,
    archived: Annotated[bool | None, Query(description="Only archived ones (true) or only the others (false).")] = None,
) -> Any:
    """Your conversations (every one, without accounts): pinned first, then the most recently updated first."""
    return await asyncio.to_thread(store.list_conversations, owner=account.owner, archived=archived)


@router.post("/conversations", response_model=ConversationOut, status_code=201, responses={403: REFUSED[403]})
async def create_conversation(
    account: CurrentAccount, engine: EngineDep, store: StoreDep, body: ConversationCreate | None = None
) -> Any:
    """Create a conversation of yours (every field optional)."""
    fields = body.model_dump(exclude_unset=True) if body else {}
    conversation_id = await engine.create_conversation(account, **fields)
    return await asyncio.to_thread(store.get_conversation, conversation_id)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail, responses=NOT_FOUND)
async def get_conversation(conversation: OwnedConversation, store: StoreDep) -> Any:
    """A conversation with all its messages (every variant) and the ids of the shown path."""
    messages = await asyncio.to_thread(store.messages, conversation.id)
    files = await asyncio.to_thread(stored_attachments.attachments_of, store, (m.id for m in messages if m.id))
    return ConversationDetail(
        **ConversationOut.model_validate(conversation).model_dump(),
        messages=[message_out(m, files.get(m.id or 0, [])) for m in messages],
        path=[m.id for m in selected_path(messages)],
        cost=sum(m.cost or 0.0 for m in messages),
        cost_estimated=any(m.cost_estimated for m in messages if m.cost is not None),
    )


@router.patch(
    "/conversations/{conversation_id}", response_model=ConversationOut, responses={**NOT_FOUND, 403: REFUSED[403]}
)
async def update_conversation(
    body: ConversationUpdate, conversation: OwnedConversation, account: CurrentAccount, engine: EngineDep
) -> Any:
    """Change a conversation's title, system prompt, model or temperature."""
    assert conversation.id is not None
    return await engine.update_conversation(conversation.id, account, **body.model_dump(exclude_unset=True))


@router.delete("/conversations/{conversation_id}", status_code=204, responses=NOT_FOUND)
async def delete_conversation(conversation: OwnedConversation, account: CurrentAccount, engine: EngineDep) -> Response:
    """Delete a conversation and its messages, stopping its answer if one is running."""
    assert conversation.id is not None
    await engine.delete_conversation(conversation.id, account)
    return Response(status_code=204)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, **BUSY, **REFUSED},
)
async def send_message(
    body: SendMessage, conversation: OwnedConversation, account: CurrentAccount, services: ServicesDep
) -> EventSourceResponse:
    """Send a message and stream the answer as server-sent events (see ``GET /api/messages/{id}/stream``).

    The answer goes on if the client disconnects; resume it with ``GET /api/messages/{id}/stream``. With accounts,
    429 (``Retry-After``) when you sent too many messages in the last minute or have too many answers running, 403 for
    a model you may not use; nothing is stored then.
    """
    ids = await attachment_ids(services.engine, body.attachments, body.files, account)
    _, assistant = await services.engine.send(
        conversation.id, body.content, temperature=body.temperature, model=body.model, account=account,
        attachments=ids,
    )  # fmt: skip
    return stream(services, assistant, account)


async def attachment_ids(engine: Engine, ids: list[int], files: list[InlineFile], account: Account) -> list[int]:
    """``ids`` and the ids of ``files`` once read and stored (``Engine.attach``). Raises AttachmentRefused (also for
    broken base64), AttachmentTooLarge."""
    stored_ids = list(ids)
    for file in files:
        try:
            data = base64.b64decode(file.data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise AttachmentRefused(f"{file.name}: its data is not base64 ({error}).", field="files") from error
        row = await engine.attach(data, file.name, account)
        assert row.id is not None
        stored_ids.append(row.id)
    return stored_ids


@router.post(
    "/conversations/{conversation_id}/compare",
    status_code=201,
    response_model=Comparison,
    responses={**BUSY, **REFUSED},
)
async def compare(body: CompareModels, conversation: OwnedConversation, account: CurrentAccount,
                  engine: EngineDep) -> Any:  # fmt: skip
    """Send a message to 2-4 models at once: one answer per model, side by side, each its own generation (each
    counts as one of your messages and running answers). None is shown as picked until ``POST
    /api/messages/{id}/pick``; a next message continues from the first."""
    ids = await attachment_ids(engine, body.attachments, body.files, account)
    user, answers = await engine.compare(
        conversation.id, body.content, body.models, temperature=body.temperature, account=account, attachments=ids
    )
    assert user.id is not None
    return Comparison(user_message_id=user.id, answers=[MessageOut.model_validate(a) for a in answers])


@router.post("/messages/{message_id}/pick", response_model=MessageOut, responses={**NOT_FOUND})
async def pick(message: OwnedAnswer, account: CurrentAccount, engine: EngineDep) -> Any:
    """Keep this answer of a side-by-side comparison: the conversation continues from it, and the other answers stay
    as its variants."""
    assert message.id is not None
    return await engine.pick(message.id, account)


@router.get("/messages/{message_id}", response_model=MessageOut, responses=NOT_FOUND)
async def get_message(message: OwnedMessage, store: StoreDep) -> Any:
    """One message, as stored (a streaming answer's text is its last checkpoint), with its attachments."""
    files = await asyncio.to_thread(stored_attachments.attachments_of, store, [message.id])
    return message_out(message, files.get(message.id or 0, []))


@router.get(
    "/messages/{message_id}/stream",
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, 422: {"description": "A bad Last-Event-ID, after or offset, or not an answer."}},
)
async def stream_answer(
    message: OwnedAnswer,
    account: CurrentAccount,
    services: ServicesDep,
    last_event_id: LastEventId = None,  # type: ignore[assignment]  # left out of the schema's "default"
    after: After = None,  # type: ignore[assignment]
    offset: Offset = 0,
) -> EventSourceResponse:
    """Follow an answer, live or stored, after sequence number ``Last-Event-ID`` (or ``after``): the events of the
    README's "Answer events", after ``message_start`` (whose ``id`` is the number the stream starts after). Unless the
    client is the browser's ``EventSource``, it should not reconnect after ``done``.
    """
    assert message.id is not None
    engine = services.engine
    live = engine.live(message.id, account)
    if live is None:  # finished, maybe since ``owned_answer`` read it: the row now holds the final text
        message = await asyncio.to_thread(services.store.get_message, message.id, owner=account.owner)
    start = next(value for value in (last_event_id, after, offset) if value is not None)
    if not engine.generating_elsewhere(message):  # another replica's answer: its stream knows where it is
        start = min(start, live.position if live is not None else end_of(message))  # past the end: the end
    return stream(services, message, account, start)


@router.post("/messages/{message_id}/cancel", response_model=Cancelled, responses=NOT_FOUND)
async def cancel_answer(message: OwnedAnswer, account: CurrentAccount, services: ServicesDep) -> Any:
    """Stop a running answer (upstream generation ends); its partial text is kept, marked cancelled. ``cancelled`` is
    false when the answer was not running."""
    assert message.id is not None
    cancelled = await services.engine.cancel(message.id, account)
    stored = await asyncio.to_thread(services.store.get_message, message.id, owner=account.owner)
    return Cancelled(cancelled=cancelled, message=MessageOut.model_validate(stored))


class ToolOut(BaseModel):
    """A tool a model may call here."""

    name: str = Field(description="The name the model calls it by.")
    description: str
    source: str = Field(description="`builtin`, or the MCP server's name in the MCP config.")
    policy: str = Field(description="`auto` (runs), `ask` (waits for the owner's approval).")
    input_schema: dict[str, Any] = Field(description="JSON Schema of its arguments.")


class ToolsOut(BaseModel):
    """The tools on offer, and why some are not."""

    tools: list[ToolOut]
    problems: dict[str, str] = Field(description="MCP server name -> why it is unavailable now.")
    off_reason: str | None = Field(description="Why the default model gets no tools at all, or null.")


class Decision(BaseModel):
    """Approve a waiting tool call."""

    model_config = ConfigDict(extra="forbid")

    always: bool = Field(False, description="Always allow this tool (as it is now: a changed tool asks again).")


class Decided(BaseModel):
    """The decision was given to the waiting call."""

    id: str
    approved: bool


@router.get("/tools", response_model=ToolsOut)
async def list_tools(account: CurrentAccount, engine: EngineDep) -> Any:
    """The tools a conversation may turn on (``tools`` of a conversation), built-in and from MCP servers."""
    tools = await engine.available_tools(account)
    problems = dict(engine.tools.toolbox.problems) if engine.tools and engine.tools.toolbox else {}
    return ToolsOut(
        tools=[ToolOut(name=t.name, description=t.description, source=t.source, policy=t.policy.value,
                       input_schema=t.input_schema) for t in tools],
        problems=problems,
        off_reason=engine.tools_off_reason(),
    )  # fmt: skip


ToolCallId = Annotated[str, PathParam(min_length=1, max_length=200, description="The tool call's id.")]
NOT_WAITING: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No call of that id is waiting for your decision."}
}


@router.post("/tool-calls/{call_id}/approve", response_model=Decided, responses=NOT_WAITING)
async def approve_tool_call(
    call_id: ToolCallId, account: CurrentAccount, engine: EngineDep, body: Decision | None = None
) -> Any:
    """Let a tool call that waits for approval (``approval_required``) run; with accounts only its owner may."""
    await engine.decide(call_id, True, always=bool(body and body.always), account=account)
    return Decided(id=call_id, approved=True)


@router.post("/tool-calls/{call_id}/deny", response_model=Decided, responses=NOT_WAITING)
async def deny_tool_call(call_id: ToolCallId, account: CurrentAccount, engine: EngineDep) -> Any:
    """Refuse a tool call that waits for approval: it does not run, and the model is told so."""
    await engine.decide(call_id, False, account=account)
    return Decided(id=call_id, approved=False)


@router.post(
    "/messages/{message_id}/regenerate",
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, **BUSY, **REFUSED},
)
async def regenerate_answer(
    message: OwnedAnswer, account: CurrentAccount, services: ServicesDep, body: Regenerate | None = None
) -> EventSourceResponse:
    """Generate a new variant of an answer (the old ones are kept) and stream it like a sent message. With accounts
    it counts as a message: 429 and 403 as for sending one."""
    assert message.id is not None
    temperature = body.temperature if body else None
    variant = await services.engine.regenerate(message.id, temperature=temperature, account=account)
    return stream(services, variant, account)


# -- editing and branching ---------------------------------------------------------------------------


class EditMessage(BaseModel):
    """The edited text of a user message, and optionally this answer's temperature."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, description="The new text (not empty, at most --max-message-length).")
    temperature: Temperature | None = Field(None, description="Overrides the conversation's temperature.")


class Shown(BaseModel):
    """The conversation's shown path after a change."""

    conversation_id: int
    path: list[int] = Field(description="Ids of the messages shown, oldest first.")


class Deleted(BaseModel):
    """How many messages a delete removed (the message and everything under it)."""

    deleted: int
    path: list[int] = Field(description="Ids of the messages shown now.")


@router.post(
    "/messages/{message_id}/edit",
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, **BUSY, **REFUSED},
)
async def edit_message(
    body: EditMessage, message: OwnedMessage, account: CurrentAccount, services: ServicesDep
) -> EventSourceResponse:
    """Edit a user message (also an earlier one): the edit becomes a new, shown sibling (the original branch is kept)
    and its answer streams like a sent message's. 422 for an assistant message (regenerate it instead)."""
    assert message.id is not None
    _, assistant = await services.engine.edit(message.id, body.content, account=account, temperature=body.temperature)
    return stream(services, assistant, account)


@router.post("/messages/{message_id}/select", response_model=Shown, responses=NOT_FOUND)
async def select_branch(message: OwnedMessage, account: CurrentAccount, services: ServicesDep) -> Any:
    """Show the branch that holds this message (any message: a variant, an edit, a message deep in another branch);
    the branches below it keep what they showed."""
    assert message.id is not None
    await services.engine.show_message(message.id, account)
    path = await asyncio.to_thread(services.store.path, message.conversation_id)
    return Shown(conversation_id=message.conversation_id, path=[m.id for m in path if m.id is not None])


@router.delete("/messages/{message_id}", response_model=Deleted, responses={**NOT_FOUND, **BUSY})
async def delete_message(message: OwnedMessage, account: CurrentAccount, services: ServicesDep) -> Any:
    """Delete a message and everything under it (answers, later turns, their branches); 409 while the conversation
    answers."""
    assert message.id is not None
    count = await services.engine.delete_message(message.id, account)
    path = await asyncio.to_thread(services.store.path, message.conversation_id)
    return Deleted(deleted=count, path=[m.id for m in path if m.id is not None])


@router.post("/messages/{message_id}/fork", response_model=ConversationOut, status_code=201, responses=NOT_FOUND)
async def fork_conversation(message: OwnedMessage, account: CurrentAccount, services: ServicesDep) -> Any:
    """Continue in a new conversation: a copy of the shown path up to and including this message (title, system
    prompt, model, temperature and tools kept)."""
    assert message.id is not None
    conversation_id = await services.engine.fork(message.id, account)
    return await asyncio.to_thread(services.store.get_conversation, conversation_id)


def register_rest(
    app: FastAPI,
    engine: Engine,
    store: Store,
    accounts: Accounts | None = None,
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> None:
    """Serve ``router`` on ``app`` with these services alone (tests mount it so; Parley's own wiring is
    ``routes.register_api``).

    Args:
        app: a FastAPI app.
        engine: answers, cancels and regenerates.
        store: read for the JSON views.
        accounts: who a request is; None: no accounts at all (every request is ``LOCAL``).
        heartbeat: seconds between two heartbeat comments on an event stream.
    """
    install(app, ApiServices(engine, store, accounts, heartbeat))
    app.include_router(router)
