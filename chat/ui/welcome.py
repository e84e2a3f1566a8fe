"""The start page's welcome: which model answers, example prompts that model handles well, and the preset chooser
("Start with: [Default] [Code reviewer] …", plus "Manage presets…"): the chosen preset's system prompt, model,
temperature and tools apply to the conversation the first Send creates (``PresetChooser.settings``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nicegui import background_tasks, ui

from ..engine import Account
from ..store import Preset, Store
from ..store import prompts as library
from .notices import show_error
from .text import Text

#: Example prompts for a model Parley does not ship (any upstream's): what capable chat models do well.
UPSTREAM_EXAMPLES = (
    "Explain how HTTPS keeps a connection private, in simple terms.",
    "Write a Python function that checks whether a string is a palindrome, with tests.",
    "Plan a relaxed three-day trip to Lisbon.",
    "What are the pros and cons of working from home?",
)


@dataclass(frozen=True)
class StartPage:
    """What the start page says about the model that answers.

    Attributes:
        default_model: returns the model new conversations use now (``Engine.default_model``: it can change after
            start-up, once the upstream's model list is known).
        built_in: the name of the embedded model Parley runs itself, or None with an upstream.
        about: one sentence on the built-in model (what it is, how it answers).
        examples: example prompts; a click sends one.
    """

    default_model: Callable[[], str]
    built_in: str | None = None
    about: str = ""
    examples: Sequence[str] = field(default=UPSTREAM_EXAMPLES)


class PresetChooser:
    """The start page's "Start with:" buttons: no preset ("Default") or one of the user's presets (their own and the
    published ones; their default preset is chosen when the page opens), and the "Manage presets…" dialog.

    Args:
        store: where the presets are.
        account: whose presets.
        list_tools: async function returning the names of the tools ``account`` may turn on (the dialog's tool
            picker); None: no picker.
    """

    def __init__(
        self, store: Store, account: Account, list_tools: Callable[[], Awaitable[list[str]]] | None = None
    ) -> None:
        self.store = store
        self.account = account
        self.list_tools = list_tools
        self.presets: list[Preset] = []  # read in a thread once the page is built (``build``)
        self.chosen: int | None = None
        self._chosen_by_user = False  # a click before the presets arrived wins over the default
        self.row: ui.row | None = None
        self.dialogs: ui.element | None = None

    def _mine(self, preset: Preset) -> bool:
        return self.account.owner is None or preset.user_id == self.account.owner

    def settings(self) -> dict[str, Any]:
        """The new conversation's settings from the chosen preset: ``system_prompt`` (str), and ``model`` (str),
        ``temperature`` (float), ``tools`` (list of names) when the preset sets them; ``{}`` for no preset."""
        preset = next((p for p in self.presets if p.id == self.chosen), None)
        if preset is None:
            return {}
        chosen: dict[str, Any] = {"system_prompt": preset.system_prompt}
        for name in ("model", "temperature", "tools"):
            if getattr(preset, name) is not None:
                chosen[name] = getattr(preset, name)
        return chosen

    def build(self) -> None:
        """Show the buttons here."""
        self.row = ui.row().classes("items-center gap-2 flex-wrap justify-center").mark("presets")
        self.dialogs = ui.element("div")  # the dialog's home: not in the row, which is rebuilt
        self._render()
        background_tasks.create(self._load(), name="presets")

    async def _load(self) -> None:
        """Read the presets (in a thread: never the database on the event loop) and choose the user's default."""
        self.presets = await asyncio.to_thread(library.list_presets, self.store, self.account)
        if self.row is None or self.row.is_deleted:
            return
        default = next((p for p in self.presets if p.is_default and self._mine(p)), None)
        if not self._chosen_by_user:
            self.chosen = default.id if default else None
        with self.row:
            self._render()

    def choose(self, preset_id: int | None) -> None:
        """Choose a preset (None: the defaults)."""
        self.chosen, self._chosen_by_user = preset_id, True
        self._render()

    def _render(self) -> None:
        if self.row is None:
            return
        self.row.clear()
        with self.row:
            ui.label("Start with:").classes("parley-muted")
            for preset_id, name in ((None, "Default"), *((p.id, p.name) for p in self.presets)):
                button = ui.button(name, on_click=lambda key=preset_id: self.choose(key)).props("no-caps dense")
                button.props("unelevated" if preset_id == self.chosen else "outline").mark("preset")
                button.props(f'aria-pressed="{str(preset_id == self.chosen).lower()}"')
            ui.button("Manage presets…", on_click=self.manage).props("flat no-caps dense").mark("manage-presets")

    async def _reload(self) -> None:
        self.presets = await asyncio.to_thread(library.list_presets, self.store, self.account)
        if self.chosen not in {p.id for p in self.presets}:
            self.chosen = None
        self._render()

    async def manage(self) -> None:
        """Open the "Manage presets" dialog: create, edit, delete, mark default."""
        assert self.dialogs is not None, "build() first"
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("w-full max-w-2xl").mark("presets-dialog"):
            ui.label("Presets").classes("text-lg")
            listing = ui.column().classes("w-full gap-1")
            name = ui.input("Name").props("outlined dense").classes("w-full").mark("preset-name")
            system = ui.textarea("System prompt").props("outlined dense").classes("w-full").mark("preset-system")
            model = ui.input("Model (empty: the default)").props("outlined dense").mark("preset-model")
            temperature = ui.number("Temperature (empty: the default)", min=0, max=2, step=0.1).mark("preset-temp")
            names: list[str] = []
            if self.list_tools is not None:
                try:
                    names = await self.list_tools()
                except Exception:  # an MCP server down: the tools already chosen can still be kept or taken out
                    names = []
            tools = ui.select(names, multiple=True, label="Tools on (empty: every tool offered)", value=[])
            tools.props("outlined dense use-chips").classes("w-full").mark("preset-tools")
            tools.visible = self.list_tools is not None
            default = ui.checkbox("My default").mark("preset-default")
            published = ui.checkbox("Publish to everyone").mark("preset-published")
            published.visible = self.account.is_admin and self.account.owner is not None
            editing: dict[str, int | None] = {"id": None}

            def edit(preset: Preset | None) -> None:
                editing["id"] = preset.id if preset else None
                name.value = preset.name if preset else ""
                system.value = preset.system_prompt if preset else ""
                model.value = (preset.model or "") if preset else ""
                temperature.value = preset.temperature if preset else None
                chosen = list(preset.tools or []) if preset else []
                tools.set_options(sorted(set(names) | set(chosen)), value=chosen)
                default.value = bool(preset and preset.is_default)
                published.value = bool(preset and preset.published)

            def show() -> None:
                listing.clear()
                with listing:
                    for preset in self.presets:
                        with ui.row().classes("w-full items-center no-wrap").mark("preset-row"):
                            ui.label(preset.name + (" (default)" if preset.is_default else "")).classes("flex-grow")
                            if self._mine(preset):
                                ui.button(icon="edit", on_click=lambda p=preset: edit(p)).props("flat dense round")
                                ui.button(icon="delete", on_click=lambda p=preset: delete(p)).props(
                                    'flat dense round aria-label="Delete"'
                                ).mark("preset-delete")

            async def save() -> None:
                fields: dict[str, Any] = {"name": name.value or "", "system_prompt": system.value or "",
                                          "model": model.value or None, "temperature": temperature.value,
                                          "is_default": bool(default.value),
                                          "tools": list(tools.value) or None}  # fmt: skip
                if published.visible:
                    fields["published"] = bool(published.value)
                key = editing["id"]
                try:
                    if key is None:
                        await asyncio.to_thread(lambda: library.create_preset(self.store, self.account, **fields))
                    else:
                        await asyncio.to_thread(lambda: library.update_preset(self.store, self.account, key, **fields))
                except Exception as error:
                    show_error(error)
                    return
                edit(None)
                await self._reload()
                show()

            async def delete(preset: Preset) -> None:
                assert preset.id is not None
                try:
                    await asyncio.to_thread(library.delete_preset, self.store, self.account, preset.id)
                except Exception as error:
                    show_error(error)
                await self._reload()
                show()

            show()
            with ui.row().classes("justify-end w-full"):
                ui.button("New", on_click=lambda: edit(None)).props("flat")
                ui.button("Close", on_click=dialog.close).props("flat")
                ui.button("Save", on_click=save).mark("preset-save")
        dialog.on("hide", dialog.delete)
        dialog.open()


def welcome(
    start: StartPage, on_example: Callable[[str], Awaitable[None]], presets: PresetChooser | None = None
) -> ui.column:
    """Build the welcome: the name, the model that answers (with a hint on connecting a real one when it is the small
    built-in model) and the example prompts as buttons.

    Args:
        start: what to say.
        on_example: sends an example prompt (called with its text).
        presets: the preset chooser to show under the model, or None.

    Returns:
        The welcome's column (deleted by the caller once the first message is sent).
    """
    with ui.column().classes("parley-welcome w-full items-center mt-16 sm:mt-24 gap-3 px-2").mark("welcome") as column:
        ui.label("Parley").classes("text-3xl font-semibold parley-heading")
        with ui.column().classes("items-center gap-1 text-center max-w-xl").mark("welcome-model"):
            if start.built_in:
                with ui.element("p").classes("parley-muted"):
                    Text("Answering with ")
                    Text(start.built_in, "strong")
                    Text(", the small model built into Parley, on this computer. " + start.about)
                with ui.element("p").classes("parley-muted text-sm").mark("welcome-hint"):
                    Text("For a stronger model, start Parley with ")
                    Text("OPENAI_API_KEY", "code")
                    Text(", or ")
                    Text("OPENAI_BASE_URL", "code")
                    Text(" for Ollama, vLLM or LM Studio.")
            else:
                with ui.element("p").classes("parley-muted"):
                    Text("Answering with ")
                    Text(start.default_model(), "strong")
                    Text(".")
        if presets is not None:
            presets.build()
        with ui.element("div").classes("grid grid-cols-1 sm:grid-cols-2 gap-2 w-full max-w-2xl mt-4"):
            for example in start.examples:
                ui.button(example, on_click=lambda text=example: on_example(text)).props(
                    "outline no-caps align=left"
                ).classes("parley-example w-full text-left").mark("example-prompt")
    return column
