"""Token counts of chat completion requests, and the context windows they must fit in.

Three counters, best first:

- ``LlamaVocabCounter``: the embedded model's own tokenizer (the GGUF's vocabulary, loaded in-process
  without the weights) and its chat format (a ``PromptFormat``: ChatML for SmolLM2, Gemma's for Gemma). Exact.
- ``TiktokenCounter``: OpenAI's BPE (``tiktoken``) for the model names tiktoken knows (``gpt-4o``,
  ``gpt-4.1``, ``o3``, ``gpt-5``...), with the per-message overhead of OpenAI's cookbook. Exact for the
  text; the overhead is OpenAI's documented formula. tiktoken downloads its BPE file on first use (then
  caches it under ``TIKTOKEN_CACHE_DIR``), so it may be missing offline.
- ``EstimateCounter``: everything else; a conservative estimate from UTF-8 bytes (see its docstring).

``CounterCache`` hands out the right counter for a model without ever blocking: the exact counters load
in a background thread (a network fetch or a 250 MB file read), the estimate serves until they are ready,
and a failed load is retried at most every ``retry_after`` seconds.

``context_window`` says how many tokens a model accepts; ``window_from_error`` reads it out of an
upstream's "context length exceeded" error, so an unknown window is learned from one 400.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..attachments.parts import IMAGE_TOKENS, image_parts

log = logging.getLogger(__name__)

Message = Mapping[str, Any]

#: Seconds before a failed tokenizer load (e.g. tiktoken offline) is tried again.
RETRY_AFTER = 600.0

#: Distinct (role, content) pairs whose count each counter remembers, so a conversation's history is
#: tokenized once, not again for every new turn.
MEMO_SIZE = 8192


class TokenCounter(ABC):
    """Counts the prompt tokens of a chat completion request.

    Attributes:
        name: which tokenizer, for logs and the page (e.g. ``"tiktoken o200k_base"``).
        exact: True when the count is the model's own tokenizer's, False for an estimate.
        reply_tokens: tokens the server adds once per request to start the answer (and BOS).
        default_system_tokens: tokens of the system turn the chat template adds to a request that has no system
            message (SmolLM2's template adds one), else 0.
    """

    name: str = "token counter"
    exact: bool = False
    reply_tokens: int = 0
    default_system_tokens: int = 0

    def __init__(self) -> None:
        self._memo = lru_cache(maxsize=MEMO_SIZE)(self._count)

    @abstractmethod
    def _count(self, role: str, content: str) -> int:
        """Tokens of one message, its per-message overhead included."""

    def count_message(self, message: Message) -> int:
        """Tokens one message adds to a request: its text and its per-message overhead.

        Args:
            message: ``{"role": "system"|"user"|"assistant"|"tool", "content": str | None, ...}``; what is counted
                is ``message_text``: content None as empty, text parts' text, and an assistant turn's
                ``tool_calls`` as their JSON text (how chat templates lay calls out varies; the JSON is close); each
                ``image_url`` part as ``IMAGE_TOKENS``.
        """
        images = image_parts(message.get("content"))
        return self._memo(str(message.get("role") or ""), message_text(message)) + IMAGE_TOKENS * images

    def request_tokens(self, has_system: bool) -> int:
        """Tokens a request adds once besides its messages: ``reply_tokens``, plus ``default_system_tokens`` when
        it has no system message.

        Args:
            has_system: the request's first message has the role ``system``.
        """
        return self.reply_tokens + (0 if has_system else self.default_system_tokens)

    def count(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of a whole request: the sum of ``count_message`` plus ``request_tokens``.

        Args:
            messages: the request's messages, ``[{"role": ..., "content": ...}, ...]``.
        """
        has_system = bool(messages) and messages[0].get("role") == "system"
        return sum(self.count_message(message) for message in messages) + self.request_tokens(has_system)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def message_text(message: Message) -> str:
    """The text of one message as counted: its ``content`` (None as ``""``; a list of parts as their ``text`` joined
    by newlines), then, for an assistant turn that called tools, ``tool_calls`` as compact JSON on a line of its own.

    Args:
        message: an OpenAI chat message (``tool_calls``: ``[{"id", "type", "function": {"name", "arguments"}}]``).
    """
    content = message.get("content")
    if isinstance(content, list):
        text = "\n".join(str(part.get("text") or "") for part in content if isinstance(part, Mapping))
    else:
        text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls")
    if calls:
        dumped = json.dumps(calls, ensure_ascii=False, separators=(",", ":"), default=str)
        text = f"{text}\n{dumped}" if text else dumped
    return text


class EstimateCounter(TokenCounter):
    """The estimate used when the model's tokenizer is unknown: per message ``ceil(utf8_bytes / 3) + 4``,
    plus 3 per request.

    Why bytes / 3: BPE tokenizers average about 4 characters per token on English text (OpenAI's help
    center, "What are tokens and how to count them?"), so English is overestimated by about a quarter;
    a CJK character is 3 UTF-8 bytes and usually one token, so it counts as one; an emoji is 4 bytes and
    one to three tokens, counted as about 1.3. Code and text in other scripts land in between. An
    overestimate only drops a turn that would have fit; an underestimate gets an upstream 400. The
    overhead (4 per message, 3 per request) is the cookbook's 3 + 1 for the role, as for OpenAI models.
    """

    name = "estimate (UTF-8 bytes / 3)"
    exact = False
    reply_tokens = 3

    def _count(self, role: str, content: str) -> int:
        return math.ceil(len(content.encode("utf-8")) / 3) + 4


class TiktokenCounter(TokenCounter):
    """OpenAI models' tokens, with tiktoken and the per-message overhead of OpenAI's cookbook
    ("How to count tokens with tiktoken", ``num_tokens_from_messages``): 3 tokens per message
    (``<|start|>``, ``<|message|>``/``<|end|>``), the role's and the content's tokens, and 3 per request
    for the reply's priming (``<|start|>assistant<|message|>``). The cookbook uses it for gpt-3.5-turbo,
    gpt-4, gpt-4o and gpt-4o-mini; later models use the same chat format.

    Build it with ``TiktokenCounter.load`` (may download) or from an ``tiktoken.Encoding``.
    Special-token text typed by a user (``<|endoftext|>``) counts as ordinary text, as the API treats it.
    """

    exact = True
    reply_tokens = 3

    def __init__(self, encoding: Any) -> None:
        super().__init__()
        self.encoding = encoding
        self.name = f"tiktoken {encoding.name}"

    @classmethod
    def load(cls, encoding_name: str) -> TiktokenCounter:
        """Load an encoding (``o200k_base``, ``cl100k_base``); blocks, maybe for a network fetch.

        Raises:
            Exception: whatever tiktoken raises when the BPE file cannot be fetched (e.g. ``requests``'
                ``ConnectionError``) or the name is unknown (``ValueError``).
        """
        import tiktoken

        return cls(tiktoken.get_encoding(encoding_name))

    def _tokens(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def _count(self, role: str, content: str) -> int:
        return 3 + self._tokens(role) + self._tokens(content)


def tiktoken_encoding_name(model: str) -> str | None:
    """tiktoken's encoding for a model id (``"gpt-4o"`` → ``"o200k_base"``), or None when tiktoken does
    not know the model. Never downloads. A ``provider/`` prefix (OpenRouter's ``openai/gpt-4o``) is ignored.
    """
    from tiktoken.model import encoding_name_for_model

    try:
        return encoding_name_for_model(model.rsplit("/", 1)[-1])
    except KeyError:
        return None


@dataclass(frozen=True)
class PromptFormat:
    """How a chat format lays a request out as one prompt, as far as counting its tokens needs: each message is
    ``turn`` filled in, the prompt ends with ``reply``, and the server may put BOS first and a system turn of its
    own in front of a request without one. Where each format comes from is said where it is defined
    (``embedded_models.py``).

    Attributes:
        turn: one message, with ``{role}`` and ``{content}`` in it (``str.format``).
        reply: the text after the last message that starts the answer.
        bos: the server tokenizes the prompt with BOS in front.
        roles: the name a message's role has in ``turn`` where it differs (Gemma's ``assistant`` is ``model``).
        default_system: the system prompt the chat template adds when the request's first message is not a system
            message; None: it adds none.
    """

    turn: str
    reply: str
    bos: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)
    default_system: str | None = None

    def render(self, role: str, content: str) -> str:
        """One message as it stands in the prompt."""
        return self.turn.format(role=self.roles.get(role, role), content=content)


class LlamaVocabCounter(TokenCounter):
    """The embedded model's tokens: its GGUF vocabulary (llama.cpp's tokenizer, loaded with ``vocab_only=True``: no
    weights; 0.1 s for SmolLM2's 49,152 tokens, 0.4-1.2 s and about 50 MB for Gemma 3's 262,144) and the prompt its
    chat format builds (``PromptFormat``), tokenized with special tokens parsed, as llama-cpp-python's server does.

    Each message is tokenized on its own; since each turn starts and ends at special tokens, the sum equals the whole
    prompt's count (the tests compare it with the ``usage.prompt_tokens`` the real server reports). ``reply_tokens``
    is BOS (when the format has it) plus the reply's start; ``default_system_tokens`` the template's own system turn.

    Speed: about 0.5-1.4 million characters a second (one core); llama.cpp releases the GIL while it tokenizes, so
    count in a thread. Calls are serialized by a lock.

    Args:
        llama: a ``llama_cpp.Llama`` (``vocab_only=True`` is enough).
        prompt_format: the model's chat format.
    """

    exact = True

    def __init__(self, llama: Any, prompt_format: PromptFormat) -> None:
        super().__init__()
        self.llama = llama
        self.prompt_format = prompt_format
        self._tokenizing = threading.Lock()
        self.name = "llama.cpp vocabulary"
        self.reply_tokens = int(prompt_format.bos) + self._tokens(prompt_format.reply)
        if prompt_format.default_system is not None:
            self.default_system_tokens = self._count("system", prompt_format.default_system)

    @classmethod
    def load(cls, model_path: Path, prompt_format: PromptFormat) -> LlamaVocabCounter:
        """Load the vocabulary of a GGUF file. Blocks 0.1-1.2 s.

        Raises:
            ValueError: llama.cpp could not read the file.
        """
        import llama_cpp

        return cls(llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False), prompt_format)

    def _tokens(self, text: str) -> int:
        with self._tokenizing:
            return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _count(self, role: str, content: str) -> int:
        return self._tokens(self.prompt_format.render(role, content))


class CounterCache:
    """The counter for each model, never blocking the caller.

    ``get(model)`` returns the exact counter once loaded, else ``EstimateCounter`` while it loads in a
    background thread. A failed load is logged and not tried again for ``retry_after`` seconds. Counters
    are shared per tokenizer (one per tiktoken encoding, one for the embedded model).

    Args:
        embedded_model: the embedded model's id (its requests use ``embedded_loader``'s counter); None: none.
        embedded_loader: builds the embedded model's counter (``EmbeddedModel.load_counter``); needed with
            ``embedded_model``. Ask for the embedded counter once the embedded server has its model file: Gemma's
            package assembles its GGUF on first use, which is not safe to run twice at once.
        retry_after: seconds between two attempts to load a tokenizer that failed.
        clock: monotonic seconds (tests pass a fake one).

    Raises:
        ValueError: ``embedded_model`` without ``embedded_loader``, or the other way round.
    """

    def __init__(
        self,
        *,
        embedded_model: str | None = None,
        embedded_loader: Callable[[], TokenCounter] | None = None,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (embedded_model is None) != (embedded_loader is None):
            raise ValueError("CounterCache needs both embedded_model and embedded_loader, or neither")
        self.embedded_model = embedded_model
        self.estimate = EstimateCounter()
        self.retry_after = retry_after
        self._clock = clock
        self._loaders: dict[str, Callable[[str], TokenCounter]] = {"tiktoken": TiktokenCounter.load}
        if embedded_loader is not None:
            self._loaders["embedded"] = lambda _: embedded_loader()
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], TokenCounter] = {}
        self._failed: dict[tuple[str, str], float] = {}  # key -> clock() of its last failed load
        self._loading: set[tuple[str, str]] = set()
        self._gates: dict[tuple[str, str], threading.Lock] = {}

    def _key(self, model: str) -> tuple[str, str] | None:
        if self.embedded_model is not None and model == self.embedded_model:
            return ("embedded", model)
        encoding = tiktoken_encoding_name(model)
        return ("tiktoken", encoding) if encoding else None

    def _may_try(self, key: tuple[str, str]) -> bool:
        failed = self._failed.get(key)
        return failed is None or self._clock() - failed >= self.retry_after

    def get(self, model: str) -> TokenCounter:
        """The best counter ready now for ``model``; starts loading a better one if there is one. Never blocks."""
        key = self._key(model)
        if key is None:
            return self.estimate
        with self._lock:
            if key in self._counters:
                return self._counters[key]
            if key in self._loading or not self._may_try(key):
                return self.estimate
            self._loading.add(key)
        threading.Thread(target=self._load, args=(key,), name=f"tokenizer-{key[1]}", daemon=True).start()
        return self.estimate

    def load(self, model: str) -> TokenCounter:
        """Like ``get`` but waits for the load (call it in a thread: it may fetch from the network).

        Returns the estimate when the model has no known tokenizer or its load failed less than
        ``retry_after`` seconds ago. Never raises.
        """
        key = self._key(model)
        if key is None:
            return self.estimate
        return self._load(key) or self.estimate

    def _load(self, key: tuple[str, str]) -> TokenCounter | None:
        with self._lock:
            gate = self._gates.setdefault(key, threading.Lock())
        with gate:  # one load per tokenizer at a time; a second caller waits for the first's result
            with self._lock:
                if key in self._counters:
                    return self._counters[key]
                if not self._may_try(key):
                    self._loading.discard(key)
                    return None
                self._loading.add(key)
            started = time.monotonic()
            counter: TokenCounter | None = None
            try:
                counter = self._loaders[key[0]](key[1])
            except Exception as error:  # offline, package missing, unreadable file: the estimate serves
                log.warning(
                    "tokenizer %s unavailable (%s: %s); estimating token counts, retrying in %.0f s",
                    key[1], type(error).__name__, error, self.retry_after,
                )  # fmt: skip
            with self._lock:
                self._loading.discard(key)
                if counter is None:
                    self._failed[key] = self._clock()
                else:
                    self._counters[key] = counter
                    self._failed.pop(key, None)
                    log.info("tokenizer %s loaded in %.2f s", counter.name, time.monotonic() - started)
            return counter


# -- context windows -------------------------------------------------------------------------------

#: Context windows of well-known OpenAI models, in tokens: (pattern matched at the start of the model id,
#: window), first match wins. From OpenAI's model pages (platform.openai.com/docs/models), as echoed by
#: OpenRouter's and Vercel AI Gateway's model lists. For gpt-5 models the number is the *input* limit:
#: 400,000 tokens of context minus 128,000 reserved for output, which the API enforces as "Input tokens
#: exceed the configured limit of 272000 tokens". An entry too small only trims earlier than needed.
OPENAI_WINDOWS: tuple[tuple[str, int], ...] = (
    (r"gpt-5(\.\d+)?-chat", 128_000),  # gpt-5-chat-latest, gpt-5.1-chat-latest
    (r"gpt-5(\.\d+)?", 272_000),  # gpt-5, -mini, -nano, 5.1, 5.2, ...: 400,000 context, 272,000 input
    (r"gpt-4\.1", 1_047_576),  # gpt-4.1, -mini, -nano
    (r"gpt-4o|chatgpt-4o", 128_000),  # gpt-4o, gpt-4o-mini, chatgpt-4o-latest
    (r"gpt-4\.5", 128_000),
    (r"gpt-4-turbo|gpt-4-\d{4}-preview|gpt-4-vision", 128_000),
    (r"gpt-4-32k", 32_768),
    (r"gpt-4", 8_192),
    (r"gpt-3\.5-turbo-instruct", 4_096),
    (r"gpt-3\.5-turbo", 16_385),
    (r"o1-(mini|preview)", 128_000),
    (r"o1|o3|o4-mini", 200_000),  # o1, o3, o3-mini, o3-pro, o4-mini
)
_OPENAI_WINDOWS = tuple((re.compile(rf"(?:{pattern})(?:$|[-:@])"), window) for pattern, window in OPENAI_WINDOWS)


def context_window(model: str, *, configured: int | None = None, embedded: int | None = None) -> int | None:
    """The context window of ``model``, in tokens (prompt plus answer), or None when unknown.

    Args:
        model: the model id as sent upstream (a ``provider/`` prefix is ignored for the table).
        configured: a window the user set; wins when given.
        embedded: the embedded model's ``n_ctx`` when ``model`` is the embedded model, else None.

    Returns:
        ``configured``, else ``embedded``, else the ``OPENAI_WINDOWS`` entry for the model, else None
        (unknown: send the whole history and learn the window from the upstream's error).
    """
    if configured:
        return configured
    if embedded:
        return embedded
    name = model.rsplit("/", 1)[-1].lower()
    for pattern, window in _OPENAI_WINDOWS:
        if pattern.match(name):
            return window
    return None


#: Upstream error texts that name the context window, as a regex whose group 1 is the window.
WINDOW_ERRORS: tuple[str, ...] = (
    # OpenAI, vLLM, llama-cpp-python's server, LiteLLM, OpenRouter: "This model's maximum context length
    # is 4096 tokens. However, your messages resulted in 5000 tokens..."
    r"maximum context length is ([\d,]+) tokens",
    # OpenAI gpt-5: "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in..."
    r"exceed the configured limit of ([\d,]+) tokens",
    # llama.cpp's llama-server (and Ollama on top of it): "request (5274 tokens) exceeds the available
    # context size (4096 tokens), try increasing it"; its JSON body also has "n_ctx": 4096.
    r"exceeds the available context size \((\d+) tokens\)",
    r"""["']n_ctx["']\s*:\s*(\d+)""",
    # llama-cpp-python's own ValueError: "Requested tokens (5000) exceed context window of 4096"
    r"exceed context window of (\d+)",
    # vLLM (older): "The decoder prompt (length 5000) is longer than the maximum model length of 4096."
    r"longer than the maximum model length of (\d+)",
    # LM Studio: "...However, the model is loaded with context length of only 4096 tokens, which is not enough."
    r"context length of only (\d+) tokens",
    # Gemini's OpenAI-compatible API: "The input token count (40000) exceeds the maximum number of tokens
    # allowed (32768)."
    r"maximum number of tokens allowed \((\d+)\)",
    # Anthropic's OpenAI-compatible API: "prompt is too long: 215000 tokens > 200000 maximum"
    r"prompt is too long: \d+ tokens > (\d+) maximum",
)
_WINDOW_ERRORS = tuple(re.compile(pattern, re.IGNORECASE) for pattern in WINDOW_ERRORS)


def window_from_error(message: str) -> int | None:
    """The context window an upstream's "too long" error names, in tokens, or None when it names none.

    Args:
        message: the error's text or body (``str(openai.BadRequestError)`` works: it includes the body).

    Ollama's OpenAI endpoint does not fail on a long prompt: it silently keeps the prompt's end, so there
    is nothing to learn from it (set the window in Parley instead).
    """
    for pattern in _WINDOW_ERRORS:
        found = pattern.search(message)
        if found:
            window = int(found.group(1).replace(",", ""))
            if window > 0:
                return window
    return None
