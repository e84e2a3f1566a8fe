"""One message on the page: a user bubble, or an assistant answer with its footer
(status, Retry, variant navigation ‹ 2/3 ›, Regenerate at a chosen temperature, copy, details).

A live answer's text and steps (reasoning, tool calls) go to the browser through the answer's own stream
(``chat/api/stream.py``), never through this view: the view only waits for the answer to end, then records the final
text and builds the footer. An answer with more than text gives its element its content events (stored:
``Message.events``; live: the content so far). A decision on a tool call's approval card, in any tab, comes back here
as the element's ``decide`` event and goes to ``Engine.decide``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from nicegui import background_tasks, ui
from nicegui.events import GenericEventArguments

from ..api.stream import stream_path
from ..engine import LOCAL, Account, Engine
from ..store import Attachment, Message, Role, Status
from ..store.store import MessageNode
from .access import Guard, always_signed_in
from .attachments_view import message_files
from .confirm import confirm
from .copy_message import CopyMessage
from .local_time import LocalTime
from .notices import show_error
from .streaming_message import StreamingMessage

log = logging.getLogger(__name__)

#: How an answer that did not end normally is labelled: ``(label, CSS class of its colour, icon)``.
STATUS_LABELS = {
    Status.cancelled: ("Stopped", "parley-muted", "stop_circle"),
    Status.interrupted: ("Interrupted", "parley-warning", "pause_circle"),
    Status.error: ("Error", "parley-error", "error"),
}

#: A complete answer that the upstream ended for another reason than ``stop`` (``finish_reason``), said in words.
FINISH_LABELS = {
    "length": ("Cut off at the length limit (finish_reason length)", "parley-warning", "content_cut"),
    "content_filter": ("Stopped by the model server's content filter (finish_reason content_filter)", "parley-warning",
                       "block"),
}  # fmt: skip


def omitted_note(omitted: int) -> str:
    """What the page says when an answer's request left out earlier messages to fit the model's context window."""
    earlier = "1 earlier message was" if omitted == 1 else f"{omitted} earlier messages were"
    return f"{earlier} left out of this answer's request: the conversation is longer than the model's context window."


def status_line(message: Message) -> tuple[str, str, str] | None:
    """What the footer says about how an answer ended, as ``(text, CSS class of its colour, icon)``; None for a normal
    end."""
    if message.status in STATUS_LABELS:
        label, color, icon = STATUS_LABELS[message.status]
        return (f"{label}: {message.error}" if message.error else label), color, icon
    if message.status == Status.complete and message.finish_reason in FINISH_LABELS:
        return FINISH_LABELS[message.finish_reason]
    return None


def format_cost(dollars: float, *, estimated: bool = False) -> str:
    """Dollars as an answer's details show them: ``$0.0123``, ``<$0.0001``, ``$0`` for a free model; ``~`` and
    "(estimate)" when the tokens were counted by Parley."""
    if dollars == 0:
        text = "$0"
    elif dollars < 0.0001:
        text = "<$0.0001"
    else:
        text = f"${dollars:.4f}" if dollars < 1 else f"${dollars:,.2f}"
    return f"~{text} (estimate)" if estimated else text


def describe_generation(message: Message) -> str:
    """One line of details for an answer: model, temperature, tokens, time to first token, speed, cost."""
    parts = [message.model or ""]
    if message.temperature is not None:
        parts.append(f"temperature {message.temperature:g}")
    if message.completion_tokens:
        parts.append(f"{message.completion_tokens} tokens")
    if message.ttft is not None:
        parts.append(f"first token {message.ttft:.2f} s")
    if message.completion_tokens and message.duration and message.ttft is not None:
        streaming = message.duration - message.ttft
        if streaming > 0:
            parts.append(f"{message.completion_tokens / streaming:.1f} tokens/s")
    if message.cost is not None:
        parts.append(format_cost(message.cost, estimated=message.cost_estimated))
    if message.finish_reason and message.finish_reason != "stop" and message.finish_reason not in FINISH_LABELS:
        parts.append(f"finish_reason {message.finish_reason}")
    return " · ".join(p for p in parts if p)


class MessageView(ui.column):
    """A message of the shown path.

    Args:
        message: the stored message.
        engine: to attach to a live answer and to regenerate, retry and switch variants.
        variants: the message and its siblings, oldest first (for ‹ i/n › navigation: only their ids are read, so
            ``MessageNode``s do).
        default_temperature: the conversation's temperature (the Regenerate slider's start when the answer has none).
        on_error: shows a failure of an action to the user.
        on_finished: called when a live answer shown here ends.
        account: who regenerates and switches variants here (default ``LOCAL``, personal mode).
        guard: checks that the page's login still holds before a Regenerate or Retry (``access.session_guard``).
        attachments: a user message's files, shown under its text.
        column: an answer of a side-by-side comparison (``compare_view``): its model above it, its own Stop while it
            streams, "Keep this one" once it ended, and no variant navigation.
    """

    def __init__(
        self,
        message: Message,
        engine: Engine,
        variants: Sequence[Message | MessageNode],
        *,
        default_temperature: float,
        on_error: Callable[[Exception], None],
        on_finished: Callable[[], None],
        account: Account = LOCAL,
        guard: Guard = always_signed_in,
        attachments: Sequence[Attachment] = (),
        column: bool = False,
    ) -> None:
        super().__init__()
        assert message.id is not None
        self.attachments = list(attachments)
        self.column = column
        self.message = message
        self.message_id: int = message.id
        self.engine = engine
        self.account = account
        self.guard = guard
        self.variants = list(variants)
        self.default_temperature = default_temperature
        self.on_error = on_error
        self.on_finished = on_finished
        self._waiter: asyncio.Task[None] | None = None
        self.body: StreamingMessage | None = None
        self._editor: ui.column | None = None  # a user message being edited
        self.classes("w-full gap-1 parley-message").mark(f"message-{message.id}")
        if message.role == Role.user:
            self._build_user()
        else:
            self._build_assistant()

    def _build_user(self) -> None:
        self.classes("items-end")
        with self, ui.row().classes("parley-user-row"):  # styled in parley.css: short class lists, fewer bytes
            LocalTime(self.message.created_at)
            self.user_label = ui.label(self.message.content).classes("parley-user-message").mark("user-message")
        if self.attachments:
            with self:
                message_files(self.attachments)
        with self:
            self.footer = ui.row().classes("items-center gap-1 parley-muted parley-message-footer")
        with self.footer:
            ui.button(icon="edit", on_click=self._start_edit).props(
                'flat dense round size=sm title="Edit" aria-label="Edit this message"'
            ).mark("edit-message")
            if len(self.variants) > 1:
                self._build_variant_nav()
            self._build_message_menu()

    def _start_edit(self) -> None:
        """Replace the message by a box with its text, Save and Cancel: Save sends the edit as a new branch."""
        if self._editor is not None:
            return
        with self:
            with ui.column().classes("w-full items-end gap-1").mark("message-editor") as editor:
                box = ui.textarea(value=self.message.content).props("autogrow outlined autofocus").classes("w-full")
                box.mark("edit-text")
                with ui.row().classes("gap-1"):
                    ui.button("Cancel", on_click=self._end_edit).props("flat no-caps").mark("edit-cancel")
                    ui.button("Save and send", on_click=lambda: self._save_edit(box.value or "")).props("no-caps").mark(
                        "edit-save"
                    )
        self._editor = editor
        self.footer.set_visibility(False)

    def _end_edit(self) -> None:
        if self._editor is not None:
            self._editor.delete()
            self._editor = None
        if not self.footer.is_deleted:
            self.footer.set_visibility(True)

    async def _save_edit(self, text: str) -> None:
        if not await self.guard():
            return
        try:
            await self.engine.edit(self.message_id, text, account=self.account)
        except Exception as error:  # blank, too long, busy, over a limit: the box keeps the text
            self.on_error(error)
            return
        self._end_edit()

    def _build_message_menu(self) -> None:
        """The ⋯ menu of a message: continue in a new conversation from here, or delete it with what follows."""
        with (
            ui.button(icon="more_horiz")
            .props('flat dense round size=sm title="More" aria-label="More actions"')
            .mark("message-menu")
        ):
            with ui.menu():
                ui.menu_item("Continue in a new conversation", self._fork).mark("fork-message")
                ui.menu_item("Delete…", self._delete).mark("delete-message")

    async def _fork(self) -> None:
        try:
            conversation_id = await self.engine.fork(self.message_id, self.account)
        except Exception as error:
            self.on_error(error)
            return
        ui.navigate.to(f"/c/{conversation_id}")

    async def _delete(self) -> None:
        what = "this message" if self.message.role == Role.user else "this answer"
        if not await confirm(
            f"Delete {what}?", "It is deleted with everything under it: its answers, the later turns, their branches.",
            "Delete", mark="confirm-delete-message",
        ):  # fmt: skip
            return
        try:
            await self.engine.delete_message(self.message_id, self.account)
        except Exception as error:
            self.on_error(error)

    def _build_assistant(self) -> None:
        generation = self.engine.live(self.message_id, self.account)
        with self:
            if self.column:
                self.classes("parley-compare-column")
                ui.label(self.message.model or "").classes("text-sm font-medium parley-muted").mark("column-model")
            if generation is not None:
                self.body = StreamingMessage(
                    generation.text,
                    stream=stream_path(self.message_id),
                    phase=generation.phase.value,
                    live_text=lambda: generation.text,
                    events=generation.events_json(),
                    live_events=lambda: generation.content,
                )
                self.body.on_decide(self._decide)  # only a live answer can wait for an approval
            elif self.engine.generating_elsewhere(self.message):  # another replica's: its stream, from the start
                self.body = StreamingMessage("", stream=stream_path(self.message_id), phase="thinking")
            else:
                self.body = StreamingMessage(self.message.content, events=self.message.events or None)
            self.body.classes("w-full").mark("assistant-message")
            self.footer = ui.row().classes("items-center gap-1 parley-muted parley-message-footer")
        live = generation is not None or self.engine.generating_elsewhere(self.message)
        self._build_footer(streaming=live)
        if live:
            self._waiter = background_tasks.create(self._wait_for_end(), name="message-view-wait")
            self.client.on_delete(self.detach)

    def shows(self, message: Message | MessageNode, siblings: int) -> bool:
        """True when this view already shows ``message`` as stored (same id, same status, as many siblings)."""
        return (
            self.message_id == message.id and self.message.status == message.status and len(self.variants) == siblings
        )

    def detach(self) -> None:
        """Stop waiting for the live answer to end (the tab went away or the view is replaced)."""
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None

    async def _wait_for_end(self) -> None:
        message = await self.engine.wait_for_end(self.message_id, self.account)
        self._waiter = None
        self.message = message
        if self.is_deleted or self.body is None:
            return
        self.body.finished(message.content, message.events or None)
        self._build_footer(streaming=False)
        self.on_finished()

    async def _decide(self, event: GenericEventArguments) -> None:
        """An approval card's button: ``{"call_id", "approve", "always"}`` from the browser (untrusted: checked here,
        and the engine answers only for a pending call of this account's)."""
        args = event.args if isinstance(event.args, dict) else {}
        call_id, approve, always = args.get("call_id"), args.get("approve"), args.get("always", False)
        if not isinstance(call_id, str) or not isinstance(approve, bool) or not isinstance(always, bool):
            return
        if not await self.guard():
            return
        try:
            await self.engine.decide(call_id, approve, always=always, account=self.account)
        except Exception as error:  # decided elsewhere meanwhile, expired, or not this account's (a Refusal)
            show_error(error)
            if self.body is not None and not self.body.is_deleted:
                self.body.decision_failed(call_id)

    def _build_footer(self, *, streaming: bool) -> None:
        self.footer.clear()
        if streaming:
            if self.column:  # each column stops by itself; the composer's Stop stops them all
                with self.footer:
                    ui.button("Stop", icon="stop", on_click=self._stop_column).props("flat dense no-caps size=sm").mark(
                        "column-stop"
                    )
            return
        if self.column:
            self._build_column_footer()
            return
        message = self.message
        with self.footer:
            line = status_line(message)
            if line is not None:
                reason, color, icon = line
                with ui.row().classes(f"items-center gap-1 {color}").mark("message-status"):
                    ui.icon(icon)
                    ui.label(reason).classes("text-sm")
                ui.button("Retry", icon="replay", on_click=lambda: self.regenerate(message.temperature)).props(
                    "flat dense no-caps size=sm"
                ).mark("retry")
            if message.omitted_messages:
                ui.label(omitted_note(message.omitted_messages)).classes("text-xs parley-warning w-full").mark(
                    "context-note"
                )
            if len(self.variants) > 1:
                self._build_variant_nav()
            self._build_regenerate_menu()
            if self.body is not None:
                CopyMessage(self.body)
            self._build_message_menu()
            details = describe_generation(message)
            if details:
                ui.label(details).classes("text-xs").mark("message-details")
            LocalTime(message.created_at)

    def _build_column_footer(self) -> None:
        """An ended answer of a comparison: how it ended, its details, Copy, and "Keep this one"."""
        message = self.message
        with self.footer:
            line = status_line(message)
            if line is not None:
                reason, color, icon = line
                with ui.row().classes(f"items-center gap-1 {color}").mark("message-status"):
                    ui.icon(icon)
                    ui.label(reason).classes("text-sm")
            ui.button("Keep this one", icon="check", on_click=self._keep).props("flat dense no-caps size=sm").mark(
                "keep-answer", f"keep-{self.message_id}"
            )
            if self.body is not None:
                CopyMessage(self.body)
            details = describe_generation(message)
            if details:
                ui.label(details).classes("text-xs").mark("message-details")

    async def _stop_column(self) -> None:
        await self._run(self.engine.cancel(self.message_id, self.account))

    async def _keep(self) -> None:
        """Keep this answer of the comparison: the conversation goes on from it, the others are its variants."""
        if not await self.guard():
            return
        await self._run(self.engine.pick(self.message_id, self.account))

    def _build_variant_nav(self) -> None:
        ids = [v.id for v in self.variants]
        index = ids.index(self.message_id)
        with ui.row().classes("items-center gap-0").mark("variant-nav"):
            previous_button = ui.button("‹", on_click=lambda: self._select(ids[index - 1])).props(
                'flat dense size=sm aria-label="Previous variant" title="Previous variant"'
            )
            previous_button.mark("variant-previous").set_enabled(index > 0)
            ui.label(f"{index + 1}/{len(ids)}").classes("text-sm").mark("variant-position")
            next_button = ui.button("›", on_click=lambda: self._select(ids[index + 1])).props(
                'flat dense size=sm aria-label="Next variant" title="Next variant"'
            )
            next_button.mark("variant-next").set_enabled(index < len(ids) - 1)

    def _build_regenerate_menu(self) -> None:
        """The Regenerate button; its menu (temperature slider and button) is built on the first click only, so a
        long conversation does not carry one hidden menu per answer."""
        self._regenerate_button = (
            ui.button(icon="refresh", on_click=self._open_regenerate_menu)
            .props('flat dense round size=sm title="Regenerate" aria-label="Regenerate"')
            .mark("regenerate-menu")
        )
        self._regenerate_menu: ui.menu | None = None

    def _open_regenerate_menu(self) -> None:
        if self._regenerate_menu is None or self._regenerate_menu.is_deleted:
            start = self.message.temperature if self.message.temperature is not None else self.default_temperature
            with self._regenerate_button:
                with ui.menu().props("anchor='bottom left' self='top left'") as menu:
                    with ui.column().classes("p-3 gap-1 min-w-[240px]"):
                        value = ui.label()
                        slider = ui.slider(min=0, max=2, step=0.1, value=start).mark("regenerate-temperature")
                        value.bind_text_from(slider, "value", lambda t: f"Temperature {t:.1f}")
                        ui.button(
                            "Regenerate",
                            icon="refresh",
                            on_click=lambda: (menu.close(), self.regenerate(slider.value))[1],
                        ).props("no-caps").mark("regenerate")
            self._regenerate_menu = menu
        self._regenerate_menu.open()

    async def _run(self, action: Awaitable[object]) -> None:
        try:
            await action
        except Exception as error:  # shown to the user; the engine already logged what matters
            self.on_error(error)

    async def regenerate(self, temperature: float | None) -> None:
        """Regenerate this answer at ``temperature`` (None: the conversation's), as a new variant; a refusal (busy,
        over a limit) is shown."""
        if not await self.guard():
            return
        await self._run(self.engine.regenerate(self.message_id, temperature=temperature, account=self.account))

    async def _select(self, message_id: int | None) -> None:
        if message_id is None:
            return
        try:
            await self.engine.select_variant(message_id, self.account)
        except Exception as error:
            self.on_error(error)
