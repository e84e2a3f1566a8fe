"""Storage: SQLModel tables and the only code that touches the database."""

from .models import Conversation, Message, Role, Status
from .store import NotFound, Store, selected_path

__all__ = ["Conversation", "Message", "NotFound", "Role", "Status", "Store", "selected_path"]
