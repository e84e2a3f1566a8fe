"""Tool calls of a streamed chat completion, collected the same way whatever the upstream's style.

The protocol is OpenAI's function calling (https://platform.openai.com/docs/guides/function-calling): a streamed
turn's ``choices[0].delta.tool_calls`` is a list of ``ChoiceDeltaToolCall`` (``index``, ``id``, ``type``,
``function.name``, ``function.arguments``), and the turn ends with ``finish_reason`` ``"tool_calls"`` (some servers
say ``"stop"``). Upstreams stream them differently; ``ToolCallAccumulator`` documents how each is recognized.

``refuses_tools`` tells an upstream's "this model does not take tools" apart from other refusals.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCall", "ToolCallAccumulator", "ToolCallDelta", "new_call_id", "refuses_tools"]


@dataclass(slots=True)
class ToolCallDelta:
    """What one chunk adds to one tool call.

    Attributes:
        index: Parley's own position of the call in this turn: 0, 1, 2 ... in the order the calls started (not the
            upstream's ``index``, which Ollama sends as 0 for every call).
        id: the tool call id, the same on every delta of a call: the upstream's, or a generated ``"call_<24 hex>"``
            when the call's first delta had none (an id the upstream sends later is not taken: the call keeps the
            id it started with; the id only has to match between the assistant message and its tool results).
        name: the function name on the first delta that has it (None on the others).
        arguments: the new fragment of the arguments JSON text (``""`` when this delta has none).
    """

    index: int
    id: str
    name: str | None
    arguments: str


@dataclass(slots=True)
class ToolCall:
    """One tool call as the turn ended (or as far as it arrived).

    Attributes:
        index: Parley's position of the call in the turn (see ``ToolCallDelta.index``).
        id: the tool call id (the upstream's, else a generated ``"call_<24 hex>"``).
        name: the function name (``""`` if the upstream never sent one).
        arguments: the full arguments text as streamed. Untrusted model output: it may be invalid JSON.
    """

    index: int
    id: str
    name: str
    arguments: str

    def to_message(self) -> dict[str, Any]:
        """The call as an assistant message's ``tool_calls`` entry:
        ``{"id", "type": "function", "function": {"name", "arguments"}}`` (OpenAI's shape)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def new_call_id() -> str:
    """A tool call id for a call the upstream sent without one: ``"call_"`` and 24 random hex digits."""
    return f"call_{secrets.token_hex(12)}"


@dataclass(slots=True)
class _Call:
    call: ToolCall
    upstream_id: str | None  # the id the upstream gave the call (None: none yet)


def _field(item: Any, name: str, kind: type | None = None) -> Any:
    """``item[name]`` of a dict, else the attribute ``name`` (None when missing, or not of ``kind`` when given)."""
    value = item.get(name) if isinstance(item, dict) else getattr(item, name, None)
    if kind is not None and not isinstance(value, kind):
        return None
    return value


def _complete_json(text: str) -> bool:
    """Whether ``text`` is already one whole JSON value (so more fragments cannot belong to it)."""
    if not text.strip():
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class ToolCallAccumulator:
    """Collects the ``tool_calls`` deltas of one streamed turn, per upstream index, in Parley's own way (not the SDK's
    helper), because upstreams differ:

    - OpenAI: ``id``, ``type`` and ``function.name`` once on the first delta of an index, then ``function.arguments``
      fragments with neither;
    - llama.cpp's server: repeats ``id`` and ``name`` on every chunk of a call; the same id (or, with no id, the same
      name) at the same index continues the call: the name is not doubled and the arguments are fragments;
    - Ollama: each call whole in one delta, and parallel calls all with index 0. At an index whose current call
      already has a different upstream id, or (no id) whose current call's arguments are already a complete JSON
      value when a name arrives with more arguments (or a different name arrives), a new call starts;
    - an id may be missing (one is generated) or arrive after the name (the call keeps its generated id; the
      upstream's then tells its later deltas from another call's);
    - an index may be missing (taken as 0).

    Use one accumulator per turn: ``add`` each chunk's ``delta.tool_calls``, read ``calls`` at the end.
    """

    def __init__(self) -> None:
        self._calls: list[_Call] = []
        self._at: dict[int, _Call] = {}  # upstream index -> the call it currently continues

    @property
    def calls(self) -> list[ToolCall]:
        """Every call so far, in the order they started (copies: later deltas do not change them)."""
        return [ToolCall(c.call.index, c.call.id, c.call.name, c.call.arguments) for c in self._calls]

    def add(self, deltas: Sequence[Any] | None) -> list[ToolCallDelta]:
        """Take one chunk's ``delta.tool_calls``.

        Args:
            deltas: the chunk's tool-call deltas as JSON objects (dicts: ``index``, ``id``, ``function`` with ``name``
                and ``arguments``), or ``openai.types.chat.chat_completion_chunk.ChoiceDeltaToolCall`` objects (or
                anything with the same attributes). Missing fields, and fields of the wrong type, count as None.
                None or empty: nothing.

        Returns:
            What is new, in order: one ``ToolCallDelta`` per delta that started a call or added to one (a delta that
            only repeats what is known adds nothing).
        """
        new: list[ToolCallDelta] = []
        for delta in deltas or ():
            if delta is None or isinstance(delta, str | int | float | list):  # not a tool-call object: nothing
                continue
            function = _field(delta, "function")
            upstream_index = _field(delta, "index", int) or 0
            call_id = _field(delta, "id", str) or None
            name = (_field(function, "name", str) or None) if function is not None else None
            arguments = (_field(function, "arguments", str) or "") if function is not None else ""
            current = self._at.get(upstream_index)
            if current is None or self._starts_new(current, call_id, name, arguments):
                call = ToolCall(len(self._calls), call_id or new_call_id(), name or "", arguments)
                current = _Call(call, upstream_id=call_id)
                self._calls.append(current)
                self._at[upstream_index] = current
                new.append(ToolCallDelta(current.call.index, current.call.id, name, arguments))
                continue
            call, named = current.call, None
            if current.upstream_id is None:
                current.upstream_id = call_id
            if name is not None and not call.name:
                call.name = named = name
            call.arguments += arguments
            if named is not None or arguments:
                new.append(ToolCallDelta(call.index, call.id, named, arguments))
        return new

    @staticmethod
    def _starts_new(current: _Call, call_id: str | None, name: str | None, arguments: str) -> bool:
        """Whether a delta at the index of ``current`` starts another call rather than continuing it."""
        call = current.call
        if call_id is not None and current.upstream_id is not None:
            return call_id != current.upstream_id
        # no id, or the first id of a call that had none (an id after the name continues the call unless another
        # call plainly starts: a different name, or a name with more arguments after a complete JSON value)
        if name is None or not call.name:
            return False
        if name != call.name:
            return True
        return bool(arguments) and _complete_json(call.arguments)


#: What a refusal of ``tools`` says: a word for tools and a word for "not supported" in one message. Seen:
#: Ollama ``registry.ollama.ai/library/x does not support tools``; llama.cpp's server without ``--jinja``
#: ``tools param requires --jinja flag``; vLLM without auto tool choice ``"auto" tool choice requires
#: --enable-auto-tool-choice and --tool-call-parser to be set``; others ``Unrecognized request argument supplied:
#: tools``, ``function calling is not supported``. A bad tool definition ("Invalid schema for function ...") has no
#: "not supported" word and is not a refusal.
_TOOLS_WORD = re.compile(r"\btools?\b|\btool[ _-]?(choice|call(s|ing)?|use)\b|\bfunction[ _-]?call(s|ing)?\b", re.I)
_REFUSAL_WORD = re.compile(
    r"does ?n[o']t support|not supported|unsupported|\brequires\b|unrecognized|not enabled|not available", re.I
)


def refuses_tools(status: int | None, message: str) -> bool:
    """Whether an upstream's error answer refuses the request's ``tools`` (the model or server does not take them).

    Args:
        status: the HTTP status (400, 422 and 5xx are considered: llama.cpp answers 500).
        message: the error's text (its ``message`` and body).
    """
    if status not in (400, 422) and not (status is not None and 500 <= status < 600):
        return False
    return bool(_TOOLS_WORD.search(message) and _REFUSAL_WORD.search(message))
