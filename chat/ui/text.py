"""``Text``: a piece of text in an HTML element of one's choice (``<span>``, ``<strong>``, ``<code>``, ``<kbd>``), for
sentences with inline markup that need neither Markdown rendering nor raw HTML."""

from __future__ import annotations

from nicegui.elements.mixins.text_element import TextElement


class Text(TextElement):
    """Text in a ``tag`` element (default ``<span>``); the text is escaped like any NiceGUI text.

    Args:
        text: the text.
        tag: the element's tag name.
    """

    def __init__(self, text: str, tag: str = "span") -> None:
        super().__init__(tag=tag, text=text)
