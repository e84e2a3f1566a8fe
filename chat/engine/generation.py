"""One assistant message being generated: its partial text, its phase and its subscribers.

A ``Generation`` lives in the engine, not in a browser tab: tabs subscribe to it, leave and come
back; the answer goes on. Subscribing returns the text so far and registers the subscriber in the
same synchronous step, so a subscriber sees every character exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum

from ..store import Message

log = logging.getLogger(__name__)


class Phase(StrEnum):
    """Where a live answer is, before and while it streams."""

    loading = "loading"  # the upstream (embedded model) is starting
    queued = "queued"  # another answer holds the upstream
    retrying = "retrying"  # the upstream was busy or unreachable; waiting to send the request again
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


def replay(message: Message, offset: int = 0) -> list[Event]:
    """The events of an answer already stored: its text after ``offset`` characters (if any), then ``Finished``."""
    rest = message.content[offset:]
    return [Delta(rest), Finished(message)] if rest else [Finished(message)]


class Generation:
    """The live state of one assistant message while it is generated.

    Args:
        message_id: the assistant message's id.
        conversation_id: its conversation's id.
        user_id: the conversation's owner (None: personal mode).
    """

    def __init__(self, message_id: int, conversation_id: int, user_id: int | None = None) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.user_id = user_id
        self.phase = Phase.thinking
        self.task: asyncio.Task[None] | None = None
        self.cancelled_by_user = False
        self.result: Message | None = None
        self._parts: list[str] = []
        self.size = 0
        """Characters generated so far (kept per delta, so reading it is O(1), unlike ``text``)."""
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

    async def follow(self, offset: int = 0) -> AsyncIterator[Event]:
        """Iterate over this answer from character ``offset`` on, until it ends.

        Yields ``PhaseChanged`` first when there is no text yet (loading, queued, thinking), then a ``Delta`` with the
        text after ``offset`` that exists now (if any), then every later event, ``Finished`` last. Deltas that queue
        up while the consumer is busy (e.g. sending to a slow socket) are joined into one, so a slow consumer gets
        fewer, larger deltas and is never more than one step behind.

        Args:
            offset: characters (``str`` code points) the consumer already has; beyond the text so far means none.
        """
        if self.done:
            assert self.result is not None
            for event in replay(self.result, offset):
                yield event
            return
        pending: deque[Event] = deque()
        arrived = asyncio.Event()

        def receive(event: Event) -> None:
            pending.append(event)
            arrived.set()

        text, unsubscribe = self.subscribe(receive)
        try:
            if self.phase != Phase.streaming and not text:
                yield PhaseChanged(self.phase)
            if len(text) > offset:
                yield Delta(text[offset:])
            while True:
                while not pending:
                    arrived.clear()
                    await arrived.wait()
                event = pending.popleft()
                if isinstance(event, Delta) and pending and isinstance(pending[0], Delta):
                    parts = [event.text]
                    while pending and isinstance(pending[0], Delta):
                        parts.append(pending.popleft().text)  # type: ignore[union-attr]
                    event = Delta("".join(parts))
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            unsubscribe()

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
        self.size += len(delta)
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
