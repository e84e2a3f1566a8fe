"""Import Open WebUI's chat export (Settings → Chats → Export Chats, or a chat's "Export chat (.json)").

The format, as Open WebUI writes it (its ``ChatModel`` rows, the chat's JSON in ``chat``)::

    [{"id": "<uuid>", "title": "…", "created_at": 1714000000, "updated_at": 1714000100, "pinned": false,
      "archived": false,
      "chat": {"title": "…", "models": ["llama3:8b"], "system": "…", "params": {"system": "…"},
               "history": {"currentId": "<message id>",
                           "messages": {"<id>": {"id": "<id>", "parentId": "<id>" | null, "childrenIds": ["<id>"],
                                                 "role": "user" | "assistant", "content": "…",
                                                 "model": "llama3:8b", "timestamp": 1714000001,
                                                 "error": {"content": "…"}, "usage": {…}}}},
               "messages": [… the shown path, as a list …]}}]

Times are seconds since the epoch. ``history`` is the whole tree (edits and regenerations are siblings);
``currentId`` the shown path's leaf. A chat without ``history`` is read from ``chat.messages`` as a straight line.
System messages are left out (their children hang from the message before); the chat's system prompt is kept.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from ..store import Role, Status
from ..store.transfer import NewConversation, NewMessage
from .base import (
    MAX_INT,
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

_TIME = {"type": ["number", "string", "null"]}
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "id": {"type": "string"},
        "parentId": {"type": ["string", "null"]},
        "childrenIds": {"type": ["array", "null"], "items": {"type": "string"}},
        "role": {"type": "string"},
        "content": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"]},
        "timestamp": _TIME,
    },
}
CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["chat"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "title": {"type": ["string", "null"]},
        "created_at": _TIME,
        "updated_at": _TIME,
        "pinned": {"type": ["boolean", "null"]},
        "archived": {"type": ["boolean", "null"]},
        "chat": {
            "type": "object",
            "properties": {
                "title": {"type": ["string", "null"]},
                "system": {"type": ["string", "null"]},
                "history": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "currentId": {"type": ["string", "null"]},
                        "messages": {"type": "object", "additionalProperties": MESSAGE_SCHEMA},
                    },
                },
                "messages": {"type": ["array", "null"], "items": MESSAGE_SCHEMA},
            },
        },
    },
}
SCHEMA = Schema(CONVERSATION_SCHEMA)


def looks_like(item: Any) -> bool:
    """True for what looks like one Open WebUI chat (a ``chat`` object with a ``history`` or ``messages``)."""
    return isinstance(item, dict) and isinstance(item.get("chat"), dict) and (
        "history" in item["chat"] or "messages" in item["chat"])  # fmt: skip


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    """A message's columns: content, model, an error, usage."""
    fields: dict[str, Any] = {"content": row.get("content") or ""}
    if row["role"] == "assistant":
        if isinstance(row.get("model"), str):
            fields["model"] = row["model"][:200]
        error = row.get("error")
        if error:
            fields["status"] = Status.error
            reason = error.get("content") if isinstance(error, dict) else error
            fields["error"] = str(reason) if isinstance(reason, str) and reason else "The model failed."
        usage = row.get("usage") if isinstance(row.get("usage"), dict) else {}
        for ours, theirs in (("prompt_tokens", ("prompt_tokens", "input_tokens")),
                             ("completion_tokens", ("completion_tokens", "output_tokens"))):  # fmt: skip
            value = next((usage[name] for name in theirs if isinstance(usage.get(name), int)), None)
            if value is not None and 0 <= value <= MAX_INT:
                fields[ours] = value
    return fields


def _system_prompt(chat: dict[str, Any]) -> str:
    params = chat.get("params") if isinstance(chat.get("params"), dict) else {}
    for value in (chat.get("system"), params.get("system")):
        if isinstance(value, str) and value.strip():
            return value
    return ""


def conversation(index: int, item: Any, limits: Limits) -> NewConversation:
    """One Open WebUI chat. Raises InvalidImport naming the field that is wrong, ImportTooLarge over a limit."""
    label = conversation_label(index, item)
    chat = item.get("chat") if isinstance(item, dict) else None
    history = chat.get("history") if isinstance(chat, dict) else None
    if isinstance(history, dict) and isinstance(history.get("messages"), dict):
        check_count(label, len(history["messages"]), limits)
    elif isinstance(chat, dict) and isinstance(chat.get("messages"), list):
        check_count(label, len(chat["messages"]), limits)
    SCHEMA.check(index, item)
    chat = item["chat"]
    if "history" in chat:
        rows: dict[str, dict[str, Any]] = chat["history"]["messages"]
        base: list[Any] = ["chat", "history", "messages"]
        current = chat["history"].get("currentId")
        if current is not None and current not in rows:
            raise invalid(label, ["chat", "history", "currentId"], f"no message {json.dumps(quoted(current))}")
        parents = {key: row.get("parentId") for key, row in rows.items()}
    else:  # a straight line
        listed = chat.get("messages") or []
        rows = {str(number): row for number, row in enumerate(listed)}
        base, current = ["chat", "messages"], None
        parents = {str(number): (str(number - 1) if number else None) for number in range(len(listed))}
    position = {key: number for number, key in enumerate(rows)}
    children: defaultdict[str | None, list[str]] = defaultdict(list)
    for key, parent in parents.items():
        if parent is not None and parent not in rows:
            raise invalid(label, [*base, key, "parentId"], f"no message {json.dumps(quoted(parent))}")
        children[parent].append(key)
    for parent, keys in children.items():
        listed_ids = {c: n for n, c in enumerate((rows[parent].get("childrenIds") or []) if parent else [])}
        keys.sort(key=lambda child: (listed_ids.get(child, len(listed_ids)), position[child]))

    messages: list[NewMessage] = []
    kept_of: dict[str, str | None] = {}
    stack: list[tuple[str, str | None]] = [(root, None) for root in reversed(children[None])]
    while stack:
        key, parent = stack.pop()
        if key in kept_of:
            continue
        row = rows[key]
        if row["role"] in ("user", "assistant"):
            created = moment(row.get("timestamp"))
            messages.append(NewMessage(key=key, parent=parent, role=Role(row["role"]), created_at=created,
                                       fields=_fields(row)))  # fmt: skip
            parent = key
        kept_of[key] = parent
        stack.extend((child, parent) for child in reversed(children[key]))
    if len(kept_of) != len(rows):
        stuck = next(key for key in rows if key not in kept_of)
        raise invalid(label, [*base, stuck, "parentId"], "its parents form a cycle")
    ordered = ordered_tree(label, messages, {m.key: position[m.key] for m in messages},
                           lambda key, name: [*base, key, name])  # fmt: skip
    select_path(ordered, kept_of.get(current) if current is not None else None)
    fields: dict[str, Any] = {
        "title": clean_title(item.get("title") or chat.get("title"), title_from(ordered)),
        "system_prompt": _system_prompt(chat),
    }
    for flag in ("pinned", "archived"):
        if isinstance(item.get(flag), bool):
            fields[flag] = item[flag]
    created = moment(item.get("created_at"))
    own = item.get("id") or chat.get("id")
    if not isinstance(own, str) or not own:
        raise invalid(label, ["id"], "missing")
    return NewConversation(source_id=f"openwebui:{own}"[:200], messages=ordered, created_at=created,
                           updated_at=moment(item.get("updated_at")) or created, fields=fields)  # fmt: skip
