"""Import Claude's data export, ``conversations.json`` (claude.ai: Settings → Privacy → Export data).

The format, as real exports show it::

    [{"uuid": "<uuid>", "name": "…", "created_at": "2024-06-20T15:43:02.154321Z", "updated_at": "…",
      "chat_messages": [{"uuid": "<uuid>", "sender": "human" | "assistant", "text": "…",
                         "content": [{"type": "text", "text": "…"}, {"type": "thinking", "thinking": "…"}, …],
                         "created_at": "…", "attachments": [{"file_name": "…"}], "files": [{"file_name": "…"}],
                         "parent_message_uuid": "<uuid>"}]}]

Newer exports give each message its ``parent_message_uuid`` (the first ones name the all-zero root,
``00000000-0000-4000-8000-000000000000``), which keeps edits and retries as branches; a message without the field
follows the one before it in the list (older exports are one straight line). The export does not say which branch
was shown: the one ending at the newest message is selected (``current_leaf_message_uuid`` when a file has it).
The text is the ``text`` blocks of ``content`` (else ``text``); ``thinking`` blocks become the answer's reasoning;
tool use blocks are left out; attached files are named in the message (``[file: notes.pdf]``).
"""

from __future__ import annotations

import json
from typing import Any

from ..engine.events import ReasoningDelta, ReasoningEnded, TextDelta, numbered_log, to_json
from ..store import Role
from ..store.transfer import NewConversation, NewMessage
from .base import (
    Limits,
    Schema,
    check_count,
    clean_title,
    conversation_label,
    invalid,
    moment,
    ordered_tree,
    quoted,
    select_path,
    title_from,
)

#: The parent of a first message in exports that name parents.
ROOT_UUID = "00000000-0000-4000-8000-000000000000"
_TIME = {"type": ["string", "null"]}
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uuid", "sender"],
    "properties": {
        "uuid": {"type": "string", "minLength": 1},
        "sender": {"enum": ["human", "assistant"]},
        "text": {"type": ["string", "null"]},
        "content": {"type": ["array", "null"], "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
        "created_at": _TIME,
        "parent_message_uuid": {"type": ["string", "null"]},
        "attachments": {"type": ["array", "null"]},
        "files": {"type": ["array", "null"]},
    },
}
CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uuid", "chat_messages"],
    "properties": {
        "uuid": {"type": "string", "minLength": 1},
        "name": {"type": ["string", "null"]},
        "created_at": _TIME,
        "updated_at": _TIME,
        "current_leaf_message_uuid": {"type": ["string", "null"]},
        "chat_messages": {"type": "array", "items": MESSAGE_SCHEMA},
    },
}
SCHEMA = Schema(CONVERSATION_SCHEMA, title_key="name")


def looks_like(item: Any) -> bool:
    """True for what looks like one Claude conversation (it has ``chat_messages``)."""
    return isinstance(item, dict) and "chat_messages" in item


def _files(row: dict[str, Any]) -> list[str]:
    names = []
    for entry in [*(row.get("attachments") or []), *(row.get("files") or [])]:
        if isinstance(entry, dict) and isinstance(entry.get("file_name"), str) and entry["file_name"] not in names:
            names.append(entry["file_name"])
    return [f"[file: {name}]" for name in names]


def _message(key: str, parent: str | None, row: dict[str, Any]) -> NewMessage:
    """One message: its text (and reasoning) from ``content`` when that has any, else ``text``."""
    blocks = [b for b in row.get("content") or [] if isinstance(b, dict)]
    texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
    thinking = [b["thinking"] for b in blocks if b.get("type") == "thinking" and isinstance(b.get("thinking"), str)]
    text = "\n\n".join(t for t in texts if t) if texts else (row.get("text") or "")
    if row["sender"] == "human":
        text = "\n\n".join(t for t in (text, " ".join(_files(row))) if t)
    fields: dict[str, Any] = {"content": text}
    reasoning = "\n\n".join(t for t in thinking if t)
    if row["sender"] == "assistant" and reasoning:
        events = [ReasoningDelta(reasoning), ReasoningEnded(0.0), *([TextDelta(text)] if text else [])]
        fields["events"] = [to_json(e) for e in numbered_log(events)]  # type: ignore[arg-type]
    role = Role.user if row["sender"] == "human" else Role.assistant
    return NewMessage(key=key, parent=parent, role=role, created_at=moment(row.get("created_at")), fields=fields)


def conversation(index: int, item: Any, limits: Limits) -> NewConversation:
    """One Claude conversation. Raises InvalidImport naming the field that is wrong, ImportTooLarge over a limit."""
    label = conversation_label(index, item, "name")
    if isinstance(item, dict) and isinstance(item.get("chat_messages"), list):
        check_count(label, len(item["chat_messages"]), limits)
    SCHEMA.check(index, item)
    rows: list[dict[str, Any]] = item["chat_messages"]
    positions: dict[str, int] = {}
    messages: list[NewMessage] = []
    previous: str | None = None
    for position, row in enumerate(rows):
        key = row["uuid"]
        if key in positions:
            problem = f"message {json.dumps(quoted(key))} appears twice"
            raise invalid(label, ["chat_messages", position, "uuid"], problem)
        positions[key] = position
        if "parent_message_uuid" in row:
            parent = row["parent_message_uuid"]
            parent = None if parent in (None, "", ROOT_UUID) else parent
        else:
            parent = previous
        messages.append(_message(key, parent, row))
        previous = key
    ordered = ordered_tree(label, messages, {m.key: (m.created_at is None, m.created_at, positions[m.key]) for m in
                                              messages}, lambda key, name: ["chat_messages", positions[key], name + (
                                              "_message_uuid" if name == "parent" else "")])  # fmt: skip
    leaf = item.get("current_leaf_message_uuid")
    if leaf not in positions:
        parents = {m.parent for m in ordered}
        leaves = [m for m in ordered if m.key not in parents]
        newest = max(leaves, key=lambda m: (m.created_at is not None, m.created_at, positions[m.key]), default=None)
        leaf = newest.key if newest is not None else None
    select_path(ordered, leaf)
    created = moment(item.get("created_at"))
    return NewConversation(source_id=f"claude:{item['uuid']}"[:200], messages=ordered, created_at=created,
                           updated_at=moment(item.get("updated_at")) or created,
                           fields={"title": clean_title(item.get("name"), title_from(ordered))})  # fmt: skip
