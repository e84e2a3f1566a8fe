"""What every importer shares: the limits, the refusals that name what is wrong, validation with JSON Schema, times,
and turning a file's message tree into the order and selection Parley stores.

An error names the conversation (its index in the file, from 0, and its title) and the field, as a path into it:
``conversation 3 ("Trip plans"): mapping["a1"].message.author.role: expected a string``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from ..attachments.files import FileLimits
from ..refusals import Refusal
from ..store.transfer import NewMessage

#: The longest a title may be (``Conversation.title``).
TITLE_LENGTH = 200
#: The largest integer a count column holds (SQL ``INTEGER``, 32 bits).
MAX_INT = 2**31 - 1
#: Most characters of a value quoted in an error message.
QUOTE_LENGTH = 60


@dataclass(frozen=True)
class Limits:
    """How much one import may hold.

    Attributes:
        max_bytes: the file's size, bytes (200 MB).
        max_conversations: conversations in the file.
        max_messages: messages (nodes) in one conversation.
        files: what one attached file may be (Parley JSON's attachments, read again as an upload is); a file over
            them is left out with a warning.
    """

    max_bytes: int = 200 * 1024 * 1024
    max_conversations: int = 10_000
    max_messages: int = 20_000
    files: FileLimits = FileLimits()


class InvalidImport(Refusal, ValueError):
    """Raised for a file Parley cannot import: not JSON, not a known format, or a field that is wrong (the message
    names the conversation and the field). Nothing of the file is imported."""

    status = 422
    code = "invalid_import"


class UnreadableImport(InvalidImport):
    """Raised for a file that is not JSON (nor a zip holding it), or JSON of no format Parley reads."""

    status = 400
    code = "unreadable_import"


class ImportTooLarge(Refusal, ValueError):
    """Raised for a file over one of the ``Limits`` (size, conversations, messages per conversation)."""

    status = 413
    code = "import_too_large"


def conversation_label(index: int, item: Any, title_key: str = "title") -> str:
    """``conversation 3 ("Trip plans")`` for item ``index`` of a file (without the title when it has none)."""
    title = item.get(title_key) if isinstance(item, dict) else None
    if isinstance(title, str) and title.strip():
        return f"conversation {index} ({json.dumps(quoted(title.strip()), ensure_ascii=False)})"
    return f"conversation {index}"


def quoted(text: str) -> str:
    """``text`` cut to ``QUOTE_LENGTH`` characters (an ellipsis says it was cut)."""
    return text if len(text) <= QUOTE_LENGTH else text[: QUOTE_LENGTH - 1] + "…"


def field_path(parts: Iterable[Any]) -> str:
    """A JSON path as people read it: ``mapping["a1"].message.content.parts[0]`` (``<top>`` when empty)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return text or "<top>"


def invalid(label: str, path: Iterable[Any], problem: str) -> InvalidImport:
    """The refusal for ``problem`` at ``path`` in the conversation ``label``."""
    return InvalidImport(f"{label}: {field_path(path)}: {problem}")


_TYPE_WORDS = {"string": "a string", "object": "an object", "array": "a list", "number": "a number",
               "integer": "an integer", "boolean": "true or false", "null": "null"}  # fmt: skip


def _type_name(value: Any) -> str:
    for name, kind in (("null", type(None)), ("boolean", bool), ("string", str), ("object", dict), ("array", list)):
        if isinstance(value, kind):
            return _TYPE_WORDS[name]
    return "a number" if isinstance(value, int | float) else type(value).__name__


def _explain(error: ValidationError) -> tuple[list[Any], str]:
    """Where a JSON Schema error is and what is wrong, in words."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "?")
        return [*path, missing], "missing"
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        expected = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds)
        return path, f"expected {expected}, got {_type_name(error.instance)}"
    if error.validator == "enum":
        return path, f"expected one of {', '.join(json.dumps(v) for v in error.validator_value)}"
    return path, quoted(error.message)


class Schema:
    """A JSON Schema (draft 2020-12) that one conversation of a file must match.

    Args:
        schema: the schema, as a dict.
        title_key: the conversation's field that holds its title (for error messages).
    """

    def __init__(self, schema: dict[str, Any], title_key: str = "title") -> None:
        Draft202012Validator.check_schema(schema)
        self.validator = Draft202012Validator(schema)
        self.title_key = title_key

    def check(self, index: int, item: Any) -> None:
        """Raise InvalidImport naming conversation ``index`` and the first wrong field when ``item`` does not match."""
        error = best_match(self.validator.iter_errors(item))
        if error is not None:
            path, problem = _explain(error)
            raise invalid(conversation_label(index, item, self.title_key), path, problem)


def moment(value: Any) -> datetime | None:
    """A time from a file as an aware UTC datetime: seconds since the epoch (milliseconds when it is that large), or an
    ISO 8601 string (``Z`` or an offset; none: UTC); None for None, an empty string, or a time that cannot be."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if value > 1e11 else value
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def clean_title(text: Any, fallback: str = "Imported chat") -> str:
    """A title as Parley keeps it: whitespace collapsed, at most ``TITLE_LENGTH`` characters; ``fallback`` if blank."""
    title = " ".join(text.split()) if isinstance(text, str) else ""
    return (title or fallback)[:TITLE_LENGTH]


def title_from(messages: Sequence[NewMessage], fallback: str = "Imported chat") -> str:
    """A title from the first user message (its first 60 characters), for a conversation that has none."""
    first = next((m.fields.get("content", "") for m in messages if m.role == "user"), "")
    return clean_title(" ".join(first.split())[:60], fallback)


def check_count(label: str, count: int, limits: Limits) -> None:
    """Raise ImportTooLarge when a conversation holds more messages than ``limits`` allow."""
    if count > limits.max_messages:
        raise ImportTooLarge(f"{label}: {count:,} messages, more than the limit of {limits.max_messages:,}")


def ordered_tree(label: str, messages: Sequence[NewMessage], order: dict[str, Any], path_of: Any) -> list[NewMessage]:
    """``messages`` ordered as the store writes them: each parent before its children, siblings by ``order[key]``.

    Args:
        label: the conversation, for errors.
        messages: its messages, in any order (keys unique).
        order: a sort key per message key (e.g. ``(created time, position in the file)``).
        path_of: ``path_of(key, field)`` -> the path of that message's field in the file, for errors.

    Raises:
        InvalidImport: a message's parent is not in the conversation, or parents form a cycle.
    """
    by_key = {m.key: m for m in messages}
    children: defaultdict[str | None, list[NewMessage]] = defaultdict(list)
    for message in messages:
        if message.parent is not None and message.parent not in by_key:
            raise invalid(label, path_of(message.key, "parent"), f"no message {json.dumps(quoted(message.parent))}")
        children[message.parent].append(message)
    result: list[NewMessage] = []
    stack = sorted(children[None], key=lambda m: order[m.key], reverse=True)
    while stack:
        message = stack.pop()
        result.append(message)
        stack.extend(sorted(children[message.key], key=lambda m: order[m.key], reverse=True))
    if len(result) != len(messages):
        reached = {m.key for m in result}
        stuck = next(m for m in messages if m.key not in reached)
        raise invalid(label, path_of(stuck.key, "parent"), "its parents form a cycle")
    # a stack gives depth first order, children right after their parent, siblings in order
    return result


def select_path(messages: Sequence[NewMessage], leaf: str | None) -> None:
    """Mark what is shown: the path from the root to ``leaf`` (None or unknown: the last message's), and in every
    other group of siblings the last one (the newest, in the given order)."""
    by_key = {m.key: m for m in messages}
    if leaf not in by_key:
        leaf = messages[-1].key if messages else None
    on_path: set[str] = set()
    while leaf is not None and leaf not in on_path:
        on_path.add(leaf)
        leaf = by_key[leaf].parent
    groups: defaultdict[str | None, list[NewMessage]] = defaultdict(list)
    for message in messages:
        groups[message.parent].append(message)
    for siblings in groups.values():
        chosen = next((m for m in siblings if m.key in on_path), siblings[-1])
        for message in siblings:
            message.selected = message is chosen


def merge_runs(messages: list[NewMessage]) -> tuple[list[NewMessage], dict[str, str]]:
    """Join an assistant message into its assistant parent when it is that parent's only child (what is left of one
    answer around skipped tool steps): contents joined by a blank line. ``messages`` are parents first.

    Returns:
        The messages kept, and for each one joined into another the key of that one."""
    child_count: defaultdict[str | None, int] = defaultdict(int)
    for message in messages:
        child_count[message.parent] += 1
    by_key = {m.key: m for m in messages}
    merged_into: dict[str, str] = {}
    kept: list[NewMessage] = []
    for message in messages:
        original = message.parent
        target = merged_into.get(original, original) if original is not None else None
        parent = by_key[target] if target is not None else None
        if (parent is not None and parent.role == "assistant" and message.role == "assistant"
                and child_count[original] == 1):  # fmt: skip
            texts = [t for t in (parent.fields.get("content", ""), message.fields.get("content", "")) if t]
            parent.fields["content"] = "\n\n".join(texts)
            merged_into[message.key] = parent.key
            continue
        message.parent = target
        kept.append(message)
    return kept, merged_into
