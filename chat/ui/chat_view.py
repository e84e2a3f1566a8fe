"""The conversation on the page: its shown messages and the composer.

Every change of its conversation (from this tab, another tab, or the engine) arrives as an engine ``Change`` and
``sync()`` makes the page match the stored path, rebuilding only from the first message that differs. It subscribes to
its own conversation only, and reads the database in a thread, one sync at a time (changes that arrive meanwhile are
served by one more sync). The one thing the view adds by itself is this page's own Send: the new question and its live
answer are built from what ``Engine.send`` returned, before any read (the sync that follows finds them in place).

A conversation may have 10,000 messages. The page holds the light part of each (``MessageNode``: the tree, statuses,
costs, about 100 bytes each) and builds only a window of the shown path, ``BATCH`` messages at a time and at most
``WINDOW``, reading just those messages whole. It opens at the newest (fewer than ``BATCH`` when they are long:
``OPEN_TEXT``); as the reader scrolls near the window's top or bottom (``MessageWindow`` in the browser), the next
batch is built there and the farthest one removed, and the browser keeps the reader's place. "Show earlier messages"
at the top and "Jump to newest" at the bottom do the same by keyboard. ``show_message`` rebuilds the window around
any message (a link, a search hit).
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
from ..store.store import MessageNode
from .access import Guard, always_signed_in
from .attachments_view import AttachmentTray
from .compare_view import CompareChooser, ComparisonView, comparing_answers
from .composer import Composer, draft_prefix
from .copy_message import CopyMessage
from .local_time import LocalTime
from .message_view import MessageView, format_cost
from .message_window import MessageWindow
from .next_answer import NextAnswer
from .notices import show_error
from .search_palette import ConversationSearch
from .shortcuts import Shortcuts
from .streaming_message import StreamingMessage
from .tree_panel import LABEL_READ, TreePanel
from .welcome import PresetChooser, StartPage, welcome

log = logging.getLogger(__name__)

#: How long (seconds) the page's own Send waits for its answer's first token before building the message views, when
#: the page's next answer already shows the exchange (``next_answer.py``): the views' work would delay that token.
FIRST_CONTENT_WAIT = 0.15

#: Messages of the shown path built at a time: when a conversation opens (its newest), and at either end of the window.
BATCH = 40
#: The older name of ``BATCH``: the messages built when a conversation opens and by each "Show earlier messages".
PAGE_SIZE = BATCH
#: Most messages of the shown path built at once; beyond it, those farthest from the reader are removed.
WINDOW = 3 * BATCH
#: Characters of text that the window opened at the newest message holds at most, from its newest message back (and
#: at least its newest exchange): long messages open fewer than ``BATCH`` views, several screens either way. Fewer
#: views are less for the server to build and the browser to mount before the newest message shows; the browser asks
#: for the ones above when the reader scrolls near them.
OPEN_TEXT = 16_000


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
        focus: a message of the shown path to open the page at: the window is built around it, and it is scrolled
            to and highlighted.
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
        #: the built messages: ``path[start : start + len(views)]`` (a comparison is one view, of its shown answer)
        self.views: list[MessageView | ComparisonView] = []
        self.nodes: list[MessageNode] = []  # every message of the conversation, light, as the last sync read them
        self.path: list[MessageNode] = []  # the shown ones
        self.siblings: dict[int | None, list[MessageNode]] = {}  # parent id -> its children, oldest first
        self.at_end = True  # the window reaches the newest message (new ones are built as they come)
        self._to_newest = False  # the next sync builds the window at the newest message
        self._edits = 0  # views built outside a sync (the page's own Send): a sync that read before is stale
        self.sending = False  # a Send is being stored
        self.welcome: ui.column | None = None
        #: the settings of the conversation the first Send creates (the start page's preset; see ``send``)
        self.new_conversation_settings: Callable[[], dict[str, Any]] = dict
        self.start: int | None = None  # index in the shown path of the first message on the page
        self.cost_label: ui.label | None = None
        with ui.column().classes("parley-chat").mark("chat-column") as self.column:
            self.earlier = (
                ui.button("Show earlier messages", icon="expand_less", on_click=self.show_earlier)
                .props("flat no-caps")
                .classes("self-center")
                .mark("show-earlier")
            )
            self.earlier.visible = False
            self.newest = (
                ui.button("Jump to newest", icon="arrow_downward", on_click=self.show_newest)
                .props("flat no-caps")
                .classes("self-center")
                .mark("jump-newest")
            )
            self.newest.visible = False
            if conversation is None:

                async def tool_names() -> list[str]:
                    return [tool.name for tool in await engine.available_tools(account)]

                presets = PresetChooser(store, account, tool_names)
                self.new_conversation_settings = presets.settings
                self.welcome = welcome(start or StartPage(lambda: engine.default_model), self.send_example, presets)
                with self.welcome:  # the components of an exchange load with the page, not after the first Enter
                    CopyMessage(StreamingMessage().classes("hidden")).classes("hidden")  # (it waited for them)
                    LocalTime(datetime.now(UTC)).classes("hidden")
                    ui.link().classes("hidden")  # the drawer's row of the new conversation
            self.next_answer = NextAnswer()  # kept last (``_edges``)
        self.window = MessageWindow(
            self.column, on_earlier=self.show_earlier, on_later=self.show_later, on_newest=self.show_newest
        ).mark("message-window")
        self.search = ConversationSearch(store, lambda: self.conversation_id, self.show_message, account=account)
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
        newest: Message | MessageNode | None = self.path[-1] if self.path else None
        if self.views and self.at_end:
            newest = self.views[-1].message  # updated by the view when its answer ends
        elsewhere = (
            newest is not None
            and newest.status == Status.streaming
            and self.engine.generating_elsewhere(
                newest  # type: ignore[arg-type]
            )
        )
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
        cleared = False
        try:
            if not await self.guard():  # logged out meanwhile: the tab goes to the login page
                return
            files = tray.ids if tray is not None else []
            existing = self.conversation_id is not None
            user, answers = await self._send_to(content)
            if (
                not files
                and len(answers) == 1
                and (not existing or (self.at_end and self.start is not None))
                and self.next_answer.bind(user, answers[0])
            ):  # the page shows the question and the answer now: its own work waits for the first token
                self.composer.clear()
                cleared = True
                await self.engine.wait_for_first_content(answers[0].id or 0, FIRST_CONTENT_WAIT, self.account)
            if existing and not files:  # at once, no read first: the answer's stream opens now (time to first token)
                self._show_sent(user, answers)
        except Exception as error:
            show_error(error)
            return
        finally:
            self.sending = False
        if not cleared:
            self.composer.clear()
        if tray is not None:
            tray.clear()
        if self.conversation_id is None:  # the first Send created the conversation: this page becomes it
            if self.welcome is not None:
                self.welcome.delete()
                self.welcome = None
            self._attach(user.conversation_id)
            ui.navigate.history.replace(f"/c/{user.conversation_id}")  # no reload: the answer streams here
            if not files:  # shown at once, as in a conversation that exists: the sync below finds it in place
                self.conversation = await asyncio.to_thread(
                    self.store.get_conversation, user.conversation_id, owner=self.account.owner
                )
                self.start, self.at_end = 0, True
                self._show_sent(user, answers, new=True)
            await self.sync()
            assert self.conversation is not None
            self.on_created(user.conversation_id, self.conversation.title)

    async def _send_to(self, content: str) -> tuple[Message, list[Message]]:
        """Send ``content`` (with the tray's files; to the chooser's models side by side when two or more are
        chosen) here, or to a new conversation with ``new_conversation_settings()``: one with ``tools`` is created
        first (so its first answer already has them), and deleted again when the send is refused. Returns the stored
        user message and its answers (one, or the comparison's)."""
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
                return user, answers
            user, answer = await self.engine.send(conversation_id, content, account=self.account, attachments=files,
                                                  **settings)  # fmt: skip
            return user, [answer]
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
        if not self.at_end:  # the newest answer is not built: show it first
            await self.show_newest()
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

    def _read_nodes(self) -> tuple[Conversation, list[MessageNode]]:
        """In a thread: the conversation and the light part of all its messages."""
        assert self.conversation_id is not None
        conversation = self.store.get_conversation(self.conversation_id, owner=self.account.owner)
        return conversation, self.store.message_nodes(self.conversation_id)

    def _read_rows(self, ids: list[int]) -> tuple[dict[int, Message], dict[int, list[Attachment]]]:
        """In a thread: the messages ``ids`` whole, and the files of the user messages among them."""
        assert self.conversation_id is not None
        rows = self.store.messages_by_id(self.conversation_id, ids)
        return rows, attachments_of(self.store, (key for key, m in rows.items() if m.role == Role.user))

    def _read_texts(self, ids: list[int] | None) -> dict[int, str]:
        """In a thread (the tree panel's): the first characters of the messages ``ids`` (None: of all)."""
        assert self.conversation_id is not None
        return self.store.message_labels(self.conversation_id, LABEL_READ, ids)

    def _wanted(self, nodes: list[MessageNode]) -> list[int]:
        """The ids of the messages that showing ``nodes`` builds: each, or every answer of its comparison."""
        ids: list[int] = []
        for node in nodes:
            answers = comparing_answers(node, self.siblings.get(node.parent_id, []))  # type: ignore[arg-type]
            ids += [answer.id for answer in answers] if answers is not None else [node.id]  # type: ignore[misc]
        return ids

    def _learn(self, nodes: list[MessageNode]) -> None:
        """Take ``nodes`` (every message of the conversation) as the conversation now: its path and siblings."""
        self.nodes = nodes
        self.path = selected_path(nodes)
        self.siblings = {}
        for node in nodes:
            self.siblings.setdefault(node.parent_id, []).append(node)

    def _window_for(self, focus: int | None) -> tuple[int, int, int]:
        """Where the window goes after a sync: ``(start, end, keep)``, the built views that stay being
        ``views[:keep]`` (those that still show ``path[start:]`` as stored)."""
        length = len(self.path)
        if focus is not None and not (self.start is not None and self.start <= focus < self.start + len(self.views)):
            start = max(0, min(focus - BATCH // 2, length - BATCH))  # around it
            end = min(length, start + BATCH)
        elif self.start is None or self._to_newest or self.start >= max(length, 1):
            start, end = max(0, length - BATCH), length
        else:
            start = self.start
            end = length if self.at_end else min(length, start + len(self.views))
        keep = 0
        if start == self.start:
            while keep < min(len(self.views), end - start):
                node = self.path[start + keep]
                if not self.views[keep].shows(node, len(self.siblings[node.parent_id])):  # type: ignore[arg-type]
                    break
                keep += 1
        return start, end, keep

    async def sync(self) -> None:
        """Make the page show the stored path: keep the views that match, rebuild from the first that differs.

        The window stays where the reader has it (at the newest message when the page opens, following new ones while
        it reaches them; around ``focus`` when one is set). Reads the light part of every message, and whole only the
        messages it builds.

        Raises:
            NotFound: the conversation is gone (or not the page's account's).
        """
        self._stale = True
        async with self._syncing:
            while self._stale and not self.column.is_deleted:  # a sync that started after this call has served it
                self._stale = False
                edits = self._edits
                conversation, nodes = await asyncio.to_thread(self._read_nodes)
                if self.column.is_deleted or edits != self._edits:  # read before this page's own Send was shown
                    self._stale = self._stale or edits != self._edits
                    continue
                self.conversation = conversation
                self._learn(nodes)
                focus = next((index for index, node in enumerate(self.path) if node.id == self.focus), None)
                start, end, keep = self._window_for(focus)
                fresh = self.path[start + keep : end]
                rows, files = await asyncio.to_thread(self._read_rows, self._wanted(fresh)) if fresh else ({}, {})
                if self.column.is_deleted:
                    return
                if edits != self._edits or any(key not in rows for key in self._wanted(fresh)):
                    self._stale = True  # changed meanwhile (a Send shown, a message deleted): read again
                    continue
                if keep == 0 and focus is None and (start, end) == (max(0, len(self.path) - BATCH), len(self.path)):
                    start = self._open_start(start, end, rows)  # a window opened anew at the newest (not one scrolled)
                self._show_window(start, end, keep, rows, files, focus)

    def _open_start(self, start: int, end: int, rows: dict[int, Message]) -> int:
        """Where a window at the newest message (``path[start:end]``, read in ``rows``) starts when it holds at most
        ``OPEN_TEXT`` characters from its end: the first message of the newest ones within that, at least the newest
        one, moved back to its question when it is an answer."""
        total, first = 0, end
        while first > start:
            row = rows.get(self.path[first - 1].id)
            total += len(row.content) if row is not None else 0
            if total > OPEN_TEXT and first < end:
                break
            first -= 1
        if first > start and self.path[first].role != Role.user:
            first -= 1  # the answer's question too
        return first

    def _show_window(
        self,
        start: int,
        end: int,
        keep: int,
        rows: dict[int, Message],
        files: dict[int, list[Attachment]],
        focus: int | None,
    ) -> None:
        """Make the views ``path[start:end]``, keeping ``views[:keep]`` and building the rest from ``rows``."""
        for view in self.views[keep:]:
            view.detach()
            view.delete()
        self.views = self.views[:keep]
        self._to_newest = False
        self.start, self.at_end = start, end == len(self.path)
        fresh = self.path[start + keep : end]
        if self.tree is not None:
            self.tree.show(self.nodes, self.path, self._read_texts)
        if fresh and focus is None and self.at_end:
            self.scroll_to_bottom()
        self.views += self._build_views(fresh, rows, files)
        self._trim(at_top=True)
        if focus is not None:
            self.focus = None
            if self.start <= focus < self.start + len(self.views):
                self.reveal(self.views[focus - self.start])  # type: ignore[arg-type]
        self._show_cost()
        self._edges()
        self._update_composer()

    def _show_sent(self, user: Message, answers: list[Message], *, new: bool = False) -> None:
        """This page's own Send was stored: show the question and its live answer now (the sync that the change
        brings finds them in place). Left to that sync when the page does not show the newest message. ``new``: the
        Send created the conversation (nothing was read of it yet)."""
        if self.start is None or not self.at_end or (self.conversation is None and not new):
            self._to_newest = True  # the sync shows the newest messages, this one among them
            return
        if user.parent_id != (self.path[-1].id if self.path else None):
            return  # the page is behind the database: the sync shows it
        self._edits += 1
        asked, given = MessageNode.of(user), [MessageNode.of(answer) for answer in answers]
        self.nodes += [asked, *given]
        self.siblings[user.parent_id] = [*self.siblings.get(user.parent_id, []), asked]
        self.siblings[asked.id] = given
        shown = next((node for node in given if node.selected), given[0])
        self.path += [asked, shown]
        rows = {message.id: message for message in [user, *answers] if message.id is not None}
        self.scroll_to_bottom()
        self.views += self._build_views([asked, shown], rows, {})
        self._trim(at_top=True)
        self._edges()
        self._update_composer()

    def _show_cost(self) -> None:
        """The conversation's running cost (every answer and variant with a price) under its last message."""
        priced = [node for node in self.nodes if node.cost is not None]
        if not priced:
            return
        text = "This conversation: " + format_cost(
            sum(node.cost or 0.0 for node in priced), estimated=any(node.cost_estimated for node in priced)
        )
        if self.cost_label is None or self.cost_label.is_deleted:
            with self.column:
                self.cost_label = ui.label(text).classes("text-xs parley-muted self-center").mark("conversation-cost")
        else:
            self.cost_label.set_text(text)

    async def show_earlier(self) -> None:
        """Build the ``BATCH`` messages before the first one built, above it (removing the farthest below when the
        window is full). The "Show earlier messages" button, and the browser when the reader nears the top."""
        async with self._syncing:
            if self.start:
                start, end = max(0, self.start - BATCH), self.start
                await self._add(self.path[start:end], above=True)
            self._edges()

    async def show_later(self) -> None:
        """Build the ``BATCH`` messages after the last one built, below it (removing the farthest above when the
        window is full). The browser asks when the reader nears the bottom of a window that is not at the newest."""
        async with self._syncing:
            if self.start is not None and not self.at_end:
                begin = self.start + len(self.views)
                await self._add(self.path[begin : begin + BATCH], above=False)
            self._edges()

    async def _add(self, nodes: list[MessageNode], *, above: bool) -> None:
        """Read and build ``nodes`` (a batch next to the window) above or below the built views."""
        rows, files = await asyncio.to_thread(self._read_rows, self._wanted(nodes))
        if self.column.is_deleted or not nodes or any(key not in rows for key in self._wanted(nodes)):
            return  # deleted meanwhile: the change's sync follows
        assert self.start is not None
        views = self._build_views(nodes, rows, files)
        if above:
            for index, view in enumerate(views):
                view.move(self.column, target_index=index + 1)  # after the "Show earlier messages" button
            self.views = views + self.views
            self.start -= len(views)
        else:
            self.views += views
            self.at_end = self.start + len(self.views) >= len(self.path)
        self._trim(at_top=not above)

    def _trim(self, *, at_top: bool) -> None:
        """Remove views beyond ``WINDOW``, the oldest (``at_top``) or the newest."""
        excess = len(self.views) - WINDOW
        if excess <= 0:
            return
        assert self.start is not None
        gone = self.views[:excess] if at_top else self.views[-excess:]
        for view in gone:
            view.detach()
            view.delete()
        if at_top:
            self.views, self.start = self.views[excess:], self.start + excess
        else:
            self.views, self.at_end = self.views[:-excess], False

    async def show_newest(self) -> None:
        """Build the window at the newest message and scroll there ("Jump to newest", the scroll-to-bottom button
        while the newest are not built)."""
        if self.at_end:
            self.scroll_to_bottom()
            return
        self._to_newest = True
        await self.sync()

    async def show_message(self, message_id: int) -> None:
        """Show ``message_id`` (a search hit): its branch selected, the window built around it, the message scrolled
        into view and highlighted. A message that is not the conversation's (deleted meanwhile) shows a notice."""
        try:
            message = await self.engine.show_message(message_id, self.account)
        except Exception as error:
            show_error(error)
            return
        if message.conversation_id != self.conversation_id:
            return
        self.focus = message_id
        with self.column:
            await self.sync()

    def _build_views(
        self, nodes: list[MessageNode], rows: dict[int, Message], files: dict[int, list[Attachment]]
    ) -> list[MessageView | ComparisonView]:
        """Build the views of ``nodes`` (of the shown path) at the end of the column, from their ``rows``, and put
        the bottom elements back after them."""
        assert self.conversation is not None
        temperature = self.conversation.temperature
        views: list[MessageView | ComparisonView] = []

        def build(message: Message, column: bool = False) -> MessageView:
            return MessageView(
                message,
                self.engine,
                self.siblings[message.parent_id],
                default_temperature=temperature,
                account=self.account,
                guard=self.guard,
                on_error=show_error,
                on_finished=self._update_composer,
                attachments=files.get(message.id or 0, ()),
                column=column,
            )

        with self.column:
            for node in nodes:
                answers = comparing_answers(node, self.siblings[node.parent_id])  # type: ignore[arg-type]
                if answers is not None:
                    whole = [rows[answer.id] for answer in answers]  # type: ignore[index]
                    views.append(ComparisonView(whole, lambda answer: build(answer, column=True)))  # type: ignore[arg-type]
                else:
                    views.append(build(rows[node.id]))
        self.next_answer.replaced({node.id for node in nodes if node.id is not None})
        return views

    def _edges(self) -> None:
        """Show "Show earlier messages" and "Jump to newest" where there is more, keep the bottom elements after the
        newest built message, and tell the browser."""
        earlier, later = bool(self.start), not self.at_end
        if self.earlier.visible != earlier:
            self.earlier.set_visibility(earlier)
        if self.newest.visible != later:
            self.newest.set_visibility(later)
        self.newest.move(self.column)
        if self.cost_label is not None and not self.cost_label.is_deleted:
            self.cost_label.move(self.column)
        self.next_answer.body.move(self.column)
        self.window.set_edges(has_earlier=earlier, has_later=later)

    def reveal(self, view: MessageView | ComparisonView) -> None:
        """Scroll ``view``'s message into the middle of the window and highlight it for a moment (again when it was
        highlighted before)."""
        view.classes("parley-highlight")
        self.column.client.run_javascript(
            f"setTimeout(() => {{ const e = document.getElementById('c{view.id}'); if (!e) return; "
            "e.scrollIntoView({block: 'center'}); e.getAnimations().forEach((a) => { a.currentTime = 0; }); }, 200)"
        )

    def scroll_to_bottom(self) -> None:
        """Show the newest message (after the browser has rendered the Markdown of the new ones)."""
        self.column.client.run_javascript(
            "setTimeout(() => window.scrollTo({top: document.scrollingElement.scrollHeight}), 200)"
        )

    def _detach_all(self) -> None:
        for view in self.views:
            view.detach()
