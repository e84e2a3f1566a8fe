"""Engine: the one path of every answer, as a task that outlives any browser tab, and its numbered event log."""

from .changes import Change, Watchers
from .engine import ConversationBusy, EmptyMessage, Engine, MessageTooLong
from .events import Event, Finished, Phase, PhaseChanged, TextDelta, UsageReported, replay
from .generation import Generation
from .policy import LOCAL, Account, Limits, ModelNotAllowed, RateLimited
from .text import DEFAULT_TITLE, clean_text, clean_title, make_title

__all__ = [
    "LOCAL", "Account", "Limits", "ModelNotAllowed", "RateLimited",
    "Change", "Watchers",
    "ConversationBusy", "EmptyMessage", "Engine", "MessageTooLong",
    "Event", "Finished", "Generation", "Phase", "PhaseChanged", "TextDelta", "UsageReported", "replay",
    "DEFAULT_TITLE", "clean_text", "clean_title", "make_title",
]  # fmt: skip
