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
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..store import Message, Role, Status
from .events import (
    ApprovalRequired,
    ContentEvent,
    Event,
    Finished,
    Notice,
    Phase,
    PhaseChanged,
    ReasoningDelta,
    ReasoningEnded,
    TextDelta,
    ToolArgumentsDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolResult,
    ToolRunning,
    ToolStatus,
    UsageReported,
    after,
    is_content,
    joined,
    numbered,
    replay,
    to_json,
)

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Decision:
    """The owner's decision on a tool call waiting for approval: run it or not, and whether to always allow the tool
    (as it is now)."""

    approve: bool
    always: bool = False


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
        position: the log's position (``events.py``): characters of text so far, plus the sizes of the other content
            events.
        status, error, error_status, error_code, finish_reason, prompt_tokens, completion_tokens, ttft, duration,
            omitted_messages, cost, cost_estimated: its outcome as the engine records it (``Message``'s fields of the
            same names).
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
        self._content: list[ContentEvent] = []  # consecutive deltas are joined when read (``_compacted``)
        self._compact = True
        self._rich = False  # the log has more than text deltas (it is stored as ``Message.events``)
        self._text_size = 0  # characters of text (``position`` counts the other events too)
        self._reasoning_since: float | None = None  # monotonic time the current reasoning started
        self._open_calls: dict[str, str] = {}  # tool call id -> name, for calls without a result yet
        self.pending: dict[str, asyncio.Future[Decision]] = {}
        """Tool calls waiting for their owner's decision, by call id."""
        self.started = time.monotonic()
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
        self.cost: float | None = None
        self.cost_estimated = False
        self.unmetered: list[list[dict[str, Any]]] = []
        """The requests whose upstream sent no usage (their prompt tokens are counted by Parley for the cost)."""

    # -- reading ---------------------------------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"answer {self.message_id}" if self.message_id is not None else "answer (not stored)"

    @property
    def stored(self) -> bool:
        """True when the answer is a stored message (it has an id)."""
        return self.message_id is not None

    @property
    def size(self) -> int:
        """The log's position (for a text-only answer, its characters; O(1))."""
        return self.position

    @property
    def text(self) -> str:
        """The text generated so far (joins the deltas once; O(new text) per call, so not per delta)."""
        if not self._rich:
            return "".join(event.text for event in self._compacted())  # type: ignore[union-attr]
        return "".join(event.text for event in self._compacted() if isinstance(event, TextDelta))

    @property
    def content(self) -> list[ContentEvent]:
        """The content events so far, numbered, adjacent deltas joined."""
        return list(self._compacted())

    @property
    def rich(self) -> bool:
        """True when the answer has more than text (reasoning, tool calls, notices)."""
        return self._rich

    def events_json(self) -> list[dict[str, Any]] | None:
        """The content events as ``Message.events`` stores them, or None for a text-only answer."""
        return [to_json(event) for event in self._compacted()] if self._rich else None

    @property
    def done(self) -> bool:
        """True once the answer has ended (and, when stored, been stored)."""
        return self._done.is_set()

    def _compacted(self) -> list[ContentEvent]:
        if not self._compact:
            self._content, self._compact = joined(self._content), True
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
            if self.phase != Phase.streaming:  # loading, queued, thinking; a tool step's phase
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
        if self._reasoning_since is not None:
            self._end_reasoning()
        self.position += len(text)
        self._text_size += len(text)
        event = TextDelta(text, self.position)
        self._content.append(event)
        self._compact = False
        self._publish(event)

    def add(self, event: ContentEvent) -> ContentEvent:
        """Add any content event to the log (numbered here) and fan it out; returns it numbered."""
        if self._reasoning_since is not None and not isinstance(event, ReasoningDelta | ReasoningEnded):
            self._end_reasoning()
        self.position += event.size
        event = numbered(event, self.position)  # type: ignore[assignment]
        self._content.append(event)
        self._compact = False
        self._rich = True
        self._publish(event)
        return event

    def elapsed(self) -> float:
        """Seconds since the answer started (rounded to milliseconds, as tool events store them)."""
        return round(time.monotonic() - self.started, 3)

    def add_reasoning(self, text: str) -> None:
        """Add reasoning text (``ReasoningDelta``); the block ends with the next other content (``ReasoningEnded``)."""
        if self._reasoning_since is None:
            self._reasoning_since = time.monotonic()
        self.add(ReasoningDelta(text))

    def _end_reasoning(self) -> None:
        since, self._reasoning_since = self._reasoning_since, None
        assert since is not None
        self.add(ReasoningEnded(round(time.monotonic() - since, 1)))

    def start_tool_call(self, call_id: str, name: str, source: str) -> None:
        """The model started calling a tool (``ToolCallStarted``)."""
        self._open_calls[call_id] = name
        self.add(ToolCallStarted(call_id, name, source, self.elapsed()))

    def add_tool_arguments(self, call_id: str, text: str) -> None:
        """A fragment of a call's arguments (``ToolArgumentsDelta``)."""
        self.add(ToolArgumentsDelta(call_id, text))

    def tool_call_ready(self, call_id: str, name: str, arguments: str, parsed: dict | None, error: str | None):
        """A call's arguments are complete (``ToolCallReady``)."""
        self.add(ToolCallReady(call_id, name, arguments, parsed, error))

    def tool_running(self, call_id: str) -> None:
        """A call started running (``ToolRunning``)."""
        self.add(ToolRunning(call_id, self.elapsed()))

    def tool_result(self, call_id: str, status: ToolStatus, result: str, *, is_error: bool = False,
                    truncated: bool = False, duration: float | None = None) -> None:  # fmt: skip
        """A call ended (``ToolResult``); no-op for a call that has a result already."""
        if self._open_calls.pop(call_id, None) is None:
            return
        self.add(ToolResult(call_id, status, result, is_error, truncated, self.elapsed(), duration))

    def hand_over(self, call_id: str) -> None:
        """A call that the client runs (a ``/v1`` client's own tool): it ends here as ``sent_to_client``; its result
        comes with the client's next request."""
        self.tool_result(call_id, ToolStatus.sent_to_client, "Sent to the client, which runs its own tools.")

    def open_calls(self) -> list[str]:
        """The ids of the calls without a result yet, in the order they started."""
        return list(self._open_calls)

    def notice(self, text: str) -> None:
        """Tell the reader something about this answer, in its place (``Notice``)."""
        self.add(Notice(text))

    async def approval(self, call_id: str, name: str, source: str, *, timeout: float, changed: bool) -> Decision | None:
        """Ask the owner to decide on a call (``ApprovalRequired``, phase ``awaiting_approval``) and wait.

        Returns:
            The decision, or None when nobody decided within ``timeout`` seconds.
        """
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        self.add(ApprovalRequired(call_id, name, source, round(time.time() + timeout, 3), changed))
        self.set_phase(Phase.awaiting_approval)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            self.pending.pop(call_id, None)
            self.set_phase(Phase.awaiting_approval if self.pending else Phase.running_tools)

    def decide(self, call_id: str, decision: Decision) -> bool:
        """Give a waiting call its decision; False when it is not waiting (decided already, expired, unknown)."""
        future = self.pending.get(call_id)
        if future is None or future.done():
            return False
        future.set_result(decision)
        return True

    def fail(self, status: Status, error: str | None, *, error_status: int | None = None, code: str | None = None):
        """Record that the answer ended otherwise than normally (``cancelled``, ``error``, ``interrupted``)."""
        self.status, self.error, self.error_status, self.error_code = status, error, error_status, code

    def fields(self) -> dict[str, Any]:
        """The answer's outcome as ``Store.finish_message`` takes it (its content included)."""
        return {
            "content": self.text,
            "events": self.events_json(),
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
            "cost": self.cost,
            "cost_estimated": self.cost_estimated,
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
