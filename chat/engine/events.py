"""An answer as a numbered log of typed events, the one form every stream of an answer is served from.

**Sequence numbers are positions.** Every event carries ``seq``, the answer's position once it has happened. Content
events move the position by their size: the deltas (``TextDelta``, ``ReasoningDelta``, ``ToolArgumentsDelta``) by
their length in characters (code points, Python's ``len``), every other content event (a tool call starting, ready,
waiting for approval, running, its result, a notice, the end of reasoning) by 1. Status events (``PhaseChanged``,
``UsageReported``, ``Finished``) do not move it: they carry the position they happened at. So for a text-only answer
``seq`` is the number of characters a client has, as the streams' offsets always were, and "after the second tool
result" is a number too.

**Resuming.** A client that has everything up to ``seq`` N asks for the events *after* N: every content event that
ends after N (the one that straddles N cut at N), then the answer's current status. A stored answer, long after the
process that streamed it is gone, rebuilds the same numbering from its stored content alone (``replay``), so a stream
resumes from a live answer or a stored one with nothing lost or doubled. In an external log (a Redis Stream per
answer), entry ids ``<seq>-<k>`` keep these numbers ordered and unique.

**The stored message is what the log adds up to**: its content is the concatenation of the text deltas; an answer with
anything but text also keeps its content events (``Message.events``, compacted: adjacent deltas joined), in the order
they happened, so a replay numbers them exactly as the live stream did; its status, ``finish_reason`` and usage are
those of ``Finished``. ``parts`` folds the log into what a page shows (reasoning, text, tool calls with their status)
and ``tool_rounds`` into what is sent back to the upstream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, ClassVar

from ..store import Message, Status


class Phase(StrEnum):
    """Where a live answer is, before and while it streams."""

    loading = "loading"  # the upstream (embedded model) is starting
    queued = "queued"  # another answer holds the upstream
    retrying = "retrying"  # the upstream was busy or unreachable; waiting to send the request again
    thinking = "thinking"  # request sent, no delta yet
    streaming = "streaming"  # deltas arriving
    awaiting_approval = "awaiting_approval"  # a tool call waits for the user's approval
    running_tools = "running_tools"  # tool calls are running; the model is asked again once they end


class ToolStatus(StrEnum):
    """Where one tool call is (``ToolCallPart.status``)."""

    streaming_arguments = "streaming_arguments"
    awaiting_approval = "awaiting_approval"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"  # invalid arguments, unknown tool, the tool or its server failed, timed out
    denied = "denied"  # by the user or by policy
    cancelled = "cancelled"  # the answer was stopped (or interrupted) before the call ended
    expired = "expired"  # nobody decided before the approval deadline
    sent_to_client = "sent_to_client"  # a /v1 client's own tool: the client runs it and answers in its next request


#: The statuses a call ends in.
FINAL_STATUSES = frozenset({ToolStatus.succeeded, ToolStatus.failed, ToolStatus.denied, ToolStatus.cancelled,
                            ToolStatus.expired, ToolStatus.sent_to_client})  # fmt: skip


class _Delta:
    """A content event with text that moves the position by its length (and can be cut at a position)."""

    text: str
    seq: int

    @property
    def size(self) -> int:
        """How far it moves the position: its length in characters."""
        return len(self.text)

    def after(self, position: int):  # noqa: ANN201 - the same class
        """The part of this delta after ``position`` (which lies inside it)."""
        return replace(self, text=self.text[len(self.text) - (self.seq - position) :])  # type: ignore[type-var]

    def joins(self, other: object) -> bool:
        """True when ``other`` continues this delta (same kind, same call): the two are stored and replayed as one."""
        return type(other) is type(self)


class _Step:
    """A content event that moves the position by 1."""

    size: ClassVar[int] = 1

    def joins(self, other: object) -> bool:
        """Never joined with another event."""
        return False


@dataclass(frozen=True, slots=True)
class TextDelta(_Delta):
    """New text of the answer (a content event: it moves the position by ``len(text)``).

    Attributes:
        text: the text, never empty in a log.
        seq: the position after it.
    """

    text: str
    seq: int = 0
    kind: ClassVar[str] = "text_delta"


@dataclass(frozen=True, slots=True)
class ReasoningDelta(_Delta):
    """New reasoning ("thinking") text: the upstream's ``reasoning_content`` / ``reasoning`` or ``<think>`` content.
    Shown apart from the answer and never sent back as history."""

    text: str
    seq: int = 0
    kind: ClassVar[str] = "reasoning_delta"


@dataclass(frozen=True, slots=True)
class ReasoningEnded(_Step):
    """The reasoning before this point ended after ``seconds`` of thinking (a content event of size 1)."""

    seconds: float
    seq: int = 0
    kind: ClassVar[str] = "reasoning_done"


@dataclass(frozen=True, slots=True)
class ToolCallStarted(_Step):
    """The model started a tool call (size 1).

    Attributes:
        call_id: the upstream's tool call id (or Parley's, when it sent none); unique within the answer.
        name: the tool's name as the model called it.
        source: ``"builtin"``, the MCP server's name, ``"client"`` (a ``/v1`` client's own tool), or ``""`` when the
            model named a tool that does not exist.
        at: seconds since the answer started.
    """

    call_id: str
    name: str
    source: str = ""
    at: float = 0.0
    seq: int = 0
    kind: ClassVar[str] = "tool_call_started"


@dataclass(frozen=True, slots=True)
class ToolArgumentsDelta(_Delta):
    """A fragment of a tool call's arguments (JSON text as the upstream streams it)."""

    call_id: str
    text: str
    seq: int = 0
    kind: ClassVar[str] = "tool_call_delta"

    def joins(self, other: object) -> bool:
        """True for the next fragment of the same call."""
        return isinstance(other, ToolArgumentsDelta) and other.call_id == self.call_id


@dataclass(frozen=True, slots=True)
class ToolCallReady(_Step):
    """A tool call's arguments are complete (size 1).

    Attributes:
        call_id: the call.
        name: the tool's name.
        arguments: the full arguments text as streamed.
        parsed: the arguments as a JSON object, or None when they are invalid (``error`` says why).
        error: why the arguments cannot be used (not JSON, not matching the input schema, unknown tool), or None.
    """

    call_id: str
    name: str
    arguments: str
    parsed: dict[str, Any] | None = None
    error: str | None = None
    seq: int = 0
    kind: ClassVar[str] = "tool_call"


@dataclass(frozen=True, slots=True)
class ApprovalRequired(_Step):
    """A tool call waits for its owner's decision, until ``deadline`` (size 1).

    Attributes:
        call_id: the call.
        name: the tool.
        source: where the tool comes from.
        deadline: seconds since the epoch (UTC) after which the call expires.
        changed: True when the tool was always allowed but its description or input schema changed since.
    """

    call_id: str
    name: str
    source: str
    deadline: float
    changed: bool = False
    seq: int = 0
    kind: ClassVar[str] = "approval_required"


@dataclass(frozen=True, slots=True)
class ToolRunning(_Step):
    """A tool call started running (size 1); ``at``: seconds since the answer started."""

    call_id: str
    at: float = 0.0
    seq: int = 0
    kind: ClassVar[str] = "tool_running"


@dataclass(frozen=True, slots=True)
class ToolResult(_Step):
    """A tool call ended (size 1).

    Attributes:
        call_id: the call.
        status: how it ended (one of ``FINAL_STATUSES``).
        result: what the model is told: the tool's output (size-capped), or why there is none.
        is_error: True unless the tool answered normally.
        truncated: the output was cut to the result limit.
        at: seconds since the answer started.
        duration: seconds the tool ran (None when it never ran).
    """

    call_id: str
    status: ToolStatus
    result: str
    is_error: bool = False
    truncated: bool = False
    at: float = 0.0
    duration: float | None = None
    seq: int = 0
    kind: ClassVar[str] = "tool_result"


@dataclass(frozen=True, slots=True)
class Notice(_Step):
    """Something the reader should know about this answer, shown in its place (size 1): e.g. tools turned off because
    the upstream does not take them."""

    text: str
    seq: int = 0
    kind: ClassVar[str] = "notice"


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    """The live answer moved to another phase (a status event)."""

    phase: Phase
    seq: int = 0
    kind: ClassVar[str] = "phase"


@dataclass(frozen=True, slots=True)
class UsageReported:
    """The answer's token counts, once known (a status event, just before ``Finished``)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    seq: int = 0
    kind: ClassVar[str] = "usage"


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer ended (a status event, always last). ``message`` is the stored row (status, final content,
    ``finish_reason``, usage, error); for an answer stored nowhere (``/v1`` with ``store: false``) a row that was never
    written (``id`` None)."""

    message: Message
    seq: int = 0
    kind: ClassVar[str] = "done"


#: The events that move the position.
ContentEvent = (
    TextDelta | ReasoningDelta | ReasoningEnded | ToolCallStarted | ToolArgumentsDelta | ToolCallReady
    | ApprovalRequired | ToolRunning | ToolResult | Notice
)  # fmt: skip
Event = ContentEvent | PhaseChanged | UsageReported | Finished

#: Content event classes by ``kind`` (what ``to_json`` writes and ``from_json`` reads).
CONTENT_KINDS: dict[str, type] = {
    cls.kind: cls
    for cls in (TextDelta, ReasoningDelta, ReasoningEnded, ToolCallStarted, ToolArgumentsDelta, ToolCallReady,
                ApprovalRequired, ToolRunning, ToolResult, Notice)
}  # fmt: skip


def is_content(event: Event) -> bool:
    """True for an event that moves the position (``ContentEvent``)."""
    return isinstance(event, _Delta | _Step)


def to_json(event: ContentEvent) -> dict[str, Any]:
    """A content event as a JSON object: ``{"kind": ..., <its fields>, "seq": N}`` (how ``Message.events`` stores it
    and how ``/api`` and the page's socket send it)."""
    return {"kind": event.kind, **asdict(event)}  # type: ignore[call-overload]


def from_json(data: dict[str, Any]) -> ContentEvent:
    """The content event ``to_json`` wrote. Raises KeyError/TypeError for an object that is not one."""
    cls = CONTENT_KINDS[data["kind"]]
    names = {f.name for f in fields(cls)}
    event = cls(**{key: value for key, value in data.items() if key in names})
    if isinstance(event, ToolResult):
        event = replace(event, status=ToolStatus(event.status))
    return event  # type: ignore[return-value]


def joined(events: list[ContentEvent]) -> list[ContentEvent]:
    """``events`` with adjacent deltas that continue one another (``joins``) joined into one."""
    kept: list[ContentEvent] = []
    for event in events:
        if kept and kept[-1].joins(event):
            kept[-1] = replace(kept[-1], text=kept[-1].text + event.text, seq=event.seq)  # type: ignore[union-attr]
        else:
            kept.append(event)
    return kept


def content_of(message: Message) -> list[ContentEvent]:
    """The content events a stored answer is made of, numbered from 0: its stored events, else its text as one delta
    (none when empty)."""
    if message.events:
        events = [from_json(data) for data in message.events]
        if message.status not in (Status.streaming, Status.complete):  # killed mid-step: say how its calls ended
            events.extend(_closed(events, message.error or "The answer ended before this call did."))
        return events
    return [TextDelta(message.content, len(message.content))] if message.content else []


def _closed(events: list[ContentEvent], reason: str) -> list[ContentEvent]:
    """A ``cancelled`` result for each call of ``events`` that has none (an answer whose process died mid-step),
    numbered after them."""
    open_calls = {e.call_id: e for e in events if isinstance(e, ToolCallStarted)}
    for event in events:
        if isinstance(event, ToolResult):
            open_calls.pop(event.call_id, None)
    position = events[-1].seq if events else 0
    closed: list[ContentEvent] = []
    for call_id in open_calls:
        position += 1
        closed.append(ToolResult(call_id, ToolStatus.cancelled, reason, is_error=True, seq=position))
    return closed


def after(events: list[ContentEvent], position: int) -> list[ContentEvent]:
    """The content events of ``events`` (numbered, in order) that end after ``position``, the first cut at it (only a
    delta can straddle a position); adjacent deltas that continue one another are joined."""
    kept: list[ContentEvent] = []
    for event in events:
        if event.seq <= position:
            continue
        if event.seq - event.size < position:
            event = event.after(position)  # type: ignore[union-attr]
        kept.append(event)
    return joined(kept)


def end_of(message: Message) -> int:
    """The position at the end of a stored answer's log (for a text-only answer, its length in characters)."""
    content = content_of(message) if message.events else None
    return content[-1].seq if content else len(message.content)


def replay(message: Message, position: int = 0) -> list[Event]:
    """The events of a stored answer after ``position``: its content from there (see ``after``), its usage, and
    ``Finished``; all numbered as they were while it streamed."""
    content = content_of(message)
    end = content[-1].seq if content else 0
    return [
        *after(content, position),
        UsageReported(message.prompt_tokens, message.completion_tokens, end),
        Finished(message, end),
    ]


def numbered(event: Event, seq: int) -> Event:
    """``event`` with its sequence number set."""
    return replace(event, seq=seq)


def numbered_log(events: list[ContentEvent]) -> list[ContentEvent]:
    """``events`` numbered from 0 as a log numbers them (each ``seq`` the position after it), adjacent deltas
    joined."""
    position, log = 0, []
    for event in events:
        position += event.size
        log.append(numbered(event, position))
    return joined(log)  # type: ignore[arg-type]


# -- what the log adds up to ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCallPart:
    """One tool call as the log tells it so far."""

    call_id: str
    name: str
    source: str = ""
    arguments: str = ""
    parsed: dict[str, Any] | None = None
    status: ToolStatus = ToolStatus.streaming_arguments
    ready: bool = False  # its arguments are complete (``ToolCallReady``)
    result: str | None = None
    is_error: bool = False
    truncated: bool = False
    error: str | None = None
    deadline: float | None = None
    started_at: float | None = None
    duration: float | None = None


@dataclass(slots=True)
class Part:
    """One part of an answer, in order: ``kind`` ``"reasoning"`` (``text``, ``seconds`` once it ended), ``"text"``,
    ``"tool_calls"`` (``calls``: the calls of one round, several when the model called them in parallel) or
    ``"notice"``."""

    kind: str
    text: str = ""
    seconds: float | None = None
    calls: list[ToolCallPart] = field(default_factory=list)


def parts(events: list[ContentEvent]) -> list[Part]:
    """Fold content events into the answer's parts, in order (see ``Part``)."""
    result: list[Part] = []
    calls: dict[str, ToolCallPart] = {}
    for event in events:
        last = result[-1] if result else None
        if isinstance(event, TextDelta | ReasoningDelta):
            kind = "text" if isinstance(event, TextDelta) else "reasoning"
            if last is not None and last.kind == kind and last.seconds is None:
                last.text += event.text
            else:
                result.append(Part(kind, event.text))
        elif isinstance(event, ReasoningEnded):
            for part in reversed(result):
                if part.kind == "reasoning":
                    part.seconds = event.seconds
                    break
        elif isinstance(event, Notice):
            result.append(Part("notice", event.text))
        elif isinstance(event, ToolCallStarted):
            call = calls[event.call_id] = ToolCallPart(event.call_id, event.name, event.source)
            if last is not None and last.kind == "tool_calls" and all(c.result is None for c in last.calls):
                last.calls.append(call)
            else:
                result.append(Part("tool_calls", calls=[call]))
        elif (call := calls.get(getattr(event, "call_id", ""))) is not None:
            if isinstance(event, ToolArgumentsDelta):
                call.arguments += event.text
            elif isinstance(event, ToolCallReady):
                call.arguments, call.parsed, call.error = event.arguments, event.parsed, event.error
                call.ready = True
            elif isinstance(event, ApprovalRequired):
                call.status, call.deadline = ToolStatus.awaiting_approval, event.deadline
            elif isinstance(event, ToolRunning):
                call.status, call.started_at = ToolStatus.running, event.at
            elif isinstance(event, ToolResult):
                call.status, call.result, call.is_error = event.status, event.result, event.is_error
                call.truncated, call.duration = event.truncated, event.duration
    return result


@dataclass(slots=True)
class ToolRound:
    """One request's worth of an answer with tool calls: the text the model wrote and the calls it made (with what
    each was answered); the last round of an answer may have no calls."""

    text: str = ""
    calls: list[ToolCallPart] = field(default_factory=list)


def tool_rounds(events: list[ContentEvent]) -> list[ToolRound]:
    """The answer as the rounds a tool loop sent: text and calls until the calls' results, then the next round (the
    first text or call after a result starts it). Reasoning and notices are left out (they are never sent back)."""
    rounds: list[ToolRound] = [ToolRound()]
    calls: dict[str, ToolCallPart] = {}
    answered = False  # the current round has a result: the next text or call starts the next round
    for event in events:
        if isinstance(event, TextDelta | ToolCallStarted) and answered:
            rounds.append(ToolRound())
            answered = False
        if isinstance(event, TextDelta):
            rounds[-1].text += event.text
        elif isinstance(event, ToolCallStarted):
            calls[event.call_id] = ToolCallPart(event.call_id, event.name, event.source)
            rounds[-1].calls.append(calls[event.call_id])
        elif (call := calls.get(getattr(event, "call_id", ""))) is not None:
            if isinstance(event, ToolArgumentsDelta):
                call.arguments += event.text
            elif isinstance(event, ToolCallReady):
                call.arguments, call.parsed, call.error = event.arguments, event.parsed, event.error
                call.ready = True
            elif isinstance(event, ToolResult):
                call.status, call.result, call.is_error = event.status, event.result, event.is_error
                answered = True
    return rounds
