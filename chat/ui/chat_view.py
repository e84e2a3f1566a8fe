"""The conversation on the page: its shown messages and the composer.

The view never adds a message by itself after an action: every change of its conversation (from this tab, another
tab, or the engine) arrives as an engine ``Change`` and ``sync()`` makes the page match the stored path, rebuilding
only from the first message that differs. It subscribes to its own conversation only, and reads the database in a
thread, one sync at a time (changes that arrive meanwhile are served by one more sync).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nicegui import background_tasks, ui

from ..engine import LOCAL, Account, Change, Engine
from ..store import Attachment, Conversation, Message, NotFound, Role, Status, Store, selected_path
from ..store.attachments import attachments_of
from .access import Guard, always_signed_in
from .attachments_view import AttachmentTray
from .compare_view import CompareChooser, ComparisonView, comparing_answers
from .composer import Composer, draft_prefix
from .local_time import LocalTime
from .message_view import MessageView, format_cost
from .notices import show_error
from .shortcuts import Shortcuts
from .streaming_message import StreamingMessage
from .tree_panel import TreePanel
from .welcome import PresetChooser, StartPage, welcome

log = logging.getLogger(__name__)

#: Messages built when a conversation opens, and added by each "Show earlier messages".
PAGE_SIZE = 40


class ChatView:
    """Messages and composer of one conversation (or of a new one, when ``conversation_id`` is None), and the page's
    keyboard shortcuts.

    Args:
        engine: sends, stops and watches answers.
        store: reads the shown path.
        conversation: the conversation (read by the page, which checked that it is ``account``'s; ``sync()`` shows
            its messages), or None on the start page (the first Send creates it).
        on_created: called with the new conversation's id and title once the first Send created it.
        account: who sends, stops and regenerates here (default ``LOCAL``, personal mode).
        guard: checks that the page's login still holds before a Send or Regenerate (``access.session_guard``).
        start: what the start page says about the model (default: the engine's default model, generic examples).
        tree: the page's tree panel, told the messages after every sync.
        focus: a message of the shown path to open the page at: built even when older than the newest
            ``PAGE_SIZE``, scrolled to and highlighted.
        list_models: async function returning the upstream's model ids, for the compare chooser (None: no chooser).
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        conversation: Conversation | None,
        *,
        on_created: Callable[[int, str], None] = lambda _id, _title: None,
        account: Account = LOCAL,
        guard: Guard = always_signed_in,
        start: StartPage | None = None,
        tree: TreePanel | None = None,
        focus: int | None = None,
        list_models: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.engine = engine
        self.tree = tree
        self.focus = focus  # a message to open the page at (scrolled to, highlighted), once
        self.account = account
        self.guard = guard
        self.store = store
        self.conversation: Conversation | None = None
        self.conversation_id: int | None = None
        self.on_created = on_created
        self._syncing = asyncio.Lock()
        self._stale = False  # a change arrived since the last sync started reading
        self.views: list[MessageView | ComparisonView] = []
        self.files: dict[int, list[Attachment]] = {}  # the shown conversation's user messages' files
        self.sending = False  # a Send is being stored
        self.welcome: ui.column | None = None
        #: the settings of the conversation the first Send creates (the start page's preset; see ``send``)
        self.new_conversation_settings: Callable[[], dict[str, Any]] = dict
        self.start: int | None = None  # index in the shown path of the first message on the page
        self.cost_label: ui.label | None = None
        with ui.column().classes("parley-chat") as self.column:
            self.earlier = (
                ui.button("Show earlier messages", icon="expand_less", on_click=self.show_earlier)
                .props("flat no-caps")
                .classes("self-center")
                .mark("show-earlier")
            )
            self.earlier.visible = False
            if conversation is None:

                async def tool_names() -> list[str]:
                    return [tool.name for tool in await engine.available_tools(account)]

                presets = PresetChooser(store, account, tool_names)
                self.new_conversation_settings = presets.settings
                self.welcome = welcome(start or StartPage(lambda: engine.default_model), self.send_example, presets)
                with self.welcome:  # the components of a message load with the page, not after the first Enter
                    StreamingMessage().classes("hidden")
                    LocalTime(datetime.now(UTC)).classes("hidden")
        self.chooser: CompareChooser | None = None

        def chooser() -> None:
            if list_models is not None:
                self.chooser = CompareChooser(list_models, account)

        self.composer = Composer(
            on_send=self.send, on_stop=self.stop, drafts=draft_prefix(account.owner), prompts=(store, account),
            files=lambda: AttachmentTray(engine, account), extra=chooser,
        )  # fmt: skip
        self.shortcuts = Shortcuts(composer=self.composer.input, on_stop=self.stop, on_regenerate=self.regenerate_last)
        ui.context.client.on_delete(self._detach_all)
        if conversation is not None:
            assert conversation.id is not None
            self.conversation = conversation
            self._attach(conversation.id)
        self._update_composer()

    def _attach(self, conversation_id: int) -> None:
        """Show and follow ``conversation_id`` from now on."""
        self.conversation_id = conversation_id
        stop_watching = self.engine.watch_conversation(conversation_id, self._on_change)
        self.column.client.on_delete(stop_watching)

    # -- composer --------------------------------------------------------------------------------

    def _update_composer(self) -> None:
        """Show Stop while this conversation answers (here, or on another replica), else Send."""
        elsewhere = any(view.message.status == Status.streaming and self.engine.generating_elsewhere(view.message)
                        for view in self.views[-1:])  # fmt: skip
        self.composer.set_busy(
            self.conversation_id is not None and (self.engine.busy(self.conversation_id) or elsewhere)
        )

    async def send(self) -> None:
        """Send the composer's text; on any refusal (busy, too long, over the messages-per-minute limit, a model not
        allowed) the reason is shown and the text stays in the composer."""
        content = self.composer.text
        if not content.strip():
            ui.notify("Type a message first.", type="warning")
            return
        if self.sending:  # a second Enter while the first is being stored (it carries this same text)
            return
        tray = self.composer.tray
        if tray is not None and tray.uploading:
            ui.notify("Wait for the files to finish uploading, then send.", type="warning")
            return
        self.sending = True
        try:
            if not await self.guard():  # logged out meanwhile: the tab goes to the login page
                return
            user, _ = await self._send_to(content)
        except Exception as error:
            show_error(error)
            return
        finally:
            self.sending = False
        self.composer.clear()
        if tray is not None:
            tray.clear()
        if self.conversation_id is None:  # the first Send created the conversation: this page becomes it
            if self.welcome is not None:
                self.welcome.delete()
                self.welcome = None
            self._attach(user.conversation_id)
            ui.navigate.history.replace(f"/c/{user.conversation_id}")  # no reload: the answer streams here
            await self.sync()
            assert self.conversation is not None
            self.on_created(user.conversation_id, self.conversation.title)

    async def _send_to(self, content: str) -> tuple[Message, Message]:
        """Send ``content`` (with the tray's files; to the chooser's models side by side when two or more are
        chosen) here, or to a new conversation with ``new_conversation_settings()``: one with ``tools`` is created
        first (so its first answer already has them), and deleted again when the send is refused."""
        settings = self.new_conversation_settings() if self.conversation_id is None else {}
        files = self.composer.tray.ids if self.composer.tray is not None else []
        models = self.chooser.chosen if self.chooser is not None else []
        conversation_id = self.conversation_id
        created = None
        if "tools" in settings or (models and settings):
            created = conversation_id = await self.engine.create_conversation(self.account, **settings)
            settings = {}
        try:
            if models:
                user, answers = await self.engine.compare(
                    conversation_id, content, models, account=self.account, attachments=files,
                    temperature=settings.get("temperature"),
                )  # fmt: skip
                return user, answers[0]
            return await self.engine.send(conversation_id, content, account=self.account, attachments=files,
                                          **settings)  # fmt: skip
        except Exception:
            if created is not None:
                await self.engine.delete_conversation(created, self.account)
            raise

    async def send_example(self, text: str) -> None:
        """Send one of the start page's example prompts, as if typed."""
        self.composer.set_text(text)
        with self.column:  # not in the clicked button's context: sending deletes the welcome, button included
            await self.send()

    async def stop(self) -> None:
        """Stop the answer streaming in this conversation."""
        if self.conversation_id is not None:
            await self.engine.cancel_conversation(self.conversation_id)
        self._update_composer()

    async def regenerate_last(self) -> None:
        """Regenerate the last answer shown, at its own temperature (the Alt+R shortcut)."""
        last = next((view for view in reversed(self.views) if view.message.role == Role.assistant), None)
        if last is None:
            ui.notify("There is no answer to regenerate yet.", type="warning")
            return
        await last.regenerate(last.message.temperature)

    # -- messages --------------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        # Called synchronously inside whichever tab or task made the change: act later, in this page's own context.
        if change.kind in {"message", "finished", "deleted"}:
            background_tasks.create(self._apply(change), name="chat-view-change")

    async def _apply(self, change: Change) -> None:
        if self.column.is_deleted:
            return
        with self.column:
            try:
                if change.kind == "deleted":
                    raise NotFound(f"conversation {change.conversation_id} not found")
                await self.sync()
            except NotFound:  # deleted here or in another tab: nothing left to show
                ui.navigate.to("/")

    def _read(self) -> tuple[Conversation, list[Message]]:
        """In a thread: the conversation and all its messages (and the files of its user messages, kept in
        ``files``)."""
        assert self.conversation_id is not None
        conversation = self.store.get_conversation(self.conversation_id, owner=self.account.owner)
        messages = self.store.messages(self.conversation_id)
        self.files = attachments_of(self.store, (m.id for m in messages if m.role == Role.user and m.id is not None))
        return conversation, messages

    async def sync(self) -> None:
        """Make the page show the stored path: keep the views that match, rebuild from the first that differs.

        Only the newest ``PAGE_SIZE`` messages are built when the page opens; "Show earlier messages" adds more.

        Raises:
            NotFound: the conversation is gone (or not the page's account's).
        """
        self._stale = True
        async with self._syncing:
            if not self._stale or self.column.is_deleted:  # a sync that started after this call has served it
                return
            self._stale = False
            self.conversation, messages = await asyncio.to_thread(self._read)
            if self.column.is_deleted:
                return
            path = selected_path(messages)
            if self.tree is not None:
                self.tree.show(messages, path)
            focus = next((index for index, m in enumerate(path) if m.id == self.focus), None)
            if self.start is None:
                self.start = max(0, len(path) - PAGE_SIZE)
                if focus is not None:
                    self.start = min(self.start, focus)
            self.start = min(self.start, len(path))
            shown = path[self.start :]
            siblings: dict[int | None, int] = {}
            for message in messages:
                siblings[message.parent_id] = siblings.get(message.parent_id, 0) + 1
            keep = 0
            while keep < min(len(self.views), len(shown)) and self.views[keep].shows(
                shown[keep], siblings[shown[keep].parent_id]
            ):
                keep += 1
            for view in self.views[keep:]:
                view.detach()
                view.delete()
            self.views = self.views[:keep]
            if len(shown) > keep and focus is None:
                self.scroll_to_bottom()
            self.views += self._build_views(shown[keep:], messages)
            if focus is not None:
                self.focus = None
                self.reveal(self.views[focus - self.start])
            self._update_earlier()
            self._update_composer()
            self._show_cost(messages)

    def _show_cost(self, messages: list[Message]) -> None:
        """The conversation's running cost (every answer and variant with a price) under its last message."""
        priced = [m for m in messages if m.cost is not None]
        if not priced:
            return
        text = "This conversation: " + format_cost(
            sum(m.cost or 0.0 for m in priced), estimated=any(m.cost_estimated for m in priced)
        )
        if self.cost_label is None or self.cost_label.is_deleted:
            with self.column:
                self.cost_label = ui.label(text).classes("text-xs parley-muted self-center").mark("conversation-cost")
        else:
            self.cost_label.set_text(text)
        self.cost_label.move(self.column)  # after the newest message

    async def show_earlier(self) -> None:
        """Add the ``PAGE_SIZE`` messages before the first one shown, above it."""
        assert self.conversation_id is not None and self.start is not None
        async with self._syncing:
            self.conversation, messages = await asyncio.to_thread(self._read)
            path = selected_path(messages)
            first = self.views[0].message_id if self.views else None
            end = next((i for i, m in enumerate(path) if m.id == first), len(path))
            self.start = max(0, end - PAGE_SIZE)
            views = self._build_views(path[self.start : end], messages)
            for index, view in enumerate(views):
                view.move(self.column, target_index=index + 1)  # after the "Show earlier messages" button
            self.views = views + self.views
            self._update_earlier()

    def _build_views(self, path: list[Message], messages: list[Message]) -> list[MessageView]:
        siblings: dict[int | None, list[Message]] = {}
        for message in messages:
            siblings.setdefault(message.parent_id, []).append(message)
        assert self.conversation is not None
        temperature = self.conversation.temperature
        views = []

        def build(message: Message, column: bool = False) -> MessageView:
            return MessageView(
                message,
                self.engine,
                siblings[message.parent_id],
                default_temperature=temperature,
                account=self.account,
                guard=self.guard,
                on_error=show_error,
                on_finished=self._update_composer,
                attachments=self.files.get(message.id or 0, ()),
                column=column,
            )

        with self.column:
            for message in path:
                answers = comparing_answers(message, siblings[message.parent_id])
                if answers is not None:
                    views.append(ComparisonView(answers, lambda answer: build(answer, column=True)))  # type: ignore[arg-type]
                else:
                    views.append(build(message))
        return views

    def _update_earlier(self) -> None:
        earlier = bool(self.start)
        if self.earlier.visible != earlier:
            self.earlier.set_visibility(earlier)

    def reveal(self, view: MessageView) -> None:
        """Scroll ``view``'s message into the middle of the window and highlight it for a moment."""
        view.classes("parley-highlight")
        self.column.client.run_javascript(
            f"setTimeout(() => document.getElementById('c{view.id}')?.scrollIntoView({{block: 'center'}}), 200)"
        )

    def scroll_to_bottom(self) -> None:
        """Show the newest message (after the browser has rendered the Markdown of the new ones)."""
        self.column.client.run_javascript(
            "setTimeout(() => window.scrollTo({top: document.scrollingElement.scrollHeight}), 200)"
        )

    def _detach_all(self) -> None:
        for view in self.views:
            view.detach()
