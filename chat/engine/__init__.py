"""Engine: one generation per assistant message, as a task that outlives any browser tab."""

from .engine import Change, ConversationBusy, EmptyMessage, Engine, MessageTooLong, clean_text, make_title
from .generation import Delta, Event, Finished, Generation, Phase, PhaseChanged
from .policy import LOCAL, Account, Limits, ModelNotAllowed, RateLimited

__all__ = [
    "LOCAL", "Account", "Limits", "ModelNotAllowed", "RateLimited",
    "Change", "ConversationBusy", "Delta", "EmptyMessage", "Engine", "Event", "Finished", "Generation", "Phase",
    "MessageTooLong", "PhaseChanged", "clean_text", "make_title",
]  # fmt: skip
