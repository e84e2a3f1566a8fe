"""Conversations as files: Markdown (the shown path, to read) and Parley JSON (everything, to import again).

**Parley JSON** (``FORMAT``, version ``VERSION``) is lossless: every message of the tree, every variant, with its
status, error, settings, usage, timings, content events (reasoning, tool calls) and times::

    {"format": "parley", "version": 1, "exported_at": "2025-01-01T12:00:00+00:00",
     "conversations": [{"id": 7, "title": "…", "system_prompt": "", "model": null, "temperature": 0.7,
                        "tools": null, "pinned": false, "archived": false, "source_id": null,
                        "created_at": "…", "updated_at": "…",
                        "messages": [{"id": 12, "parent_id": null, "selected": true, "role": "user", "content": "…",
                                      "status": "complete", …, "events": null, "created_at": "…"}, …]}]}

Messages are oldest first (by id); ``parent_id`` names another message of the same conversation. Times are ISO 8601
in UTC.

**Markdown** is the conversation as shown (the selected path): its title, settings, system prompt, then each turn
under a role heading, with reasoning and tool calls summarised as quotes and a failed or stopped answer saying so.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..engine.events import content_of, parts
from ..store import Conversation, Message, Role, Status, selected_path

FORMAT = "parley"
VERSION = 1
#: The message columns a Parley JSON export holds (besides ``id``, ``parent_id``, ``created_at``).
MESSAGE_FIELDS = ("selected", "role", "content", "status", "error", "error_status", "error_code", "model",
                  "temperature", "finish_reason", "prompt_tokens", "completion_tokens", "ttft", "duration",
                  "omitted_messages", "events")  # fmt: skip
#: The conversation columns it holds (besides ``id`` and the times).
CONVERSATION_FIELDS = ("title", "system_prompt", "model", "temperature", "tools", "pinned", "archived", "source_id")
#: Most characters of reasoning, tool arguments and tool results quoted in Markdown.
SUMMARY_LENGTH = 400

Exported = Sequence[tuple[Conversation, Sequence[Message]]]
"""Conversations with every message of each (``chat.store.transfer.owned_conversations``)."""


def iso(moment: datetime | None) -> str | None:
    """``moment`` as ISO 8601 in UTC (a naive time is taken as UTC), or None."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _value(value: Any) -> Any:
    return value.value if isinstance(value, Role | Status) else value


def conversation_json(conversation: Conversation, messages: Sequence[Message]) -> dict[str, Any]:
    """One conversation as Parley JSON's object (see the module docstring)."""
    return {
        "id": conversation.id,
        **{name: _value(getattr(conversation, name)) for name in CONVERSATION_FIELDS},
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
        "messages": [
            {"id": m.id, "parent_id": m.parent_id, **{name: _value(getattr(m, name)) for name in MESSAGE_FIELDS},
             "created_at": iso(m.created_at)}
            for m in sorted(messages, key=lambda m: m.id or 0)
        ],
    }  # fmt: skip


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


def markdown(conversation: Conversation, messages: Sequence[Message]) -> str:
    """A conversation's shown path as readable Markdown (see the module docstring)."""
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
