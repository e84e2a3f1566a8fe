"""The conversation's whole tree in a side panel: every fork, the shown path highlighted, each message's first words;
clicking a message shows the branch that holds it.

A conversation is mostly long chains with some forks, so the panel indents only off the shown path: the shown path
is one column of rows, and at a fork the other branches are nested rows, each with its own chain inside (Quasar's
``QTree`` through ``ui.tree``). Hundreds of messages and forks stay readable. The tree is built only while the panel
is open.

The panel never holds the messages' text: ``ChatView`` gives it the conversation's ``MessageNode``s, and the rows'
first words are read (in a thread) when the panel is open, each message's once (again while it streams).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nicegui import background_tasks, ui

from ..engine import LOCAL, Account, Engine
from ..store import Role, Status
from ..store.store import MessageNode
from .notices import show_error

#: Characters of a message shown in its row.
LABEL_LENGTH = 60
#: Characters of a message read for its row (its white space is collapsed before it is cut to ``LABEL_LENGTH``).
LABEL_READ = 4 * LABEL_LENGTH
#: A row: its label, bold on the shown path (Vue template of QTree's header slot; the label is text, not HTML).
ROW = "<span :class=\"props.node.shown ? 'parley-tree-shown' : 'parley-muted'\">{{ props.node.label }}</span>"


def label(role: Role, content: str) -> str:
    """A row's text: who wrote it (``role``), and the first words of ``content`` on one line."""
    words = " ".join(content.split())
    if len(words) > LABEL_LENGTH:
        words = words[: LABEL_LENGTH - 1].rstrip() + "…"
    who = "You" if role == Role.user else "Answer"
    return f"{who}: {words or '(empty)'}"


def tree_nodes(messages: Iterable[MessageNode], shown: set[int], texts: Mapping[int, str]) -> list[dict[str, Any]]:
    """The QTree nodes of a conversation: ``{"id": "m<id>" | "b<id>", "label", "shown", "children"}``.

    ``messages``: the conversation's nodes; ``shown``: the ids on the shown path; ``texts``: each message's first
    characters (id -> text; a missing one shows as empty).

    A chain of messages is one list of ``m`` rows. At a fork the branch its row leads on to (the one it shows) goes on
    in the same list, and every other branch is a ``b`` row ("Branch 2 of 3") nested under the fork's row, holding
    that branch's own chain (built the same way). So the depth is how far a branch is from the shown path, not how
    many forks the conversation has: hundreds of forks on the shown path stay one column.
    """
    children: dict[int | None, list[MessageNode]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: m.id):
        children[message.parent_id].append(message)

    def followed(kids: list[MessageNode]) -> MessageNode:
        """The child a chain goes on with: the shown one (the selected one), else the newest."""
        return next((kid for kid in kids if kid.selected), kids[-1])

    def others(kids: list[MessageNode], next_one: MessageNode) -> list[dict[str, Any]]:
        return [
            {"id": f"b{kid.id}", "label": f"Branch {index} of {len(kids)}", "shown": kid.id in shown,
             "children": chain(kid)}
            for index, kid in enumerate(kids, 1) if kid is not next_one
        ]  # fmt: skip

    def chain(start: MessageNode) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        node: MessageNode | None = start
        while node is not None:
            row: dict[str, Any] = {"id": f"m{node.id}", "label": label(node.role, texts.get(node.id, "")),
                                   "shown": node.id in shown}  # fmt: skip
            rows.append(row)
            kids = children.get(node.id, [])
            node = followed(kids) if kids else None
            if node is not None and len(kids) > 1:
                row["children"] = others(kids, node)
        return rows

    roots = children.get(None, [])
    if not roots:
        return []
    first = followed(roots)
    rows = chain(first)
    if len(roots) > 1:  # other first messages (an edited first question): branches under the first row
        rows[0]["children"] = [*others(roots, first), *rows[0].get("children", [])]
    return rows


def expanded(nodes: list[dict[str, Any]]) -> list[str]:
    """The ids of every row with children (all forks open)."""
    ids: list[str] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node.get("children"):
            ids.append(node["id"])
            stack.extend(node["children"])
    return ids


class TreePanel:
    """The right-hand panel with the tree (not built until ``toggle`` first opens it).

    Args:
        engine: shows the branch of a clicked message (``Engine.show_message``).
        account: whose conversation it is.
    """

    def __init__(self, engine: Engine, *, account: Account = LOCAL) -> None:
        self.engine = engine
        self.account = account
        self._messages: list[MessageNode] = []
        self._shown: set[int] = set()
        self._read_texts: Callable[[list[int] | None], dict[int, str]] | None = None
        self._texts: dict[int, str] = {}  # first characters of each message read so far
        self._read_status: dict[int, Status] = {}  # the status each of them had when read
        self._rendering = False
        self._again = False
        self._content = ui.context.client.content  # where a drawer must be built (NiceGUI: the page content)
        self.drawer: ui.right_drawer | None = None  # built on the first toggle: most pages never open it
        self.tree: ui.tree | None = None

    def _build(self) -> ui.right_drawer:
        with (
            self._content,
            ui.right_drawer(value=False).props("width=340 bordered").classes("parley-sidebar") as drawer,
        ):
            ui.label("Conversation tree").classes("text-base font-medium")
            ui.label("The shown path is in bold; click a message to show its branch.").classes("parley-muted text-xs")
            self.tree = ui.tree([], node_key="id", label_key="label", on_select=self._select).mark("conversation-tree")
            self.tree.props("dense")
            self.tree.add_slot("default-header", ROW)
        drawer.on_value_change(lambda event: self._render_later() if event.value else None)
        return drawer

    @property
    def is_open(self) -> bool:
        """True while the panel is shown."""
        return self.drawer is not None and bool(self.drawer.value)

    def toggle(self) -> None:
        """Open or close the panel (built the first time)."""
        if self.drawer is None:
            self.drawer = self._build()
        self.drawer.toggle()

    def show(
        self,
        messages: list[MessageNode],
        path: list[MessageNode],
        read_texts: Callable[[list[int] | None], dict[int, str]],
    ) -> None:
        """Keep the conversation's nodes and shown path; redraw when open (``ChatView.sync`` calls it).

        Args:
            messages: every message of the conversation.
            path: the shown ones.
            read_texts: blocking (called in a thread): the first ``LABEL_READ`` characters of the messages of the
                ids given (all of them for None), id -> text.
        """
        self._messages = messages
        self._shown = {m.id for m in path}
        self._read_texts = read_texts
        if self.is_open:
            self._render_later()

    def _render_later(self) -> None:
        if self._rendering:  # one render at a time; one more after it when asked meanwhile
            self._again = True
            return
        self._rendering = True
        background_tasks.create(self._render(), name="tree-panel-render")

    async def _render(self) -> None:
        try:
            while True:
                self._again = False
                messages = self._messages
                stale = [m.id for m in messages if m.id not in self._texts or m.status == Status.streaming
                         or self._read_status.get(m.id) != m.status]  # fmt: skip
                if stale and self._read_texts is not None:
                    everything = len(stale) == len(messages)
                    texts = await asyncio.to_thread(self._read_texts, None if everything else stale)
                    self._texts.update(texts)
                    self._read_status.update((m.id, m.status) for m in messages if m.id in texts)
                if not self._again:
                    break
            if self.tree is None or self.tree.is_deleted:
                return
            nodes = tree_nodes(messages, self._shown, self._texts)
            self.tree._props["nodes"] = nodes
            self.tree._props["expanded"] = expanded(nodes)
            self.tree.update()
        finally:
            self._rendering = False

    async def _select(self, event: Any) -> None:
        key = event.value
        if not isinstance(key, str) or len(key) < 2 or not key[1:].isdigit():
            return
        if self.tree is not None:
            self.tree.deselect()  # the shown path is the highlight; a second click on the same row works again
        try:
            await self.engine.show_message(int(key[1:]), self.account)
        except Exception as error:  # deleted meanwhile
            show_error(error)
