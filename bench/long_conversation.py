"""A 10,000-message conversation (about 10 MB of text) on Parley's page, beside a 1,000-message one in the same run.

``.venv/bin/python -m bench.long_conversation [--quick]``: for each size, a fresh app.py in its own process (the
harness of ``bench.streaming``) with one seeded conversation, and headless Chromium (Playwright):

- open: seconds from navigation to the newest message's marker in the DOM (p50 of the page loads);
- server memory: the app's RSS growth (psutil, its process tree) with the first page open, 1 s after it showed;
- the message elements (``.parley-message``) in the DOM after opening, and the most seen while scrolling back through
  ``--scroll`` messages with the mouse wheel;
- scrolling: the gaps between animation frames while it scrolls (p50, p99, max, ms) and the seconds it took;
- search: from typing a word that only the oldest message holds into "Search in this conversation" to its hit being
  listed, and from choosing the hit to that message being in view.

The conversation is written straight into the database in one transaction (``bench.streaming.seed_long_conversation``
sends one exchange at a time, which takes minutes at this size), with ``bench.streaming.long_text``: questions of about
300 characters and answers of about 1,700. Results: a table, and JSON in ``bench/results/long_conversation-<time>.json``
with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.streaming import PARLEY, RESULTS, long_text, machine_info, running_app
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.fake_upstream import FakeUpstreamProcess

#: The newest message's marker, and a word only the oldest message holds.
NEWEST = "zqlongnewest0"
NEEDLE = "zqoldestneedle"
#: The app's answer to a long wait: seconds before a measure gives up.
CAP = 120.0

FRAMES_JS = """() => {
  window.__gaps = []; let last = performance.now();
  const tick = (now) => { window.__gaps.push(now - last); last = now; if (window.__gaps) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""
FIRST_QUESTION_JS = """() => {
  const first = document.querySelector('.parley-chat > .parley-message .parley-user-message');
  const m = first && /Question (\\d+):/.exec(first.textContent);
  return m ? Number(m[1]) : null;
}"""


def seed(database: Path, messages: int) -> None:
    """One conversation of ``messages`` messages (questions and answers in turn, one chain), the oldest holding
    ``NEEDLE`` and the newest ``NEWEST``, written in one transaction into a migrated, empty database."""
    from chat.store import Role, Status, Store
    from chat.store.models import Conversation, Message

    store = Store(f"sqlite:///{database}")
    try:
        store.migrate()
        start = datetime.now(UTC) - timedelta(seconds=messages)
        rows = []
        for index in range(messages):
            turn = index // 2
            if index % 2 == 0:
                content = f"Question {turn}: " + long_text(turn, 300)
            else:
                content = long_text(turn, 1700)
            if index == 0:
                content += f" {NEEDLE}"
            if index == messages - 1:
                content += f"\n\nThe end: **{NEWEST}**"
            rows.append({
                "id": index + 1, "conversation_id": 1, "parent_id": index or None, "selected": True,
                "role": (Role.user if index % 2 == 0 else Role.assistant).name, "content": content,
                "status": Status.complete.name, "model": None if index % 2 == 0 else "fake-model",
                "finish_reason": None if index % 2 == 0 else "stop", "comparing": False, "cost_estimated": False,
                "created_at": start + timedelta(seconds=index),
            })  # fmt: skip
        with store.engine.begin() as connection:
            connection.execute(insert(Conversation.__table__), [{  # type: ignore[attr-defined]
                "id": 1, "title": "A long conversation", "system_prompt": "", "temperature": 0.7, "pinned": False,
                "archived": False, "created_at": start, "updated_at": start,
            }])  # fmt: skip
            connection.execute(insert(Message.__table__), rows)  # type: ignore[attr-defined]
    finally:
        store.close()


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0–1) of ``values`` (nearest rank), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss(app: Any) -> int:
    """Bytes of resident memory of the app's process tree now."""
    return sum(process.memory_info().rss for process in app.tree())


def open_page(browser: Any, url: str) -> tuple[Any, Any, float]:
    """A new context and page at ``url``; seconds until the newest message's marker is in the DOM."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    opened = time.perf_counter()
    page.goto(url, wait_until="commit")
    shown = "m => [...document.querySelectorAll('.parley-message-body')].some((e) => e.textContent.includes(m))"
    page.wait_for_function(shown, arg=NEWEST, polling="raf", timeout=CAP * 1000)  # rendered, not in the page's data
    return context, page, time.perf_counter() - opened


def count(page: Any) -> int:
    return page.evaluate("document.querySelectorAll('.parley-message').length")


def scroll_back(page: Any, first_turn: int, target_turn: int) -> dict[str, Any]:
    """Scroll up with the mouse wheel until the question of ``target_turn`` is built; frame gaps, most messages."""
    newest = page.locator(".parley-message-body").filter(has_text=NEWEST)
    newest.scroll_into_view_if_needed(timeout=CAP * 1000)  # as the page does itself 0.2 s after it opened
    page.wait_for_timeout(500)  # that scroll of the page's own must not come in the middle of the wheel's
    page.mouse.move(640, 400)
    page.evaluate(FRAMES_JS)
    most, started = count(page), time.perf_counter()
    steps = 0
    while True:
        first = page.evaluate(FIRST_QUESTION_JS)
        if first is not None and first <= target_turn or time.perf_counter() - started > CAP:
            break
        page.mouse.wheel(0, -1500)
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        most = max(most, count(page))
        steps += 1
    seconds = time.perf_counter() - started
    gaps = page.evaluate("() => { const g = window.__gaps; window.__gaps = null; return g; }")[2:]
    return {
        "reached": first is not None and first <= target_turn,
        "messages_scrolled": 2 * (first_turn - (first if first is not None else first_turn)),
        "seconds": seconds,
        "wheel_steps": steps,
        "most_messages_in_dom": most,
        "frame_gap_p50_ms": percentile(gaps, 0.5),
        "frame_gap_p99_ms": percentile(gaps, 0.99),
        "frame_gap_max_ms": max(gaps) if gaps else None,
        "frames": len(gaps),
    }


def search_oldest(page: Any) -> dict[str, Any]:
    """Search the conversation for ``NEEDLE``: seconds to its hit, then to the oldest message in view."""
    page.get_by_role("button", name="Search in this conversation").click()
    box = page.get_by_role("combobox", name="Search in this conversation")
    box.wait_for()
    typed = time.perf_counter()
    box.fill(NEEDLE)
    hit = page.locator(".q-dialog [role=option]").filter(has_text=NEEDLE)
    hit.wait_for(timeout=CAP * 1000)
    listed = time.perf_counter()
    hit.click()
    oldest = page.locator(".parley-message").filter(has_text=NEEDLE)
    oldest.wait_for(timeout=CAP * 1000)
    page.wait_for_function(
        """(n) => [...document.querySelectorAll('.parley-message')].some((e) => e.textContent.includes(n)
             && e.getBoundingClientRect().top < innerHeight && e.getBoundingClientRect().bottom > 0)""",
        arg=NEEDLE, polling="raf", timeout=CAP * 1000,
    )  # fmt: skip
    shown = time.perf_counter()
    return {"to_hit_s": listed - typed, "hit_to_message_s": shown - listed, "total_s": shown - typed,
            "messages_in_dom": count(page)}  # fmt: skip


def measure(browser: Any, fake: FakeUpstreamProcess, messages: int, loads: int, scroll: int) -> dict[str, Any]:
    """Every figure for one conversation of ``messages`` messages, on a fresh app."""
    with running_app(PARLEY, fake, None) as app:
        started = time.perf_counter()
        seed(app.workdir / "data" / "parley.db", messages)
        seeded = time.perf_counter() - started
        url = app.url + "/c/1"
        time.sleep(1.0)  # let the app settle after its start before the memory baseline
        before = rss(app)
        context, page, first_open = open_page(browser, url)
        opened_count = count(page)
        page.wait_for_timeout(1000)
        growth = rss(app) - before
        first_turn = page.evaluate(FIRST_QUESTION_JS) or messages // 2
        scrolled = scroll_back(page, messages // 2 - 1, max(0, messages // 2 - 1 - scroll // 2))
        after_scroll = rss(app) - before
        found = search_oldest(page)
        context.close()
        times = [first_open]
        for _ in range(loads - 1):
            context, _page, seconds = open_page(browser, url)
            times.append(seconds)
            context.close()
        return {
            "messages": messages,
            "seed_s": seeded,
            "open_s_p50": statistics.median(times),
            "open_s": times,
            "rss_growth_mb": growth / 2**20,
            "rss_growth_after_scroll_and_search_mb": after_scroll / 2**20,
            "messages_in_dom_after_open": opened_count,
            "first_built_turn": first_turn,
            "scroll": scrolled,
            "search": found,
        }


ROWS = [
    ("newest message in the DOM after opening, p50 s", lambda r: r["open_s_p50"], "{:.2f}"),
    ("server RSS growth, page open, MB", lambda r: r["rss_growth_mb"], "{:.1f}"),
    ("server RSS growth after scrolling and search, MB", lambda r: r["rss_growth_after_scroll_and_search_mb"],
     "{:.1f}"),
    ("message elements in the DOM after opening", lambda r: r["messages_in_dom_after_open"], "{}"),
    ("messages scrolled back through", lambda r: r["scroll"]["messages_scrolled"], "{}"),
    ("most message elements in the DOM while scrolling", lambda r: r["scroll"]["most_messages_in_dom"], "{}"),
    ("frame gap while scrolling p50 / p99 / max, ms", lambda r: "{:.1f} / {:.1f} / {:.1f}".format(
        r["scroll"]["frame_gap_p50_ms"], r["scroll"]["frame_gap_p99_ms"], r["scroll"]["frame_gap_max_ms"]), "{}"),
    ("seconds to scroll back", lambda r: r["scroll"]["seconds"], "{:.1f}"),
    ("search: typing → oldest message's hit listed, s", lambda r: r["search"]["to_hit_s"], "{:.2f}"),
    ("search: hit chosen → oldest message in view, s", lambda r: r["search"]["hit_to_message_s"], "{:.2f}"),
]  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per figure, one column per conversation size."""
    head = "| figure | " + " | ".join(f"{r['messages']:,} messages" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for name, value, fmt in ROWS:
        cells = []
        for result in results:
            try:
                cells.append(fmt.format(value(result)))
            except (KeyError, TypeError, ValueError):
                cells.append("—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.long_conversation [--quick] [--messages N] [--baseline N] [--loads N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.long_conversation", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 200 messages, 2 page loads: a smoke run")
    parser.add_argument("--messages", type=int, default=None, help="messages of the long conversation (10,000)")
    parser.add_argument("--baseline", type=int, default=None, help="messages of the baseline conversation (1,000)")
    parser.add_argument("--loads", type=int, default=None, help="page loads per size for the open time (5)")
    parser.add_argument("--scroll", type=int, default=2000, help="messages to scroll back through (2,000)")
    args = parser.parse_args(argv)
    messages = args.messages or (2000 if args.quick else 10_000)
    baseline = args.baseline or (200 if args.quick else 1000)
    loads = args.loads or (2 if args.quick else 5)
    from playwright.sync_api import sync_playwright

    results = []
    with FakeUpstreamProcess(models=["fake-model"]) as fake, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            report: dict[str, Any] = {"machine": machine_info(browser.version)}
            for size in (baseline, messages):
                print(f"-- {size} messages", file=sys.stderr, flush=True)
                results.append(measure(browser, fake, size, loads, args.scroll))
        finally:
            browser.close()
    text = table(results)
    print(text)
    report.update(created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), args=vars(args), results=results, table=text)
    out = RESULTS / f"long_conversation-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
