"""Conversations as files: Markdown (the shown path, to read) and Parley JSON (everything, to import again).

**Parley JSON** (``FORMAT``, version ``VERSION``) is lossless: every message of the tree, every variant, with its
status, error, settings, usage, timings, content events (reasoning, tool calls), attached files and times::

    {"format": "parley", "version": 1, "exported_at": "2025-01-01T12:00:00+00:00",
     "conversations": [{"id": 7, "title": "…", "system_prompt": "", "model": null, "temperature": 0.7,
                        "tools": null, "pinned": false, "archived": false, "source_id": null,
                        "created_at": "…", "updated_at": "…",
                        "messages": [{"id": 12, "parent_id": null, "selected": true, "role": "user", "content": "…",
                                      "status": "complete", …, "events": null, "comparing": false,
                                      "created_at": "…",
                                      "attachments": [{"kind": "image", "name": "photo.jpg",
                                                       "media_type": "image/jpeg", "width": 800, "height": 600,
                                                       "text": null, "tokens": 765, "sent_chars": null,
                                                       "created_at": "…", "data": "<base64>",
                                                       "thumbnail": "<base64>"}]}, …]}]}

Messages are oldest first (by id); ``parent_id`` names another message of the same conversation. Times are ISO 8601
in UTC. ``attachments`` (only on a message that has some, in the order they were attached): each file's bytes as
Parley stores them (an image re-encoded, a document as uploaded), standard base64 (RFC 4648, padded, no line breaks),
and its thumbnail's (an image's; ``null`` for a document); ``kind`` ``"image"`` or ``"document"``; ``width`` and
``height`` an image's pixels; ``text`` a document's extracted text; ``tokens`` as counted when attached;
``sent_chars`` the characters of the text sent when it was cut to fit (``null``: whole). An import reads ``data``
again (``chat.attachments.prepare``) and takes the kind, type, size, text and thumbnail from it, not from the file.

**Markdown** is the conversation as shown (the selected path): its title, settings, system prompt, then each turn
under a role heading (a user message's files listed by name under it, ``Attached: `photo.jpg` (image)``), with
reasoning and tool calls summarised as quotes and a failed or stopped answer saying so.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..engine.events import content_of, parts
from ..store import Attachment, Conversation, Message, Role, Status, selected_path
from ..store.transfer import ConversationMessages

FORMAT = "parley"
VERSION = 1
#: The message columns a Parley JSON export holds (besides ``id``, ``parent_id``, ``created_at``).
MESSAGE_FIELDS = ("selected", "role", "content", "status", "error", "error_status", "error_code", "model",
                  "temperature", "finish_reason", "prompt_tokens", "completion_tokens", "ttft", "duration",
                  "omitted_messages", "events", "comparing")  # fmt: skip
#: The conversation columns it holds (besides ``id`` and the times).
CONVERSATION_FIELDS = ("title", "system_prompt", "model", "temperature", "tools", "pinned", "archived", "source_id")
#: Most characters of reasoning, tool arguments and tool results quoted in Markdown.
SUMMARY_LENGTH = 400

#: The fields of each attachment (besides ``created_at``, ``data`` and ``thumbnail``).
ATTACHMENT_FIELDS = ("kind", "name", "media_type", "width", "height", "text", "tokens", "sent_chars")

Exported = Sequence[tuple[Conversation, Sequence[Message]]]
"""Conversations with every message of each (``chat.store.transfer.owned_conversations``). Messages that are a
``ConversationMessages`` bring their attachments; a plain sequence has none."""


def iso(moment: datetime | None) -> str | None:
    """``moment`` as ISO 8601 in UTC (a naive time is taken as UTC), or None."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _value(value: Any) -> Any:
    return value.value if isinstance(value, Role | Status) else value


def _attachments_of(messages: Sequence[Message]) -> dict[int, list[Attachment]]:
    """The attachments ``messages`` bring (message id -> its attachments), none unless a ``ConversationMessages``."""
    return messages.attachments if isinstance(messages, ConversationMessages) else {}


def attachments_json(rows: Sequence[Attachment], blobs: dict[str, bytes], encoded: dict[str, str]) -> list[dict]:
    """A message's attachments as Parley JSON's objects (see the module docstring).

    Args:
        rows: the attachments, in the order they were attached.
        blobs: the bytes of their data and thumbnails (SHA-256 -> bytes); one missing (deleted meanwhile) leaves its
            attachment out (its thumbnail: ``null``).
        encoded: base64 already made (SHA-256 -> text), filled in: a file attached twice is encoded once.
    """

    def base64_of(sha: str | None) -> str | None:
        if sha is None or sha not in blobs:
            return None
        if sha not in encoded:
            encoded[sha] = base64.b64encode(blobs[sha]).decode("ascii")
        return encoded[sha]

    found = []
    for row in rows:
        data = base64_of(row.sha256)
        if data is not None:
            found.append({**{name: getattr(row, name) for name in ATTACHMENT_FIELDS},
                          "created_at": iso(row.created_at), "data": data,
                          "thumbnail": base64_of(row.thumbnail_sha256)})  # fmt: skip
    return found


def conversation_json(conversation: Conversation, messages: Sequence[Message]) -> dict[str, Any]:
    """One conversation as Parley JSON's object (see the module docstring); with ``messages`` a
    ``ConversationMessages``, the bytes of their attachments are read from the database now."""
    attachments = _attachments_of(messages)
    blobs = messages.blobs() if attachments and isinstance(messages, ConversationMessages) else {}
    encoded: dict[str, str] = {}
    rows = []
    for m in sorted(messages, key=lambda m: m.id or 0):
        row = {"id": m.id, "parent_id": m.parent_id, **{name: _value(getattr(m, name)) for name in MESSAGE_FIELDS},
               "created_at": iso(m.created_at)}  # fmt: skip
        files = attachments_json(attachments.get(m.id, []), blobs, encoded)  # type: ignore[arg-type]
        if files:
            row["attachments"] = files
        rows.append(row)
    return {
        "id": conversation.id,
        **{name: _value(getattr(conversation, name)) for name in CONVERSATION_FIELDS},
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
        "messages": rows,
    }


def parley_document(conversations: Exported, *, now: datetime | None = None) -> dict[str, Any]:
    """Conversations as a Parley JSON document (a dict; ``json.dumps`` it)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": iso(now or datetime.now(UTC)),
        "conversations": [conversation_json(c, m) for c, m in conversations],
    }


def json_bytes(document: dict[str, Any]) -> bytes:
    """A document as UTF-8 JSON, non-ASCII kept as is."""
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


def _quote(text: str) -> str:
    """``text`` as a Markdown block quote."""
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def _cut(text: str, length: int = SUMMARY_LENGTH) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _code(text: str) -> str:
    """``text`` as inline code (backticks inside it fenced with more of them)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"


def _when(moment: datetime | None) -> str:
    text = iso(moment)
    return f"{text[:16].replace('T', ' ')} UTC" if text else ""


def _answer_markdown(message: Message) -> list[str]:
    """The body of one answer: reasoning and tool calls summarised, the text, and how it ended when not well."""
    blocks: list[str] = []
    for part in parts(content_of(message)):
        if part.kind == "text" and part.text.strip():
            blocks.append(part.text.strip("\n"))
        elif part.kind == "reasoning" and part.text.strip():
            took = f" ({part.seconds:.0f} s)" if part.seconds is not None else ""
            blocks.append(_quote(f"**Reasoning**{took}\n\n{_cut(part.text.strip())}"))
        elif part.kind == "notice":
            blocks.append(_quote(f"*{part.text}*"))
        elif part.kind == "tool_calls":
            for call in part.calls:
                lines = [f"**Tool call** {_code(call.name)} — {call.status.value.replace('_', ' ')}"]
                if call.arguments:
                    lines.append(f"Arguments: {_code(_cut(' '.join(call.arguments.split())))}")
                if call.result is not None:
                    lines.append(f"Result: {_code(_cut(' '.join(call.result.split())))}")
                blocks.append(_quote("\n".join(lines)))
    ending = {
        Status.cancelled: "*Stopped.*",
        Status.error: f"*Failed: {message.error or 'the upstream failed'}*",
        Status.interrupted: f"*Interrupted: {message.error or 'Parley stopped while it streamed'}*",
        Status.streaming: "*Still being written when exported.*",
    }.get(message.status)
    if ending:
        blocks.append(ending)
    return blocks


def _attached_markdown(rows: Sequence[Attachment]) -> str:
    """``Attached: `photo.jpg` (image), `report.pdf` (document)``: a message's files by name (no bytes)."""
    return "Attached: " + ", ".join(f"{_code(row.name)} ({row.kind})" for row in rows)


def markdown(conversation: Conversation, messages: Sequence[Message]) -> str:
    """A conversation's shown path as readable Markdown (see the module docstring); with ``messages`` a
    ``ConversationMessages``, a message's attachments are listed by name under it."""
    attachments = _attachments_of(messages)
    lines = [f"# {conversation.title}", ""]
    about = [f"Created {_when(conversation.created_at)}"]
    if conversation.model:
        about.append(f"model {_code(conversation.model)}")
    about.append(f"temperature {conversation.temperature:g}")
    lines += ["*" + " · ".join(about) + "*", ""]
    if conversation.system_prompt.strip():
        lines += ["## System prompt", "", conversation.system_prompt.strip("\n"), ""]
    for message in selected_path(messages):
        if message.role == Role.assistant:
            heading = ["Assistant"] + ([_code(message.model)] if message.model else [])
            body = _answer_markdown(message)
        else:
            heading = ["User" if message.role == Role.user else "System"]
            body = [message.content.strip("\n")] if message.content.strip() else []
            if attachments.get(message.id):  # type: ignore[arg-type]
                body.append(_attached_markdown(attachments[message.id]))  # type: ignore[index]
        if message.created_at:
            heading.append(_when(message.created_at))
        lines += ["## " + " · ".join(heading), ""]
        for block in body:
            lines += [block, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def filename(conversation: Conversation, extension: str) -> str:
    """A file name for a conversation: its id and title, safe on every system (``7-trip-plans.md``)."""
    slug = re.sub(r"[^\w]+", "-", conversation.title.lower(), flags=re.UNICODE).strip("-_")[:60] or "chat"
    return f"{conversation.id}-{slug}.{extension}"


def markdown_zip(conversations: Exported) -> bytes:
    """A zip file of one Markdown file per conversation (``filename``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for conversation, messages in conversations:
            archive.writestr(filename(conversation, "md"), markdown(conversation, messages))
    return buffer.getvalue()
