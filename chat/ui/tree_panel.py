"""The conversation's whole tree in a side panel: every fork, the shown path highlighted, each message's first words;
clicking a message shows the branch that holds it.

A conversation is mostly long chains with some forks, so the panel indents only off the shown path: the shown path
is one column of rows, and at a fork the other branches are nested rows, each with its own chain inside (Quasar's
``QTree`` through ``ui.tree``). Hundreds of messages and forks stay readable. The tree is built only while the panel
is open.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from nicegui import ui

from ..engine import LOCAL, Account, Engine
from ..store import Message, Role
from .notices import show_error

#: Characters of a message shown in its row.
LABEL_LENGTH = 60
#: A row: its label, bold on the shown path (Vue template of QTree's header slot; the label is text, not HTML).
ROW = "<span :class=\"props.node.shown ? 'parley-tree-shown' : 'parley-muted'\">{{ props.node.label }}</span>"


def label(message: Message) -> str:
    """A row's text: who wrote it, and its first words on one line."""
    words = " ".join(message.content.split())
    if len(words) > LABEL_LENGTH:
        words = words[: LABEL_LENGTH - 1].rstrip() + "…"
    who = "You" if message.role == Role.user else "Answer"
    return f"{who}: {words or '(empty)'}"


def tree_nodes(messages: Iterable[Message], shown: set[int]) -> list[dict[str, Any]]:
    """The QTree nodes of a conversation: ``{"id": "m<id>" | "b<id>", "label", "shown", "children"}``.

    A chain of messages is one list of ``m`` rows. At a fork the branch its row leads on to (the one it shows) goes on
    in the same list, and every other branch is a ``b`` row ("Branch 2 of 3") nested under the fork's row, holding
    that branch's own chain (built the same way). So the depth is how far a branch is from the shown path, not how
    many forks the conversation has: hundreds of forks on the shown path stay one column.
    """
    children: dict[int | None, list[Message]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: m.id or 0):
        children[message.parent_id].append(message)

    def followed(kids: list[Message]) -> Message:
        """The child a chain goes on with: the shown one (the selected one), else the newest."""
        return next((kid for kid in kids if kid.selected), kids[-1])

    def others(kids: list[Message], next_one: Message) -> list[dict[str, Any]]:
        return [
            {"id": f"b{kid.id}", "label": f"Branch {index} of {len(kids)}", "shown": kid.id in shown,
             "children": chain(kid)}
            for index, kid in enumerate(kids, 1) if kid is not next_one
        ]  # fmt: skip

    def chain(start: Message) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        node: Message | None = start
        while node is not None:
            row: dict[str, Any] = {"id": f"m{node.id}", "label": label(node), "shown": node.id in shown}
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
        self._messages: list[Message] = []
        self._shown: set[int] = set()
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
        drawer.on_value_change(lambda event: self._render() if event.value else None)
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

    def show(self, messages: list[Message], path: list[Message]) -> None:
        """Keep the conversation's messages and shown path; redraw when open (``ChatView.sync`` calls it)."""
        self._messages = messages
        self._shown = {m.id for m in path if m.id is not None}
        if self.is_open:
            self._render()

    def _render(self) -> None:
        if self.tree is None:
            return
        nodes = tree_nodes(self._messages, self._shown)
        self.tree._props["nodes"] = nodes
        self.tree._props["expanded"] = expanded(nodes)
        self.tree.update()

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
