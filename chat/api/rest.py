"""Conversations over REST and answers as resumable server-sent events, under ``/api``.

Thin views over the engine and the store: every rule (what may be sent, when a conversation is busy, how a title is
cleaned) lives in ``Engine``; this module only maps HTTP to it and its results back to JSON.

**Conversations.** ``GET/POST /api/conversations``, ``GET/PATCH/DELETE /api/conversations/{id}`` (the detail holds
every message, every variant included, and ``path``, the ids of the messages shown).

**Answers as SSE.** ``POST /api/conversations/{id}/messages`` sends a message and ``POST
/api/messages/{id}/regenerate`` starts a new variant; both answer ``text/event-stream``, as does ``GET
/api/messages/{id}/stream`` (follow an answer, live or stored). Every event's ``data`` is one line of JSON (UTF-8,
non-ASCII kept as is but for U+0085, U+2028 and U+2029, sent as ``\\u`` escapes because some clients split lines on
them); its ``id`` is how many characters (Unicode code points) of the answer's text the client has
once it has this event::

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

* ``message_start`` first, ``phase`` (``loading``, ``queued``, ``retrying``, ``thinking``, ``streaming``) before and
  when text starts, ``text_delta`` for each piece of text, then ``usage``, ``error`` (``{"reason": …}``, only when
  the answer failed or was interrupted) and ``done`` (``status``: ``complete``, ``cancelled``, ``error``,
  ``interrupted``; ``finish_reason``; ``length`` in characters). The stream ends after ``done``.
* Resume: ``GET /api/messages/{id}/stream`` with ``Last-Event-ID: N`` (what a browser's ``EventSource`` sends by
  itself on reconnecting) or ``?offset=N`` sends the text after the first N characters: nothing lost or doubled.
* A comment line (``: ping …``) every ``HEARTBEAT_SECONDS`` keeps idle connections open; ``Cache-Control: no-cache``
  and ``X-Accel-Buffering: no`` stop proxies from buffering.
* A client that disconnects does not stop the answer; ``POST /api/messages/{id}/cancel`` does.

**Authentication.** Without users (personal mode) nothing is asked. With users (team mode) every route needs an API
token (``Authorization: Bearer parley_…``) or the browser's login session; without one it answers 401 ``{"detail":
"Not logged in: …"}`` with ``WWW-Authenticate: Bearer`` (the router's dependency, ``auth.authenticator``, so no
route can leave it out). Each user sees only their own conversations: the list is theirs, a new conversation is
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
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..auth import Accounts
from ..engine import (
    LOCAL,
    Account,
    ConversationBusy,
    Delta,
    Engine,
    Finished,
    ModelNotAllowed,
    PhaseChanged,
    RateLimited,
)  # fmt: skip
from ..store import Conversation, Message, NotFound, Role, Status, Store, selected_path
from .auth import authenticator

#: Seconds between two heartbeat comments on an event stream.
HEARTBEAT_SECONDS = 15.0
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
LastEventId = Annotated[int, Header(ge=0, description="Characters (code points) of the answer the client has.")]
Offset = Annotated[int, Query(ge=0, description="The same as Last-Event-ID, for a client that cannot set it.")]


# -- bodies ------------------------------------------------------------------------------------------


class ConversationCreate(BaseModel):
    """A new conversation; every field may be left out (title "New chat" until the first message names it, the
    default model, the default temperature)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(None, max_length=200, json_schema_extra=_no_default)
    system_prompt: str = Field(None, json_schema_extra=_no_default)
    model: str | None = Field(None, description="null: the server's default model")
    temperature: Temperature = Field(None, json_schema_extra=_no_default)


class ConversationUpdate(ConversationCreate):
    """The fields to change; those left out stay as they are (``"model": null`` goes back to the default model)."""


class SendMessage(BaseModel):
    """A user message and, optionally, settings for this answer only."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(
        min_length=1, description="What the user wrote (not empty, at most the server's --max-message-length)."
    )
    temperature: Temperature | None = Field(None, description="Overrides the conversation's temperature.")
    model: str | None = Field(None, description="Overrides the conversation's model.")


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
    created_at: datetime
    updated_at: datetime


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
    created_at: datetime


class ConversationDetail(ConversationOut):
    """A conversation with all its messages."""

    messages: list[MessageOut] = Field(description="Every message, every variant included, oldest first.")
    path: list[int] = Field(description="Ids of the messages shown: the selected variant at each step.")


class Cancelled(BaseModel):
    """The outcome of a cancel."""

    cancelled: bool = Field(description="True when the answer was running and is now stored as cancelled.")
    message: MessageOut


class ErrorOut(BaseModel):
    """An error: what went wrong, in a sentence."""

    detail: str


# -- the event stream --------------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any], offset: int) -> ServerSentEvent:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(_LINE_SEPARATORS)
    return ServerSentEvent(text, event=name, id=str(offset))


async def answer_events(
    engine: Engine, message: Message, offset: int = 0, account: Account = LOCAL
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of the answer ``message`` from character ``offset`` on (see the module docstring), followed
    as ``account`` (``Engine.follow``)."""
    start = {
        "conversation_id": message.conversation_id,
        "user_message_id": message.parent_id,
        "assistant_message_id": message.id,
        "model": message.model,
        "temperature": message.temperature,
    }
    yield _event("message_start", start, offset)
    assert message.id is not None
    try:
        async with contextlib.aclosing(engine.follow(message.id, offset, account)) as events:  # type: ignore[type-var]
            async for event in events:
                if isinstance(event, Delta):
                    offset += len(event.text)
                    yield _event("text_delta", {"delta": event.text}, offset)
                elif isinstance(event, PhaseChanged):
                    yield _event("phase", {"phase": event.phase.value}, offset)
                elif isinstance(event, Finished):
                    stored = event.message
                    usage = {"prompt_tokens": stored.prompt_tokens, "completion_tokens": stored.completion_tokens}
                    yield _event("usage", usage, offset)
                    if stored.error:
                        yield _event("error", {"reason": stored.error}, offset)
                    status = getattr(stored.status, "value", stored.status)
                    done = {"status": status, "finish_reason": stored.finish_reason, "length": len(stored.content)}
                    yield _event("done", done, offset)
                    return
    except NotFound as missing:  # deleted while we followed it
        yield _event("error", {"reason": str(missing)}, offset)


@contextlib.contextmanager
def engine_refusals() -> Iterator[None]:
    """The engine's refusals as HTTP errors: NotFound is 404 (also another user's id), ModelNotAllowed 403,
    ConversationBusy 409, RateLimited 429 with ``Retry-After``."""
    try:
        yield
    except NotFound as missing:
        raise HTTPException(404, str(missing)) from None
    except ModelNotAllowed as refusal:
        raise HTTPException(403, str(refusal)) from None
    except ConversationBusy as refusal:
        raise HTTPException(409, str(refusal)) from None
    except RateLimited as refusal:
        raise HTTPException(429, str(refusal), headers={"Retry-After": str(refusal.retry_after)}) from None


def _unprocessable(where: tuple[str, ...], error: Exception) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    return HTTPException(422, [{"loc": list(where), "msg": str(error), "type": "value_error"}])


UNAUTHORIZED: dict[str, Any] = {
    "model": ErrorOut,
    "description": "Not logged in (only when Parley has users): no API token, or one that is wrong, revoked or of "
    "a disabled user, and no login session.",
    "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
}

STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer as server-sent events: message_start, phase, text_delta, usage, error, done "
        "(see the API section of the README). Each event's id is the answer's length in characters so far.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    404: {"model": ErrorOut, "description": "No such conversation or message."},
}


# -- routes ------------------------------------------------------------------------------------------


def register_rest(
    app: FastAPI,
    engine: Engine,
    store: Store,
    accounts: Accounts | None = None,
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> None:
    """Add the ``/api`` REST and SSE routes to ``app``.

    Every route depends on ``authenticator(accounts)`` through the router (401 when not logged in, in team mode),
    and every route with an id reads it through ``owned_conversation``, ``owned_message`` or ``owned_answer``, which
    answer 404 for another user's id as for a missing one.

    Args:
        app: the FastAPI app (NiceGUI's).
        engine: answers, cancels and regenerates.
        store: read for the JSON views.
        accounts: who a request is; None: no accounts at all (every request is ``LOCAL``).
        heartbeat: seconds between two heartbeat comments on an event stream.
    """
    current_account = authenticator(accounts)
    router = APIRouter(
        prefix="/api",
        tags=["conversations"],
        dependencies=[Depends(current_account)],
        responses={401: UNAUTHORIZED},
    )
    not_found = {404: {"model": ErrorOut, "description": "No such conversation or message (or not yours)."}}
    busy = {409: {"model": ErrorOut, "description": "The conversation is already answering."}}
    refused = {
        403: {"model": ErrorOut, "description": "You may not use this model (team mode)."},
        429: {
            "model": ErrorOut,
            "description": "Too many messages in the last minute, or too many answers running at once (team mode).",
            "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
        },
    }

    async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a Store or Engine call in a thread; NotFound becomes 404."""
        with engine_refusals():
            return await asyncio.to_thread(function, *args, **kwargs)

    CurrentAccount = Annotated[Account, Depends(current_account)]

    # -- the ownership checks: the one place that turns an id into a row of the caller's ---------------------

    async def owned_conversation(conversation_id: ConversationId, account: CurrentAccount) -> Conversation:
        """The caller's conversation ``conversation_id``; 404 when missing or another user's."""
        return await call(store.get_conversation, conversation_id, owner=account.owner)

    async def owned_message(message_id: MessageId, account: CurrentAccount) -> Message:
        """The caller's message ``message_id``; 404 when missing or in another user's conversation."""
        return await call(store.get_message, message_id, owner=account.owner)

    OwnedMessage = Annotated[Message, Depends(owned_message)]

    async def owned_answer(message: OwnedMessage) -> Message:
        """The caller's assistant message ``message_id``; 404 as ``owned_message``, 422 for a user message."""
        if message.role != Role.assistant:
            refusal = ValueError(f"message {message.id} is a {message.role.value} message, not an answer")
            raise _unprocessable(("path", "message_id"), refusal)
        return message

    OwnedConversation = Annotated[Conversation, Depends(owned_conversation)]
    OwnedAnswer = Annotated[Message, Depends(owned_answer)]

    def stream(message: Message, account: Account, offset: int = 0) -> EventSourceResponse:
        events = answer_events(engine, message, offset, account)
        return EventSourceResponse(events, headers=STREAM_HEADERS, ping=heartbeat)

    @router.get("/conversations", response_model=list[ConversationOut])
    async def list_conversations(account: CurrentAccount) -> Any:
        """Your conversations (every one, without accounts), the most recently updated first."""
        return await call(store.list_conversations, owner=account.owner)

    @router.post("/conversations", response_model=ConversationOut, status_code=201, responses={403: refused[403]})
    async def create_conversation(account: CurrentAccount, body: ConversationCreate | None = None) -> Any:
        """Create a conversation of yours (every field optional)."""
        fields = body.model_dump(exclude_unset=True) if body else {}
        with engine_refusals():  # a model the account may not use: 403
            conversation_id = engine.create_conversation(account, **fields)
        return await call(store.get_conversation, conversation_id)

    @router.get("/conversations/{conversation_id}", response_model=ConversationDetail, responses=not_found)
    async def get_conversation(conversation: OwnedConversation) -> Any:
        """A conversation with all its messages (every variant) and the ids of the shown path."""
        messages = await call(store.messages, conversation.id)
        return ConversationDetail(
            **ConversationOut.model_validate(conversation).model_dump(),
            messages=[MessageOut.model_validate(m) for m in messages],
            path=[m.id for m in selected_path(messages)],
        )

    @router.patch(
        "/conversations/{conversation_id}",
        response_model=ConversationOut,
        responses={**not_found, 403: refused[403]},
    )
    async def update_conversation(
        body: ConversationUpdate,
        conversation: OwnedConversation,
        account: CurrentAccount,
    ) -> Any:
        """Change a conversation's title, system prompt, model or temperature."""
        with engine_refusals():  # on the loop: the engine tells the pages' watchers
            engine.update_conversation(conversation.id, account, **body.model_dump(exclude_unset=True))
        return await call(store.get_conversation, conversation.id)

    @router.delete("/conversations/{conversation_id}", status_code=204, responses=not_found)
    async def delete_conversation(conversation: OwnedConversation, account: CurrentAccount) -> Response:
        """Delete a conversation and its messages, stopping its answer if one is running."""
        with engine_refusals():
            await engine.delete_conversation(conversation.id, account)
        return Response(status_code=204)

    @router.post(
        "/conversations/{conversation_id}/messages",
        response_class=EventSourceResponse,
        responses={**STREAM_RESPONSE, **busy, **refused},
    )
    async def send_message(
        body: SendMessage,
        conversation: OwnedConversation,
        account: CurrentAccount,
    ) -> EventSourceResponse:
        """Send a message and stream the answer as server-sent events (see ``GET /api/messages/{id}/stream``).

        The answer goes on if the client disconnects; resume it with ``GET /api/messages/{id}/stream``. With
        accounts, 429 (``Retry-After``) when you sent too many messages in the last minute or have too many answers
        running, 403 for a model you may not use; nothing is stored then.
        """
        try:
            with engine_refusals():
                _, assistant = await engine.send(
                    conversation.id, body.content, temperature=body.temperature, model=body.model, account=account
                )
        except ValueError as refusal:  # EmptyMessage, MessageTooLong
            raise _unprocessable(("body", "content"), refusal) from None
        return stream(assistant, account)

    @router.get("/messages/{message_id}", response_model=MessageOut, responses=not_found)
    async def get_message(message: OwnedMessage) -> Any:
        """One message, as stored (a streaming answer's text is its last checkpoint)."""
        return message

    @router.get(
        "/messages/{message_id}/stream",
        response_class=EventSourceResponse,
        responses={**STREAM_RESPONSE, 422: {"description": "A bad Last-Event-ID or offset, or not an answer."}},
    )
    async def stream_answer(
        message: OwnedAnswer,
        account: CurrentAccount,
        last_event_id: LastEventId = None,  # type: ignore[assignment]  # left out of the schema's "default"
        offset: Offset = 0,
    ) -> EventSourceResponse:
        """Follow an answer, live or stored, from ``Last-Event-ID`` (or ``offset``) characters on.

        Events: ``message_start`` (its ``id`` is the offset the stream starts from), ``phase``, ``text_delta``
        (``{"delta": …}``; ``id``: characters so far), ``usage``, ``error`` (``{"reason": …}``), ``done``
        (``{"status", "finish_reason", "length"}``). Unless the client is the browser's ``EventSource``, it should not
        reconnect after ``done``.
        """
        assert message.id is not None
        live = engine.live(message.id, account)
        if live is None:  # finished, maybe since ``owned_answer`` read it: the row now holds the final text
            message = await call(store.get_message, message.id, owner=account.owner)
        start = last_event_id if last_event_id is not None else offset
        start = min(start, live.size if live is not None else len(message.content))  # past the end: the end
        return stream(message, account, start)

    @router.post("/messages/{message_id}/cancel", response_model=Cancelled, responses=not_found)
    async def cancel_answer(message: OwnedAnswer, account: CurrentAccount) -> Any:
        """Stop a running answer (upstream generation ends); its partial text is kept, marked cancelled.
        ``cancelled`` is false when the answer was not running."""
        assert message.id is not None
        cancelled = await engine.cancel(message.id, account)
        stored = await call(store.get_message, message.id, owner=account.owner)
        return Cancelled(cancelled=cancelled, message=MessageOut.model_validate(stored))

    @router.post(
        "/messages/{message_id}/regenerate",
        response_class=EventSourceResponse,
        responses={**STREAM_RESPONSE, **busy, **refused},
    )
    async def regenerate_answer(
        message: OwnedAnswer,
        account: CurrentAccount,
        body: Regenerate | None = None,
    ) -> EventSourceResponse:
        """Generate a new variant of an answer (the old ones are kept) and stream it like a sent message. With
        accounts it counts as a message: 429 and 403 as for sending one."""
        assert message.id is not None
        temperature = body.temperature if body else None
        with engine_refusals():
            variant = await engine.regenerate(message.id, temperature=temperature, account=account)
        return stream(variant, account)

    app.include_router(router)
