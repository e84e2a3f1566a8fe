"""Storage: SQLModel tables and the only code that touches the database."""

from .models import (
    ApiToken,
    Attachment,
    Blob,
    Conversation,
    DailyUsage,
    Message,
    Preset,
    Role,
    SavedPrompt,
    ShareLink,
    Status,
    ToolApproval,
    User,
)
from .store import NameTaken, NotFound, Store, selected_path

__all__ = [
    "ApiToken", "Attachment", "Blob", "Conversation",
    "DailyUsage", "Message", "NameTaken", "NotFound", "Preset", "Role", "SavedPrompt",
    "ShareLink", "Status", "Store", "ToolApproval", "User", "selected_path",
]  # fmt: skip
