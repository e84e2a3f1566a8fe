"""Import ChatGPT's data export, ``conversations.json``: a list of conversations, each a tree of nodes.

The format (OpenAI's "Export data", Settings → Data controls; undocumented, as real exports show it)::

    [{"title": "…", "create_time": 1714000000.1, "update_time": …, "id": "<uuid>", "conversation_id": "<uuid>",
      "current_node": "<node id>",
      "mapping": {"<node id>": {"id": "<node id>", "parent": "<node id>" | null, "children": ["<node id>", …],
                                "message": null | {"id": …, "author": {"role": "system|user|assistant|tool"},
                                                    "create_time": 1714000000.2 | null,
                                                    "content": {"content_type": "text", "parts": ["…"]},
                                                    "metadata": {"model_slug": "gpt-4o", …}, "recipient": "all"}}}}]

``current_node`` is the leaf of the path the user last saw: it becomes the selected path; every other branch is kept
as variants. What Parley keeps: user and assistant messages of type ``text`` and ``multimodal_text`` (an image or file
part becomes ``[image]`` / ``[file]``) addressed to everyone. Left out: the empty root, system messages, messages
hidden from the conversation (custom instructions), tool calls (an assistant message to a tool) and tool outputs.
A skipped node's children hang from its nearest kept ancestor; what is left of one answer around a tool step is joined
into one answer; ``thoughts`` (reasoning models) become the next answer's reasoning.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
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
    merge_runs,
    moment,
    ordered_tree,
    quoted,
    select_path,
    title_from,
)

_NUMBER = {"type": ["number", "null"]}
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["author", "content"],
    "properties": {
        "id": {"type": "string"},
        "author": {"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}},
        "create_time": _NUMBER,
        "content": {
            "type": "object",
            "properties": {"content_type": {"type": "string"}, "parts": {"type": ["array", "null"]}},
        },
        "metadata": {"type": ["object", "null"]},
        "recipient": {"type": ["string", "null"]},
    },
}
CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mapping"],
    "properties": {
        "title": {"type": ["string", "null"]},
        "create_time": _NUMBER,
        "update_time": _NUMBER,
        "id": {"type": ["string", "null"]},
        "conversation_id": {"type": ["string", "null"]},
        "current_node": {"type": ["string", "null"]},
        "mapping": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "parent": {"type": ["string", "null"]},
                    "children": {"type": "array", "items": {"type": "string"}},
                    "message": MESSAGE_SCHEMA,
                },
            },
        },
    },
}
SCHEMA = Schema(CONVERSATION_SCHEMA)
#: ChatGPT's ``finish_details.type`` -> the chat completions ``finish_reason``.
FINISH_REASONS = {"stop": "stop", "max_tokens": "length"}


def looks_like(item: Any) -> bool:
    """True for what looks like one ChatGPT conversation (it has a ``mapping``)."""
    return isinstance(item, dict) and "mapping" in item


def source_id(item: dict[str, Any]) -> str:
    """``chatgpt:<conversation id>``; without one, ``chatgpt:<sha256>`` of its creation time and node ids."""
    own = item.get("conversation_id") or item.get("id")
    if isinstance(own, str) and own:
        return f"chatgpt:{own}"[:200]
    digest = hashlib.sha256(json.dumps([item.get("create_time"), sorted(item["mapping"])]).encode()).hexdigest()
    return f"chatgpt:{digest[:40]}"


def _text(content: dict[str, Any]) -> str:
    """The text of a ``text`` or ``multimodal_text`` content: its string parts; an image or file part as a mark."""
    pieces = []
    for part in content.get("parts") or []:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, dict):
            kind = str(part.get("content_type", ""))
            if isinstance(part.get("text"), str):
                pieces.append(part["text"])
            else:
                pieces.append("[image]" if "image" in kind else "[file]")
    return "\n".join(piece for piece in pieces if piece)


def _thoughts(content: dict[str, Any]) -> str:
    """The reasoning of a ``thoughts`` content (``{"thoughts": [{"summary", "content"}]}``)."""
    texts = []
    for thought in content.get("thoughts") or []:
        if isinstance(thought, dict):
            texts += [str(thought[key]) for key in ("summary", "content") if isinstance(thought.get(key), str)]
    return "\n\n".join(text for text in texts if text)


def _kept(
    key: str, message: dict[str, Any] | None, parent: str | None, reasoning: str, fallback_time: Any
) -> tuple[NewMessage | None, str]:
    """The message Parley keeps for one node (None: skipped) and the reasoning still waiting for an answer."""
    if message is None:
        return None, reasoning
    role = message["author"]["role"]
    content = message["content"]
    kind = content.get("content_type", "text")
    metadata = message.get("metadata") or {}
    if role == "assistant" and kind == "thoughts":
        return None, "\n\n".join(t for t in (reasoning, _thoughts(content)) if t)
    hidden = metadata.get("is_visually_hidden_from_conversation") is True
    to_everyone = message.get("recipient") in (None, "all")
    if role not in ("user", "assistant") or hidden or not to_everyone or kind not in ("text", "multimodal_text"):
        return None, reasoning
    text = _text(content)
    if not text.strip():
        return None, reasoning
    fields: dict[str, Any] = {"content": text}
    if role == "assistant":
        if isinstance(metadata.get("model_slug"), str):
            fields["model"] = metadata["model_slug"][:200]
        finish = metadata.get("finish_details")
        if isinstance(finish, dict) and finish.get("type") in FINISH_REASONS:
            fields["finish_reason"] = FINISH_REASONS[finish["type"]]
        if reasoning:
            events = [ReasoningDelta(reasoning), ReasoningEnded(0.0), TextDelta(text)]
            fields["events"] = [to_json(e) for e in numbered_log(events)]  # type: ignore[arg-type]
            reasoning = ""
    created = moment(message.get("create_time")) or moment(fallback_time)
    return NewMessage(key=key, parent=parent, role=Role(role), created_at=created, fields=fields), reasoning


def conversation(index: int, item: Any, limits: Limits) -> NewConversation:
    """One ChatGPT conversation. Raises InvalidImport naming the field that is wrong, ImportTooLarge over a limit."""
    label = conversation_label(index, item)
    if isinstance(item, dict) and isinstance(item.get("mapping"), dict):
        check_count(label, len(item["mapping"]), limits)
    SCHEMA.check(index, item)
    mapping: dict[str, dict[str, Any]] = item["mapping"]
    position = {key: number for number, key in enumerate(mapping)}
    children: defaultdict[str | None, list[str]] = defaultdict(list)
    for key, node in mapping.items():
        parent = node.get("parent")
        if parent is not None and parent not in mapping:
            raise invalid(label, ["mapping", key, "parent"], f"no node {json.dumps(quoted(parent))}")
        children[parent].append(key)
    for parent, keys in children.items():
        listed = {child: number for number, child in enumerate(mapping[parent].get("children") or [])} if parent else {}
        keys.sort(key=lambda child: (listed.get(child, len(listed)), position[child]))
    current = item.get("current_node")
    if current is not None and current not in mapping:
        raise invalid(label, ["current_node"], f"no node {json.dumps(quoted(current))}")

    messages: list[NewMessage] = []
    kept_of: dict[str, str | None] = {}  # node -> the nearest kept message at or above it
    stack: list[tuple[str, str | None, str]] = [(root, None, "") for root in reversed(children[None])]
    while stack:
        key, parent, reasoning = stack.pop()
        if key in kept_of:
            continue
        new, reasoning = _kept(key, mapping[key].get("message"), parent, reasoning, item.get("create_time"))
        if new is not None:
            messages.append(new)
            parent = key
        kept_of[key] = parent
        stack.extend((child, parent, reasoning) for child in reversed(children[key]))
    if len(kept_of) != len(mapping):
        stuck = next(key for key in mapping if key not in kept_of)
        raise invalid(label, ["mapping", stuck, "parent"], "its parents form a cycle")

    messages, merged_into = merge_runs(messages)
    leaf = kept_of.get(current) if current is not None else None
    leaf = merged_into.get(leaf, leaf) if leaf is not None else None
    ordered = ordered_tree(label, messages, {m.key: position[m.key] for m in messages},
                           lambda key, name: ["mapping", key, name])  # fmt: skip
    select_path(ordered, leaf)
    title = clean_title(item.get("title"), title_from(ordered))
    created = moment(item.get("create_time"))
    return NewConversation(source_id=source_id(item), messages=ordered, created_at=created,
                           updated_at=moment(item.get("update_time")) or created, fields={"title": title})  # fmt: skip
