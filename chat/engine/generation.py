"""One answer being generated: its numbered event log, its phase, its subscribers, and what it comes to.

A ``Generation`` lives in the engine, not in a browser tab: tabs subscribe to it, leave and come back; the answer goes
on. Subscribing returns the content so far and registers the subscriber in the same synchronous step, so a subscriber
sees every event exactly once (``events.py`` says how the log is numbered). The generation also owns its outcome
(status, error, ``finish_reason``, usage, timings): ``fields()`` is the stored row's, ``unstored_message()`` the row of
an answer stored nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..store import Message, Role, Status
from .events import (
    ContentEvent,
    Event,
    Finished,
    Phase,
    PhaseChanged,
    TextDelta,
    UsageReported,
    after,
    is_content,
    replay,
)

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class Generation:
    """The live state of one answer while it is generated.

    Args:
        message_id: the assistant message's id; None for an answer stored nowhere (``/v1`` with ``store: false``).
        conversation_id: its conversation's id (None when stored nowhere).
        user_id: who it is for: the conversation's owner (None: personal mode).
        model: the model that answers (for an answer stored nowhere, its row says so).
        temperature: the temperature it is generated at.

    Attributes:
        phase: where it is (``Phase``).
        position: the log's position (``events.py``): characters of text so far.
        status, error, error_status, error_code, finish_reason, prompt_tokens, completion_tokens, ttft, duration,
            omitted_messages: its outcome as the engine records it (``Message``'s fields of the same names).
    """

    def __init__(
        self,
        message_id: int | None,
        conversation_id: int | None,
        user_id: int | None = None,
        *,
        model: str | None = None,
        temperature: float | None = None,
    ) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.user_id = user_id
        self.model = model
        self.temperature = temperature
        self.phase = Phase.thinking
        self.task: asyncio.Task[None] | None = None
        self.cancelled_by_user = False
        self.result: Message | None = None
        self.position = 0
        self._content: list[ContentEvent] = []  # consecutive text deltas are joined when read (``_compacted``)
        self._compact = True
        self._subscribers: list[Subscriber] = []
        self._done = asyncio.Event()
        # the outcome
        self.status = Status.complete
        self.error: str | None = None
        self.error_status: int | None = None
        self.error_code: str | None = None
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.ttft: float | None = None
        self.duration: float | None = None
        self.omitted_messages: int | None = None

    # -- reading ---------------------------------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"answer {self.message_id}" if self.message_id is not None else "answer (not stored)"

    @property
    def stored(self) -> bool:
        """True when the answer is a stored message (it has an id)."""
        return self.message_id is not None

    @property
    def size(self) -> int:
        """Characters of text so far (the position; O(1))."""
        return self.position

    @property
    def text(self) -> str:
        """The text generated so far (joins the deltas once; O(new text) per call, so not per delta)."""
        return "".join(event.text for event in self._compacted() if isinstance(event, TextDelta))

    @property
    def done(self) -> bool:
        """True once the answer has ended (and, when stored, been stored)."""
        return self._done.is_set()

    def _compacted(self) -> list[ContentEvent]:
        if not self._compact:
            joined: list[ContentEvent] = []
            for event in self._content:
                if joined and isinstance(joined[-1], TextDelta) and isinstance(event, TextDelta):
                    joined[-1] = TextDelta(joined[-1].text + event.text, event.seq)
                else:
                    joined.append(event)
            self._content, self._compact = joined, True
        return self._content

    def subscribe(self, subscriber: Subscriber) -> tuple[list[ContentEvent], Callable[[], None]]:
        """Register ``subscriber`` for every later event.

        Returns:
            ``(content_so_far, unsubscribe)``: the content events so far (numbered, text joined), and the function
            that ends the subscription. The subscriber is called with each later event, synchronously, in order.
        """
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return list(self._compacted()), unsubscribe

    async def follow(self, position: int = 0) -> AsyncIterator[Event]:
        """Iterate over this answer's events after ``position``, until it ends.

        Yields ``PhaseChanged`` first while there is no content yet (loading, queued, thinking), then the content after
        ``position`` that exists now (text joined into one delta), then every later event, ``UsageReported`` and
        ``Finished`` last. Text deltas that queue up while the consumer is busy (e.g. sending to a slow socket) are
        joined into one, so a slow consumer gets fewer, larger deltas and is never more than one step behind.

        Args:
            position: the sequence number the consumer has (``events.py``); beyond the content so far means none yet.
        """
        if self.done:
            assert self.result is not None
            for event in replay(self.result, position):
                yield event
            return
        pending: deque[Event] = deque()
        arrived = asyncio.Event()

        def receive(event: Event) -> None:
            pending.append(event)
            arrived.set()

        content, unsubscribe = self.subscribe(receive)
        try:
            if self.phase != Phase.streaming and not content:
                yield PhaseChanged(self.phase, self.position)
            for event in after(content, position):
                yield event
            while True:
                while not pending:
                    arrived.clear()
                    await arrived.wait()
                if is_content(pending[0]):
                    batch: list[ContentEvent] = []
                    while pending and is_content(pending[0]):
                        batch.append(pending.popleft())  # type: ignore[arg-type]
                    for event in after(batch, position):
                        yield event
                    continue
                event = pending.popleft()
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            unsubscribe()

    async def wait(self) -> Message:
        """Wait for the answer to end; return its (stored, or never written) message."""
        await self._done.wait()
        assert self.result is not None
        return self.result

    # -- called by the engine --------------------------------------------------------------------------------------

    def set_phase(self, phase: Phase | str) -> None:
        """Move to ``phase`` and tell the subscribers (no-op when unchanged)."""
        phase = Phase(phase)
        if phase != self.phase:
            self.phase = phase
            self._publish(PhaseChanged(phase, self.position))

    def append(self, text: str) -> None:
        """Add a text delta to the log and fan it out. O(subscribers)."""
        self.position += len(text)
        event = TextDelta(text, self.position)
        self._content.append(event)
        self._compact = False
        self._publish(event)

    def fail(self, status: Status, error: str | None, *, error_status: int | None = None, code: str | None = None):
        """Record that the answer ended otherwise than normally (``cancelled``, ``error``, ``interrupted``)."""
        self.status, self.error, self.error_status, self.error_code = status, error, error_status, code

    def fields(self) -> dict[str, Any]:
        """The answer's outcome as ``Store.finish_message`` takes it (its content included)."""
        return {
            "content": self.text,
            "status": self.status,
            "error": self.error,
            "error_status": self.error_status,
            "error_code": self.error_code,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft": self.ttft,
            "duration": self.duration,
            "omitted_messages": self.omitted_messages,
        }

    def unstored_message(self) -> Message:
        """The answer as a message row that is never written (its ``id`` is None): what ``Finished`` carries for an
        answer stored nowhere, and for a stored one whose conversation was deleted meanwhile."""
        return Message(
            id=self.message_id, conversation_id=self.conversation_id or 0, role=Role.assistant, model=self.model,
            temperature=self.temperature, **self.fields(),
        )  # fmt: skip

    def finish(self, message: Message) -> None:
        """Record the result (the stored row, or ``unstored_message()``) and tell the subscribers the answer ended:
        ``UsageReported``, then ``Finished``."""
        self.result = message
        self._done.set()
        self._publish(UsageReported(message.prompt_tokens, message.completion_tokens, self.position))
        self._publish(Finished(message, self.position))
        self._subscribers.clear()

    def _publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # one broken tab must not stop the answer for the others
                log.exception("a subscriber of %s failed; dropping it", self)
                self._subscribers.remove(subscriber)
