"""Fitting a conversation into a model's context window: the oldest turns go first.

Pure functions; the token counts come from a ``tokens.TokenCounter``. The provider fits each request (``Provider``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: Most tokens kept free for the answer when no ``max_tokens`` is set.
DEFAULT_RESERVE = 4096


class Counter(Protocol):
    """What ``fit_to_context`` needs of a ``TokenCounter``."""

    def count_message(self, message: Mapping[str, Any]) -> int: ...

    def request_tokens(self, has_system: bool) -> int: ...


class ContextTooLong(ValueError):
    """Even the system prompt and the new message alone do not fit in the context window.

    ``str(error)`` is a sentence to show on the page.

    Attributes:
        message_tokens: tokens of the new user message (its per-message overhead included).
        system_tokens: tokens of the system prompt (0 without one).
        window: the model's context window, tokens.
        reserve: tokens kept for the answer.
        tools_tokens: tokens of the request's tool definitions (0 without tools).
    """

    def __init__(
        self, *, message_tokens: int, system_tokens: int, window: int, reserve: int, tools_tokens: int = 0
    ) -> None:
        self.message_tokens = message_tokens
        self.system_tokens = system_tokens
        self.window = window
        self.reserve = reserve
        self.tools_tokens = tools_tokens
        plus = f", plus {system_tokens:,} for the system prompt" if system_tokens else ""
        plus += f", plus {tools_tokens:,} for the tool definitions" if tools_tokens else ""
        super().__init__(
            f"Your message is about {message_tokens:,} tokens{plus}; the model's context window is "
            f"{window:,} tokens ({reserve:,} reserved for the answer). Shorten it."
        )


@dataclass(frozen=True, slots=True)
class Fitted:
    """The messages to send.

    Attributes:
        messages: the system prompt (if any), then the newest turns that fit, oldest first.
        omitted: how many messages of the history were left out (0: nothing was).
        tokens: the prompt tokens of ``messages`` as counted (the counter's ``request_tokens`` included).
    """

    messages: list[dict[str, Any]]
    omitted: int
    tokens: int


def reserve_for(window: int, max_tokens: int | None) -> int:
    """Tokens to keep free for the answer: ``max_tokens`` when the request sets it (the upstream counts
    it against the window: prompt + max_tokens must fit), else ``min(4096, window // 4)``, room for a
    long answer that never takes more than a quarter of a small window.

    Args:
        window: the context window, tokens.
        max_tokens: the request's ``max_tokens``, or None when it sends none.
    """
    if max_tokens:
        return max_tokens
    return min(DEFAULT_RESERVE, window // 4)


def _units(turns: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``turns`` cut into what is left out together, as ``(start, end)`` slices: each message, except that the tool
    messages after a message join its unit (an assistant turn's ``tool_calls`` and their results are one unit)."""
    units: list[tuple[int, int]] = []
    for index, turn in enumerate(turns):
        if units and turn.get("role") == "tool":
            units[-1] = (units[-1][0], index + 1)
        else:
            units.append((index, index + 1))
    return units


def _tail_start(turns: Sequence[Mapping[str, Any]]) -> int:
    """Where the messages that are always kept begin: the last message; when it is a tool result (a tool loop in
    progress), the whole turn in progress: from the last user message (else from the first assistant turn with tool
    calls before it), so that calls are never parted from their results."""
    last = len(turns) - 1
    if turns[last].get("role") != "tool":
        return last
    start = last
    for index in range(last, -1, -1):
        role = turns[index].get("role")
        if role == "user":
            return index
        if role != "tool" and not (role == "assistant" and turns[index].get("tool_calls")):
            return start
        start = index
    return start


def tools_tokens(tools: Sequence[Mapping[str, Any]] | None, counter: Counter) -> int:
    """Tokens the ``tools`` definitions add to a request, counted as their JSON text in one message (templates
    render them in the system turn, each its own way; the JSON text is close). 0 without tools."""
    if not tools:
        return 0
    return counter.count_message({"role": "system", "content": json.dumps(list(tools), separators=(",", ":"))})


def fit_to_context(
    messages: Sequence[Mapping[str, Any]],
    *,
    window: int,
    reserve: int,
    counter: Counter,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> Fitted:
    """Drop the oldest turns until the prompt leaves ``reserve`` tokens of ``window`` for the answer.

    Kept always: the system prompt (a first message with role ``system``) and the last message (the
    new user message); when the last message is a tool result, the whole turn in progress (from the last user
    message: the assistant turns' tool calls and their results). An assistant message with ``tool_calls`` is left
    out only together with the tool messages that answer it. The kept history never starts with an assistant turn
    or a tool result: when trimming would leave one first, it goes too. Each message is counted once at most
    (newest first, stopping at the first that does not fit), so fitting is O(n) in the number of messages.

    Args:
        messages: the request's messages (OpenAI's shapes, see ``Provider.stream_chat_completion``): an optional
            system message, then the turns, oldest first; the last is the new user message (or a tool result).
        window: the model's context window, tokens.
        reserve: tokens to keep free for the answer (see ``reserve_for``).
        counter: counts each message's tokens (``count_message``) and what the request adds once
            (``request_tokens``: the reply's start, and a system turn the chat template adds without a system prompt).
        tools: the request's tool definitions, counted once (``tools_tokens``); None: none.

    Returns:
        The messages to send, how many were left out and their token count:
        ``tokens + reserve <= window``.

    Raises:
        ContextTooLong: the system prompt and the messages always kept leave less than ``reserve``.
        ValueError: ``messages`` has no message after the system prompt.
    """
    system = [dict(messages[0])] if messages and messages[0].get("role") == "system" else []
    turns = messages[len(system) :]
    if not turns:
        raise ValueError("fit_to_context needs a message to answer")
    tool_tokens = tools_tokens(tools, counter)
    overhead = counter.request_tokens(bool(system)) + tool_tokens
    budget = window - reserve - overhead
    system_tokens = counter.count_message(system[0]) if system else 0
    tail = _tail_start(turns)
    last_tokens = sum(counter.count_message(turn) for turn in turns[tail:])
    if system_tokens + last_tokens > budget:
        raise ContextTooLong(
            message_tokens=last_tokens,
            system_tokens=system_tokens,
            window=window,
            reserve=reserve,
            tools_tokens=tool_tokens,
        )
    used = system_tokens + last_tokens
    kept: list[tuple[int, int]] = []  # the kept units before the tail, newest first, with their tokens
    for begin, end in reversed(_units(turns[:tail])):
        tokens = sum(counter.count_message(turn) for turn in turns[begin:end])
        if used + tokens > budget:
            break
        used += tokens
        kept.append((begin, tokens))
    start = kept[-1][0] if kept else tail
    if start > 0:
        while kept and turns[start].get("role") in ("assistant", "tool"):
            used -= kept.pop()[1]
            start = kept[-1][0] if kept else tail
    return Fitted(messages=system + [dict(turn) for turn in turns[start:]], omitted=start, tokens=used + overhead)
