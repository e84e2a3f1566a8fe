"""A chat message whose Markdown is streamed to and rendered in the browser.

NiceGUI's ``ui.markdown`` renders on the server and re-sends the whole HTML on every change, so streaming an answer
of n characters costs O(n²) bytes. ``StreamingMessage`` sends every delta once; the browser appends it to its own
buffer and renders the Markdown itself (markdown-it + highlight.js + DOMPurify, see ``streaming_message.js``).
"""

from __future__ import annotations

from pathlib import Path

from nicegui.element import Element

VENDOR = Path(__file__).parent / "static" / "vendor"


class StreamingMessage(
    Element,
    component="streaming_message.js",
    dependencies=["static/vendor/markdown-it.esm.min.mjs", "static/vendor/highlight.min.js"],
    default_classes="parley-message-body",
):
    """A chat message rendered as Markdown in the browser, fed one delta at a time.

    Per delta the server does O(1) work and sends only the delta (``append``).
    The growing text is never put into a prop while streaming; ``finish`` sends the final text once
    and the browser replaces what it has streamed with one full render of it.
    """

    def __init__(self, text: str = "", *, streaming: bool = False, phase: str = "") -> None:
        """Create a message.

        :param text: the text known now: a stored message, or the partial text of a live answer when a tab re-attaches
        :param streaming: whether the answer is still being generated
            (shows the thinking indicator while the text is empty, and a cursor after the text)
        :param phase: what the indicator says before the first delta: ``'queued'`` ("Queued — waiting for the
            model…"), ``'loading'`` ("Loading the model…"); anything else (``''``, ``'thinking'``) shows "Thinking…"
        """
        super().__init__()
        self._parts: list[str] = [text] if text else []
        self._props["text"] = text
        self._props["streaming"] = streaming
        self._props["phase"] = phase
        self.add_resource(VENDOR)  # stylesheets, loaded once per page by the component

    @property
    def text(self) -> str:
        """The whole text known server-side: the initial text plus all appended deltas."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def streaming(self) -> bool:
        """Whether the answer is still being generated."""
        return bool(self._props["streaming"])

    def append(self, delta: str) -> None:
        """Send one delta of a streaming answer to the browser (fire-and-forget) and keep it server-side.

        Deltas arriving after ``finish`` are ignored, here and in the browser: the final text is authoritative.

        :param delta: the text to append
        """
        if not delta or not self._props["streaming"]:
            return
        self._parts.append(delta)
        self.run_method("append", delta)

    def finish(self, text: str) -> None:
        """End the answer: the browser replaces the streamed text with one full render of ``text``.

        :param text: the final text of the answer
        """
        self._parts = [text] if text else []
        with self._props.suspend_updates():
            self._props["text"] = text
            self._props["streaming"] = False
        self.update()  # exactly one update, even if neither prop changed

    def set_phase(self, phase: str) -> None:
        """Change what the indicator says before the first delta, without a full update of the element.

        :param phase: ``'queued'``, ``'loading'``, ``'thinking'`` or ``''`` (see ``__init__``)
        """
        with self._props.suspend_updates():  # kept for later updates (e.g. a class change), not sent now
            self._props["phase"] = phase
        self.run_method("setPhase", phase)

    def _displayed_contents(self, *, only_visible: bool) -> list:
        return [self.text]

    def _render_markdown(self) -> str:
        return self.text
