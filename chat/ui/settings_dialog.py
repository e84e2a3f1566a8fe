"""Per-conversation settings: system prompt, model and temperature."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from nicegui import ui

from ..engine import LOCAL, Account, Engine
from ..store import Store


async def open_settings(
    engine: Engine, store: Store, conversation_id: int, list_models: object, *, account: Account = LOCAL
) -> None:
    """Show the settings dialog of a conversation and save what the user changes.

    Args:
        engine: saves the settings.
        store: reads the conversation.
        conversation_id: the conversation.
        list_models: async function returning model ids; when it fails the model field still accepts any name.
        account: whose conversation it is; the model list offers only the models it may use.

    Raises:
        NotFound: no such conversation of ``account``'s.
        ModelNotAllowed: the model chosen is not one ``account`` may use.
    """
    conversation = await asyncio.to_thread(store.get_conversation, conversation_id, owner=account.owner)
    models: list[str] = []
    try:
        models = await cast(Callable[[], Awaitable[list[str]]], list_models)()
    except Exception:  # an unreachable upstream must not block editing the other settings
        models = []
    current = conversation.model or engine.default_model
    if account.models is not None:
        models = [m for m in models if m in account.models]
    options = sorted(set(models) | {current})
    with ui.dialog() as dialog, ui.card().classes("min-w-[480px]"):
        ui.label("Conversation settings").classes("text-lg")
        system_prompt = (
            ui.textarea("System prompt", value=conversation.system_prompt)
            .props("autogrow outlined")
            .classes("w-full")
            .mark("system-prompt")
        )
        model = (
            ui.select(options, value=current, label="Model", new_value_mode="add-unique", with_input=True)
            .classes("w-full")
            .mark("model")
        )
        temperature_label = ui.label()
        temperature = ui.slider(min=0, max=2, step=0.1, value=conversation.temperature).mark("temperature")
        temperature_label.bind_text_from(temperature, "value", lambda t: f"Temperature {t:.1f}")
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
            ui.button(
                "Save",
                on_click=lambda: dialog.submit(
                    {"system_prompt": system_prompt.value or "", "model": model.value, "temperature": temperature.value}
                ),
            ).mark("settings-save")
    values: dict[str, Any] | None = await dialog
    dialog.delete()
    if values is None:
        return
    if values["model"] == engine.default_model and conversation.model is None:
        values["model"] = None  # keep following the app's default
    await engine.update_conversation(conversation_id, account, **values)
    ui.notify("Settings saved", type="positive")
