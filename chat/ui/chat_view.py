"""The conversation on the page: its shown messages and the composer.

The view never adds a message by itself after an action: every change (from this tab, another
tab, or the engine) arrives as an engine ``Change`` and ``sync()`` makes the page match the
stored path, rebuilding only from the first message that differs.
"""

from __future__ import annotations

import logging

from nicegui import background_tasks, ui

from ..engine import Change, ConversationBusy, EmptyMessage, Engine
from ..store import Message, NotFound, Store, selected_path
from .message_view import MessageView

log = logging.getLogger(__name__)


def show_error(error: Exception) -> None:
    """Tell the user, in a toast, why an action did not happen."""
    if isinstance(error, ConversationBusy | EmptyMessage | NotFound | ValueError):
        ui.notify(str(error), type="warning")
    else:
        log.exception("action failed", exc_info=error)
        ui.notify(f"Something went wrong: {error}", type="negative")


class ChatView:
    """Messages and composer of one conversation (or of a new one, when ``conversation_id`` is None).

    Args:
        engine: sends, stops and watches answers.
        store: reads the shown path.
        conversation_id: the conversation, or None on the start page (the first Send creates it).
    """

    def __init__(self, engine: Engine, store: Store, conversation_id: int | None) -> None:
        self.engine = engine
        self.store = store
        self.conversation_id = conversation_id
        self.views: list[MessageView] = []
        with ui.column().classes("w-full max-w-3xl mx-auto gap-4 pb-40 px-2") as self.column:
            if conversation_id is None:
                with ui.column().classes("w-full items-center mt-24 gap-2").mark("welcome"):
                    ui.label("Parley").classes("text-3xl font-semibold text-grey-8")
                    ui.label("Ask anything. Answers stream as they are written.").classes("text-grey-6")
        self._build_composer()
        if conversation_id is not None:
            self.sync()
            stop_watching = engine.watch(self._on_change)
            ui.context.client.on_delete(stop_watching)
            ui.context.client.on_delete(self._detach_all)
        self._update_composer()

    # -- composer --------------------------------------------------------------------------------

    def _build_composer(self) -> None:
        with ui.footer().classes("bg-white/90 backdrop-blur py-3"):
            with ui.row().classes("w-full max-w-3xl mx-auto items-end gap-2 no-wrap px-2"):
                self.input = (
                    ui.textarea(placeholder="Message Parley…  (Enter to send, Shift+Enter for a new line)")
                    .props("autogrow outlined dense autofocus input-class=max-h-60")
                    .classes("flex-grow")
                    .mark("composer")
                )
                self.input.on("keydown.enter.exact.prevent", self.send)
                self.send_button = ui.button(icon="send", on_click=self.send).props("round unelevated").mark("send")
                self.stop_button = (
                    ui.button(icon="stop", on_click=self.stop).props("round unelevated color=red").mark("stop")
                )

    def _update_composer(self) -> None:
        busy = self.conversation_id is not None and self.engine.busy(self.conversation_id)
        self.send_button.set_visibility(not busy)
        self.stop_button.set_visibility(busy)

    async def send(self) -> None:
        """Send the composer's text; on any refusal the text stays in the composer."""
        content = self.input.value or ""
        if not content.strip():
            ui.notify("Type a message first.", type="warning")
            return
        try:
            new = self.conversation_id is None
            conversation_id = self.conversation_id or self.engine.create_conversation()
            await self.engine.send(conversation_id, content)
        except Exception as error:
            show_error(error)
            return
        self.input.set_value("")
        if new:
            ui.navigate.to(f"/c/{conversation_id}")

    async def stop(self) -> None:
        """Stop the answer streaming in this conversation."""
        if self.conversation_id is not None:
            await self.engine.cancel_conversation(self.conversation_id)
        self._update_composer()

    # -- messages --------------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        # Called synchronously inside whichever tab or task made the change: act later, in this page's own context.
        if change.conversation_id == self.conversation_id and change.kind in {"message", "finished", "deleted"}:
            background_tasks.create(self._apply(change), name="chat-view-change")

    async def _apply(self, change: Change) -> None:
        if self.column.is_deleted:
            return
        with self.column:
            try:
                if change.kind == "deleted":
                    raise NotFound(change.conversation_id)
                self.sync()
            except NotFound:  # deleted here or in another tab: nothing left to show
                ui.navigate.to("/")

    def sync(self) -> None:
        """Make the page show the stored path: keep the views that match, rebuild from the first that differs."""
        assert self.conversation_id is not None
        messages = self.store.messages(self.conversation_id)
        path = selected_path(messages)
        keep = 0
        while keep < min(len(self.views), len(path)) and self.views[keep].shows(path[keep]):
            keep += 1
        for view in self.views[keep:]:
            view.detach()
            view.delete()
        self.views = self.views[:keep]
        siblings: dict[int | None, list[Message]] = {}
        for message in messages:
            siblings.setdefault(message.parent_id, []).append(message)
        temperature = self.store.get_conversation(self.conversation_id).temperature
        if len(path) > keep:
            self.scroll_to_bottom()
        with self.column:
            for message in path[keep:]:
                view = MessageView(
                    message,
                    self.engine,
                    siblings[message.parent_id],
                    default_temperature=temperature,
                    on_error=show_error,
                    on_finished=self._update_composer,
                )
                self.views.append(view)
        self._update_composer()

    def scroll_to_bottom(self) -> None:
        """Show the newest message (after the browser has rendered the Markdown of the new ones)."""
        self.column.client.run_javascript(
            "setTimeout(() => window.scrollTo({top: document.scrollingElement.scrollHeight}), 200)"
        )

    def _detach_all(self) -> None:
        for view in self.views:
            view.detach()
