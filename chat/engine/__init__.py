"""Engine: one generation per assistant message, as a task that outlives any browser tab."""

from .engine import Change, ConversationBusy, EmptyMessage, Engine, make_title
from .generation import Delta, Event, Finished, Generation, Phase, PhaseChanged

__all__ = [
    "Change", "ConversationBusy", "Delta", "EmptyMessage", "Engine", "Event", "Finished", "Generation", "Phase",
    "PhaseChanged", "make_title",
]  # fmt: skip
