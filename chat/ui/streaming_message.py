"""A chat message whose Markdown is streamed to and rendered in the browser.

NiceGUI's ``ui.markdown`` renders on the server and re-sends the whole HTML on every change, so streaming an answer
of n characters costs O(n²) bytes. ``StreamingMessage`` never sends the growing text through NiceGUI at all: the
browser opens the answer's own WebSocket (``chat/api/stream.py``), whose frames carry only the answer's text, appends
each piece to its buffer and renders the Markdown itself (markdown-it + highlight.js + DOMPurify), re-rendering only
the last, unfinished block while it streams.

The browser side is the Vue component ``streaming_message.js``, which wires three ES modules of one concern each:
``parley-answer-connection.js`` (the answer's stream: WebSocket, reconnecting, server-sent events as a fallback),
``parley-block-renderer.js`` (the incremental Markdown rendering) and ``parley-clipboard.js`` (copying). They are
the element's ``dependencies``: NiceGUI serves each one as a library and puts it into every page's import map under
its file name up to the first dot. NiceGUI does not check those names (of two libraries named alike, the import map
keeps the one registered last), so the ``parley-`` prefix keeps them apart from NiceGUI's own (``vue``, ``sass``,
``immutable``, ``dompurify``, ``widget``, ``nicegui-…``) and from the vendored ``markdown-it`` and ``highlight``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nicegui.element import Element

VENDOR = Path(__file__).parent / "static" / "vendor"


class StreamingMessage(
    Element,
    component="streaming_message.js",
    dependencies=[
        "parley-answer-connection.js",
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
        self, text: str = "", *, stream: str | None = None, phase: str = "", live_text: Callable[[], str] | None = None
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
        """
        super().__init__()
        self._live_text = live_text
        self._props["text"] = text
        self._props["streaming"] = stream is not None
        self._props["stream"] = stream or ""
        self._props["phase"] = phase
        self.add_resource(VENDOR)  # stylesheets, loaded once per page by the component

    @property
    def text(self) -> str:
        """The text the server knows: the stored text, or for a live answer the text so far (``live_text``)."""
        if self._props["streaming"] and self._live_text is not None:
            return self._live_text()
        return self._props["text"]

    def finished(self, text: str) -> None:
        """Record, server-side only, that the answer ended with ``text``; nothing is sent.

        The browser already has every character and has rendered it in full when the stream told it the answer
        ended; a later update of this element (if any) carries ``text`` and re-renders the same content.

        :param text: the final text of the answer
        """
        with self._props.suspend_updates():
            self._props["text"] = text
            self._props["streaming"] = False
            self._props["stream"] = ""

    def _displayed_contents(self, *, only_visible: bool) -> list:
        return [self.text]

    def _render_markdown(self) -> str:
        return self.text
