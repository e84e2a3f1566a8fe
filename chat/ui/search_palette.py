"""The search palette: Ctrl+K (⌘K on a Mac; ``shortcuts.js`` clicks the drawer's Search button) or that button opens
a dialog that searches the account's titles and messages as one types (``chat/store/search.py``, in a thread,
``DEBOUNCE`` seconds after the last key).

Each result is a plain link to ``/c/{id}?message={message_id}`` (``/c/{id}`` for a title hit), which opens the
conversation at that message, on the branch holding it. It shows the title, the role and the snippet with the matches
highlighted: the text goes into NiceGUI text elements (escaped), the matches into ``<mark>`` elements, never HTML from
the data. ↑/↓ move the highlighted result, Enter opens it, Esc closes.

``ConversationSearch`` is the same dialog for the open conversation alone (the header's "Search in this
conversation"): its messages on every branch, newest first; choosing one shows it on the page (``ChatView.show_message``
builds the window of messages around it), without loading the page again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nicegui import background_tasks, ui

from ..engine import LOCAL, Account
from ..store import Store
from ..store.search import SearchHit, SearchPage, search
from .notices import show_error
from .text import Text

#: Seconds after the last key before searching (typing fast sends one query, not one per key).
DEBOUNCE = 0.25
#: Results shown.
RESULTS = 20
#: A result's classes, and those of the highlighted one (Tailwind: the palette needs no stylesheet of its own).
HIT_CLASSES = "block w-full rounded p-2 no-underline text-inherit hover:bg-gray-500/10"
ACTIVE_CLASSES = "bg-gray-500/20"
#: What each role is called in a result.
ROLE_LABELS = {"user": "You", "assistant": "Answer", "system": "System"}


def hit_url(hit: SearchHit) -> str:
    """The page showing ``hit``: ``/c/{id}?message={message_id}``, or ``/c/{id}`` for a title hit."""
    return f"/c/{hit.conversation_id}" + ("" if hit.message_id is None else f"?message={hit.message_id}")


def highlighted(snippet: str, spans: tuple[tuple[int, int], ...]) -> None:
    """Show ``snippet`` as text elements, each of ``spans`` (``(start, end)`` offsets) in a ``<mark>``."""
    last = 0
    for start, end in spans:
        if start > last:
            Text(snippet[last:start])
        Text(snippet[start:end], "mark").classes("rounded-sm px-0.5")
        last = end
    if last < len(snippet):
        Text(snippet[last:])


class SearchPalette:
    """The dialog, built once per page (hidden until opened), and the button that opens it.

    Args:
        store: searched (in a thread).
        account: whose conversations are searched (``LOCAL``: all, personal mode).
    """

    #: The input's placeholder and accessible name.
    PLACEHOLDER = "Search conversations"
    #: The test markers' prefix: ``<prefix>-dialog``, ``-input``, ``-results``, ``-hit``.
    MARK = "search"

    def __init__(self, store: Store, *, account: Account = LOCAL) -> None:
        self.store = store
        self.account = account
        self.hits: list[SearchHit] = []
        self.links: list[ui.element] = []
        self.active = 0
        self._generation = 0
        self._make_button()
        with (
            ui.dialog().props("position=top") as self.dialog,
            ui.card().classes("w-[min(640px,95vw)] gap-2").mark(f"{self.MARK}-dialog"),
        ):
            self.input = (
                ui.input(placeholder=self.PLACEHOLDER)
                .props(f'autofocus clearable outlined dense aria-label="{self.PLACEHOLDER}" role="combobox"')
                .classes("w-full")
                .mark(f"{self.MARK}-input")
            )
            self.status = ui.label("").classes("parley-muted text-sm").props('aria-live="polite"')
            self.results = ui.column().classes("w-full gap-1").props('role="listbox"').mark(f"{self.MARK}-results")
        self.input.on_value_change(lambda event: self._typed(event.value))
        self.input.on("keydown.down.prevent", lambda: self._move(1))
        self.input.on("keydown.up.prevent", lambda: self._move(-1))
        self.input.on("keydown.enter.prevent", self._enter)

    def _make_button(self) -> None:
        self.button = (
            ui.button("Search", icon="search", on_click=self.open)
            .props('flat no-caps align=left aria-keyshortcuts="Control+K Meta+K"')
            .classes("w-full parley-search-button")
            .mark("search-button")
        )

    def _search(self, query: str) -> SearchPage:
        """Blocking (called in a thread): the hits of ``query``."""
        return search(self.store, query, owner=self.account.owner, limit=RESULTS)

    def open(self) -> None:
        """Open the dialog (the input is focused; the last query and its results are kept)."""
        self.dialog.open()

    def _typed(self, value: str | None) -> None:
        self._generation += 1
        generation = self._generation
        background_tasks.create(self._search_later(value or "", generation), name="search-palette")

    async def _search_later(self, query: str, generation: int) -> None:
        await asyncio.sleep(DEBOUNCE)  # debounce: a newer key press supersedes this query
        if generation != self._generation or self.results.is_deleted:
            return
        if not query.strip():
            self._show([], "")
            return
        try:
            page = await asyncio.to_thread(self._search, query)
        except Exception as error:
            show_error(error)
            return
        if generation == self._generation and not self.results.is_deleted:
            more = " (the first ones)" if page.next_offset is not None else ""
            count = len(page.hits)
            self._show(page.hits, "No results." if not count else f"{count} result{'s' * (count != 1)}{more}.")

    def _show(self, hits: list[SearchHit], status: str) -> None:
        self.hits, self.active, self.links = hits, 0, []
        self.status.set_text(status)
        self.results.clear()
        with self.results:
            for index, hit in enumerate(hits):
                link = self._hit_element(hit).classes(HIT_CLASSES).props('role="option"').mark(f"{self.MARK}-hit")
                with link:
                    self._describe(hit)
                self.links.append(link)
                self._mark(index)

    def _hit_element(self, hit: SearchHit) -> ui.element:
        """The element of one result (a link to its page)."""
        return ui.link(target=hit_url(hit))

    def _describe(self, hit: SearchHit) -> None:
        """A result's content: the conversation's title, who wrote the message, the snippet."""
        with ui.row().classes("w-full items-baseline gap-2 no-wrap"):
            Text(hit.title, "strong").classes("truncate")
            if hit.role is not None:
                Text(ROLE_LABELS.get(hit.role, hit.role)).classes("parley-muted text-xs")
        if hit.message_id is not None:
            with ui.element("div").classes("text-sm break-words"):
                highlighted(hit.snippet, hit.spans)

    def _mark(self, index: int) -> None:
        link = self.links[index]
        if index == self.active:
            link.classes(add=ACTIVE_CLASSES).props('aria-selected="true"')
        else:
            link.classes(remove=ACTIVE_CLASSES).props('aria-selected="false"')

    def _move(self, step: int) -> None:
        if not self.links:
            return
        before, self.active = self.active, (self.active + step) % len(self.links)
        self._mark(before)
        self._mark(self.active)
        ui.run_javascript(f'getHtmlElement({self.links[self.active].id})?.scrollIntoView({{block: "nearest"}})')

    async def _enter(self) -> None:
        if self.hits:
            await self._choose(self.hits[self.active])

    async def _choose(self, hit: SearchHit) -> None:
        self.dialog.close()
        ui.navigate.to(hit_url(hit))


#: Results of a search within the conversation.
CONVERSATION_RESULTS = 50


class ConversationSearch(SearchPalette):
    """The search dialog for the open conversation: every branch of its messages, newest first (hidden until
    ``open``; the page's header has the button). Choosing a hit (a click, or ↑/↓ and Enter) closes the dialog and
    gives its message id to ``on_choose``.

    Args:
        store: searched (in a thread).
        conversation: the open conversation's id now (None on the start page: nothing is searched).
        on_choose: shows a message on the page (``ChatView.show_message``).
        account: whose conversation it is.
    """

    PLACEHOLDER = "Search in this conversation"
    MARK = "conversation-search"

    def __init__(
        self,
        store: Store,
        conversation: Callable[[], int | None],
        on_choose: Callable[[int], Awaitable[None]],
        *,
        account: Account = LOCAL,
    ) -> None:
        self.conversation = conversation
        self.on_choose = on_choose
        super().__init__(store, account=account)

    def _make_button(self) -> None:
        self.button = None  # the page's header has it

    def _search(self, query: str) -> SearchPage:
        conversation_id = self.conversation()
        if conversation_id is None:
            return SearchPage([], None)
        return search(self.store, query, owner=self.account.owner, limit=CONVERSATION_RESULTS,
                      conversation_id=conversation_id)  # fmt: skip

    def _hit_element(self, hit: SearchHit) -> ui.element:
        element = ui.element("div").props('tabindex="0"').classes("cursor-pointer")
        element.on("click", lambda: self._choose(hit))
        element.on("keydown.enter", lambda: self._choose(hit))
        return element

    def _describe(self, hit: SearchHit) -> None:
        Text(ROLE_LABELS.get(hit.role or "", hit.role or "")).classes("parley-muted text-xs")
        with ui.element("div").classes("text-sm break-words"):
            highlighted(hit.snippet, hit.spans)

    async def _choose(self, hit: SearchHit) -> None:
        self.dialog.close()
        if hit.message_id is not None:
            await self.on_choose(hit.message_id)
