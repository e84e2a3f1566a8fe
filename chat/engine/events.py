"""An answer as a numbered log of typed events, the one form every stream of an answer is served from.

**Sequence numbers are positions.** Every event carries ``seq``, the answer's position once it has happened. Content
events move the position by their size: a ``TextDelta`` by its length in characters (code points, Python's ``len``),
and the content events of later features (reasoning deltas, tool calls, tool results) will move it by sizes of their
own. Status events (``PhaseChanged``, ``UsageReported``, ``Finished``) do not move it: they carry the position they
happened at. So for a text answer ``seq`` is the number of characters a client has, as the streams' offsets always
were.

**Resuming.** A client that has everything up to ``seq`` N asks for the events *after* N: every content event that
ends after N (the one that straddles N cut at N), then the answer's current status. A stored answer, long after the
process that streamed it is gone, rebuilds the same numbering from its stored content alone (``replay``), so a stream
resumes from a live answer or a stored one with nothing lost or doubled. In an external log (a Redis Stream per
answer), entry ids ``<seq>-<k>`` keep these numbers ordered and unique.

**The stored message is what the log adds up to**: its content is the concatenation of the text deltas; its status,
``finish_reason`` and usage are those of ``Finished``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import ClassVar

from ..store import Message


class Phase(StrEnum):
    """Where a live answer is, before and while it streams."""

    loading = "loading"  # the upstream (embedded model) is starting
    queued = "queued"  # another answer holds the upstream
    retrying = "retrying"  # the upstream was busy or unreachable; waiting to send the request again
    thinking = "thinking"  # request sent, no delta yet
    streaming = "streaming"  # deltas arriving


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text of the answer (a content event: it moves the position by ``len(text)``).

    Attributes:
        text: the text, never empty in a log.
        seq: the position after it.
    """

    text: str
    seq: int = 0
    kind: ClassVar[str] = "text_delta"

    @property
    def size(self) -> int:
        """How far it moves the position: its length in characters."""
        return len(self.text)

    def after(self, position: int) -> TextDelta:
        """The part of this delta after ``position`` (which lies inside it)."""
        return TextDelta(self.text[len(self.text) - (self.seq - position) :], self.seq)


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


#: The events that move the position (today: text; later: reasoning, tool calls and results).
ContentEvent = TextDelta
Event = TextDelta | PhaseChanged | UsageReported | Finished


def is_content(event: Event) -> bool:
    """True for an event that moves the position (``ContentEvent``)."""
    return isinstance(event, TextDelta)


def content_of(message: Message) -> list[ContentEvent]:
    """The content events a stored answer is made of, numbered from 0: today its text as one delta (none when empty).
    Later parts (reasoning, tool calls) will be numbered after one another the same way."""
    return [TextDelta(message.content, len(message.content))] if message.content else []


def after(events: list[ContentEvent], position: int) -> list[ContentEvent]:
    """The content events of ``events`` (numbered, in order) that end after ``position``, the first cut at it;
    consecutive text deltas are joined into one."""
    kept: list[ContentEvent] = []
    for event in events:
        if event.seq <= position:
            continue
        if event.seq - event.size < position:
            event = event.after(position)
        if kept and isinstance(kept[-1], TextDelta) and isinstance(event, TextDelta):
            kept[-1] = TextDelta(kept[-1].text + event.text, event.seq)
        else:
            kept.append(event)
    return kept


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
