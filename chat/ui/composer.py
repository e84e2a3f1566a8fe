"""The message box at the bottom of a conversation: the text, the Send/Stop button, the draft kept in the browser
and the "scroll to the newest message" button above it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import ui
from nicegui.element import Element
from nicegui.events import GenericEventArguments, ValueChangeEventArguments

from ..engine import Account
from ..store import Store
from .attachments_view import AttachmentTray
from .prompt_library import PromptLibrary

#: The ``localStorage`` key prefix of drafts. A draft's key is ``parley-draft:<user>:<conversation>``: the user id
#: (``local`` in personal mode), so that two people sharing a browser profile in team mode do not see each other's
#: drafts, and the conversation id of the page's address (``/c/<id>``), or ``new`` on the start page.
DRAFT_PREFIX = "parley-draft:"


def draft_prefix(owner: int | None) -> str:
    """The start of the draft keys of user ``owner`` (None: personal mode): ``parley-draft:<user>:``."""
    return f"{DRAFT_PREFIX}{owner if owner is not None else 'local'}:"


class ComposerDraft(Element, component="composer_draft.js"):
    """Keeps the message box's unsent text in the browser's ``localStorage`` while it is typed, under the key of the
    conversation in the page's address (see ``DRAFT_PREFIX``), and puts it back when the page opens with an empty box
    (after a reload, or on coming back to the conversation). A sent message clears it; once the start page's first
    message has made a conversation (its address replaces ``/``), what is typed next is kept as that conversation's.
    Entirely in the browser, except that a restored draft reaches the server as typing would.

    Args:
        textarea: the message box.
        prefix: the user's draft key prefix (``draft_prefix``).
    """

    def __init__(self, textarea: ui.textarea, prefix: str) -> None:
        super().__init__()
        self._props["target"] = textarea.id
        self._props["prefix"] = prefix


class ScrollToBottom(Element, component="scroll_to_bottom.js"):
    """A round button above the message box, shown while the page is scrolled up from its newest message (e.g. to read
    an earlier part of an answer that is still streaming); a click scrolls to the bottom. In the browser only."""


class SendButton(Element, component="send_button.js"):
    """The message box's one button: Send, or Stop while an answer on the page is live. The browser switches it by
    itself (``send_button.js``), so the server sends nothing when an answer starts or ends; the server keeps its own
    ``busy`` flag (and the ``send``/``stop`` test markers) and decides what a click does.

    Args:
        on_click: called for a click (Send or Stop).
    """

    def __init__(self, on_click: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.on("click", on_click)  # the component's own "click" event (NiceGUI's simulated user clicks it too)


class Composer:
    """The message box and its one button, Send or Stop, in the page's footer.

    Enter sends, Shift+Enter adds a line. The button is Stop while the conversation answers. With ``prompts``,
    typing ``/`` opens the saved prompts' menu (``PromptLibrary``): while it is open, Up/Down/Enter/Esc work in it.

    Args:
        on_send: called for Enter and for Send.
        on_stop: called for Stop.
        drafts: the user's draft key prefix (``draft_prefix``).
        prompts: ``(store, account)`` of the ``/`` library, or None for none.
        files: the tray of files to send (``AttachmentTray``: its row above the box, its paperclip left of it), made
            in the footer by this callable; None: no files.
        extra: builds more buttons left of the box (the compare chooser), or None.
    """

    def __init__(
        self,
        *,
        on_send: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
        drafts: str,
        prompts: tuple[Store, Account] | None = None,
        files: Callable[[], AttachmentTray] | None = None,
        extra: Callable[[], object] | None = None,
    ) -> None:
        self.on_send = on_send
        self.on_stop = on_stop
        self.busy = False
        self.library: PromptLibrary | None = None
        self.tray: AttachmentTray | None = None
        with ui.footer(wrap=False).classes("parley-composer-bar"):
            ScrollToBottom()
            if prompts is not None:
                self.library = PromptLibrary(*prompts, get_text=lambda: self.text, set_text=self.set_text)
            if files is not None:
                self.tray = files()
            with ui.row().classes("w-full max-w-3xl mx-auto items-end gap-1 no-wrap"):
                paperclip = self.tray.make_button() if self.tray is not None else None
                if extra is not None:
                    extra()
                self.input = (
                    ui.textarea(placeholder="Message Parley…")
                    .props('autogrow outlined dense autofocus aria-label="Message"')
                    .classes("flex-grow parley-composer-input")
                    .mark("composer")
                )
                # Enter carries the text typed: before the page's socket is connected, NiceGUI sends each queued event
                # on its own timer, so the Enter may reach the server before the last keystrokes' value update
                self.input.on("keydown.enter.exact.prevent", self._enter, js_handler="(e) => emit(e.target.value)")
                self.button = SendButton(self._act).mark("send")
            if paperclip is not None:
                paperclip.watch(self.input)
            ComposerDraft(self.input, drafts)
        if self.library is not None:
            self._wire_library(self.library)

    def _wire_library(self, library: PromptLibrary) -> None:
        """The ``/`` menu follows the box's value; Up/Down/Esc go to it while it is open (the browser checks that the
        menu is shown before taking the key from the box)."""
        self.input.on_value_change(self._value_changed)
        is_open = f"document.getElementById('c{library.menu.id}')?.offsetParent"
        for key, step in (("up", -1), ("down", 1)):
            self.input.on(
                f"keydown.{key}", lambda _e, step=step: library.move(step),
                js_handler=f"(e) => {{ if ({is_open}) {{ e.preventDefault(); emit(); }} }}",
            )  # fmt: skip
        self.input.on("keydown.esc", lambda _e: library.close(), js_handler=f"(e) => {{ if ({is_open}) emit(); }}")

    async def _value_changed(self, event: ValueChangeEventArguments) -> None:
        if self.library is not None:
            await self.library.on_text(event.value or "")

    @property
    def text(self) -> str:
        """What the box holds now."""
        return self.input.value or ""

    def set_text(self, text: str) -> None:
        """Put ``text`` in the box (an example prompt)."""
        self.input.value = text

    def set_busy(self, busy: bool) -> None:
        """Record whether the conversation answers: a click then stops it, else sends. Nothing is sent to the browser,
        which shows Stop or Send by itself (``SendButton``)."""
        self.busy = busy
        self.button.mark("stop" if busy else "send")

    async def _enter(self, event: GenericEventArguments) -> None:
        if isinstance(event.args, str):
            self._set_silently(event.args)
        if self.library is not None and self.library.is_open:
            await self.library.choose_highlighted()
            return
        await self.on_send()

    def _set_silently(self, text: str) -> None:
        """Set the box's value on the server only (the browser has it already)."""
        self.input._send_update_on_value_change = False  # what NiceGUI itself does for a value coming from the browser
        try:
            self.input.value = text
        finally:
            self.input._send_update_on_value_change = True

    async def _act(self) -> None:
        await (self.on_stop() if self.busy else self.on_send())

    def clear(self) -> None:
        """Empty the box (and with it the draft): server-side silently, in the browser by one small call (~80 bytes)
        instead of a full update of the element, which would re-send all of its props (~3 KB)."""
        self._set_silently("")
        self.input.client.run_javascript(f"getElement({self.input.id}).inputValue = ''")
