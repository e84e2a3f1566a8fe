"""A chat message whose Markdown is streamed to and rendered in the browser.

NiceGUI's ``ui.markdown`` renders on the server and re-sends the whole HTML on every change, so streaming an answer
of n characters costs O(n²) bytes. ``StreamingMessage`` never sends the growing text through NiceGUI at all: the
browser opens the answer's own WebSocket (``chat/api/stream.py``), whose frames carry only the answer's text, appends
each piece to its buffer and renders the Markdown itself (markdown-it + highlight.js + DOMPurify), re-rendering only
the last, unfinished block while it streams.

An answer with more than text (reasoning, tool calls, notices: ``chat/engine/events.py``) also gets its content events
(prop ``events``, their ``to_json`` list); the browser shows them as ordered segments: text, a "Thinking" block, tool
call rows with status chips, arguments and plain-text results, approval cards, notices. A plain answer sends no
``events`` prop at all, so it costs what it always did. Clicking Approve / Deny / Always allow on an approval card
emits the element's ``decide`` event (``on_decide``).

The browser side is the Vue component ``streaming_message.js``, which wires four ES modules of one concern each:
``parley-answer-connection.js`` (the answer's stream: WebSocket, reconnecting, server-sent events as a fallback),
``parley-answer-parts.js`` (the answer's segments), ``parley-block-renderer.js`` (the incremental Markdown rendering)
and ``parley-clipboard.js`` (copying). They are
the element's ``dependencies``: NiceGUI serves each one as a library and puts it into every page's import map under
its file name up to the first dot. NiceGUI does not check those names (of two libraries named alike, the import map
keeps the one registered last), so the ``parley-`` prefix keeps them apart from NiceGUI's own (``vue``, ``sass``,
``immutable``, ``dompurify``, ``widget``, ``nicegui-…``) and from the vendored ``markdown-it`` and ``highlight``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nicegui.element import Element
from nicegui.events import GenericEventArguments, Handler

from ..engine.events import ContentEvent, Part, ToolStatus, from_json, parts

#: What a tool call's status chip says (the same words as ``parley-answer-parts.js``).
STATUS_LABELS = {
    ToolStatus.streaming_arguments: "streaming arguments…",
    ToolStatus.awaiting_approval: "waiting for approval",
    ToolStatus.running: "running…",
    ToolStatus.succeeded: "done",
    ToolStatus.failed: "failed",
    ToolStatus.denied: "denied",
    ToolStatus.cancelled: "cancelled",
    ToolStatus.expired: "expired",
    ToolStatus.sent_to_client: "run by the client",
}


def source_label(source: str) -> str:
    """Where a tool comes from, in words: ``"built-in"``, ``"client tool"``, ``"<server> (MCP server)"``."""
    return {"builtin": "built-in", "client": "client tool", "": "unknown tool"}.get(source, f"{source} (MCP server)")


def thought_for(seconds: float) -> str:
    """A folded reasoning block's summary: ``"Thought for 12 s"``, ``"Thought for a moment"`` under 1 s."""
    return "Thought for a moment" if seconds < 1 else f"Thought for {round(seconds)} s"


def step_lines(answer_parts: list[Part]) -> list[str]:
    """One line per step of an answer that is not its text (what the page's summaries say), in order: a reasoning
    block (``"Thinking…"`` / ``"Thought for 3 s"``), each tool call (``"calculator · built-in · done · 0.4 s"``), each
    notice."""
    lines = []
    for part in answer_parts:
        if part.kind == "reasoning":
            lines.append("Thinking…" if part.seconds is None else thought_for(part.seconds))
        elif part.kind == "notice":
            lines.append(part.text)
        elif part.kind == "tool_calls":
            for call in part.calls:
                line = [call.name, source_label(call.source), STATUS_LABELS.get(call.status, str(call.status))]
                if call.duration is not None:
                    line.append(f"{call.duration:.1f} s" if call.duration < 10 else f"{round(call.duration)} s")
                lines.append(" · ".join(line))
    return lines


VENDOR = Path(__file__).parent / "static" / "vendor"


class StreamingMessage(
    Element,
    component="streaming_message.js",
    dependencies=[
        "parley-answer-connection.js",
        "parley-answer-parts.js",
        "parley-block-renderer.js",
        "parley-clipboard.js",
        "static/vendor/markdown-it.esm.min.mjs",
        "static/vendor/highlight.min.js",
    ],
    default_classes="parley-message-body",
):
    """A chat message rendered as Markdown in the browser; a live one follows its answer's stream by itself.

    Per delta the server sends one WebSocket text frame holding the delta and nothing else; this element sends
    nothing. When the stream ends the browser replaces the streamed render with one full render of the same text.
    """

    def __init__(
        self,
        text: str = "",
        *,
        stream: str | None = None,
        phase: str = "",
        live_text: Callable[[], str] | None = None,
        events: list[dict[str, Any]] | None = None,
        live_events: Callable[[], list[ContentEvent]] | None = None,
        spare: str = "",
    ) -> None:
        """Create a message.

        :param text: the text known now: a stored message, or the partial text of a live answer when a tab re-attaches
        :param stream: for a live answer, the URL path of its stream (``chat.api.stream_path``); the browser follows
            it from ``len(text)`` characters on. ``None`` for a finished message.
        :param phase: what the indicator says before the first delta: ``'queued'`` ("Queued — waiting for the
            model…"), ``'loading'`` ("Loading the model…"), ``'retrying'`` ("The model server is busy —
            retrying…"); anything else (``''``, ``'thinking'``) shows "Thinking…"
        :param live_text: returns the live answer's text so far; only read when the server is asked what the message
            shows (NiceGUI's simulated user in tests), never per delta
        :param events: the answer's content events so far as ``to_json`` dicts, in log order, when it has more than
            text (a stored message's ``Message.events``, or a live answer's content so far); None or empty: plain text,
            and no ``events`` prop is sent. The browser then resumes a live answer from the last event's ``seq``.
        :param live_events: returns a live answer's content events so far; like ``live_text``, only read when the
            server is asked what the message shows
        :param spare: for the page's next answer (``next_answer.NextAnswer``), the URL path and query of its
            next-answer socket (``chat.api.stream.next_answer_path``): the element is hidden, opens that socket and
            waits; once the server binds it to an answer it shows the question and follows that answer. A new value
            closes the socket, hides the element and opens a socket for the new value.
        """
        super().__init__()
        self._live_text = live_text
        self._live_events = live_events
        self._props["text"] = text
        if events:
            self._props["events"] = events
        self._props["streaming"] = stream is not None
        self._props["stream"] = stream or ""
        self._props["phase"] = phase
        if spare:
            self._props["spare"] = spare
        self.add_resource(VENDOR)  # stylesheets, loaded once per page by the component

    @property
    def text(self) -> str:
        """The text the server knows: the stored text, or for a live answer the text so far (``live_text``)."""
        if self._props["streaming"] and self._live_text is not None:
            return self._live_text()
        return self._props["text"]

    @property
    def events(self) -> list[ContentEvent]:
        """The content events the server knows: a live answer's so far (``live_events``), else the ``events`` given
        (empty for a plain answer)."""
        if self._props["streaming"] and self._live_events is not None:
            return self._live_events()
        return [from_json(data) for data in self._props.get("events") or ()]

    def on_decide(self, handler: Handler[GenericEventArguments]) -> StreamingMessage:
        """Call ``handler`` when the reader decides on a tool call's approval card; its ``args`` are
        ``{"call_id": str, "approve": bool, "always": bool}`` (from the browser: untrusted, check them)."""
        self.on("decide", handler)
        return self

    def decision_failed(self, call_id: str) -> None:
        """Make the approval card of ``call_id`` usable again (its buttons are disabled once clicked)."""
        self.run_method("decisionFailed", call_id)

    def finished(self, text: str, events: list[dict[str, Any]] | None = None) -> None:
        """Record, server-side only, that the answer ended with ``text`` (and ``events``); nothing is sent.

        The browser already has every character and step and has rendered them in full when the stream told it the
        answer ended; a later update of this element (if any) carries them and re-renders the same content.

        :param text: the final text of the answer
        :param events: its stored content events (``Message.events``), None for a plain answer
        """
        with self._props.suspend_updates():
            self._props["text"] = text
            if events:
                self._props["events"] = events
            else:
                self._props.pop("events", None)
            self._props["streaming"] = False
            self._props["stream"] = ""

    def _displayed_contents(self, *, only_visible: bool) -> list:
        if not self._props.get("events") and not (self._props["streaming"] and self._live_events is not None):
            return [self.text]
        return [self.text, *step_lines(parts(self.events))]

    def _render_markdown(self) -> str:
        return self.text
