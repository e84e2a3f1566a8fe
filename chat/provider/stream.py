"""One streaming chat completion, as it is read: ``ChatStream`` iterates the upstream's chunks into ``ChatChunk``s.

It times the reads out (``read_timeout`` for the first text, then ``idle_timeout`` between chunks), splits reasoning
from the text (fields or ``<think>`` tags, ``reasoning.py``), accumulates tool calls (``tool_calls.py``) and keeps
what the answer came to (``finish_reason``, ``Usage``). The request itself is ``client.py``'s ``Provider``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai

from .errors import ProviderError
from .reasoning import ThinkSplitter, reasoning_of
from .tool_calls import ToolCall, ToolCallAccumulator, ToolCallDelta

if TYPE_CHECKING:
    from .client import Provider


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


class ChatStream:
    """One streaming chat completion. Iterate it for ChatChunk objects; ``aclose()`` ends it.

    Closing ends the HTTP response, which is how a server learns to stop generating
    (llama.cpp's server and OpenAI both stop when the client goes away).

    While it is iterated it also keeps what the answer came to: ``finish_reason``, ``usage`` (the upstream's last),
    ``deltas`` (chunks with anything new: text, reasoning or tool calls), ``completion_tokens`` and ``tool_calls``.

    Raises (while iterating):
        ProviderError: the upstream failed; ``reason`` says how.
    """

    def __init__(
        self,
        provider: Provider,
        stream: openai.AsyncStream[Any],
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
        self._stream = stream
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

    async def __aiter__(self) -> AsyncIterator[ChatChunk]:
        provider = self._provider
        streamed = False
        finished = False
        loop = asyncio.get_running_loop()
        chunks = self._stream.__aiter__()
        deadline = loop.time() + provider.read_timeout  # for the first text; then idle_timeout after each chunk
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):  # around the read only, never around our consumer
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                usage = None
                if chunk.usage is not None:
                    usage = self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                if not chunk.choices:
                    if usage is not None:
                        yield ChatChunk(usage=usage)
                    continue
                choice = chunk.choices[0]
                content = (choice.delta.content if choice.delta else None) or ""
                reasoning = reasoning_of(choice.delta)
                calls = self._calls.add(getattr(choice.delta, "tool_calls", None) if choice.delta else None)
                if content or reasoning or calls:
                    streamed = True
                    self.deltas += 1
                thought, delta = self._think.feed(content)
                if choice.finish_reason:
                    finished = True
                    self.finish_reason = choice.finish_reason
                    held_thought, held_text = self._think.flush()
                    thought, delta = thought + held_thought, delta + held_text
                reasoning = thought + reasoning if thought else reasoning
                if streamed:
                    deadline = loop.time() + provider.idle_timeout
                if delta or reasoning or calls or choice.finish_reason or usage:
                    yield ChatChunk(delta, choice.finish_reason, usage, reasoning, calls)
        except TimeoutError as error:
            if streamed:
                reason = f"The model server sent nothing for {provider.idle_timeout:g} s in the middle of the answer."
            else:
                reason = f"The model server sent no text within {provider.read_timeout:g} s."
            raise provider.explain(ProviderError(reason)) from error
        except Exception as error:  # the SDK's errors and a malformed chunk's JSON error
            raise provider.describe(error, self._model, streamed=streamed) from error
        if not finished:
            thought, delta = self._think.flush()  # what was held back of a possible tag is kept with the rest
            if thought or delta:
                yield ChatChunk(delta, reasoning=thought)
            raise provider.explain(
                ProviderError("The model server ended the answer without finishing it (no finish_reason).")
            )

    async def aclose(self) -> None:
        """Close the HTTP stream (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.close()
        finally:
            self._release()
