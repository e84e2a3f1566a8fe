"""Fitting a conversation into a model's context window: the oldest turns go first.

Pure functions; the token counts come from a ``tokens.TokenCounter``. The provider fits each request (``Provider``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

#: Most tokens kept free for the answer when no ``max_tokens`` is set.
DEFAULT_RESERVE = 4096


class Counter(Protocol):
    """What ``fit_to_context`` needs of a ``TokenCounter``."""

    def count_message(self, message: Mapping[str, str]) -> int: ...

    def request_tokens(self, has_system: bool) -> int: ...


class ContextTooLong(ValueError):
    """Even the system prompt and the new message alone do not fit in the context window.

    ``str(error)`` is a sentence to show on the page.

    Attributes:
        message_tokens: tokens of the new user message (its per-message overhead included).
        system_tokens: tokens of the system prompt (0 without one).
        window: the model's context window, tokens.
        reserve: tokens kept for the answer.
    """

    def __init__(self, *, message_tokens: int, system_tokens: int, window: int, reserve: int) -> None:
        self.message_tokens = message_tokens
        self.system_tokens = system_tokens
        self.window = window
        self.reserve = reserve
        plus = f", plus {system_tokens:,} for the system prompt" if system_tokens else ""
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

    messages: list[dict[str, str]]
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


def fit_to_context(messages: Sequence[Mapping[str, str]], *, window: int, reserve: int, counter: Counter) -> Fitted:
    """Drop the oldest turns until the prompt leaves ``reserve`` tokens of ``window`` for the answer.

    Kept always: the system prompt (a first message with role ``system``) and the last message (the
    new user message). The kept history never starts with an assistant turn: when trimming would leave
    one first, it goes too. Each message is counted once at most (newest first, stopping at the first
    that does not fit), so fitting is O(n) in the number of messages.

    Args:
        messages: the request's messages, ``[{"role": ..., "content": ...}, ...]``: an optional system
            message, then the turns, oldest first; the last is the new user message.
        window: the model's context window, tokens.
        reserve: tokens to keep free for the answer (see ``reserve_for``).
        counter: counts each message's tokens (``count_message``) and what the request adds once
            (``request_tokens``: the reply's start, and a system turn the chat template adds without a system prompt).

    Returns:
        The messages to send, how many were left out and their token count:
        ``tokens + reserve <= window``.

    Raises:
        ContextTooLong: the system prompt and the last message alone leave less than ``reserve``.
        ValueError: ``messages`` has no message after the system prompt.
    """
    system = [dict(messages[0])] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    if not turns:
        raise ValueError("fit_to_context needs a message to answer")
    overhead = counter.request_tokens(bool(system))
    budget = window - reserve - overhead
    system_tokens = counter.count_message(system[0]) if system else 0
    last_tokens = counter.count_message(turns[-1])
    if system_tokens + last_tokens > budget:
        raise ContextTooLong(message_tokens=last_tokens, system_tokens=system_tokens, window=window, reserve=reserve)
    used = system_tokens + last_tokens
    counts = [last_tokens]  # counts of the kept turns, newest first
    for turn in reversed(turns[:-1]):
        tokens = counter.count_message(turn)
        if used + tokens > budget:
            break
        used += tokens
        counts.append(tokens)
    start = len(turns) - len(counts)
    if start > 0:
        while start < len(turns) - 1 and turns[start]["role"] == "assistant":
            used -= counts.pop()
            start += 1
    kept = system + [dict(turn) for turn in turns[start:]]
    return Fitted(messages=kept, omitted=start, tokens=used + overhead)
