"""One assistant message being generated: its partial text, its phase and its subscribers.

A ``Generation`` lives in the engine, not in a browser tab: tabs subscribe to it, leave and come
back; the answer goes on. Subscribing returns the text so far and registers the subscriber in the
same synchronous step, so a subscriber sees every character exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ..store import Message

log = logging.getLogger(__name__)


class Phase(StrEnum):
    """Where a live answer is, before and while it streams."""

    loading = "loading"  # the upstream (embedded model) is starting
    queued = "queued"  # another answer holds the upstream
    thinking = "thinking"  # request sent, no delta yet
    streaming = "streaming"  # deltas arriving


@dataclass(frozen=True, slots=True)
class Delta:
    """New text of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    """The answer moved to another phase."""

    phase: Phase


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer ended; ``message`` is the stored row (status, final content, finish_reason, usage)."""

    message: Message


Event = Delta | PhaseChanged | Finished
Subscriber = Callable[[Event], None]


class Generation:
    """The live state of one assistant message while it is generated.

    Args:
        message_id: the assistant message's id.
        conversation_id: its conversation's id.
    """

    def __init__(self, message_id: int, conversation_id: int) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.phase = Phase.thinking
        self.task: asyncio.Task[None] | None = None
        self.cancelled_by_user = False
        self.result: Message | None = None
        self._parts: list[str] = []
        self._subscribers: list[Subscriber] = []
        self._done = asyncio.Event()

    @property
    def text(self) -> str:
        """The text generated so far (joins the deltas; O(length) per call, so not per delta)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def done(self) -> bool:
        """True once the answer has ended and been stored."""
        return self._done.is_set()

    def subscribe(self, subscriber: Subscriber) -> tuple[str, Callable[[], None]]:
        """Register ``subscriber`` for every later event.

        Returns:
            ``(text_so_far, unsubscribe)``: the subscriber is called with each Delta after
            ``text_so_far``, each PhaseChanged and the Finished event, synchronously, in order.
        """
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return self.text, unsubscribe

    async def wait(self) -> Message:
        """Wait for the answer to end; return the stored message."""
        await self._done.wait()
        assert self.result is not None
        return self.result

    # -- called by the engine ----------------------------------------------------------------------

    def set_phase(self, phase: Phase | str) -> None:
        """Move to ``phase`` and tell the subscribers (no-op when unchanged)."""
        phase = Phase(phase)
        if phase != self.phase:
            self.phase = phase
            self._publish(PhaseChanged(phase))

    def append(self, delta: str) -> None:
        """Add a delta and fan it out. O(subscribers)."""
        self._parts.append(delta)
        self._publish(Delta(delta))

    def finish(self, message: Message) -> None:
        """Record the stored result and tell the subscribers the answer ended."""
        self.result = message
        self._done.set()
        self._publish(Finished(message))
        self._subscribers.clear()

    def _publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # one broken tab must not stop the answer for the others
                log.exception("subscriber of message %s failed; dropping it", self.message_id)
                self._subscribers.remove(subscriber)
