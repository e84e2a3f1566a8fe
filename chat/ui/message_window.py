"""The browser's side of a conversation's window of messages (see ``message_window.js`` and ``ChatView``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import ui
from nicegui.element import Element


class MessageWindow(Element, component="message_window.js"):
    """Watches the reader's scrolling over the messages ``ChatView`` has built (a window of the shown path): asks for
    the batch before them when the reader nears their top, the batch after them near their bottom, and the newest
    ones when the scroll-to-bottom button is clicked while they are not built. It keeps what the reader sees in place
    when messages are added or removed above it. Nothing to see: it renders nothing.

    Args:
        column: the element holding the messages (each a ``.parley-message`` or ``.parley-compare`` child).
        on_earlier: called when the reader nears the first built message and there are earlier ones.
        on_later: called when the reader nears the last built message and there are later ones.
        on_newest: called for the scroll-to-bottom button while the newest messages are not built.
    """

    def __init__(
        self,
        column: ui.element,
        *,
        on_earlier: Callable[[], Awaitable[None]],
        on_later: Callable[[], Awaitable[None]],
        on_newest: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__()
        self._props["column"] = f"c{column.id}"
        self._props["hasEarlier"] = False
        self._props["hasLater"] = False
        self._props["version"] = 0
        self._asked = False  # the browser asked for a batch and waits for the answer (set_edges)
        for name, handler in (("earlier", on_earlier), ("later", on_later), ("newest", on_newest)):
            self.on(name, self._asking(handler))

    def _asking(self, handler: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def asked() -> None:
            self._asked = True
            await handler()

        return asked

    def set_edges(self, *, has_earlier: bool, has_later: bool) -> None:
        """Say whether messages exist before and after the built ones; also tells the browser that the last request
        was served (it may ask again)."""
        if (self._props["hasEarlier"], self._props["hasLater"]) == (has_earlier, has_later) and not self._asked:
            return  # nothing new for the browser (a sync of a streaming answer's end, a send): no update to send
        self._asked = False
        self._props["hasEarlier"] = has_earlier
        self._props["hasLater"] = has_later
        self._props["version"] += 1
        self.update()
