"""Import Parley's own JSON export (``export.py``'s format): the same trees, every field kept.

The source id of a conversation is the one it had (an imported one keeps ``"chatgpt:…"``), else
``"parley:<sha256>"`` of its export's own id and creation time: the same export imports once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..engine.events import from_json
from ..store import Role, Status
from ..store.transfer import NewConversation, NewMessage
from .base import MAX_INT, Limits, Schema, check_count, clean_title, conversation_label, invalid, moment, ordered_tree
from .export import FORMAT, VERSION

_NUMBER = {"type": ["number", "null"]}
_COUNT = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_INT}
_TEXT = {"type": ["string", "null"]}

MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "role"],
    "properties": {
        "id": {"type": ["integer", "string"]},
        "parent_id": {"type": ["integer", "string", "null"]},
        "selected": {"type": "boolean"},
        "role": {"enum": [role.value for role in Role]},
        "content": {"type": "string"},
        "status": {"enum": [status.value for status in Status]},
        "error": _TEXT, "error_code": _TEXT,
        "error_status": {"type": ["integer", "null"], "minimum": 0, "maximum": 999},
        "model": _TEXT, "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "finish_reason": _TEXT, "prompt_tokens": _COUNT, "completion_tokens": _COUNT, "ttft": _NUMBER,
        "duration": _NUMBER, "omitted_messages": _COUNT,
        "events": {"type": ["array", "null"], "items": {"type": "object", "required": ["kind"]}},
        "created_at": _TEXT,
    },
}  # fmt: skip

CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "id": {"type": ["integer", "string", "null"]},
        "title": {"type": "string"},
        "system_prompt": {"type": "string"},
        "model": _TEXT,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "tools": {"type": ["array", "null"], "items": {"type": "string"}},
        "pinned": {"type": "boolean"},
        "archived": {"type": "boolean"},
        "source_id": {"type": ["string", "null"], "maxLength": 200},
        "created_at": _TEXT,
        "updated_at": _TEXT,
        "messages": {"type": "array", "items": MESSAGE_SCHEMA},
    },
}
SCHEMA = Schema(CONVERSATION_SCHEMA)
_MESSAGE_COLUMNS = ("content", "status", "error", "error_status", "error_code", "model", "temperature",
                    "finish_reason", "prompt_tokens", "completion_tokens", "ttft", "duration", "omitted_messages",
                    "events")  # fmt: skip


#: What each annotation of a content event's fields may hold.
_KINDS: dict[str, tuple[type, ...]] = {"str": (str,), "float": (int, float), "int": (int,), "bool": (bool,),
                                       "str | None": (str, type(None)), "float | None": (int, float, type(None)),
                                       "dict[str, Any] | None": (dict, type(None))}  # fmt: skip


def _check_event(event: Any) -> None:
    """Raise TypeError when a field of a content event holds the wrong kind of value (``{"text": 5}``)."""
    for spec in fields(event):
        kinds = _KINDS.get(str(spec.type))
        value = getattr(event, spec.name)
        if kinds is not None and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            raise TypeError(f"{spec.name} is not {spec.type}")


def is_parley(data: Any) -> bool:
    """True for a Parley JSON document (``{"format": "parley", …}``)."""
    return isinstance(data, dict) and data.get("format") == FORMAT


def items(data: dict[str, Any]) -> list[Any]:
    """The conversations of a Parley JSON document. Raises InvalidImport for a newer version or no list."""
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise invalid("the file", ["version"], f"Parley JSON version {version!r} is not one this Parley reads")
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise invalid("the file", ["conversations"], "expected a list")
    return conversations


def source_id(item: dict[str, Any]) -> str:
    """The conversation's own source id, else ``parley:`` and the SHA-256 of its export id and creation time."""
    if item.get("source_id"):
        return item["source_id"]
    digest = hashlib.sha256(f"{item.get('id')}|{item.get('created_at')}".encode()).hexdigest()
    return f"parley:{digest[:40]}"


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def conversation(index: int, item: Any, limits: Limits) -> NewConversation:
    """One conversation of a Parley JSON document. Raises InvalidImport naming the field that is wrong."""
    label = conversation_label(index, item)
    if isinstance(item, dict) and isinstance(item.get("messages"), list):
        check_count(label, len(item["messages"]), limits)
    SCHEMA.check(index, item)
    rows: list[dict[str, Any]] = item["messages"]
    positions: dict[str, int] = {}
    messages: list[NewMessage] = []
    for position, row in enumerate(rows):
        key = str(row["id"])
        if key in positions:
            raise invalid(label, ["messages", position, "id"], f"message {key} appears twice")
        positions[key] = position
        fields = {name: row[name] for name in _MESSAGE_COLUMNS if name in row}
        for number, event in enumerate(fields.get("events") or []):
            try:
                _check_event(from_json(event))
            except (KeyError, TypeError, ValueError):
                raise invalid(label, ["messages", position, "events", number], "not an answer event") from None
        if fields.get("status") == Status.streaming:  # exported mid-answer: it will never end here
            fields["status"], fields["error"] = Status.interrupted, "It was still being written when exported."
        parent = row.get("parent_id")
        messages.append(NewMessage(key=key, parent=None if parent is None else str(parent), role=Role(row["role"]),
                                   selected=row.get("selected", True), created_at=moment(row.get("created_at")),
                                   fields=fields))  # fmt: skip
    order: dict[str, Any] = {m.key: _order(rows[positions[m.key]]["id"]) for m in messages}
    path_of: Callable[[str, str], list[Any]] = lambda key, name: ["messages", positions[key], name]  # noqa: E731
    ordered = ordered_tree(label, messages, order, path_of)
    fields = {name: item[name] for name in ("system_prompt", "model", "temperature", "tools", "pinned", "archived")
              if name in item}  # fmt: skip
    fields["title"] = clean_title(item.get("title"))
    return NewConversation(source_id=source_id(item), messages=ordered, created_at=moment(item.get("created_at")),
                           updated_at=moment(item.get("updated_at")), fields=fields)  # fmt: skip
