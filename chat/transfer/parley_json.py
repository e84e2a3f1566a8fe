"""Import Parley's own JSON export (``export.py``'s format): the same trees, every field kept.

The source id of a conversation is the one it had (an imported one keeps ``"chatgpt:…"``), else
``"parley:<sha256>"`` of its export's own id and creation time: the same export imports once.

A user message's attachments are files from outside, read again as an upload is (``chat.attachments.prepare``: an
image decoded and re-encoded, a document's text extracted again): their kind, media type, size, text and thumbnail
come from that, never from the file's claims. One Parley does not take (corrupt, of an unknown type, over
``Limits.files``, not base64) is left out with a warning (``NewConversation.warnings``); the rest imports.
``sent_chars`` is kept when it is a count within the text; ``comparing`` only where a comparison can still be open
(assistant answers, at least two of one group, none continued from).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from ..attachments.files import AttachmentRefused, AttachmentTooLarge, FileLimits, clean_name, megabytes, prepare
from ..attachments.parts import IMAGE_TOKENS
from ..engine.events import from_json
from ..store import Role, Status
from ..store.transfer import NewAttachment, NewConversation, NewMessage
from .base import MAX_INT, Limits, Schema, check_count, clean_title, conversation_label, invalid, moment, ordered_tree
from .export import FORMAT, VERSION

log = logging.getLogger(__name__)

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
        "comparing": {"type": "boolean"},
        "created_at": _TEXT,
        "attachments": {"type": ["array", "null"], "items": {"type": "object"}},  # each one checked by ``_attachment``
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
                    "events", "comparing")  # fmt: skip


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


def _count(value: Any) -> int | None:
    """``value`` when it is a count a column holds (an int from 0 to ``MAX_INT``, not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT else None


def _attachment(entry: dict[str, Any], files: FileLimits) -> NewAttachment:
    """One attachment of a message, read again from its bytes (``data``, base64) as an upload is.

    Args:
        entry: the attachment's object in the file (``export.py``'s shape); only ``name``, ``data``, ``tokens``,
            ``sent_chars`` and ``created_at`` are taken from it.
        files: what the file may be.

    Returns:
        The attachment to write: the kind, media type, data, size, text and thumbnail ``prepare`` made.

    Raises:
        AttachmentRefused: no data, data that is not base64, or a file ``prepare`` refuses (AttachmentTooLarge too).
    """
    given = entry.get("name")
    name = clean_name(given if isinstance(given, str) else "file")
    data = entry.get("data")
    if not isinstance(data, str) or not data:
        raise AttachmentRefused(f"{name} has no data.")
    if len(data) // 4 * 3 > files.max_bytes + 3:  # refused before it is decoded
        raise AttachmentTooLarge(f"{name} is larger than {megabytes(files.max_bytes)}, the most a file may be.")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        try:  # another tool's base64 may be cut into lines
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise AttachmentRefused(f"{name}: its data is not base64.") from None
    file = prepare(raw, name, files)
    tokens = _count(entry.get("tokens"))
    if tokens is None and file.kind == "image":
        tokens = IMAGE_TOKENS
    sent = _count(entry.get("sent_chars"))
    if file.text is None or sent is None or sent > len(file.text):
        sent = None
    return NewAttachment(file=file, tokens=tokens, sent_chars=sent, created_at=moment(entry.get("created_at")))


def _attachments(
    label: str, key: str, role: Role, entries: Sequence[Any], files: FileLimits, warnings: list[str]
) -> tuple[list[NewAttachment], int]:
    """The attachments of message ``key`` that Parley takes, and how many were left out (each with a warning added
    to ``warnings``): all of them on a message that is not a user's."""
    if not entries:
        return [], 0
    if role != Role.user:
        warnings.append(f"{label}, message {key}: {len(entries)} attached file{'s' * (len(entries) != 1)} of "
                        f"{'an' if role == Role.assistant else 'a'} {role.value} message left out (only a user "
                        "message carries files).")  # fmt: skip
        return [], len(entries)
    kept: list[NewAttachment] = []
    for entry in entries:
        given = entry.get("name")
        name = json.dumps(clean_name(given if isinstance(given, str) else "file"), ensure_ascii=False)
        try:
            kept.append(_attachment(entry, files))
        except AttachmentRefused as refusal:
            warnings.append(f"{label}, message {key}: the attached file {name} was left out: {refusal}")
        except Exception as error:  # Pillow or pypdf failing on a hostile file in their own way: the file is left out
            log.warning("an imported attachment could not be read", exc_info=True)
            warnings.append(f"{label}, message {key}: the attached file {name} was left out: it could not be read "
                            f"({type(error).__name__}).")  # fmt: skip
    return kept, len(entries) - len(kept)


def _open_comparisons(messages: Sequence[NewMessage]) -> None:
    """Keep ``comparing`` only where a side-by-side comparison can still be open: on assistant answers of a group of
    siblings with at least two of them marked, none of the group continued from (the store ends a comparison when
    its shown answer is continued from); everywhere else it is False."""
    parents = {m.parent for m in messages}
    groups: defaultdict[str | None, list[NewMessage]] = defaultdict(list)
    for message in messages:
        groups[message.parent].append(message)
    for siblings in groups.values():
        marked = {m.key for m in siblings if m.fields.get("comparing") and m.role == Role.assistant}
        still_open = len(marked) >= 2 and not any(m.key in parents for m in siblings)
        for message in siblings:
            if "comparing" in message.fields:
                message.fields["comparing"] = still_open and message.key in marked


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def conversation(index: int, item: Any, limits: Limits) -> NewConversation:
    """One conversation of a Parley JSON document (``item``, number ``index`` of the file, from 0), its messages'
    attachments read again (``limits.files``); one that is refused is left out with a warning in the result's
    ``warnings``. Raises InvalidImport naming the field that is wrong (ImportTooLarge: too many messages)."""
    label = conversation_label(index, item)
    if isinstance(item, dict) and isinstance(item.get("messages"), list):
        check_count(label, len(item["messages"]), limits)
    SCHEMA.check(index, item)
    rows: list[dict[str, Any]] = item["messages"]
    positions: dict[str, int] = {}
    messages: list[NewMessage] = []
    warnings: list[str] = []
    attachments_skipped = 0
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
    _open_comparisons(ordered)
    for message in messages:  # files are read (the slow part) once the rest is known to be right, in file order
        entries = rows[positions[message.key]].get("attachments") or []
        message.attachments, left_out = _attachments(label, message.key, message.role, entries, limits.files, warnings)
        attachments_skipped += left_out
    fields = {name: item[name] for name in ("system_prompt", "model", "temperature", "tools", "pinned", "archived")
              if name in item}  # fmt: skip
    fields["title"] = clean_title(item.get("title"))
    return NewConversation(source_id=source_id(item), messages=ordered, created_at=moment(item.get("created_at")),
                           updated_at=moment(item.get("updated_at")), fields=fields,
                           attachments_skipped=attachments_skipped, warnings=warnings)  # fmt: skip
