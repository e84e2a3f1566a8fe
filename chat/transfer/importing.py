"""Import a file of conversations: find its format, check all of it, then write it in one transaction.

Formats: Parley JSON (``parley_json.py``), ChatGPT's ``conversations.json`` (``chatgpt.py``), Claude's
``conversations.json`` (``claude.py``) and Open WebUI's chat export (``openwebui.py``); the file may also be the
zip the export came as (its ``conversations.json``, or its only ``.json`` file). Every conversation is read and
checked before anything is written, so a bad file imports nothing and the error names the conversation and the field.
Each conversation has a stable source id (``"chatgpt:<id>"``, ``"claude:<uuid>"``, ``"openwebui:<id>"``,
``"parley:<sha>"``): a conversation the user already imported is skipped.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

from ..store import Store
from ..store.transfer import ImportResult, NewConversation, import_conversations
from . import chatgpt, claude, openwebui, parley_json
from .base import ImportTooLarge, InvalidImport, Limits, UnreadableImport

#: The formats by name, with the function reading one conversation of each.
READERS: dict[str, Callable[[int, Any, Limits], NewConversation]] = {
    "parley": parley_json.conversation,
    "chatgpt": chatgpt.conversation,
    "claude": claude.conversation,
    "openwebui": openwebui.conversation,
}
_DETECTORS = (("chatgpt", chatgpt.looks_like), ("claude", claude.looks_like), ("openwebui", openwebui.looks_like))
#: The limits of an import unless told others.
DEFAULT_LIMITS = Limits()
KNOWN = "a Parley JSON export, ChatGPT's or Claude's conversations.json, or an Open WebUI chat export"

Stages = Callable[[str, int, int], None]
"""Told ``(stage, done, total)``: ``"reading"`` while the file is checked, then ``"writing"``; conversations."""


def _unzipped(raw: bytes, limits: Limits) -> bytes:
    """The JSON file inside a zip export. Raises InvalidImport (none, or not a zip), ImportTooLarge."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise UnreadableImport("The file is neither JSON nor a zip file.") from None
    with archive:
        names = [info for info in archive.infolist() if info.filename.lower().endswith(".json")]
        chosen = next((i for i in names if i.filename.rsplit("/", 1)[-1] == "conversations.json"), None)
        if chosen is None and len(names) == 1:
            chosen = names[0]
        if chosen is None:
            raise UnreadableImport("The zip file holds no conversations.json.")
        if chosen.file_size > limits.max_bytes:
            raise ImportTooLarge(f"{chosen.filename} is larger than the limit of {limits.max_bytes:,} bytes.")
        try:
            return archive.read(chosen)
        except Exception:  # corrupt, encrypted, an unknown compression: zipfile, zlib and others raise their own
            raise UnreadableImport(f"{chosen.filename} in the zip file cannot be read.") from None


def _no_constant(name: str) -> Any:
    """Refuse ``NaN`` and ``Infinity``, which Python's JSON reader takes but JSON does not have (RFC 8259 §6)."""
    raise UnreadableImport(f"The file is not JSON: {name} is not a JSON number.")


def _without_nul(value: Any) -> Any:
    """``value`` with every U+0000 taken out of its strings (PostgreSQL's text cannot hold it)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def load(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The JSON document of a file (or of the zip it is). Raises ImportTooLarge, InvalidImport (not JSON)."""
    if len(raw) > limits.max_bytes:
        raise ImportTooLarge(f"The file is larger than the limit of {limits.max_bytes:,} bytes.")
    if raw[:2] == b"PK":
        raw = _unzipped(raw, limits)
    try:
        document = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise UnreadableImport("The file is JSON nested too deeply.") from None
    except UnicodeDecodeError:
        raise UnreadableImport("The file is not text in UTF-8.") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise UnreadableImport(f"The file is not JSON: {error.msg} at {where}.") from None
    return _without_nul(document) if b"\\u0000" in raw else document


def detect(document: Any) -> tuple[str, list[Any]]:
    """The format of a document and its conversations: ``("chatgpt", [ … ])``.

    Raises:
        InvalidImport: not a format Parley reads.
    """
    if parley_json.is_parley(document):
        return "parley", parley_json.items(document)
    items = document if isinstance(document, list) else [document] if isinstance(document, dict) else None
    if items is None:
        raise UnreadableImport(f"The file is not {KNOWN}.")
    if not items:
        return "empty", []
    for name, looks_like in _DETECTORS:
        if looks_like(items[0]):
            return name, items
    if isinstance(document, dict):
        raise UnreadableImport(f"The file is not {KNOWN}.")
    raise InvalidImport(f"conversation 0: not a conversation of {KNOWN}.")


def read(
    raw: bytes, limits: Limits = DEFAULT_LIMITS, stages: Stages | None = None
) -> tuple[str, list[NewConversation]]:
    """Read and check every conversation of a file, writing nothing.

    Args:
        raw: the file's bytes.
        limits: its size, conversations, messages per conversation.
        stages: told ``("reading", done, total)`` now and then.

    Returns:
        The format's name and the conversations to write.

    Raises:
        ImportTooLarge: over a limit.
        InvalidImport: not JSON, not a known format, or a field that is wrong (the message says which).
    """
    name, items = detect(load(raw, limits))
    if len(items) > limits.max_conversations:
        raise ImportTooLarge(
            f"The file holds {len(items):,} conversations, more than the limit of {limits.max_conversations:,}."
        )
    reader = READERS.get(name)
    conversations = []
    step = max(1, len(items) // 100)
    for index, item in enumerate(items):
        conversations.append(reader(index, item, limits))  # type: ignore[misc]
        if stages is not None and (index + 1) % step == 0:
            stages("reading", index + 1, len(items))
    return name, conversations


def import_file(
    store: Store, owner: int | None, raw: bytes, *, limits: Limits = DEFAULT_LIMITS, stages: Stages | None = None
) -> tuple[str, ImportResult]:
    """Import a file as ``owner``'s conversations, in one transaction (blocking: call it in a thread).

    Args:
        store: the database.
        owner: the user id (None: personal mode).
        raw: the file's bytes.
        limits: what one import may hold.
        stages: told ``(stage, done, total)``: ``"reading"``, then ``"writing"``.

    Returns:
        The format's name, and what was imported and skipped.

    Raises:
        ImportTooLarge, InvalidImport: see ``read``; nothing was written.
        ImportConflict: another import wrote the same conversations meanwhile; nothing was written.
    """
    name, conversations = read(raw, limits, stages)

    def writing(done: int, total: int) -> None:
        if stages is not None:
            stages("writing", done, total)

    return name, import_conversations(store, owner, conversations, writing)
