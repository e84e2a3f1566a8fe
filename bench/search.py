"""Search latency on SQLite: p50/p99 of ``chat.store.search.search`` over 10,000 conversations and 1,000,000 messages
(``--quick``: a tenth of both), target ≤ 50 ms p99.

The database is built by the real migrations (so the FTS5 tables and their triggers are the real ones), then filled
with ``executemany`` in one transaction; the messages' insert trigger is set aside meanwhile and the index built once
at the end (FTS5's ``'rebuild'``, several times faster than a million trigger runs), then the trigger put back.
The texts are sentences of made-up words drawn from a 20,000-word vocabulary with Zipf-like frequencies (a few words
are common, most are rare), as in real text. Queries: one word of the vocabulary (common, middling, rare), two words, a
substring of a word, with and without an owner.

    .venv/bin/python -m bench.search [--quick] [--queries N] [--keep PATH]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import string
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from chat.store import Store
from chat.store.search import search

VOCABULARY = 20_000
WORDS_PER_MESSAGE = (8, 40)


def words(rng: random.Random) -> list[str]:
    """The vocabulary: distinct lower-case made-up words of 4 to 10 letters."""
    made: set[str] = set()
    while len(made) < VOCABULARY:
        made.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))))
    return sorted(made)


def build(store: Store, conversations: int, messages: int, rng: random.Random, vocabulary: list[str]) -> float:
    """Fill the store; returns the seconds it took."""
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocabulary))))  # Zipf, s = 1: cumulated
    now = datetime.now(UTC).isoformat(" ")
    started = time.perf_counter()
    per = messages // conversations
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB
        [trigger] = cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'message_fts_insert'").fetchone()
        cursor.execute("BEGIN")
        cursor.execute("DROP TRIGGER message_fts_insert")
        cursor.executemany(
            "INSERT INTO users (id, name, password_hash, is_admin, disabled, created_at) VALUES (?, ?, 'x', 0, 0, ?)",
            [(1, "alice", now), (2, "bob", now)],
        )
        cursor.executemany(
            "INSERT INTO conversation (id, user_id, title, system_prompt, temperature, pinned, archived, created_at, "
            "updated_at) VALUES (?, ?, ?, '', 0.7, 0, 0, ?, ?)",
            [(c, 1 + c % 2, " ".join(rng.choices(vocabulary, cum_weights=weights, k=3)), now, now)
             for c in range(1, conversations + 1)],
        )  # fmt: skip
        message_id = 0
        for conversation in range(1, conversations + 1):
            rows = []
            for position in range(per):
                message_id += 1
                text = " ".join(rng.choices(vocabulary, cum_weights=weights, k=rng.randint(*WORDS_PER_MESSAGE)))
                role = "user" if position % 2 == 0 else "assistant"
                rows.append((message_id, conversation, message_id - 1 if position else None, role, text, now))
            cursor.executemany(
                "INSERT INTO message (id, conversation_id, parent_id, selected, role, content, status, created_at) "
                "VALUES (?, ?, ?, 1, ?, ?, 'complete', ?)",
                rows,
            )
        cursor.execute("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")
        cursor.execute(trigger)
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def queries(rng: random.Random, vocabulary: list[str], count: int) -> list[tuple[str, int | None]]:
    """``count`` (query, owner) pairs of the kinds the module docstring lists."""
    made = []
    for index in range(count):
        kind = index % 5
        if kind == 0:
            q = vocabulary[rng.randrange(0, 50)]  # common
        elif kind == 1:
            q = vocabulary[rng.randrange(50, 2000)]
        elif kind == 2:
            q = vocabulary[rng.randrange(2000, VOCABULARY)]  # rare
        elif kind == 3:
            q = f"{vocabulary[rng.randrange(0, 500)]} {vocabulary[rng.randrange(0, 5000)]}"
        else:
            word = vocabulary[rng.randrange(0, VOCABULARY)]
            q = word[1:5]  # a substring
        made.append((q, rng.choice([None, 1, 2])))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--queries", type=int, default=500, help="queries to time (default 500)")
    parser.add_argument("--keep", type=Path, help="build the database at this path (and keep it)")
    args = parser.parse_args()
    conversations, messages = (1_000, 100_000) if args.quick else (10_000, 1_000_000)
    rng = random.Random(16)
    vocabulary = words(rng)
    with tempfile.TemporaryDirectory(prefix="parley-bench-search-") as folder:
        path = args.keep or Path(folder) / "parley.db"
        store = Store(f"sqlite:///{path}")
        store.migrate()
        seconds = build(store, conversations, messages, rng, vocabulary)
        print(f"built {conversations:,} conversations, {messages:,} messages in {seconds:.1f} s "
              f"({path.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
        planned = queries(rng, vocabulary, args.queries)
        for q, owner in planned[:20]:  # warm the page cache
            search(store, q, owner=owner)
        times, hits = [], 0
        for q, owner in planned:
            started = time.perf_counter()
            page = search(store, q, owner=owner)
            times.append((time.perf_counter() - started) * 1000)
            hits += len(page.hits)
        store.close()
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"search: {len(times)} queries, {hits / len(times):.1f} hits each, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {times[-1]:.1f} ms (target: p99 <= 50 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
