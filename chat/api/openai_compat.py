"""The OpenAI-compatible API under ``/v1``: ``GET /v1/models`` and ``POST /v1/chat/completions``, streaming or not.

A thin view over the engine: the openai SDK and curl work unchanged with ``base_url`` set to
``http://<parley>/v1``. A request is answered by Parley's provider (the embedded model or the configured upstream):

* ``store`` true (the default): ``Engine.send`` makes it a conversation the UI shows, titled from its first user
  message, with a leading system message as its system prompt and the earlier turns stored as history, and answers
  its last (user) message; the answer is read from ``Engine.follow``, like any answer the pages show.
* ``store`` false: ``Engine.answer_unstored`` answers it through the same generation, storing nothing.

This module holds only OpenAI's shapes and their mapping: the request's messages split into a system prompt, turns
and the last message; the engine's events as ``chat.completion`` chunks; Parley's refusals (``chat/refusals.py``) as
OpenAI's errors. A client that disconnects cancels the answer (``Engine.cancel`` or ``Engine.cancel_unstored``; a
stored one is kept as ``cancelled``), as OpenAI does.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with OpenAI's statuses: 400
(invalid request, including FastAPI's validation errors on these routes only), 404 (unknown model, unknown ``/v1``
path), 429, and 502 when the upstream fails. A failure after the answer has started streaming is an ``{"error": ...}``
event, which the openai SDK raises as ``APIError``.

**Accounts** (team mode, when Parley has users): the API key is a Parley API token (``parley_…``; the browser's
login session works too). Every route needs one (the router's dependency): a missing, wrong or revoked token, or one
of a disabled user, is 401 ``invalid_api_key`` (the SDK raises ``AuthenticationError``). A stored request becomes a
conversation of the token's user; ``store: false`` answers count in their daily usage. ``/v1/models`` lists only the
models the user may use, and another model is 404 ``model_not_found``, as OpenAI answers a model you have no access
to. Over the user's limits (messages per minute, answers at once) the answer is 429 ``rate_limit_exceeded`` with
``Retry-After`` and ``x-should-retry: true``: the openai SDK waits and retries (``max_retries``, 2 by default), as
for OpenAI's own rate limits; ``store: false`` requests count towards both limits too. Other
errors from 429 on (the upstream's, after Parley's own ``--retries``) say ``x-should-retry: false``.
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from ..attachments import FileLimits
from ..engine import Account, Engine, Event, Finished, ModelNotAllowed, RateLimited, TextDelta, clean_text
from ..engine.events import (
    ContentEvent,
    ReasoningDelta,
    ToolArgumentsDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolResult,
    ToolStatus,
    numbered_log,
    to_json,
)
from ..provider import ProviderError
from ..provider.errors import CONTEXT_LENGTH_EXCEEDED
from ..refusals import Refusal
from ..store import Message, Role, Status
from .dependencies import CurrentAccount, EngineDep, NotAuthenticated, current_account
from .openai_files import PartFile, PartRefused, content_with, split_parts

log = logging.getLogger(__name__)
T = TypeVar("T")

# -- request ----------------------------------------------------------------------------------------------------------


def join_text_parts(content: object) -> object:
    """A message's content as one string: a list of text parts is joined (its files are taken out first by
    ``ChatMessage``'s validator, ``openai_files.split_parts``)."""
    return split_parts(content)[0]


TEXT_PART_SCHEMA = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"type": "string", "pattern": r"\S"}},
    "required": ["type", "text"],
}
IMAGE_PART_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {"type": "object", "properties": {"url": {"type": "string", "pattern": "^data:"}},
                      "required": ["url"]},
    },
    "required": ["type", "image_url"],
}  # fmt: skip
FILE_PART_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"const": "file"},
        "file": {"type": "object", "properties": {"filename": {"type": "string"},
                                                  "file_data": {"type": "string", "pattern": "^data:"}},
                 "required": ["file_data"]},
    },
    "required": ["type", "file"],
}  # fmt: skip

#: A message's content: text, or a list of parts: text (joined), images and files as data: URLs (``openai_files``).
Content = Annotated[
    str | None,
    BeforeValidator(join_text_parts),
    # documented non-blank (the text of the last message may not be blank; earlier ones may, but need not)
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"\S"},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"anyOf": [TEXT_PART_SCHEMA, IMAGE_PART_SCHEMA, FILE_PART_SCHEMA]},
                },
            ]
        }
    ),
]


class ChatMessage(BaseModel):
    """One message of the request. ``developer`` is taken as ``system``. An assistant message may carry the
    ``tool_calls`` it made and a ``tool`` message answers one (``tool_call_id``), for a client that runs its own tools
    (``tools``)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content = Field(
        None, description="Text, or a list of parts (text, image_url and file as data: URLs); null for tool calls only."
    )
    files: SkipJsonSchema[list[PartFile]] = Field([], exclude=True)  # the content's images and files, in order
    tool_calls: list[dict[str, Any]] | None = Field(None, description="An assistant message's calls (OpenAI's shape).")
    tool_call_id: str | None = Field(None, description="The call a `tool` message answers.", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _take_files(cls, data: Any) -> Any:
        """The content's images and files into ``files`` (the content keeps its text)."""
        if isinstance(data, dict) and isinstance(data.get("content"), list):
            try:
                text, files = split_parts(data["content"])
            except PartRefused:  # refused again by the content's own validator, which names the field
                return data
            data = {**data, "content": text, "files": files}
        return data

    @field_validator("tool_call_id")
    @classmethod
    def _answers_a_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("role") == "tool" and not value:
            raise ValueError("a `tool` message needs the `tool_call_id` of the call it answers")
        return value

    def as_request(self) -> dict[str, Any]:
        """This message as it is sent upstream (``developer`` as ``system``; text cleaned; tool fields kept)."""
        role = "system" if self.is_system else self.role
        message: dict[str, Any] = {"role": role, "content": clean_text(self.text) if self.content is not None else None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if message["content"] is None and role != "assistant":
            message["content"] = ""
        return message

    @property
    def text(self) -> str:
        """The content (none: empty)."""
        return self.content or ""

    @property
    def is_system(self) -> bool:
        """True for ``system`` and ``developer`` messages."""
        return self.role in ("system", "developer")


class StreamOptions(BaseModel):
    """Options of a streaming request."""

    include_usage: bool = Field(False, description="Send a last chunk with empty `choices` and the `usage`.")


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request, the fields Parley uses; other fields (``top_p``, ``stop``, ``tools``,
    ``response_format``, ...) are accepted and ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"messages": [{"role": "user", "content": "Hello!"}], "stream": True}]},
    )

    model: str = Field("", description="The model to answer with; empty or left out: Parley's default model.")
    messages: list[ChatMessage] = Field(
        min_length=1, description="System messages first (optional), then turns; the last one must be `user`."
    )
    temperature: float | None = Field(None, ge=0, le=2, description="0 to 2; default: Parley's `--temperature`.")
    stream: bool = Field(False, description="Answer as server-sent events of `chat.completion.chunk`.")
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens of the answer; Parley's `--max-tokens` caps it (the smaller one applies)."
    )
    max_completion_tokens: int | None = Field(
        None, ge=1, description="The newer name of `max_tokens`; when both are given, this one applies."
    )
    n: int = Field(
        1, description="Must be 1: Parley generates one choice.", json_schema_extra={"minimum": 1, "maximum": 1}
    )
    store: bool = Field(
        True,
        description="Keep the request and its answer as a conversation shown in Parley's UI (with a client's tools "
        "too: its earlier tool rounds become one assistant turn with its steps).",
    )
    tools: list[dict[str, Any]] | None = Field(
        None,
        description="The client's own tools (OpenAI's `{type: function, function: {name, description, parameters}}`): "
        "passed to the model; its calls come back as `tool_calls` for the client to run and answer with `tool` "
        "messages. Parley's own tools are never offered on /v1.",
    )
    user: str | None = Field(None, description="Accepted and ignored.")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("Parley generates one choice per request: n must be 1")
        return n


# -- responses --------------------------------------------------------------------------------------------------------


class Usage(BaseModel):
    """Token counts (0 when the upstream did not say)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = Field(None, description="The client's tools the model called.")
    reasoning_content: str | None = Field(None, description="The model's reasoning, when it sent any.")


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = Field(description="`stop`, `length`, `content_filter`, ... as the upstream said.")


class ChatCompletion(BaseModel):
    """A whole answer (``stream`` false)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streaming answer (``data: <this as JSON>``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "parley"


class ModelList(BaseModel):
    """The models the upstream (or the embedded model's server) serves."""

    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(BaseModel):
    message: str
    type: str = Field(description="`invalid_request_error`, `requests` (429) or `server_error`.")
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape."""

    error: ErrorBody


# -- errors -----------------------------------------------------------------------------------------------------------


class OpenAIError(Exception):
    """A refusal answered in OpenAI's error shape (raised in a ``/v1`` route, turned into a response by
    ``OpenAIRoute``)."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.body = status, ErrorBody(message=message, type=type, param=param, code=code)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The error as a JSON response. From 429 on it says ``x-should-retry: false`` (Parley already retried the
        upstream, ``--retries``: the openai SDK must not send the request again) unless ``headers`` say otherwise:
        Parley's own rate limit sends ``Retry-After`` and lets the SDK retry after it."""
        headers = {"x-should-retry": "false"} if self.status >= 429 else {}
        headers.update(self.headers)
        return JSONResponse({"error": self.body.model_dump()}, status_code=self.status, headers=headers)


def not_authenticated() -> OpenAIError:
    """What OpenAI answers for a missing or wrong API key: 401 ``invalid_api_key``."""
    return OpenAIError(
        401,
        "Incorrect or missing API key: send a Parley API token (Authorization: Bearer parley_…, made on Parley's "
        "Account page).",
        code="invalid_api_key",
    )


def rate_limited(refusal: RateLimited) -> OpenAIError:
    """Parley's per-user limit as OpenAI's 429 ``rate_limit_exceeded`` with ``Retry-After``; without
    ``x-should-retry: false``, so the openai SDK retries after ``Retry-After`` (its ``max_retries``, at most 60 s
    per wait), as it does for OpenAI's own rate limits."""
    return OpenAIError(
        429, str(refusal), type="requests", code="rate_limit_exceeded",
        headers={"Retry-After": str(refusal.retry_after), "x-should-retry": "true"},
    )  # fmt: skip


def model_not_allowed(refusal: ModelNotAllowed) -> OpenAIError:
    """A model the account may not use, as OpenAI answers one you have no access to: 404 ``model_not_found``."""
    return OpenAIError(404, str(refusal), param="model", code="model_not_found")


def refusal_error(refusal: Refusal) -> OpenAIError:
    """Parley's own refusal (``chat/refusals.py``) as OpenAI answers the same thing: not logged in is 401
    ``invalid_api_key``, a model you may not use 404 ``model_not_found``, over a limit 429 ``rate_limit_exceeded``,
    anything else its own status (a 422 is OpenAI's 400 ``invalid_request_error``)."""
    if isinstance(refusal, NotAuthenticated):
        return not_authenticated()
    if isinstance(refusal, RateLimited):
        return rate_limited(refusal)
    if isinstance(refusal, ModelNotAllowed):
        return model_not_allowed(refusal)
    return OpenAIError(400 if refusal.status == 422 else refusal.status, str(refusal), code=refusal.code)


class OpenAIRoute(APIRoute):
    """Answers the route's refusals (``OpenAIError``, Parley's ``Refusal``) and FastAPI's validation errors in
    OpenAI's shape (400): scoped to the ``/v1`` routes, so ``/api`` keeps FastAPI's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return invalid_request(error).response()
            except OpenAIError as error:
                return error.response()
            except Refusal as refusal:
                return refusal_error(refusal).response()
            except HTTPException as error:  # e.g. a body that is not UTF-8: "There was an error parsing the body"
                return OpenAIError(error.status_code, str(error.detail)).response()

        return route


def invalid_request(error: RequestValidationError) -> OpenAIError:
    """The first validation error as OpenAI's 400 ``invalid_request_error``, its field as ``param``
    (e.g. ``messages[0].role``)."""
    first = error.errors()[0] if error.errors() else {}
    if first.get("type") == "json_invalid":
        return OpenAIError(400, "We could not parse the JSON body of your request.")
    param = ""
    for part in first.get("loc", ())[1:]:  # loc starts with "body"
        param += f"[{part}]" if isinstance(part, int) else f".{part}" if param else str(part)
    message = str(first.get("msg", "Invalid request")).removeprefix("Value error, ")
    return OpenAIError(400, f"Invalid value for '{param}': {message}." if param else f"{message}.", param=param or None)


def upstream_failure(
    reason: str, status: int | None = None, code: str | None = None, *, streamed: bool = False
) -> OpenAIError:
    """An answer that failed, in OpenAI's shape: the upstream's 404 is ``model_not_found``, its 400 and a prompt too
    long for the context window are 400, its 429 is 429, anything else (or a failure after text) is 502.

    Args:
        reason: the one-line reason (``ProviderError.reason``, or a stored message's ``error``).
        status: the upstream's HTTP status (``ProviderError.status``, ``Message.error_status``), when it gave one.
        code: ``"context_length_exceeded"`` for a request too long for the context window (``ProviderError.code``,
            ``Message.error_code``).
        streamed: some text had arrived before the failure.
    """
    if not streamed:
        if status == 404:
            return OpenAIError(404, reason, param="model", code="model_not_found")
        if code == CONTEXT_LENGTH_EXCEEDED:
            return OpenAIError(400, reason, param="messages", code=CONTEXT_LENGTH_EXCEEDED)
        if status in (400, 413, 422):
            return OpenAIError(400, reason)
        if status == 429:
            return OpenAIError(429, reason, type="requests", code="rate_limit_exceeded")
    return OpenAIError(502, reason, type="server_error", code="upstream_error")


# -- answers ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class End:
    """How an answer ended: ``finish_reason`` and usage, or ``error`` (a reason) with the upstream's ``status`` and
    the error's ``code`` (see ``upstream_failure``)."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    status: int | None = None
    code: str | None = None

    @property
    def usage(self) -> Usage:
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


@dataclass(frozen=True, slots=True)
class Reasoning:
    """New reasoning text of an answer (sent as ``reasoning_content``)."""

    text: str


@dataclass(frozen=True, slots=True)
class CallDelta:
    """A piece of a tool call for the client: its ``index`` in the answer, and on the first piece its ``id`` and
    ``name``, else a fragment of ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def as_chunk(self) -> dict[str, Any]:
        """OpenAI's streamed ``tool_calls`` item."""
        if self.name is not None:
            return {"index": self.index, "id": self.id, "type": "function",
                    "function": {"name": self.name, "arguments": self.arguments}}  # fmt: skip
        return {"index": self.index, "function": {"arguments": self.arguments}}


#: An answer as this module reads it: text, reasoning and tool-call pieces, then one End.
Answer = AsyncIterator[str | Reasoning | CallDelta | End]

_UNFINISHED = {
    Status.cancelled: "The answer was stopped in Parley.",
    Status.interrupted: "Parley was stopped while this answer was streaming.",
}


def ending(message: Message) -> End:
    """The End of an answer, from the message its ``Finished`` event carries (stored or not)."""
    if message.status == Status.complete:
        return End(message.finish_reason or "stop", message.prompt_tokens, message.completion_tokens)
    reason = message.error or _UNFINISHED.get(message.status, f"The answer ended {message.status}.")
    return End(error=reason, status=message.error_status, code=message.error_code)


async def answer_of(events: AsyncIterator[Event]) -> Answer:
    """The engine's events of an answer (``Engine.follow``, ``Generation.follow``) as its text and its End."""
    calls: dict[str, int] = {}
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, TextDelta):
                yield event.text
            elif isinstance(event, ReasoningDelta):
                yield Reasoning(event.text)
            elif isinstance(event, ToolCallStarted) and event.source == "client":
                calls[event.call_id] = len(calls)
                yield CallDelta(calls[event.call_id], event.call_id, event.name)
            elif isinstance(event, ToolArgumentsDelta) and event.call_id in calls:
                yield CallDelta(calls[event.call_id], arguments=event.text)
            elif isinstance(event, Finished):
                end = ending(event.message)
                if calls and end.error is None:
                    end = End("tool_calls", end.prompt_tokens, end.completion_tokens)
                yield end
                return


class ClientGone(Exception):
    """The client disconnected before the answer was sent."""


async def unless_disconnected(
    request: Request, work: Coroutine[Any, Any, T], on_gone: Callable[[], Awaitable[Any]] | None
) -> T:
    """Await ``work``; when the client disconnects first, cancel it, await ``on_gone()`` and raise ClientGone.

    The request's body has been read, so the next ASGI message is ``http.disconnect`` (sse-starlette does the same
    while it streams)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        if on_gone is not None:
            with anyio.CancelScope(shield=True):
                await on_gone()
        raise ClientGone
    return task.result()


async def first_piece(answer: Answer) -> str | End:
    return await anext(answer)


@dataclass(slots=True)
class Whole:
    """A whole answer: its text, reasoning, tool calls (OpenAI's message shape) and End."""

    text: str
    reasoning: str
    tool_calls: list[dict[str, Any]]
    end: End


async def whole(answer: Answer) -> Whole:
    """The whole answer, pieces joined."""
    parts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    async with contextlib.aclosing(answer):
        async for piece in answer:
            if isinstance(piece, End):
                return Whole("".join(parts), "".join(reasoning), calls, piece)
            if isinstance(piece, Reasoning):
                reasoning.append(piece.text)
            elif isinstance(piece, CallDelta):
                if piece.name is not None:
                    calls.append(
                        {
                            "id": piece.id,
                            "type": "function",
                            "function": {"name": piece.name, "arguments": piece.arguments},
                        }
                    )
                else:
                    calls[piece.index]["function"]["arguments"] += piece.arguments
            else:
                parts.append(piece)
    raise RuntimeError("an answer ended without its End")  # not reached: both sources end with one


@dataclass(frozen=True, slots=True)
class Reply:
    """What every chunk of one reply repeats."""

    id: str
    created: int
    model: str

    def chunk(self, delta: ChunkDelta, finish_reason: str | None = None, usage: bool = False) -> dict[str, str]:
        """One ``chat.completion.chunk`` event; with ``usage``, ``"usage": null`` too, as OpenAI sends when asked."""
        extra = {"usage": None} if usage else {}
        choice = ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)
        chunk = ChatCompletionChunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            choices=[choice],
            **extra,
        )
        return {"data": chunk.model_dump_json(exclude_unset=True)}

    def usage_chunk(self, usage: Usage) -> dict[str, str]:
        chunk = ChatCompletionChunk(
            id=self.id, object="chat.completion.chunk", created=self.created, model=self.model, choices=[], usage=usage
        )
        return {"data": chunk.model_dump_json(exclude_unset=True)}


async def events(reply: Reply, first: str | End, answer: Answer, include_usage: bool) -> AsyncIterator[dict[str, str]]:
    """The server-sent events of a streaming reply: a role chunk, a chunk per delta, a chunk with the
    ``finish_reason``, with ``include_usage`` a usage chunk, then ``[DONE]``; or, on a failure, an ``error`` event."""
    async with contextlib.aclosing(answer):
        yield reply.chunk(ChunkDelta(role="assistant", content=""), usage=include_usage)
        piece = first
        while not isinstance(piece, End):
            if isinstance(piece, Reasoning):
                delta = ChunkDelta(reasoning_content=piece.text)
            elif isinstance(piece, CallDelta):
                delta = ChunkDelta(tool_calls=[piece.as_chunk()])
            else:
                delta = ChunkDelta(content=piece)
            yield reply.chunk(delta, usage=include_usage)
            piece = await anext(answer)
        if piece.error is not None:
            failure = upstream_failure(piece.error, piece.status, piece.code, streamed=True)
            yield {"data": ErrorResponse(error=failure.body).model_dump_json()}
            return
        yield reply.chunk(ChunkDelta(), finish_reason=piece.finish_reason, usage=include_usage)
        if include_usage:
            yield reply.usage_chunk(piece.usage)
        yield {"data": "[DONE]"}


def split_messages(messages: list[ChatMessage], max_length: int) -> tuple[str, list[tuple[Role, str]], str]:
    """``(system_prompt, earlier_turns, last_user_message)`` of a request. Raises OpenAIError (400)."""
    leading = 0
    while leading < len(messages) and messages[leading].is_system:
        leading += 1
    system = "\n\n".join(clean_text(m.text) for m in messages[:leading])
    turns = messages[leading:]
    for index, message in enumerate(turns, leading):
        if message.is_system:
            raise OpenAIError(400, "Parley takes system messages only at the start of `messages`.",
                              param=f"messages[{index}].role")  # fmt: skip
    if not turns or turns[-1].role != "user":
        raise OpenAIError(400, "The last message must have role `user`.", param=f"messages[{len(messages) - 1}].role")
    last = turns[-1].text
    if not last.strip():
        raise OpenAIError(400, "The last message is empty.", param=f"messages[{len(messages) - 1}].content")
    if len(last) > max_length:
        raise OpenAIError(400, f"The last message is {len(last):,} characters long; the limit is {max_length:,}.",
                          param=f"messages[{len(messages) - 1}].content", code="string_above_max_length")  # fmt: skip
    return system, [(Role(m.role), clean_text(m.text)) for m in turns[:-1]], last


def len_of(events: list[ContentEvent]) -> int:
    """The position after ``events`` (the sum of their sizes): where the new part of a seeded answer starts."""
    return sum(event.size for event in events)


def client_round_events(turns: list[ChatMessage]) -> list[ContentEvent]:
    """A client's tool rounds (assistant messages with ``tool_calls``, the ``tool`` messages answering them, the
    assistant's text) as an answer's content events, not yet numbered: each call ``client``-sourced, each answer a
    ``succeeded`` result."""
    events: list[ContentEvent] = []
    for message in turns:
        if message.role == "assistant":
            if message.text:
                events.append(TextDelta(clean_text(message.text)))
            for call in message.tool_calls or []:
                function = call.get("function") or {}
                call_id, name = str(call.get("id") or ""), str(function.get("name") or "")
                arguments = function.get("arguments") if isinstance(function.get("arguments"), str) else ""
                events.append(ToolCallStarted(call_id, name, "client"))
                if arguments:
                    events.append(ToolArgumentsDelta(call_id, arguments))
                try:
                    parsed = json.loads(arguments) if arguments else {}
                except ValueError:
                    parsed = None
                events.append(ToolCallReady(call_id, name, arguments, parsed if isinstance(parsed, dict) else None))
        elif message.role == "tool":
            events.append(ToolResult(message.tool_call_id or "", ToolStatus.succeeded, clean_text(message.text)))
    return events


def split_client_messages(
    messages: list[ChatMessage], max_length: int
) -> tuple[str, list[tuple[Role, str, list[dict[str, Any]] | None]], str, list[ContentEvent]]:
    """A request with a client's tools, for storing: ``(system_prompt, earlier_turns, last_user_message, seed)``.
    Earlier assistant turns with tool calls become one assistant turn with its events (calls, results, text); the
    rounds after the last user message are the new answer's ``seed``. Raises OpenAIError (400)."""
    leading = 0
    while leading < len(messages) and messages[leading].is_system:
        leading += 1
    system = "\n\n".join(clean_text(m.text) for m in messages[:leading])
    turns = messages[leading:]
    users = [index for index, message in enumerate(turns) if message.role == "user"]
    if not users:
        raise OpenAIError(400, "The messages need a `user` message.", param="messages")
    last_user = users[-1]
    last = turns[last_user].text
    if not last.strip():
        raise OpenAIError(400, "The last user message is empty.", param=f"messages[{leading + last_user}].content")
    if len(last) > max_length:
        raise OpenAIError(400, f"The last user message is {len(last):,} characters long; the limit is "
                          f"{max_length:,}.", param=f"messages[{leading + last_user}].content")  # fmt: skip
    history: list[tuple[Role, str, list[dict[str, Any]] | None]] = []
    rounds: list[ChatMessage] = []
    for index, message in enumerate(turns[:last_user], leading):
        if message.is_system:
            raise OpenAIError(400, "Parley takes system messages only at the start of `messages`.",
                              param=f"messages[{index}].role")  # fmt: skip
        if message.role == "user":
            history.extend(_as_turn(rounds))
            rounds = []
            history.append((Role.user, clean_text(message.text), None))
        else:
            rounds.append(message)
    history.extend(_as_turn(rounds))
    return system, history, last, client_round_events(turns[last_user + 1 :])


def _as_turn(rounds: list[ChatMessage]) -> list[tuple[Role, str, list[dict[str, Any]] | None]]:
    """Assistant and tool messages between two user messages as one stored assistant turn."""
    if not rounds:
        return []
    if all(m.role == "assistant" and not m.tool_calls for m in rounds):
        return [(Role.assistant, clean_text(m.text), None) for m in rounds]
    events = numbered_log(client_round_events(rounds))
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    return [(Role.assistant, text, [to_json(event) for event in events])]


# -- routes -----------------------------------------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request (OpenAI's `invalid_request_error`).",
        401: "No API token, or a wrong, revoked or disabled user's one (`invalid_api_key`; only when Parley has "
        "users).",
        404: "Unknown model, or one you may not use (`model_not_found`).",
        429: "Your per-user limit (`rate_limit_exceeded`, with `Retry-After`), or the upstream's.",
        502: "The upstream failed before any text (after Parley's retries).",
    }.items()
}

SSE_EXAMPLE = (
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    "data: [DONE]\n\n"
)


router = APIRouter(
    prefix="/v1",
    route_class=OpenAIRoute,
    tags=["OpenAI-compatible"],
    dependencies=[Depends(current_account)],
    responses={401: ERRORS[401]},
)
"""``GET /v1/models`` and ``POST /v1/chat/completions`` (and OpenAI's 404 for any other ``/v1`` path). Every route,
the unknown-path one included, depends on ``current_account``: in team mode a request without a valid API token or
login session is OpenAI's 401 ``invalid_api_key``."""


@router.get("/models", response_model=ModelList, responses={502: ERRORS[502]})
async def list_models(account: CurrentAccount, engine: EngineDep) -> ModelList:
    """The models the upstream serves that you may use, in OpenAI's list shape (``client.models.list()``)."""
    try:
        ids = await engine.provider.models()
    except ProviderError as failure:
        raise upstream_failure(failure.reason, failure.status, streamed=True) from failure
    return ModelList(data=[Model(id=model_id) for model_id in ids if account.may_use(model_id)])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "description": "A `chat.completion`; with `stream: true`, server-sent events of `chat.completion.chunk` "
            "ending with `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
        },
        **ERRORS,
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, account: CurrentAccount, engine: EngineDep
) -> Any:
    """Answer ``messages`` with OpenAI's chat completion shapes, streaming (``stream: true``) or not.

    Stored as a conversation of Parley's UI unless ``store`` is false; its ids are in the response headers
    ``x-parley-conversation-id`` and ``x-parley-message-id``. A request whose earlier messages are a stored
    conversation of yours (same system prompt; e.g. ``llm -c``) continues it, branching where they differ. A client
    that disconnects cancels the answer (stored as ``cancelled``). A failure after text has streamed is a last event
    ``data: {"error": {"message", "type": "server_error", ...}}`` (the openai SDK raises it as ``APIError``); without
    streaming it is a 502 with the reason.

    With accounts, the conversation is yours; a model you may not use is 404 ``model_not_found``, and too many
    messages in the last minute or answers running at once is 429 ``rate_limit_exceeded`` with ``Retry-After``
    (nothing is stored then). Requests with ``store`` false count towards both limits too.
    """
    model = body.model.strip() or None
    max_tokens = body.max_completion_tokens or body.max_tokens
    headers: dict[str, str] = {}
    client_tools = bool(body.tools) or any(m.role == "tool" or m.tool_calls for m in body.messages)
    limits = engine.attachments.limits
    last_user = next((m for m in reversed(body.messages) if m.role == "user"), None)
    earlier_files = any(m.files for m in body.messages if m is not last_user)
    if client_tools and body.store:  # the client runs its own tools: its messages are sent as they are, and stored
        system, history, last, seed = split_client_messages(body.messages, engine.max_message_length)
        request_messages = await upstream_messages(body.messages, limits)
        ids = await stored_files(engine, last_user, account)
        _, assistant = await engine.send(
            None, last, model=model, temperature=body.temperature, account=account, max_tokens=max_tokens,
            system_prompt=system, history=history, client_tools=body.tools or None,
            request=request_messages, seed=seed, attachments=ids,
        )  # fmt: skip
        stored_id = assistant.id
        assert stored_id is not None
        headers = {"x-parley-conversation-id": str(assistant.conversation_id), "x-parley-message-id": str(stored_id)}

        async def cancel_stored() -> None:
            await engine.cancel(stored_id, account)

        answer = answer_of(engine.follow(stored_id, len_of(seed), account))
        return await respond(body, request, answer, assistant.model or engine.model_for(model), headers, cancel_stored)
    if client_tools:  # not stored: passed through
        messages = await upstream_messages(body.messages, limits)
        generation = await engine.answer_unstored(
            messages, model=model, temperature=body.temperature, account=account, max_tokens=max_tokens,
            client_tools=body.tools or None,
        )  # fmt: skip
        answer = answer_of(generation.follow(0))
        reply_model = generation.model or engine.model_for(model)

        async def on_gone() -> None:
            await engine.cancel_unstored(generation)

        return await respond(body, request, answer, reply_model, headers, on_gone)
    system, turns, last = split_messages(body.messages, engine.max_message_length)
    if body.store:
        # earlier turns' files are sent, not stored: the request is then the client's, with them
        request_messages = await upstream_messages(body.messages, limits) if earlier_files else None
        ids = await stored_files(engine, last_user, account)
        _, assistant = await engine.send(
            None, last, model=model, temperature=body.temperature, account=account, max_tokens=max_tokens,
            system_prompt=system, history=turns, continues=not earlier_files, attachments=ids,
            request=request_messages,
        )  # fmt: skip
        answer_id = assistant.id
        assert answer_id is not None
        answer = answer_of(engine.follow(answer_id, 0, account))
        reply_model = assistant.model or engine.model_for(model)
        headers = {"x-parley-conversation-id": str(assistant.conversation_id), "x-parley-message-id": str(answer_id)}

        async def on_gone() -> None:
            await engine.cancel(answer_id, account)
    else:
        messages = [{"role": "system", "content": system}] if system.strip() else []
        messages += [{"role": role.value, "content": text} for role, text in turns]
        messages.append({"role": "user", "content": last})
        if any(m.files for m in body.messages):
            messages = await upstream_messages(body.messages, limits)
        generation = await engine.answer_unstored(
            messages, model=model, temperature=body.temperature, account=account, max_tokens=max_tokens
        )
        answer = answer_of(generation.follow(0))
        reply_model = generation.model or engine.model_for(model)

        async def on_gone() -> None:
            await engine.cancel_unstored(generation)

    return await respond(body, request, answer, reply_model, headers, on_gone)


async def upstream_messages(messages: list[ChatMessage], limits: FileLimits) -> list[dict[str, Any]]:
    """The request's messages as they go upstream (``ChatMessage.as_request``), a message with files with their
    content parts (``openai_files.content_with``). Raises AttachmentRefused, AttachmentTooLarge."""
    result = []
    for message in messages:
        sent = message.as_request()
        if message.files:
            sent["content"] = await content_with(clean_text(message.text), message.files, limits)
        result.append(sent)
    return result


async def stored_files(engine: Engine, message: ChatMessage | None, account: Account) -> list[int]:
    """The files of ``message`` (the last user message) stored for it (``Engine.attach``); their ids."""
    ids = []
    for file in message.files if message is not None else []:
        row = await engine.attach(file.data, file.name, account)
        assert row.id is not None
        ids.append(row.id)
    return ids


async def respond(
    body: ChatCompletionRequest,
    request: Request,
    answer: Answer,
    reply_model: str,
    headers: dict[str, str],
    on_gone: Callable[[], Awaitable[Any]],
) -> Any:
    """The response to a chat completion request: the whole ``chat.completion``, or its chunks as server-sent
    events; a client that goes away cancels the answer (``on_gone``)."""
    reply = Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), reply_model)
    try:
        if not body.stream:
            result = await unless_disconnected(request, whole(answer), on_gone)
            text, end = result.text, result.end
            if end.error is not None:
                raise upstream_failure(end.error, end.status, end.code, streamed=bool(text))
            message = AssistantMessage(
                content=text if text or not result.tool_calls else None,
                tool_calls=result.tool_calls or None,
                reasoning_content=result.reasoning or None,
            )
            choice = Choice(message=message, finish_reason=end.finish_reason)
            completion = ChatCompletion(
                id=reply.id, created=reply.created, model=reply_model, choices=[choice], usage=end.usage
            )
            return JSONResponse(completion.model_dump(exclude_none=True), headers=headers)
        # the status waits for the first text: a failure before it (e.g. an unknown model) is an HTTP error
        first = await unless_disconnected(request, first_piece(answer), on_gone)
    except ClientGone:
        return Response(status_code=499)  # nobody reads it
    if isinstance(first, End) and first.error is not None:
        await answer.aclose()
        raise upstream_failure(first.error, first.status, first.code)
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    return EventSourceResponse(
        events(reply, first, answer, include_usage),
        headers=headers,
        client_close_handler_callable=lambda _message: on_gone(),
    )


# every method: also a known path with another method (GET /v1/chat/completions, HEAD, OPTIONS) is OpenAI's 404
# "Invalid URL", not Starlette's 405 {"detail"}
@router.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)  # fmt: skip
async def unknown(path: str, request: Request) -> Response:
    raise OpenAIError(404, f"Invalid URL ({request.method} /v1/{path})")
