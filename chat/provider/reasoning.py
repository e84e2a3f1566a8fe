"""Reasoning ("thinking") text of a streamed chat completion, kept apart from the answer.

Upstreams send it in one of three ways:

- ``delta.reasoning_content``: DeepSeek's API (https://api-docs.deepseek.com/guides/reasoning_model), vLLM's
  reasoning parsers, llama.cpp's server (``--reasoning-format deepseek``);
- ``delta.reasoning``: OpenRouter (https://openrouter.ai/docs/use-cases/reasoning-tokens), Ollama's OpenAI endpoint;
- inside the content, between ``<think>`` and ``</think>`` at its start: Qwen3 and the DeepSeek-R1 distills through
  servers that do not separate it (``ThinkSplitter``).

The provider reads each chunk as the JSON object it is (``stream.py``), so ``reasoning_of`` reads a dict's keys; for an
SDK ``ChoiceDelta``, where neither field is declared, it reads the unknown fields pydantic keeps (``model_extra``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["THINK_CLOSE", "THINK_OPEN", "ThinkSplitter", "reasoning_of"]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

_DECIDING, _THINKING, _AFTER_THINKING, _TEXT = range(4)


def reasoning_of(delta: Any) -> str:
    """The reasoning text one chunk's delta carries: ``reasoning_content`` or ``reasoning`` (both when a server sends
    both in one delta, ``reasoning_content`` first); ``""`` when none. Non-string values are ignored.

    Args:
        delta: a chunk's ``choices[0].delta`` as a dict (its JSON object), or an SDK ``ChoiceDelta``, or None.
    """
    if delta is None:
        return ""
    if isinstance(delta, dict):
        first, second = delta.get("reasoning_content"), delta.get("reasoning")
        if type(first) is str and first:
            return first + second if type(second) is str else first
        return second if type(second) is str else ""
    extra = getattr(delta, "model_extra", None) or {}
    parts = []
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key, getattr(delta, key, None))
        if isinstance(value, str) and value:
            parts.append(value)
    return "".join(parts)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``tag`` (0 when none)."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Splits ``<think>…</think>`` reasoning out of streamed content.

    Content that begins (after leading whitespace) with ``<think>`` is reasoning until ``</think>``; the whitespace
    after ``</think>`` is dropped and the rest is the answer. The tags may be split across chunks: only what may be
    the beginning of a tag is held back, never more. Content not starting with ``<think>`` passes through unchanged
    and at once, once its first characters show it cannot be the tag (``"Hello"`` comes out in the first chunk; only a
    first chunk like ``"<th"`` or ``" "`` waits for the next one). A ``<think>`` later in the answer is answer text.

    Use one splitter per streamed turn: ``feed`` each chunk's content, ``flush`` at the end.
    """

    def __init__(self) -> None:
        self._state = _DECIDING
        self._held = ""

    @property
    def thinking(self) -> bool:
        """True while inside ``<think>`` (the content so far has opened it but not closed it)."""
        return self._state == _THINKING

    def feed(self, content: str) -> tuple[str, str]:
        """Take the next content delta.

        Args:
            content: the chunk's ``delta.content`` (``""`` for none).

        Returns:
            ``(reasoning, text)`` released by this chunk; either may be ``""``.
        """
        if not content:
            return "", ""
        if self._state == _TEXT:
            return "", content
        held = self._held + content
        self._held = ""
        if self._state == _DECIDING:
            start = held.lstrip()
            if not start or (len(start) < len(THINK_OPEN) and THINK_OPEN.startswith(start)):
                self._held = held  # whitespace, or the beginning of "<think>": not decided yet
                return "", ""
            if not start.startswith(THINK_OPEN):
                self._state = _TEXT
                return "", held
            self._state = _THINKING
            held = start[len(THINK_OPEN) :]
        if self._state == _THINKING:
            end = held.find(THINK_CLOSE)
            if end < 0:
                keep = _partial_suffix(held, THINK_CLOSE)
                self._held = held[len(held) - keep :] if keep else ""
                return held[: len(held) - keep], ""
            self._state = _AFTER_THINKING
            reasoning, held = held[:end], held[end + len(THINK_CLOSE) :]
            return reasoning, self._after_thinking(held)
        return "", self._after_thinking(held)

    def _after_thinking(self, text: str) -> str:
        text = text.lstrip()
        if text:
            self._state = _TEXT
        return text

    def flush(self) -> tuple[str, str]:
        """At the end of the stream: what is still held, as ``(reasoning, text)`` (an unclosed ``<think>``'s held tail
        is reasoning; an undecided start is text)."""
        held, self._held = self._held, ""
        if self._state == _THINKING:
            return held, ""
        if self._state == _DECIDING:
            return "", held
        return "", ""
