"""Side by side: the composer's chooser of models to compare (2 to 4), and the answers of a comparison in columns
(one under the other on a phone), each with its model, its own Stop, status and details, and "Keep this one".

A comparison is its answers, siblings marked ``comparing`` (``Engine.compare``); keeping one (``Engine.pick``) makes it
the shown answer and the others its variants (‹ 2/3 ›), and so does sending the next message, which continues from
the first column's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import ui

from ..engine import LOCAL, Account
from ..engine.engine import MAX_COMPARED
from ..store import Message


class CompareChooser:
    """A button left of the message box: its menu lists the models (the upstream's, those ``account`` may use); two
    to four checked send the next message to each of them side by side.

    Args:
        list_models: async function returning the upstream's model ids.
        account: whose models may be chosen.
    """

    def __init__(self, list_models: Callable[[], Awaitable[list[str]]], account: Account = LOCAL) -> None:
        self.list_models = list_models
        self.account = account
        self.models: list[str] = []
        self.button = ui.button(icon="view_column", on_click=self._open).props("flat round dense").mark("compare")
        self.button._props["aria-label"] = "Compare models side by side"
        self.button.tooltip("Compare models side by side")
        with self.button:
            self.menu = ui.menu().props("anchor='top left' self='bottom left'")
        self.badge: ui.badge | None = None

    @property
    def chosen(self) -> list[str]:
        """The models the next message goes to side by side; empty unless two or more are checked."""
        return list(self.models) if len(self.models) >= 2 else []

    async def _open(self) -> None:
        try:
            served = await self.list_models()
        except Exception:  # an unreachable upstream: the models chosen so far stay
            served = []
        allowed = [m for m in served if self.account.may_use(m)]
        self.menu.clear()
        with self.menu, ui.column().classes("p-3 gap-1 min-w-[240px]"):
            ui.label(f"Send the next message to 2–{MAX_COMPARED} models at once").classes("text-sm")
            for model in sorted(set(allowed) | set(self.models)):
                box = ui.checkbox(model, value=model in self.models)
                box.on_value_change(lambda e, model=model: self.toggle(model, e.value))
                box.mark(f"compare-{model}")
            if not allowed and not self.models:
                ui.label("No models listed by the model server.").classes("text-xs parley-muted")
            ui.button("Clear", on_click=lambda: (self.set_models([]), self.menu.close())).props("flat dense no-caps")
        self.menu.open()

    def toggle(self, model: str, on: bool) -> None:
        """Check or uncheck ``model`` (at most ``MAX_COMPARED``)."""
        if on and model not in self.models:
            if len(self.models) >= MAX_COMPARED:
                ui.notify(f"Compare at most {MAX_COMPARED} models.", type="warning")
                return
            self.models.append(model)
        elif not on and model in self.models:
            self.models.remove(model)
        self.set_models(self.models)

    def set_models(self, models: list[str]) -> None:
        """Compare ``models`` from the next message on (fewer than two: no comparison)."""
        self.models = list(models)
        active = len(self.models) >= 2
        self.button.props(f"color={'primary' if active else 'grey-8'}")
        if self.badge is not None:
            self.badge.delete()
            self.badge = None
        if active:
            with self.button:
                self.badge = ui.badge(str(len(self.models))).props("floating").mark("compare-count")


class ComparisonView(ui.element):
    """The answers of one comparison, side by side (``parley-compare``: columns, or rows on a narrow screen).

    Args:
        answers: the comparison's answers (siblings marked ``comparing``), in column order.
        build: builds one answer's ``MessageView`` as a column (where it is called).
    """

    def __init__(self, answers: list[Message], build: Callable[[Message], ui.element]) -> None:
        super().__init__("div")
        assert answers[0].id is not None
        self.classes("parley-compare w-full").mark("comparison")
        selected = next((a for a in answers if a.selected), answers[0])
        assert selected.id is not None
        self.message = selected
        self.message_id: int = selected.id
        self.ids = [a.id for a in answers]
        self.columns = []
        with self:
            for answer in answers:
                self.columns.append(build(answer))

    def shows(self, message: Message, siblings: int) -> bool:
        """True while ``message`` (the shown answer) is still this comparison's and no answer was added or taken."""
        return message.id == self.message_id and message.comparing and siblings == len(self.ids)

    def detach(self) -> None:
        """Stop every column's wait for its live answer."""
        for column in self.columns:
            column.detach()  # type: ignore[attr-defined]


def comparing_answers(message: Message, siblings: list[Message]) -> list[Message] | None:
    """The answers of the comparison ``message`` is in, in column order (by id), or None when it is in none."""
    if not message.comparing:
        return None
    answers = [m for m in siblings if m.comparing]
    return answers if len(answers) >= 2 else None
