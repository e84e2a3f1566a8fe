"""Where the time of one streamed answer goes: a sampling profile of the server (py-spy) and of the page (Chrome's
own profiler, through the DevTools protocol) while one page receives one answer of ``--tokens`` tokens (4,000).

Parley (``app.py``) runs against the fake upstream in its own process (``tests.fake_upstream.FakeUpstreamProcess``),
the answer's pieces the streaming benchmark's Markdown (``bench.streaming.markdown_pieces``: words, bold, inline code,
paragraphs, fenced code) at ``--rate`` tokens/s. Headless Chromium opens ``/``, sends the prompt and waits until the
answer's element is no longer busy.

* **Server**: ``py-spy record --format raw`` attached to the app's process for the answer's whole window (every
  thread; idle samples left out), folded two ways: by *self* time per function (where the CPU is spent) and by the
  first frame of each stack that belongs to a known package (``GROUPS``: who spends it: uvicorn and websockets,
  NiceGUI, the openai SDK and httpx, Parley's engine, the store and SQLAlchemy, …). The shares are turned into CPU
  milliseconds per 1,000 tokens with the process's CPU time (``psutil``) over the same window.
* **Browser**: ``Profiler.start`` / ``Profiler.stop`` on the page's main thread: self time per function (name and
  script), the same per 1,000 tokens ("busy" leaves out ``(idle)``, ``(program)`` — the browser's own native work,
  which Chrome's metrics count as layout and style — and garbage collection); plus Chrome's own totals
  (``Performance.getMetrics``: script, layout, style recalculation, task durations).

Printed: both tables (top ``--top`` rows) and the totals; saved: JSON in ``bench/results/profile-*.json`` (and the
raw collapsed stacks beside it) with the machine's description. A profile, not a benchmark: nothing is compared, and
py-spy's sampling adds a little CPU of its own (it runs in its own process). Needs root or ``ptrace`` rights for
py-spy (installed with the test extra).

Run from the repository root::

    .venv/bin/python -m bench.profile               # 4,000 tokens at 200 tokens/s (~25 s)
    .venv/bin/python -m bench.profile --tokens 1000 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench.streaming import machine_info, markdown_pieces, marker
from tests.browser import CHROMIUM, CHROMIUM_ARGS, clean_env, free_port, server_process
from tests.fake_upstream import FakeUpstreamProcess, Script

RESULTS = Path(__file__).parent / "results"

#: Who spends the server's time: the first frame of a stack whose file path holds one of these (checked in order,
#: from the stack's root: the outermost package that is not the event loop itself names the work).
GROUPS = [
    ("parley engine", "(chat/engine/"),
    ("parley provider", "(chat/provider/"),
    ("parley api (answer streams, SSE)", "(chat/api/"),
    ("parley ui", "(chat/ui/"),
    ("parley store", "(chat/store/"),
    ("nicegui", "(nicegui/"),
    ("socket.io / engine.io", "(socketio/"),
    ("socket.io / engine.io", "(engineio/"),
    ("openai SDK (and its pydantic models)", "(openai/"),
    ("httpx / httpcore / h11", "(httpx/"),
    ("httpx / httpcore / h11", "(httpcore"),
    ("httpx / httpcore / h11", "(h11/"),
    ("sqlalchemy / sqlmodel", "(sqlalchemy/"),
    ("sqlalchemy / sqlmodel", "(sqlmodel/"),
    ("pydantic", "(pydantic"),
    ("uvicorn + wsproto (WebSocket frames)", "(wsproto/"),
    ("uvicorn + wsproto (WebSocket frames)", "(uvicorn/"),
    ("websockets", "(websockets/"),
    ("starlette / fastapi", "(starlette/"),
    ("starlette / fastapi", "(fastapi/"),
    ("sse-starlette", "(sse_starlette/"),
]


#: Native frames a thread waits in (py-spy ``--native`` counts a waiting thread's samples too): samples ending in one
#: of these are idle, not CPU.
WAITS = ("epoll_wait", "epoll_pwait", "pthread_cond_wait", "pthread_cond_timedwait", "PyThread_acquire_lock_timed",
         "futex", "poll (", "select (", "__GI___poll", "sem_wait", "sem_timedwait")  # fmt: skip


def waiting(frames: list[str]) -> bool:
    """True when a ``--native`` stack is a thread waiting (its innermost named frames are a wait), or a libc frame
    py-spy could not name right under one (the wait's own code)."""
    named = [frame for frame in frames if not frame.startswith("0x")]
    return any(wait in frame for frame in named[-3:] for wait in WAITS)


def group_of(frames: list[str]) -> str:
    """The group of one stack (root first, py-spy's ``function (path:line)`` frames with paths relative to
    ``sys.path``): the innermost frame in a known package (the engine calling the SDK is the SDK's time); a stack that
    ends in the loop's own ``run`` is the event loop's native code (uvloop: polling, socket writes, callbacks)."""
    if frames and frames[-1].startswith("Runner.run "):
        return "event loop, native (uvloop: I/O, callbacks)"
    if not any(path in frame for frame in frames for _, path in GROUPS) and any(".c:" in f for f in frames):
        return "event loop, native (uvloop: I/O, callbacks)"  # --native: C frames under the loop, no package
    for frame in reversed(frames):  # from the leaf: the innermost known package spends the time
        for name, path in GROUPS:
            if path in frame:
                return name
    return "other (asyncio, json, stdlib, threads)"


def read_collapsed(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw`` output: ``frame;frame;… count`` lines."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def server_tables(stacks: list[tuple[list[str], int]], cpu_ms: float, tokens: int, top: int) -> dict[str, Any]:
    """Self time per function and time per group, as shares and CPU ms per 1,000 tokens (samples of waiting threads
    left out: ``waiting``)."""
    stacks = [(frames, count) for frames, count in stacks if not waiting(frames)]
    total = sum(count for _, count in stacks) or 1
    selfs: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    for frames, count in stacks:
        selfs[frames[-1]] += count
        groups[group_of(frames)] += count
    per_k = cpu_ms / max(tokens, 1) * 1000

    def rows(counter: Counter[str], limit: int | None) -> list[dict[str, Any]]:
        return [{"name": name, "share": count / total, "ms_per_1k_tokens": per_k * count / total}
                for name, count in counter.most_common(limit)]  # fmt: skip

    return {"samples": total, "cpu_ms": cpu_ms, "cpu_ms_per_1k_tokens": per_k, "by_group": rows(groups, None),
            "by_function": rows(selfs, top)}  # fmt: skip


def browser_table(profile: dict[str, Any], tokens: int, top: int) -> dict[str, Any]:
    """Self time per function of a ``Profiler.stop`` profile (sample counts times the sampling interval)."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    deltas = profile.get("timeDeltas", [])
    selfs: Counter[str] = Counter()
    for sample, delta in zip(profile.get("samples", []), deltas[1:] + [0], strict=False):
        frame = nodes[sample]["callFrame"]
        name = frame.get("functionName") or "(anonymous)"
        script = frame.get("url", "").rsplit("/", 1)[-1] or "(native)"
        selfs[f"{name} {script}"] += delta
    idle = sum(v for k, v in selfs.items() if k.startswith(("(idle)", "(program)", "(garbage collector)")))
    busy_us = sum(selfs.values()) - idle
    rows = [{"name": name, "ms": us / 1000, "ms_per_1k_tokens": us / 1000 / max(tokens, 1) * 1000}
            for name, us in selfs.most_common(top)]  # fmt: skip
    return {"busy_ms": busy_us / 1000, "ms_per_1k_tokens": busy_us / 1000 / max(tokens, 1) * 1000, "by_function": rows}


def run(tokens: int, rate: float, top: int, *, native: bool = False) -> dict[str, Any]:
    """Profile one answer of ``tokens`` tokens at ``rate`` tokens/s (``native``: py-spy ``--native``, which pauses
    the process at each sample); returns the report."""
    from playwright.sync_api import expect, sync_playwright

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[embedded,test]'")
    workdir = Path(tempfile.mkdtemp(prefix="parley-profile-"))
    fake = FakeUpstreamProcess().start()
    port = free_port()
    env = clean_env(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="test-key", PARLEY_MODEL="fake-model",
                    PARLEY_DATA_DIR=str(workdir / "data"))  # fmt: skip
    report: dict[str, Any] = {"tokens": tokens, "rate": rate, "native": native}
    try:
        with server_process(["app.py", "--port", str(port)], f"http://127.0.0.1:{port}/", env) as app:
            url = f"http://127.0.0.1:{port}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url + "/")
                composer = page.get_by_placeholder("Message Parley")
                expect(composer).to_be_visible(timeout=30_000)
                # a first short answer: components loaded, connections open (not what is profiled)
                fake.set_script(Script(pieces=["Warm ", "up."]))
                composer.fill("warm up")
                composer.press("Enter")
                expect(page.locator(".parley-message-body").last).to_have_text("Warm up.", timeout=30_000)

                fake.set_script(Script(pieces=markdown_pieces(tokens, "prof"), rate=rate))
                cdp = page.context.new_cdp_session(page)
                cdp.send("Profiler.enable")
                cdp.send("Profiler.setSamplingInterval", {"interval": 200})
                cdp.send("Performance.enable")
                before_metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                raw = workdir / "server.collapsed"
                spy = subprocess.Popen([py_spy, "record", "--pid", str(app.pid), "--rate", "250", "--format", "raw",
                                        "--output", str(raw), "--threads",
                                        *(["--native"] if native else ["--nonblocking"])],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                time.sleep(1.0)  # py-spy attached
                process = psutil.Process(app.pid)
                cpu_before = sum(process.cpu_times()[:2])
                bodies = page.locator(".parley-message-body")
                count = bodies.count()
                cdp.send("Profiler.start")
                composer.fill("profile this")
                composer.press("Enter")
                expect(bodies).to_have_count(count + 1, timeout=30_000)
                body = bodies.last
                last = marker("prof", tokens - 1)
                expect(body).to_contain_text(last, timeout=tokens / rate * 1000 + 60_000)
                expect(body).to_have_attribute("aria-busy", "false", timeout=30_000)
                profile = cdp.send("Profiler.stop")["profile"]
                cpu_ms = (sum(process.cpu_times()[:2]) - cpu_before) * 1000
                after_metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
                browser.close()
            report["server"] = server_tables(read_collapsed(raw), cpu_ms, tokens, top)
            report["browser"] = browser_table(profile, tokens, top)
            report["browser"]["chrome_metrics_ms"] = {
                name: round((after_metrics.get(name, 0) - before_metrics.get(name, 0)) * 1000, 1)
                for name in ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")
            }
            RESULTS.mkdir(exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            shutil.copy(raw, RESULTS / f"profile-{stamp}.collapsed")
            report["machine"] = machine_info(browser_version="")
            (RESULTS / f"profile-{stamp}.json").write_text(json.dumps(report, indent=2))
            report["saved"] = str(RESULTS / f"profile-{stamp}.json")
    finally:
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    server, browser = report["server"], report["browser"]
    print(f"one answer of {report['tokens']} tokens at {report['rate']:g} tokens/s to one page")
    print(f"\nserver: {server['cpu_ms']:.0f} ms CPU = {server['cpu_ms_per_1k_tokens']:.0f} ms per 1,000 tokens "
          f"({server['samples']} samples)")  # fmt: skip
    print(f"  {'who (innermost known package of each stack)':60} {'share':>7} {'ms/1k':>8}")
    for row in server["by_group"]:
        print(f"  {row['name'][:60]:60} {row['share']:7.1%} {row['ms_per_1k_tokens']:8.1f}")
    print(f"\n  {'where (self time, function and file)':100} {'share':>7} {'ms/1k':>8}")
    for row in server["by_function"]:
        print(f"  {row['name'][:100]:100} {row['share']:7.1%} {row['ms_per_1k_tokens']:8.1f}")
    print(f"\nbrowser main thread: {browser['busy_ms']:.0f} ms busy = {browser['ms_per_1k_tokens']:.0f} ms per 1,000 "
          f"tokens; Chrome's own: {browser['chrome_metrics_ms']}")  # fmt: skip
    print(f"  {'where (self time, function and script)':80} {'ms':>8} {'ms/1k':>8}")
    for row in browser["by_function"]:
        print(f"  {row['name'][:80]:80} {row['ms']:8.1f} {row['ms_per_1k_tokens']:8.1f}")
    print(f"\nsaved {report['saved']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="1,000 tokens at 400 tokens/s")
    parser.add_argument("--native", action="store_true", help="py-spy --native: C time (uvloop, zlib, sockets, the "
                        "SDK's pydantic-core) goes to the Python frame that called it, not to the loop")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.rate = min(args.tokens, 1000), 400.0
    os.chdir(Path(__file__).parents[1])
    print_report(run(args.tokens, args.rate, args.top, native=args.native))


if __name__ == "__main__":
    main()
