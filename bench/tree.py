"""How long a conversation with a 2,000-message tree takes to open, and its tree panel to draw, in Chromium.

Seeds one conversation through Parley's own ``Store``: 1,600 messages on the shown path (800 exchanges of about
1 kB each) and 400 more as regenerated variants (every other answer has one, so the tree forks 400 times), then runs
``app.py`` on it and measures, over ``--rounds`` page loads:

* **open**: from ``page.goto`` until the newest message is in the DOM (the page builds only the newest 40);
* **tree**: from a click on the tree button until the panel shows every branch row (the whole tree, 2,000 rows).

The baseline in the same run is the same conversation with no forks (2,000 messages on one path): what the tree costs.
Run from the repository root: ``.venv/bin/python -m bench.tree`` (about a minute), ``--quick`` for 400 messages.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from chat.store import Status, Store
from tests.browser import chromium, free_port, serve
from tests.fake_upstream import FakeUpstream

MARKER = "zqtreenewest"


def seed(data_dir: Path, messages: int, *, forks: bool) -> None:
    """One conversation of ``messages`` messages; with ``forks``, a fifth of them as variants of earlier answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    try:
        store.migrate()
        conversation = store.create_conversation(title="A branching conversation")
        assert conversation.id is not None
        exchanges = messages * 4 // 10 if forks else messages // 2
        made = 0
        for turn in range(exchanges):
            user, assistant = store.add_exchange(conversation.id, f"Question {turn}: " + "words " * 40,
                                                 model="fake-model", temperature=None)  # fmt: skip
            assert assistant.id is not None
            store.finish_message(assistant.id, content=f"Answer {turn}. " + "text " * 150, status=Status.complete)
            made += 2
            if forks and turn % 2 == 1 and made < messages:
                variant = store.add_variant(assistant.id, model="fake-model", temperature=None)
                assert variant.id is not None
                store.finish_message(variant.id, content=f"Answer {turn}, again. " + "text " * 150,
                                     status=Status.complete)  # fmt: skip
                made += 1
        last = store.path(conversation.id)[-1]
        assert last.id is not None
        store.finish_message(last.id, content=last.content + f" **{MARKER}**", status=Status.complete)
    finally:
        store.close()


def measure(messages: int, rounds: int, *, forks: bool) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as folder, FakeUpstream() as upstream:
        work = Path(folder)
        seed(work / "data", messages, forks=forks)
        port = free_port()
        opened, drawn = [], []
        with serve(work, upstream, port), chromium() as browser:
            for _ in range(rounds + 1):  # the first load warms the server and the browser's cache
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                started = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/c/1")
                page.get_by_text(MARKER).wait_for(timeout=60_000)
                opened.append(time.perf_counter() - started)
                started = time.perf_counter()
                page.get_by_role("button", name="Conversation tree").click()
                page.locator(".q-tree").get_by_text(
                    f"Answer: Answer {messages * 4 // 10 - 1 if forks else messages // 2 - 1}.", exact=False
                ).first.wait_for(timeout=60_000)  # noqa: E501
                drawn.append(time.perf_counter() - started)
                page.close()
        return opened[1:], drawn[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="400 messages, 2 rounds")
    args = parser.parse_args()
    messages, rounds = (400, 2) if args.quick else (args.messages, args.rounds)
    print(f"conversation of {messages} messages, {rounds} page loads each (seconds, median / max)")
    for name, forks in (("one path (baseline)", False), ("tree with forks", True)):
        opened, drawn = measure(messages, rounds, forks=forks)
        print(f"{name:<22} open {statistics.median(opened):6.2f} / {max(opened):6.2f}"
              f"   tree panel {statistics.median(drawn):6.2f} / {max(drawn):6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
