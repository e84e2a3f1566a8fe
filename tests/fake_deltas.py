"""What upstreams stream, as ``Script.deltas`` for :class:`tests.fake_upstream.FakeUpstream`.

Each helper returns a list of ``delta`` objects (one chunk each) in the shape a given upstream sends: tool calls as
OpenAI, llama.cpp's server or Ollama stream them (``*_tool_call_deltas``), content, and reasoning in fields or
``<think>`` tags. ``_accumulate`` turns such deltas into the whole ``message`` of a non-streamed answer.

``tests/fake_upstream.py`` re-exports the public helpers, so ``from .fake_upstream import content_deltas`` works.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Calls",
    "content_deltas",
    "llamacpp_tool_call_deltas",
    "ollama_tool_call_deltas",
    "openai_tool_call_deltas",
    "reasoning_content_deltas",
    "reasoning_field_deltas",
    "think_tag_deltas",
]

Calls = Sequence[tuple[str, dict[str, Any]]]
"""Tool calls to stream: ``[("name", {"argument": value, ...}), ...]``."""


def _fragments(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of ``size`` characters (at least one piece, ``""`` for empty text)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _ids(calls: Calls, ids: Sequence[str | None] | None) -> list[str | None]:
    """One id per call: ``ids`` as given (None: the upstream sends none), else generated ``call_<hex>`` ids."""
    if ids is None:
        return [f"call_{uuid.uuid4().hex[:24]}" for _ in calls]
    if len(ids) != len(calls):
        raise ValueError("give one id (or None) per call")
    return list(ids)


def _tool_call(index: int | None, call_id: str | None, name: str | None, arguments: str | None) -> dict:
    """One ``ChoiceDeltaToolCall`` object; ``None`` fields are left out (an upstream that does not send them)."""
    function = {key: value for key, value in (("name", name), ("arguments", arguments)) if value is not None}
    fields = {"index": index, "id": call_id, "type": "function" if call_id or name else None, "function": function}
    return {key: value for key, value in fields.items() if value is not None}


def openai_tool_call_deltas(
    calls: Calls, fragment: int = 5, ids: Sequence[str | None] | None = None, with_index: bool = True
) -> list[dict]:
    """OpenAI's style: per call, a first delta with ``index``, ``id``, ``type`` and ``function.name`` (arguments
    ``""``), then the arguments JSON in ``fragment``-character pieces with only ``index`` and ``function.arguments``.

    Args:
        calls: ``[("name", {"arg": value}), ...]``; index ``i`` for the ``i``-th.
        fragment: characters of arguments per delta.
        ids: one id per call (None for a call sent without one); default: generated ``call_<hex>`` ids.
        with_index: False leaves ``index`` out (servers that omit it).
    """
    deltas = []
    for index, ((name, arguments), call_id) in enumerate(zip(calls, _ids(calls, ids), strict=True)):
        position = index if with_index else None
        deltas.append({"tool_calls": [_tool_call(position, call_id, name, "")]})
        for piece in _fragments(json.dumps(arguments), fragment):
            deltas.append({"tool_calls": [_tool_call(position, None, None, piece)]})
    return deltas


def llamacpp_tool_call_deltas(calls: Calls, fragment: int = 5, ids: Sequence[str | None] | None = None) -> list[dict]:
    """llama.cpp's server's style: every delta of a call repeats ``index``, ``id``, ``type`` and ``function.name``,
    with the next ``fragment``-character piece of the arguments. Args as ``openai_tool_call_deltas``."""
    deltas = []
    for index, ((name, arguments), call_id) in enumerate(zip(calls, _ids(calls, ids), strict=True)):
        for piece in _fragments(json.dumps(arguments), fragment):
            deltas.append({"tool_calls": [_tool_call(index, call_id, name, piece)]})
    return deltas


def ollama_tool_call_deltas(
    calls: Calls, ids: Sequence[str | None] | None = None, one_chunk: bool = False
) -> list[dict]:
    """Ollama's style: each call whole (name and all its arguments) in one delta, every one with index 0.

    Args:
        calls: ``[("name", {"arg": value}), ...]``.
        ids: one id per call (None: sent without one); default: generated ids.
        one_chunk: all calls in one delta's ``tool_calls`` list (else one delta per call).
    """
    items = [
        _tool_call(0, call_id, name, json.dumps(arguments))
        for (name, arguments), call_id in zip(calls, _ids(calls, ids), strict=True)
    ]
    return [{"tool_calls": items}] if one_chunk else [{"tool_calls": [item]} for item in items]


def content_deltas(text: str, fragment: int = 5) -> list[dict]:
    """``text`` as ``{"content": piece}`` deltas of ``fragment`` characters."""
    return [{"content": piece} for piece in _fragments(text, fragment)]


def reasoning_content_deltas(text: str, fragment: int = 5) -> list[dict]:
    """Reasoning as DeepSeek, vLLM and llama.cpp send it: ``{"reasoning_content": piece}`` deltas."""
    return [{"reasoning_content": piece} for piece in _fragments(text, fragment)]


def reasoning_field_deltas(text: str, fragment: int = 5) -> list[dict]:
    """Reasoning as OpenRouter and Ollama send it: ``{"reasoning": piece}`` deltas."""
    return [{"reasoning": piece} for piece in _fragments(text, fragment)]


def think_tag_deltas(reasoning: str, answer: str, fragment: int = 5) -> list[dict]:
    """Reasoning inside the content, as Qwen3 through a server that does not separate it: the content
    ``"<think>{reasoning}</think>\\n\\n{answer}"`` in ``fragment``-character deltas (tags split across them)."""
    return content_deltas(f"<think>{reasoning}</think>\n\n{answer}", fragment)


def _accumulate(deltas: Sequence[dict]) -> dict[str, Any]:
    """A non-streamed ``message`` from streamed deltas: content, ``reasoning_content`` and whole ``tool_calls``
    (a call continues at its index until a different id, or a name after complete arguments, starts another)."""
    content, reasoning, calls, at = "", "", [], {}
    for delta in deltas:
        content += delta.get("content") or ""
        reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
        for item in delta.get("tool_calls") or []:
            function, index, current = item.get("function") or {}, item.get("index") or 0, None
            current = at.get(index)
            name, arguments = function.get("name"), function.get("arguments") or ""
            complete = current is not None and _is_json(current["function"]["arguments"])
            if current is None or (item.get("id") and item["id"] != current["id"]) or (name and complete):
                current = {"id": item.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function"}
                current["function"] = {"name": name or "", "arguments": ""}
                calls.append(current)
                at[index] = current
            current["function"]["arguments"] += arguments
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    return message


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
