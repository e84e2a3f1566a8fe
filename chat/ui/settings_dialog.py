"""Per-conversation settings: system prompt, model, temperature and the tools the model may call.

The Tools section lists the tools this user may use (``Engine.available_tools``), each with a switch; what is on is
stored as ``Conversation.tools`` (None, the default, offers every tool; the switches then start all on). It also says
which MCP servers are down and why (the toolbox's ``problems``), and why the conversation's model calls no tools, when
it calls none (``Engine.tools_off_reason``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from nicegui import ui

from ..engine import LOCAL, Account, Engine
from ..store import Store
from ..tools import Tool
from .streaming_message import source_label

log = logging.getLogger(__name__)


def tool_problems(engine: Engine) -> dict[str, str]:
    """The MCP servers that are down, with why: ``{server name: reason}`` (the toolbox's ``problems``; empty without
    tools). The reasons never hold a server's environment or headers (the toolbox words them)."""
    toolbox = engine.tools.toolbox if engine.tools is not None else None
    return dict(toolbox.problems) if toolbox is not None else {}


async def _available_tools(engine: Engine, account: Account) -> list[Tool]:
    try:
        return list(await engine.available_tools(account))
    except Exception:  # a broken toolbox must not block editing the other settings
        log.exception("listing the tools failed")
        return []


def _tools_section(tools: list[Tool], enabled: list[str] | None, off_reason: str | None, problems: dict[str, str]):
    """Build the Tools section; returns ``{tool name: switch}``."""
    switches: dict[str, ui.switch] = {}
    with ui.column().classes("w-full gap-1").mark("tools-section"):
        ui.label("Tools").classes("text-base font-medium")
        if off_reason:
            with ui.row().classes("items-center gap-1 no-wrap parley-muted text-sm").mark("tools-off"):
                ui.icon("info")
                ui.label(off_reason)
        for server, reason in sorted(problems.items()):
            with ui.row().classes("items-center gap-1 no-wrap parley-warning text-sm").mark("tool-problem"):
                ui.icon("warning")
                ui.label(f"{server}: {reason}")
        if not tools:
            ui.label("No tools are available.").classes("parley-muted text-sm").mark("no-tools")
        for tool in tools:
            with ui.row().classes("w-full items-center no-wrap gap-2").mark(f"tool-{tool.name}"):
                switch = ui.switch(value=enabled is None or tool.name in enabled).mark(f"tool-switch-{tool.name}")
                switch.props(f'aria-label="{tool.name}"')
                with ui.column().classes("gap-0 min-w-0"):
                    with ui.row().classes("items-center gap-2"):
                        ui.label(tool.name).classes("font-mono text-sm")
                        ui.label(source_label(tool.source)).classes("parley-muted text-xs")
                        if str(tool.policy) == "ask":
                            ui.label("asks first").classes("parley-muted text-xs")
                    if tool.description:
                        ui.label(tool.description).classes("parley-muted text-xs line-clamp-2")
            switches[tool.name] = switch
    return switches


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
    tools = await _available_tools(engine, account)
    off_reason = engine.tools_off_reason(current)
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
        switches = _tools_section(tools, conversation.tools, off_reason, tool_problems(engine))

        def values() -> dict[str, Any]:
            chosen = {
                "system_prompt": system_prompt.value or "",
                "model": model.value,
                "temperature": temperature.value,
            }
            on = [name for name, switch in switches.items() if switch.value]
            if switches and not (conversation.tools is None and len(on) == len(switches)):
                # tools of this conversation's that are not listed now (a server down) stay as they were
                listed = set(switches)
                kept = [name for name in conversation.tools or () if name not in listed]
                chosen["tools"] = sorted(set(on) | set(kept))
            return chosen

        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
            ui.button("Save", on_click=lambda: dialog.submit(values())).mark("settings-save")
    values: dict[str, Any] | None = await dialog
    dialog.delete()
    if values is None:
        return
    if values["model"] == engine.default_model and conversation.model is None:
        values["model"] = None  # keep following the app's default
    await engine.update_conversation(conversation_id, account, **values)
    ui.notify("Settings saved", type="positive")
