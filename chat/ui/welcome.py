"""The start page's welcome: which model answers, and example prompts that model handles well."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nicegui import ui

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


def welcome(start: StartPage, on_example: Callable[[str], Awaitable[None]]) -> ui.column:
    """Build the welcome: the name, the model that answers (with a hint on connecting a real one when it is the small
    built-in model) and the example prompts as buttons.

    Args:
        start: what to say.
        on_example: sends an example prompt (called with its text).

    Returns:
        The welcome's column (deleted by the caller once the first message is sent).
    """
    with ui.column().classes("w-full items-center mt-16 sm:mt-24 gap-3 px-2").mark("welcome") as column:
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
        with ui.element("div").classes("grid grid-cols-1 sm:grid-cols-2 gap-2 w-full max-w-2xl mt-4"):
            for example in start.examples:
                ui.button(example, on_click=lambda text=example: on_example(text)).props(
                    "outline no-caps align=left"
                ).classes("parley-example w-full text-left").mark("example-prompt")
    return column
