"""The Copy button under an answer (see ``copy_message.js``)."""

from __future__ import annotations

from nicegui.element import Element

from .streaming_message import StreamingMessage


class CopyMessage(Element, component="copy_message.js"):
    """Copies the Markdown of ``message`` to the clipboard, in the browser (no server round trip).

    Args:
        message: the message whose text is copied.
    """

    def __init__(self, message: StreamingMessage) -> None:
        super().__init__()
        self._props["message"] = message.id
