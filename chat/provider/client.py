"""Streaming chat completions from any OpenAI-compatible server, through ``openai.AsyncOpenAI``: ``Provider``.

The request is the OpenAI Chat Completions API with ``stream=True``: the server answers with server-sent events, one
``chat.completion.chunk`` each, ending with ``data: [DONE]``. The SDK sends the request and maps an error status to its
exceptions (``with_streaming_response``); ``stream.py`` reads the events (httpx-sse, jiter) as the SDK's own stream
would, without a typed object per chunk. With ``stream_options={"include_usage": True}`` a last chunk with empty
``choices`` carries ``usage`` (https://platform.openai.com/docs/api-reference/chat/create). With ``tools`` the chunks
may carry tool calls (``tool_calls.py``); reasoning arrives in fields or ``<think>`` tags (``reasoning.py``).

This module builds and sends the request (retries, fitting to the context window, asking again without ``tools``
when the upstream refuses them); reading the answer is ``stream.py``'s ``ChatStream`` (its ``ChatChunk``s and
``Usage``, re-exported here).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import openai
import tenacity

from ..attachments.parts import image_parts
from .context import ContextTooLong, fit_to_context, reserve_for
from .errors import CONTEXT_LENGTH_EXCEEDED, IMAGES_REFUSED, ProviderError, describe, redact, refuses_images
from .stream import ChatChunk, ChatStream, Usage
from .tokens import CounterCache, context_window
from .tool_calls import refuses_tools

__all__ = ["ChatChunk", "ChatStream", "Provider", "Usage"]

log = logging.getLogger(__name__)


class Provider:
    """A connection to one OpenAI-compatible upstream.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:11434/v1``.
        api_key: the upstream's API key ("none" when it needs none).
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for the response's headers, and then for the first text of the answer.
        idle_timeout: seconds a stream may go without a chunk once text has arrived (default: ``read_timeout``).
        retries: how many times a request is sent again when it failed before any text and the failure is
            retryable (429, 5xx, connection refused or reset; see ``ProviderError.retryable``).
        retry_budget: most seconds spent waiting between those retries, in all; a ``Retry-After`` that would
            exceed it is not waited for (the failure is shown instead).
        max_concurrency: answers streamed at once; more wait their turn (1 for the embedded model,
            whose server answers one request at a time). ``None``: no limit.
        max_tokens: most tokens per answer (``max_tokens`` of the request); None: the upstream's limit.
        ready: awaited before each request (the embedded model's start-up); may raise ProviderError.
        explain: given each ProviderError before it is raised, returns the one to raise (e.g. the embedded
            model's server names its own exit as the cause).
        context_window: the models' context window in tokens when known from configuration (the embedded model's
            ``n_ctx``, or ``--context-window``); else the ``tokens.context_window`` table, else the window an
            upstream's "too long" refusal names (learned per model). None of those: requests are sent whole.
        counters: token counters per model (default: tiktoken for OpenAI models, else an estimate).
        system_in_first_turn: put the system prompt at the start of the first user message, for chat formats with
            no system role (Gemma's: llama-cpp-python's ``gemma`` format drops a system message).
        served_models: the ids of the models the upstream serves, when configuration knows them (the embedded
            model's one id): ``models()`` lists them without asking, and a request for another model fails before
            anything is sent, with ``refuse(model)`` (llama-cpp-python's server would answer it with its own model).
        refuse: the ProviderError for a model not in ``served_models`` (required with it).
        tools_supported: whether requests may carry ``tools`` at all (False for the embedded model: llama-cpp-python's
            server does not take them in its chat formats); True: sent until the upstream refuses them for a model.
        images_supported: whether requests may carry ``image_url`` parts at all (False for the embedded text models).
        text_only_models: ``fnmatch`` patterns of the models that take no images (``--text-only-models``); the
            others take them until the upstream refuses them for a model (``takes_images``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        idle_timeout: float | None = None,
        retries: int = 3,
        retry_budget: float = 30.0,
        max_concurrency: int | None = None,
        max_tokens: int | None = None,
        ready: Callable[[], Awaitable[None]] | None = None,
        explain: Callable[[ProviderError], ProviderError] | None = None,
        context_window: int | None = None,
        counters: CounterCache | None = None,
        system_in_first_turn: bool = False,
        served_models: Sequence[str] | None = None,
        refuse: Callable[[str], ProviderError] | None = None,
        tools_supported: bool = True,
        images_supported: bool = True,
        text_only_models: Sequence[str] = (),
    ) -> None:
        if (served_models is None) != (refuse is None):
            raise ValueError("Provider needs both served_models and refuse, or neither")
        self.served_models = sorted(served_models) if served_models is not None else None
        self._refuse = refuse
        self.context_window = context_window
        self.counters = counters or CounterCache()
        self.system_in_first_turn = system_in_first_turn
        self.learned_windows: dict[str, int] = {}  # model -> window named by the upstream's "too long" refusal
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout or read_timeout
        self.retries = retries
        self.retry_budget = retry_budget
        # the SDK's own timeout is a safety net behind Parley's (ChatStream), and its retries are off: ours show
        # the user a "retrying" phase and honour Retry-After within a budget
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=openai.Timeout(max(read_timeout, self.idle_timeout), connect=connect_timeout),
            max_retries=0,
        )
        self._ready = ready
        self._explain = explain
        self.max_tokens = max_tokens
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._usage_in_stream = True  # cleared when the server rejects stream_options
        self.tools_supported = tools_supported
        self.refusing_tools: set[str] = set()  # models the upstream refused ``tools`` for
        self.images_supported = images_supported
        self.text_only_models = tuple(text_only_models)
        self.refusing_images: set[str] = set()  # models the upstream refused images for

    @property
    def base_url(self) -> str:
        """The upstream's base URL (the SDK client's, the one requests go to)."""
        return str(self.client.base_url)

    @property
    def host(self) -> str:
        """``host:port`` of the upstream, as reasons name it."""
        return urlsplit(self.base_url).netloc or self.base_url

    @base_url.setter
    def base_url(self, url: str) -> None:
        self.client.base_url = url

    def describe(self, error: BaseException, model: str, *, streamed: bool) -> ProviderError:
        """Map an exception from the SDK to a ProviderError (see ``errors.describe``), passed through ``explain``."""
        timeout = self.idle_timeout if streamed else self.read_timeout
        failure = describe(
            error, base_url=self.base_url, model=model, read_timeout=timeout, streamed=streamed,
            api_key=self.client.api_key,
        )  # fmt: skip
        return self.explain(failure)

    def explain(self, failure: ProviderError) -> ProviderError:
        """``failure`` as the ``explain`` hook given at construction refines it (unchanged without one)."""
        return self._explain(failure) if self._explain is not None else failure

    async def models(self) -> list[str]:
        """The ids of the models the upstream serves, sorted (``served_models`` when given). Raises ProviderError."""
        if self.served_models is not None:
            return list(self.served_models)
        if self._ready is not None:
            await self._ready()
        try:
            page = await self.client.models.list()
            return sorted(model.id for model in page.data)
        except Exception as error:
            raise self.describe(error, "", streamed=False) from error

    def takes_tools(self, model: str) -> bool:
        """Whether a request for ``model`` may carry ``tools``: ``tools_supported``, and the upstream has not refused
        them for this model (remembered for the provider's lifetime)."""
        return self.tools_supported and model not in self.refusing_tools

    def takes_images(self, model: str) -> bool:
        """Whether a request for ``model`` may carry images: ``images_supported``, ``model`` matches none of
        ``text_only_models``, and the upstream has not refused images for it (remembered for the provider's
        lifetime)."""
        if not self.images_supported or model in self.refusing_images:
            return False
        return not any(fnmatch.fnmatchcase(model, pattern) for pattern in self.text_only_models)

    async def stream_chat_completion(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float,
        on_wait: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatStream:
        """Start a streaming chat completion.

        Args:
            messages: the request's messages (OpenAI's shapes): ``{"role": "system"|"user"|"assistant", "content":
                str}``, an assistant turn that called tools ``{"role": "assistant", "content": str | None,
                "tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}]}`` and each result
                ``{"role": "tool", "tool_call_id": str, "content": str}``.
            model: the model id.
            temperature: sampling temperature, 0 to 2.
            max_tokens: most tokens of this answer (e.g. a ``/v1`` request's ``max_tokens``); the configured
                ``max_tokens`` caps it.
            on_wait: told ``"loading"`` while the upstream starts, ``"queued"`` while another answer
                holds the upstream, ``"retrying"`` while waiting to send the request again, and ``"thinking"`` once
                the upstream is started or free (the request goes out).
            tools: OpenAI tool definitions (``{"type": "function", "function": {"name", "description",
                "parameters"}}``), sent as ``tools`` with no ``tool_choice`` (the upstream's default, ``"auto"``)
                unless empty or None, ``tools_supported`` is False, or the upstream refused them for ``model``
                before. An upstream that refuses them now (e.g. Ollama's "does not support tools") is asked again
                without them, and the model remembered (``takes_tools``); the stream then says ``tools_refused``.

        Returns:
            The open stream; the caller must ``aclose()`` it.

        Raises:
            ProviderError: the upstream could not be reached or refused the request (after the retries), or
                ``model`` is not one of ``served_models``.
        """
        if self._refuse is not None and self.served_models is not None and model not in self.served_models:
            raise self._refuse(model)
        if self._ready is not None:
            if on_wait is not None:
                on_wait("loading")
            await self._ready()
            if on_wait is not None:
                on_wait("thinking")  # loaded: what is left to wait for is the answer
        if self._slots is not None:
            queued = self._slots.locked() and on_wait is not None
            if queued:
                on_wait("queued")  # type: ignore[misc]
            await self._slots.acquire()
            if queued:
                on_wait("thinking")  # type: ignore[misc]
        release = self._slots.release if self._slots is not None else (lambda: None)
        limit = self.answer_limit(max_tokens)
        try:
            for attempt in (1, 2):
                send = tools if tools and self.takes_tools(model) else None
                request, omitted = await self.fit(messages, model, limit, send)
                try:
                    stream = await self._create_with_retries(request, model, temperature, on_wait, limit, send)
                    break
                except ProviderError as failure:
                    window = failure.context_window
                    if attempt == 2 or window is None or window == self.learned_windows.get(model):
                        raise
                    log.info("%s says %s's context window is %d tokens; fitting the request to it",
                             self.host, model, window)  # fmt: skip
                    self.learned_windows[model] = window
        except BaseException:
            release()
            raise
        refused = bool(tools) and self.tools_supported and not self.takes_tools(model)
        return ChatStream(self, stream, model, release, omitted, refused)

    def answer_limit(self, max_tokens: int | None) -> int | None:
        """The most tokens an answer may have: the smaller of ``max_tokens`` and the configured ``max_tokens`` (None:
        the upstream's own limit)."""
        limits = [limit for limit in (max_tokens, self.max_tokens) if limit]
        return min(limits) if limits else None

    def window_for(self, model: str) -> int | None:
        """The context window of ``model`` in tokens (learned from the upstream, configured, or from the table of
        well-known models), or None when unknown."""
        return self.learned_windows.get(model) or context_window(model, configured=self.context_window)

    async def fit(
        self,
        messages: list[dict[str, Any]],
        model: str,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """The request's messages fitted to ``model``'s context window (oldest turns left out first; the system
        prompt and the new message, with the tool calls and results of the turn in progress, always kept; an
        assistant turn's tool calls left out only with their results; room kept for the answer, see
        ``context.reserve_for``, and for the ``tools`` definitions the request carries).

        Returns:
            ``(messages, omitted)``: what to send, and how many earlier messages were left out.

        Raises:
            ProviderError: even the system prompt and the new message leave no room for the answer.
        """
        window = self.window_for(model)
        if window is None:
            return messages, 0
        counter = self.counters.get(model)
        options: dict[str, Any] = {
            "window": window,
            "reserve": reserve_for(window, max_tokens or self.max_tokens),
            "counter": counter,
            "tools": tools,
        }
        try:
            if counter.exact:  # a real tokenizer may take a while on a long history it has not seen yet
                fitted = await asyncio.to_thread(fit_to_context, messages, **options)
            else:
                fitted = fit_to_context(messages, **options)
        except ContextTooLong as error:
            raise ProviderError(str(error), status=400, code=CONTEXT_LENGTH_EXCEEDED) from error
        if fitted.omitted:
            log.info("left %d earlier message(s) out of a request to %s (window %d tokens, %s, %d counted)",
                     fitted.omitted, model, window, counter.name, fitted.tokens)  # fmt: skip
        return fitted.messages, fitted.omitted

    @staticmethod
    def system_into_first_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """For chat formats with no system role: the system prompt becomes the start of the first user message
        (other messages, tool calls and results among them, unchanged)."""
        if not messages or messages[0].get("role") != "system":
            return messages
        system, rest = messages[0].get("content") or "", messages[1:]
        if rest and rest[0].get("role") == "user" and isinstance(rest[0].get("content") or "", str):
            return [{**rest[0], "content": f"{system}\n\n{rest[0].get('content') or ''}"}, *rest[1:]]
        return [{"role": "user", "content": system}, *rest]

    async def _create_with_retries(
        self,
        messages: list[dict[str, Any]],
        model: str,
        temperature: float,
        on_wait: Callable[[str], None] | None,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Any:
        """``_create``, retried by tenacity while nothing has streamed: up to ``retries`` times, waiting what the
        upstream's ``Retry-After`` asks, else an exponential backoff with jitter (0.5 s, 1 s, 2 s, ... at most 8 s),
        and never when the wait would take the total past ``retry_budget`` seconds."""

        def wait(state: tenacity.RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            if isinstance(failure, ProviderError) and failure.retry_after is not None:
                return failure.retry_after
            return backoff(state)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            log.warning("%s; retrying in %.1f s (attempt %d of %d)", getattr(failure, "reason", failure),
                        state.upcoming_sleep, state.attempt_number + 1, self.retries + 1)  # fmt: skip
            if on_wait is not None:
                on_wait("retrying")

        backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.25)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(lambda error: isinstance(error, ProviderError) and error.retryable),
            stop=tenacity.stop_after_attempt(self.retries + 1) | tenacity.stop_before_delay(self.retry_budget),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                stream = await self._create(messages, model, temperature, max_tokens, tools)
        return stream

    async def _create(
        self,
        messages: list[dict[str, Any]],
        model: str,
        temperature: float,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Any:
        """Send the request; return the SDK's raw streaming response (``openai.AsyncAPIResponse``, its body not read
        yet: ``ChatStream`` reads it and closes it). An error status raises the SDK's ``APIStatusError`` subclasses,
        as ``create(stream=True)`` would (``with_streaming_response`` only changes what a success returns)."""
        if self.system_in_first_turn:
            messages = self.system_into_first_turn(messages)
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if self._usage_in_stream else {}
        if max_tokens:
            extra["max_tokens"] = max_tokens
        if tools:
            extra["tools"] = tools
        try:
            async with asyncio.timeout(self.read_timeout):  # the SDK's read timeout may be the longer idle_timeout
                return await self.client.chat.completions.with_streaming_response.create(
                    model=model,
                    messages=messages,
                    temperature=temperature,
                    stream=True,
                    **extra,  # type: ignore[arg-type]
                ).__aenter__()  # its __aexit__ only closes the response: ChatStream.aclose does
        except TimeoutError as error:
            reason = f"The model server at {self.host} did not answer within {self.read_timeout:g} s."
            raise self.explain(ProviderError(reason)) from error
        except openai.APIStatusError as error:
            said = f"{error.message} {error.body}"
            if tools and refuses_tools(error.status_code, said):
                if model not in self.refusing_tools:
                    log.info("%s refuses tools for %s; asking without them from now on", self.host, model)
                self.refusing_tools.add(model)
                return await self._create(messages, model, temperature, max_tokens)
            if error.status_code == 400 and "stream_options" in extra and "stream_options" in said:
                log.info("%s rejects stream_options; asking without usage from now on", self.base_url)
                self._usage_in_stream = False
                return await self._create(messages, model, temperature, max_tokens, tools)
            if refuses_images(error.status_code, said) and any(image_parts(m.get("content")) for m in messages):
                log.info("%s refuses images for %s; refusing them before sending from now on", self.host, model)
                self.refusing_images.add(model)
                reason = (f"{model} does not take images (the model server at {self.host} said: "
                          f"{redact(error.message, self.client.api_key)[:300]}). Remove the image, or choose a model "
                          "that takes images.")  # fmt: skip
                raise self.explain(ProviderError(reason, status=error.status_code, code=IMAGES_REFUSED)) from error
            raise self.describe(error, model, streamed=False) from error
        except Exception as error:
            raise self.describe(error, model, streamed=False) from error

    async def close(self) -> None:
        """Close the HTTP client's connections."""
        await self.client.close()
