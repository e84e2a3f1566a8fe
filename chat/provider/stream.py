"""One streaming chat completion, as it is read: ``ChatStream`` iterates the upstream's chunks into ``ChatChunk``s.

The response is the SDK's raw streaming response (``Provider._create``: the openai SDK builds and sends the request and
maps an HTTP error status to its ``APIStatusError`` subclasses before anything streams). Its body is read here with
httpx-sse (the server-sent events) and jiter (each event's JSON), into plain dicts: the SDK's typed
``ChatCompletionChunk`` per chunk cost 2.6 times the CPU of this (``bench/provider_parse.py``). What the SDK's
``AsyncStream`` does with the events (openai-python ``_streaming.py``) is done the same way here: ``data: [DONE]`` ends
the stream (the rest of the body is read, for 0.1 s at most, so the connection can be used again); a ``data`` object
carrying ``"error"`` raises ``openai.APIError`` with its ``message`` (default "An error occurred during streaming") and
the error as ``body``; the HTTP library's timeouts and transport errors while reading become ``openai.APITimeoutError``
and ``openai.APIConnectionError``. Every error then goes through ``errors.describe``, as before.

Only the fields Parley reads are looked at (https://platform.openai.com/docs/api-reference/chat-streaming): ``usage``
(``prompt_tokens``, ``completion_tokens``), and of ``choices[0]``: ``delta.content``, ``delta.reasoning_content`` /
``delta.reasoning`` (``reasoning.py``), ``delta.tool_calls`` (``tool_calls.py``) and ``finish_reason``.

It times the reads out (``read_timeout`` for the first text, then ``idle_timeout`` between chunks), splits reasoning
from the text (fields or ``<think>`` tags, ``reasoning.py``), accumulates tool calls (``tool_calls.py``) and keeps
what the answer came to (``finish_reason``, ``Usage``). The request itself is ``client.py``'s ``Provider``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import jiter
import openai
from httpx_sse import EventSource, ServerSentEvent, SSEError

from .errors import ProviderError
from .reasoning import ThinkSplitter, reasoning_of
from .tool_calls import ToolCall, ToolCallAccumulator, ToolCallDelta

if TYPE_CHECKING:
    from .client import Provider

#: Most seconds spent reading what follows ``data: [DONE]`` (as the SDK's ``drain_response_async``).
DRAIN_TIMEOUT = 0.1


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """``(timeouts, request errors)`` of the HTTP libraries the SDK may read with: httpx2 (openai 3) and httpx (earlier
    versions, and a custom ``http_client``), the same classes as openai-python's ``_httpx2.timeout_exceptions`` and
    ``request_exceptions`` (which add ``ssl.SSLError`` and ``anyio.EndOfStream``)."""
    timeouts: list[type[BaseException]] = [httpx.TimeoutException]
    requests: list[type[BaseException]] = [httpx.RequestError, ssl.SSLError, anyio.EndOfStream]
    try:
        import httpx2
    except ImportError:
        pass
    else:
        timeouts.append(httpx2.TimeoutException)
        requests.append(httpx2.RequestError)
    return tuple(timeouts), tuple(requests)


_TIMEOUTS, _REQUEST_ERRORS = _transport_errors()


@dataclass(slots=True)
class Usage:
    """Token counts of one chat completion."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(slots=True)
class ChatChunk:
    """What one upstream chunk adds.

    Attributes:
        delta: new answer text (any ``<think>`` part removed).
        finish_reason: at the end, the upstream's ``finish_reason`` (``"stop"``, ``"length"``, ``"tool_calls"``...).
        usage: the upstream's token counts, when this chunk carried them.
        reasoning: new reasoning text: ``delta.reasoning_content`` (DeepSeek, vLLM, llama.cpp), ``delta.reasoning``
            (OpenRouter, Ollama) or ``<think>`` content (see ``reasoning.py``).
        tool_calls: what this chunk adds to the turn's tool calls (see ``ToolCallAccumulator``).
    """

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)


class MalformedChunk(ValueError):
    """An event's ``data`` is not a JSON object, or a field Parley reads has the wrong type."""


def parse_chunk(data: str) -> dict[str, Any]:
    """One event's ``data`` as the JSON object it is (jiter; the standard library's ``json`` for what jiter refuses
    but JSON allows, such as a lone surrogate's ``\\ud83d`` escape).

    Raises:
        MalformedChunk: not JSON, or not an object.
    """
    try:
        chunk = jiter.from_json(data.encode())
    except ValueError:
        try:
            chunk = json.loads(data)
        except ValueError as error:
            raise MalformedChunk(f"not JSON: {error}") from error
    if not isinstance(chunk, dict):
        raise MalformedChunk(f"a JSON {type(chunk).__name__}, not an object")
    return chunk


def _usage(chunk: dict[str, Any]) -> Usage | None:
    """The chunk's ``usage`` (None when it has none); a count that is not an integer counts as missing."""
    usage = chunk.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise MalformedChunk("usage is not an object")
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(prompt if type(prompt) is int else None, completion if type(completion) is int else None)


def _stream_error(chunk: dict[str, Any], request: Any) -> openai.APIError:
    """The ``openai.APIError`` the SDK's stream raises for a ``data`` object that carries ``"error"``
    (openai-python ``_streaming.py``)."""
    error = chunk["error"]
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=request, body=error)


class ChatStream:
    """One streaming chat completion. Iterate it for ChatChunk objects; ``aclose()`` ends it.

    Closing ends the HTTP response, which is how a server learns to stop generating
    (llama.cpp's server and OpenAI both stop when the client goes away).

    While it is iterated it also keeps what the answer came to: ``finish_reason``, ``usage`` (the upstream's last),
    ``deltas`` (chunks with anything new: text, reasoning or tool calls), ``completion_tokens`` and ``tool_calls``.

    Args:
        provider: the provider that opened it (timeouts, error mapping).
        response: the SDK's raw streaming response (``openai.AsyncAPIResponse``; its ``http_response`` is read).
        model: the model asked for (named in reasons).
        release: called once when the stream is closed (the provider's concurrency slot).
        omitted: see the attribute.
        tools_refused: see the attribute.

    Raises (while iterating):
        ProviderError: the upstream failed; ``reason`` says how.
    """

    def __init__(
        self,
        provider: Provider,
        response: Any,
        model: str,
        release: Callable[[], None],
        omitted: int = 0,
        tools_refused: bool = False,
    ):
        self.omitted = omitted
        """Earlier messages the request left out to fit the model's context window (0: none)."""
        self.tools_refused = tools_refused
        """The request was given ``tools`` but sent without them, because the upstream refused them for this model
        (now, or an earlier request: see ``Provider.takes_tools``)."""
        self._calls = ToolCallAccumulator()
        self._think = ThinkSplitter()
        self._provider = provider
        self._response = response
        self._events: Any = None  # httpx-sse's async generator, once iterated
        self._model = model
        self._release = release
        self._closed = False
        self.finish_reason: str | None = None
        """The upstream's ``finish_reason`` ("stop", "length", "content_filter", ...), once it sent one."""
        self.usage: Usage | None = None
        """The token counts the upstream sent (OpenAI: in a last chunk when ``stream_options.include_usage``)."""
        self.deltas = 0
        """Chunks with anything new (text, reasoning, tool calls) so far."""

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The turn's tool calls so far, in order (complete once iteration ends; what arrived when it failed)."""
        return self._calls.calls

    @property
    def completion_tokens(self) -> int | None:
        """Tokens of the answer: the upstream's count, else one per chunk with anything new (servers that send no
        usage stream a token per chunk); None when there is neither."""
        if self.usage is not None:
            return self.usage.completion_tokens
        return self.deltas or None

    async def _next(self, events: AsyncIterator[ServerSentEvent], request: Any) -> ServerSentEvent:
        """The next event, with the HTTP library's errors as the SDK's (``AsyncStream._iter_events``).

        Raises:
            StopAsyncIteration: the body ended.
        """
        try:
            return await anext(events)
        except SSEError:  # an httpx.TransportError, but the response's own fault: not a connection's
            raise
        except _TIMEOUTS as error:
            raise openai.APITimeoutError(request=request) from error
        except _REQUEST_ERRORS as error:
            raise openai.APIConnectionError(request=request) from error

    async def __aiter__(self) -> AsyncIterator[ChatChunk]:
        provider = self._provider
        streamed = False
        finished = False
        loop = asyncio.get_running_loop()
        http = self._response.http_response
        request = http.request
        events = self._events = EventSource(http).aiter_sse()
        deadline = loop.time() + provider.read_timeout  # for the first text; then idle_timeout after each chunk
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):  # around the read only, never around our consumer
                        sse = await self._next(events, request)
                except StopAsyncIteration:
                    break
                data = sse.data
                if data.startswith("[DONE]"):
                    await self._drain(events)
                    break
                if not data:  # an event with no data (e.g. a keep-alive "event: ping")
                    continue
                chunk = parse_chunk(data)
                if chunk.get("error"):
                    raise _stream_error(chunk, request)
                usage = _usage(chunk)
                if usage is not None:
                    self.usage = usage
                choices = chunk.get("choices")
                if not choices:
                    if usage is not None:
                        yield ChatChunk(usage=usage)
                    continue
                choice = choices[0] if isinstance(choices, list) else None
                if not isinstance(choice, dict):
                    raise MalformedChunk("choices is not a list of objects")
                delta = choice.get("delta")
                if not isinstance(delta, dict):
                    delta = {}
                content = delta.get("content")
                if not isinstance(content, str):
                    content = ""
                reasoning = reasoning_of(delta)
                tool_calls = delta.get("tool_calls")
                calls = self._calls.add(tool_calls if isinstance(tool_calls, list) else None)
                finish_reason = choice.get("finish_reason")
                if not isinstance(finish_reason, str):
                    finish_reason = None
                if content or reasoning or calls:
                    streamed = True
                    self.deltas += 1
                thought, text = self._think.feed(content)
                if finish_reason:
                    finished = True
                    self.finish_reason = finish_reason
                    held_thought, held_text = self._think.flush()
                    thought, text = thought + held_thought, text + held_text
                reasoning = thought + reasoning if thought else reasoning
                if streamed:
                    deadline = loop.time() + provider.idle_timeout
                if text or reasoning or calls or finish_reason or usage:
                    yield ChatChunk(text, finish_reason, usage, reasoning, calls)
        except TimeoutError as error:
            if streamed:
                reason = f"The model server sent nothing for {provider.idle_timeout:g} s in the middle of the answer."
            else:
                reason = f"The model server sent no text within {provider.read_timeout:g} s."
            raise provider.explain(ProviderError(reason)) from error
        except MalformedChunk as error:
            reason = "The model server sent a malformed chunk; the answer stops here."
            raise provider.explain(ProviderError(reason)) from error
        except SSEError as error:  # httpx-sse: the response is not text/event-stream
            kind = http.headers.get("content-type", "") or "no content type"
            reason = f"The model server answered with {kind}, not a stream of server-sent events."
            raise provider.explain(ProviderError(reason)) from error
        except Exception as error:  # the SDK's errors (above: a transport error, an error event)
            raise provider.describe(error, self._model, streamed=streamed) from error
        if not finished:
            thought, text = self._think.flush()  # what was held back of a possible tag is kept with the rest
            if thought or text:
                yield ChatChunk(text, reasoning=thought)
            raise provider.explain(
                ProviderError("The model server ended the answer without finishing it (no finish_reason).")
            )

    @staticmethod
    async def _drain(events: AsyncIterator[ServerSentEvent]) -> None:
        """Read what follows ``[DONE]`` (nothing, from a well-behaved server) for ``DRAIN_TIMEOUT`` seconds at most, so
        that the HTTP/1.1 connection goes back to the pool; failing here never fails the answer (as the SDK's
        ``drain_response_async``)."""
        with contextlib.suppress(TimeoutError, SSEError, *_TIMEOUTS, *_REQUEST_ERRORS):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                async for _ in events:
                    pass

    async def aclose(self) -> None:
        """Close the HTTP stream (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._events is not None:
                with contextlib.suppress(Exception):
                    await self._events.aclose()
            await self._response.close()
        finally:
            self._release()
