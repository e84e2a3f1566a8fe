"""Import time for a large ChatGPT ``conversations.json``: ``--conversations`` (1,000) conversations of
``--messages`` (about 20) messages each, with a regenerated answer in every conversation (a branch), into a fresh
SQLite file (or ``--database-url``).

Printed: the file's size, the time to read and check it, the time to write it (one transaction), the total, and
conversations and messages per second; then the time of a second import of the same file (everything skipped).

Run from the repository root: ``.venv/bin/python -m bench.transfer`` (a few seconds), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from chat.store import Store
from chat.store.transfer import import_conversations
from chat.transfer.importing import read


def chatgpt_file(conversations: int, messages: int) -> bytes:
    """A ChatGPT export of ``conversations`` conversations, each a chain of ``messages`` user/assistant messages under
    the empty root and a hidden system message, with the last answer regenerated once."""
    items: list[dict[str, Any]] = []
    for number in range(conversations):
        start = 1_700_000_000.0 + number * 3600
        mapping: dict[str, Any] = {"root": {"id": "root", "message": None, "parent": None, "children": ["sys"]}}
        mapping["sys"] = {"id": "sys", "parent": "root", "children": [], "message": {
            "id": "sys", "author": {"role": "system"}, "create_time": None, "recipient": "all",
            "content": {"content_type": "text", "parts": [""]},
            "metadata": {"is_visually_hidden_from_conversation": True}}}  # fmt: skip
        parent = "sys"
        for turn in range(messages):
            key = f"m{turn}"
            role = "user" if turn % 2 == 0 else "assistant"
            text = f"Question {turn} of conversation {number}: " + "words " * 30 if role == "user" else (
                f"Answer {turn}. " + "An answer has a few sentences of text in it. " * 6)  # fmt: skip
            mapping[key] = {"id": key, "parent": parent, "children": [], "message": {
                "id": key, "author": {"role": role}, "create_time": start + turn, "recipient": "all",
                "content": {"content_type": "text", "parts": [text]},
                "metadata": {"model_slug": "gpt-4o"}}}  # fmt: skip
            mapping[parent]["children"].append(key)
            parent = key
        last_question = f"m{messages - 2}"
        mapping["again"] = {"id": "again", "parent": last_question, "children": [], "message": {
            "id": "again", "author": {"role": "assistant"}, "create_time": start + messages, "recipient": "all",
            "content": {"content_type": "text", "parts": ["A regenerated answer."]}, "metadata": {}}}  # fmt: skip
        mapping[last_question]["children"].append("again")
        items.append({"title": f"Conversation {number}", "create_time": start, "update_time": start + messages,
                      "mapping": mapping, "current_node": parent,
                      "conversation_id": f"bench-{number:06d}"})  # fmt: skip
    return json.dumps(items).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--quick", action="store_true", help="100 conversations")
    options = parser.parse_args()
    conversations = 100 if options.quick else options.conversations
    raw = chatgpt_file(conversations, options.messages)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(options.database_url or f"sqlite:///{Path(folder) / 'bench.db'}")
        store.migrate()
        started = time.perf_counter()
        _, parsed = read(raw)
        checked = time.perf_counter()
        result = import_conversations(store, None, parsed)
        written = time.perf_counter()
        _, again = read(raw)
        skipped = import_conversations(store, None, again)
        repeated = time.perf_counter()
        store.close()
    total = written - started
    print(f"file: {len(raw) / 1e6:.1f} MB, {conversations:,} conversations, {result.messages:,} messages kept")
    print(f"read and check: {checked - started:.2f} s")
    print(f"write (one transaction): {written - checked:.2f} s")
    print(f"total: {total:.2f} s ({result.imported / total:,.0f} conversations/s, {result.messages / total:,.0f} "
          "messages/s)")  # fmt: skip
    print(f"second import (all {skipped.skipped:,} skipped): {repeated - written:.2f} s")


if __name__ == "__main__":
    main()
