"""The streaming benchmark: Parley against baseline chat UIs, in a real headless Chromium, on a fake upstream.

Run from the project folder: ``python -m bench.streaming [--apps parley,gradio] [--cases 1k,ttft] [--quick]``
(or ``make bench ARGS="--quick"``). It starts the fake OpenAI-compatible upstream in its own process
(:class:`tests.fake_upstream.FakeUpstreamProcess`), then for each app: starts it pointed at the fake, drives headless
Chromium through each case, prints a table and saves everything as JSON under ``bench/results/``.

Cases (``--quick`` shrinks every one of them for a smoke run):

* ``1k`` / ``8k`` -- one page, one answer of N = 1,000 / 8,000 tokens at R = 100 tokens/s.
* ``10pages`` -- ten pages answering at once, N = 1,000 tokens each at R = 50 tokens/s each.
* ``50pages`` -- fifty pages answering at once (each its own conversation), N = 400 tokens each at R = 20 tokens/s
  each: 1,000 tokens/s in all.
* ``ttft`` -- ten short answers (20 tokens), each on a fresh page.
* ``long`` -- Parley only: open a stored conversation of 10,000 messages (about 10 MB of text).

What is measured, per case and app (lower is better everywhere):

* **bytes ratio** -- bytes the browser received (WebSocket frame payloads, HTTP response bodies) from pressing Enter
  until the last token is in the DOM plus a settle of :data:`SETTLE` seconds, divided by the UTF-8 bytes of the
  answer(s). Static assets loaded meanwhile (scripts, stylesheets, fonts, images) are reported apart. Also given as
  overhead bytes per token: (received - answer bytes) / tokens.
* **display lag** -- per token, the time it first appears in the DOM minus the time the upstream wrote it (ms):
  p50, p99, and the last token's.
* **TTFT overhead** -- Enter to first token in the DOM, minus the upstream's own request-to-first-chunk time (ms).
* **CPU per 1,000 tokens** -- seconds of CPU (user + system) over the window: the app's process tree, and the
  Chromium processes.
* **database writes per answer** -- Parley only, from ``GET /api/metrics`` (``db_writes``) when it answers.
* **long conversation** -- seconds from opening ``/c/<id>`` until the newest message's marker is in the DOM, and the
  growth of the server's resident memory (MB) for that page.

How tokens are found in the page: every content piece the fake streams carries exactly one marker ``zq<tag><i>``
(``<tag>``: lowercase letters unique to the answer, ``<i>``: the token's index), mixed with Markdown (bold, inline
code, paragraphs, fenced code) so the apps render real Markdown. A ``MutationObserver`` injected before any page
script scans only the text of added nodes and changed text nodes and records the first time each marker appears
(wall clock: ``performance.timeOrigin + performance.now()``, milliseconds). The fake records the wall-clock time
(``time.time()``) of each token it writes, per request; both clocks are the machine's, so they compare directly.
The observer's and the harness's own polling cost is part of the browser CPU figure (small against any renderer).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.baselines import AppSpec
from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port
from tests.fake_upstream import FakeUpstreamProcess, Script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODEL = "fake-model"
API_KEY = "bench-key"
#: Seconds waited after the last token is in the DOM, so end-of-answer messages count in the window.
SETTLE = 1.0
#: Seconds an app may lag behind the upstream's end before the answer is recorded as not finished.
CAP = 90.0
#: Resource types (CDP ``Network.ResourceType``) counted as lazily loaded static assets, apart from the streaming.
STATIC_TYPES = {"Script", "Stylesheet", "Font", "Image"}
#: The marker every content piece carries: ``zq`` + the answer's tag (letters) + the token index.
MARKER = re.compile(r"zq[a-z]+\d+")


# -- the apps ----------------------------------------------------------------------------------------------------


def parley_db_writes(base_url: str) -> int | None:
    """Parley's database write transactions since it started (``GET /api/metrics`` key ``db_writes``), or ``None``."""
    try:
        with urllib.request.urlopen(base_url + "/api/metrics", timeout=5) as response:
            if response.status != 200:
                return None
            value = json.loads(response.read()).get("db_writes")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


PARLEY = AppSpec(
    name="parley",
    requirements=[],
    command=lambda python, port, workdir: [str(python), "app.py", "--port", str(port)],
    input_selector='textarea[placeholder^="Message Parley"]',
    answer_selector=".parley-message-body",
    env={"PARLEY_MODEL": MODEL},
)


@dataclass
class AppHooks:
    """What the harness knows about an app beyond its :class:`AppSpec`."""

    cwd: Path | None = None
    """Folder to start it in (``None``: its temporary work folder)."""
    env: Callable[[Path], dict[str, str]] = lambda workdir: {}
    """Extra environment given its work folder."""
    db_writes: Callable[[str], int | None] | None = None
    """Database write transactions so far, given the app's base URL (``None``: not measured)."""
    seed_long: Callable[[Path, int], tuple[str, str]] | None = None
    """Before start: store a long conversation (work folder, message count) -> (page path, newest message's marker)."""
    python: Path | None = None
    """Interpreter (``None``: the baseline's ``ensure_venv``)."""


def seed_long_conversation(workdir: Path, messages: int) -> tuple[str, str]:
    """Store one conversation of ``messages`` messages (~1 kB of Markdown-ish text each) in Parley's database.

    Uses Parley's own :class:`chat.store.Store` on ``sqlite:///<workdir>/data/parley.db`` (``PARLEY_DATA_DIR`` is
    ``<workdir>/data``). Returns the page path ``/c/<id>`` and the marker carried by the newest message only.
    """
    from bench.long_conversation import NEWEST, seed
    from chat.store import Status, Store

    if messages > 1000:  # one transaction of rows (bench/long_conversation.py): a send per exchange takes minutes
        seed(workdir / "data" / "parley.db", messages)
        return "/c/1", NEWEST
    store = Store(f"sqlite:///{workdir / 'data' / 'parley.db'}")
    try:
        store.migrate()
        conversation = store.create_conversation(title="A long conversation")
        marker = "zqlongnewest0"
        for turn in range(messages // 2):
            question = f"Question {turn}: " + long_text(turn, 300)
            user, assistant = store.add_exchange(conversation.id, question, model=MODEL, temperature=None)
            answer = long_text(turn, 1700)
            if turn == messages // 2 - 1:
                answer += f"\n\nThe end: **{marker}**"
            store.finish_message(assistant.id, content=answer, status=Status.complete, finish_reason="stop")
        return f"/c/{conversation.id}", marker
    finally:
        store.close()


def long_text(seed: int, size: int) -> str:
    """About ``size`` characters of Markdown-ish filler (paragraphs, bold, inline code, a code block), no markers."""
    words = ["river", "stone", "**bold**", "`code`", "lantern", "meadow", "quiet", "harbor", "ember", "willow"]
    parts: list[str] = []
    length, i = 0, seed
    while length < size:
        if i % 37 == 36:
            piece = "\n\n```python\ndef f(x):\n    return x * 2\n```\n\n"
        elif i % 13 == 12:
            piece = ".\n\n"
        else:
            piece = words[i % len(words)] + " "
        parts.append(piece)
        length += len(piece)
        i += 1
    return "".join(parts)


HOOKS: dict[str, AppHooks] = {
    "parley": AppHooks(
        cwd=ROOT,
        env=lambda workdir: {"PARLEY_DATA_DIR": str(workdir / "data")},
        db_writes=parley_db_writes,
        seed_long=seed_long_conversation,
        python=Path(sys.executable),
    )
}


def available_apps() -> dict[str, AppSpec]:
    """Parley and every baseline ``bench.baselines.BASELINES`` lists now, by name."""
    apps = {"parley": PARLEY}
    baselines = importlib.import_module("bench.baselines")
    for spec in getattr(baselines, "BASELINES", []):
        apps[spec.name] = spec
    return apps


def app_python(spec: AppSpec) -> Path:
    """The interpreter that runs ``spec``: Parley's own, or the baseline's venv (created on first use)."""
    hooks = HOOKS.get(spec.name)
    if hooks is not None and hooks.python is not None:
        return hooks.python
    baselines = importlib.import_module("bench.baselines")
    return Path(baselines.ensure_venv(spec))


def app_versions(spec: AppSpec, python: Path) -> dict[str, str]:
    """Installed versions of the app's main packages (its requirements; for Parley, itself and its stack)."""
    names = [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in spec.requirements] or [
        "parley",
        "nicegui",
        "openai",
        "sqlmodel",
    ]
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except Exception: out[n] = 'n/a'\n"
        "print(json.dumps(out))"
    )
    try:
        done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


@dataclass
class RunningApp:
    """An app process serving on ``url``."""

    spec: AppSpec
    process: subprocess.Popen
    url: str
    workdir: Path
    long_page: tuple[str, str] | None = None
    """(page path, marker) of the seeded long conversation, when seeded."""

    def tree(self) -> list[psutil.Process]:
        """The app process and its descendants now."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def db_writes(self) -> int | None:
        """Database write transactions so far, when the app exposes them."""
        hooks = HOOKS.get(self.spec.name)
        return hooks.db_writes(self.url) if hooks and hooks.db_writes else None


@contextlib.contextmanager
def running_app(spec: AppSpec, fake: FakeUpstreamProcess, seed_messages: int | None) -> Iterator[RunningApp]:
    """Start ``spec`` pointed at ``fake`` in a fresh temporary folder; wait for HTTP 200 on its page; stop it after.

    ``seed_messages``: seed a long conversation of that many messages first (apps with a ``seed_long`` hook).
    The app's output goes to ``<workdir>/app.log`` (kept on failure in the error message).
    """
    hooks = HOOKS.get(spec.name, AppHooks())
    python = app_python(spec)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec.name}-"))
    long_page = None
    if seed_messages and hooks.seed_long is not None:
        long_page = hooks.seed_long(workdir, seed_messages)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("PYTHONPATH", None)
    env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=API_KEY, BENCH_MODEL=MODEL, PYTHONUNBUFFERED="1")
    env.update(spec.env)
    env.update(hooks.env(workdir))
    log_path = workdir / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            spec.command(python, port, workdir),
            cwd=hooks.cwd or workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = RunningApp(spec, process, f"http://127.0.0.1:{port}", workdir, long_page)
    try:
        deadline = time.monotonic() + spec.startup_timeout
        while True:
            try:
                with urllib.request.urlopen(app.url + spec.path, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{spec.name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield app
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the process and its children, SIGKILL what is left after 10 s."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    process.wait()


# -- the answers -------------------------------------------------------------------------------------------------


def answer_tag(number: int) -> str:
    """A lowercase tag unique to answer ``number`` (``a``, ``b``, ..., ``z``, ``ba``, ...)."""
    letters = ""
    while True:
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
        if number == 0:
            return letters


def marker(tag: str, index: int) -> str:
    """The marker of token ``index`` of the answer tagged ``tag``: ``zq<tag><index>``."""
    return f"zq{tag}{index}"


#: One period of the answer's shape: inline pieces, paragraph breaks, and a fenced code block (positions 30-37).
_PERIOD = 40
_FENCE = range(30, 38)


def markdown_pieces(n: int, tag: str) -> list[str]:
    """``n`` content pieces, each carrying exactly one marker (token ``i`` carries ``marker(tag, i)``).

    Every marker stays visible text once rendered: plain words, ``**bold**``, ``inline code``, paragraph ends, and
    lines of a fenced Python code block (opened and closed within the answer; a fence that would not fit before the
    end is replaced by plain pieces). Every piece ends in a space, newline or punctuation, so no marker runs into the
    next piece's.
    """
    pieces: list[str] = []
    for i in range(n):
        m, p = marker(tag, i), i % _PERIOD
        fence_fits = i - (p - _FENCE.start) + len(_FENCE) <= n
        if p in _FENCE and fence_fits:
            if p == _FENCE.start:
                piece = f"```python\nx = {m}\n"
            elif p == _FENCE.stop - 1:
                piece = f"```\n\n{m} "
            else:
                piece = f"y = {m}\n"
        elif p in (14, 29):
            piece = f"{m}.\n\n"
        elif p % 5 == 1:
            piece = f"**{m}** "
        elif p % 5 == 3:
            piece = f"`{m}` "
        else:
            piece = f"{m} "
        pieces.append(piece)
    return pieces


# -- the browser side ----------------------------------------------------------------------------------------------

#: Injected before any page script: first-seen times of markers, and the time Enter was pressed. Kept in
#: sessionStorage across a navigation (Parley moves from ``/`` to ``/c/<id>`` on send).
OBSERVER_JS = r"""
(() => {
  const RE = /zq[a-z]+\d+/g;
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "TEXTAREA"]);
  const now = () => performance.timeOrigin + performance.now();
  let saved = {};
  try { saved = JSON.parse(sessionStorage.getItem("__bench") || "{}"); } catch (e) {}
  const seen = new Map(saved.seen || []);
  const state = { seen, enter: saved.enter || null, pages: (saved.pages || 0) + 1 };
  window.__bench = state;
  const scan = (text, t) => {
    if (!text || text.indexOf("zq") < 0) return;
    RE.lastIndex = 0;
    let m;
    while ((m = RE.exec(text)) !== null) if (!seen.has(m[0])) seen.set(m[0], t);
  };
  const observer = new MutationObserver((records) => {
    const t = now();
    for (const r of records) {
      if (r.type === "characterData") {
        const d = r.target.data, old = r.oldValue;
        if (r.target.parentNode && SKIP.has(r.target.parentNode.nodeName)) continue;
        const grew = old !== null && d.length >= old.length && d.startsWith(old);
        scan(grew ? d.slice(Math.max(0, old.length - 32)) : d, t);
      } else {
        for (const node of r.addedNodes) {
          if (node.nodeType === 3) {
            if (!(node.parentNode && SKIP.has(node.parentNode.nodeName))) scan(node.data, t);
          } else if (node.nodeType === 1 && !SKIP.has(node.nodeName)) {
            scan(node.textContent, t);
          }
        }
      }
    }
  });
  observer.observe(document, { childList: true, subtree: true, characterData: true, characterDataOldValue: true });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && state.enter === null) {
      state.enter = now();
      sessionStorage.setItem("__bench", JSON.stringify({ enter: state.enter, pages: state.pages }));
    }
  }, true);
  window.addEventListener("pagehide", () => {
    sessionStorage.setItem("__bench", JSON.stringify({ seen: [...seen], enter: state.enter, pages: state.pages }));
  });
})();
"""


@dataclass
class NetCapture:
    """Bytes a page received, from Chrome DevTools Protocol ``Network`` events on a CDP session of its own.

    Every event is kept with its wall-clock time (seconds; CDP's monotonic timestamps are converted with the
    ``wallTime``/``timestamp`` pair of the page's requests), so a window can be cut out afterwards.
    """

    ws: list[tuple[float, int]] = field(default_factory=list)
    """(time, payload bytes) of each WebSocket frame received."""
    http: list[tuple[float, str, int]] = field(default_factory=list)
    """(monotonic CDP time, request id, body bytes) of each ``dataReceived`` / body-less ``loadingFinished``."""
    types: dict[str, str] = field(default_factory=dict)
    """Resource type per request id."""
    offset: float | None = None
    """Wall clock minus CDP's monotonic clock (seconds)."""
    sockets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per WebSocket (CDP request id): ``url``, CDP times ``created`` and ``open`` (handshake answered), and
    ``frames``: (CDP time, first 200 characters of the payload) of each frame received."""
    _bodies: set[str] = field(default_factory=set)

    def attach(self, page: Any) -> None:
        """Open a CDP session on ``page`` and start recording."""
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.responseReceived", lambda p: self.types.__setitem__(p["requestId"], p.get("type", "Other")))
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.on("Network.webSocketCreated", self._socket)
        cdp.on("Network.webSocketWillSendHandshakeRequest", self._handshake)
        cdp.on("Network.webSocketHandshakeResponseReceived", self._opened)
        cdp.send("Network.enable")

    def _request(self, p: dict) -> None:
        if self.offset is None and "wallTime" in p:
            self.offset = p["wallTime"] - p["timestamp"]
        self.types.setdefault(p["requestId"], p.get("type", "Other"))

    def _data(self, p: dict) -> None:
        self._bodies.add(p["requestId"])
        self.http.append((p["timestamp"], p["requestId"], p.get("dataLength", 0)))

    def _finished(self, p: dict) -> None:
        if p["requestId"] not in self._bodies:  # no dataReceived (e.g. served at once): count what came
            self.http.append((p["timestamp"], p["requestId"], int(p.get("encodedDataLength", 0))))

    def _socket(self, p: dict) -> None:
        self.sockets[p["requestId"]] = {"url": p["url"], "created": None, "open": None, "frames": []}

    def _handshake(self, p: dict) -> None:
        if p["requestId"] in self.sockets:
            self.sockets[p["requestId"]]["created"] = p["timestamp"]
        if self.offset is None and "wallTime" in p:
            self.offset = p["wallTime"] - p["timestamp"]

    def _opened(self, p: dict) -> None:
        if p["requestId"] in self.sockets:
            self.sockets[p["requestId"]]["open"] = p["timestamp"]

    def wall(self, cdp_time: float | None) -> float | None:
        """A CDP monotonic time as wall-clock seconds."""
        offset = self.offset if self.offset is not None else time.time() - time.monotonic()
        return None if cdp_time is None else cdp_time + offset

    def _frame(self, p: dict) -> None:
        response = p["response"]
        data = response.get("payloadData", "")
        if p["requestId"] in self.sockets:
            self.sockets[p["requestId"]]["frames"].append((p["timestamp"], data[:200]))
        if response.get("opcode") == 2:
            size = len(data) * 3 // 4 - data[-2:].count("=")  # base64-decoded length
        else:
            size = len(data.encode())
        self.ws.append((p["timestamp"], size))

    def window(self, start: float, end: float) -> dict[str, int]:
        """Bytes received between wall-clock times ``start`` and ``end``: ``ws``, ``http``, ``static``."""
        offset = self.offset if self.offset is not None else time.time() - time.monotonic()
        out = {"ws": 0, "http": 0, "static": 0}
        for t, size in self.ws:
            if start <= t + offset <= end:
                out["ws"] += size
        for t, request_id, size in self.http:
            if start <= t + offset <= end:
                out["static" if self.types.get(request_id) in STATIC_TYPES else "http"] += size
        return out


def chromium_processes() -> list[psutil.Process]:
    """Chromium processes started by this process (descendants whose name contains ``chrom``)."""
    procs = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in proc.name().lower():
                procs.append(proc)
    return procs


def cpu_snapshot(procs: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) per pid now."""
    out = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots (processes started in between count from zero)."""
    return sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in after.items())


# -- measurements ----------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One benchmark case."""

    name: str
    """Short name used by ``--cases``: ``1k``, ``8k``, ``10pages``, ``ttft``, ``long``."""
    title: str
    """Heading printed above its table."""
    tokens: int = 0
    """Tokens per answer."""
    rate: float = 0.0
    """Upstream pacing, tokens per second."""
    pages: int = 1
    """Pages answering at once (``ttft``: answers, one after the other)."""
    messages: int = 0
    """``long``: messages in the stored conversation."""


#: The case each app runs first, on its fresh server: time to first token is one short answer on an idle app, which
#: the heavy cases would leave saturated (the naive page's server is still busy with the 8k case's updates long after
#: it, and its pages then do not even load).
RUN_FIRST = "ttft"


def cases(quick: bool) -> dict[str, Case]:
    """The cases by name; ``quick`` makes each small enough for a smoke run."""
    if quick:
        return {
            "1k": Case("1k", "quick: 150 tokens, 1 page, 100 tokens/s", tokens=150, rate=100),
            "8k": Case("8k", "quick: 400 tokens, 1 page, 100 tokens/s", tokens=400, rate=100),
            "10pages": Case("10pages", "quick: 10 pages at once, 100 tokens each at 50 tokens/s", 100, 50, 10),
            "50pages": Case("50pages", "quick: 50 pages at once, 40 tokens each at 20 tokens/s", 40, 20, 50),
            "ttft": Case("ttft", "quick: TTFT, 3 answers of 20 tokens", tokens=20, rate=100, pages=3),
            "long": Case("long", "quick: long conversation of 200 messages", messages=200),
        }
    return {
        "1k": Case("1k", "N = 1,000 tokens, 1 page, R = 100 tokens/s", tokens=1000, rate=100),
        "8k": Case("8k", "N = 8,000 tokens, 1 page, R = 100 tokens/s", tokens=8000, rate=100),
        "10pages": Case("10pages", "10 pages at once, N = 1,000 tokens each, R = 50 tokens/s each", 1000, 50, 10),
        "50pages": Case("50pages", "50 pages at once, N = 400 tokens each, R = 20 tokens/s each", 400, 20, 50),
        "ttft": Case("ttft", "TTFT, 10 answers of 20 tokens (fresh page each)", tokens=20, rate=100, pages=10),
        "long": Case("long", "long conversation: 10,000 stored messages (~10 MB)", messages=10000),
    }


class Bench:
    """Shared state of one run: the fake upstream, the browser, a counter for unique answer tags."""

    def __init__(self, fake: FakeUpstreamProcess, browser: Any, cap: float) -> None:
        self.fake = fake
        self.browser = browser
        self.cap = cap
        self.answers = 0

    def next_tag(self) -> str:
        """A tag no earlier answer of this run used."""
        self.answers += 1
        return answer_tag(self.answers)

    def new_context(self) -> Any:
        """A fresh browser context (own cookies and storage) whose pages all run the marker observer."""
        context = self.browser.new_context()
        context.add_init_script(OBSERVER_JS)
        return context

    def open_page(self, context: Any, app: RunningApp) -> tuple[Any, NetCapture]:
        """A page of ``app`` with the observer and a network capture, its prompt box ready."""
        page = context.new_page()
        net = NetCapture()
        net.attach(page)
        page.goto(app.url + app.spec.path)
        page.locator(app.spec.input_selector).first.wait_for(state="visible", timeout=30_000)
        ready = getattr(app.spec, "ready_selector", None)
        if ready:
            page.locator(ready).first.wait_for(state="attached", timeout=30_000)
        return page, net


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def send_prompt(page: Any, spec: AppSpec, prompt: str) -> None:
    """Type ``prompt`` into the app's prompt box and press its submit key."""
    box = page.locator(spec.input_selector).first
    box.fill(prompt)
    box.press(spec.submit_key)


def wait_for_markers(pages: list[Any], last: str, deadline: float) -> list[bool]:
    """Wait until every page shows marker ``last`` or wall-clock ``deadline`` passes; per page, whether it did."""
    done = [False] * len(pages)
    while not all(done) and time.time() < deadline:
        for i, page in enumerate(pages):
            if not done[i]:
                with contextlib.suppress(Exception):  # a page navigating (Parley: / -> /c/<id>) has no state yet
                    done[i] = page.evaluate("m => !!(window.__bench && window.__bench.seen.has(m))", last)
        if not all(done):
            pages[0].wait_for_timeout(100)
    return done


def read_observer(page: Any) -> tuple[dict[str, float], float | None]:
    """The page's marker first-seen times and Enter time, in wall-clock seconds. A page that is navigating (a page
    whose NiceGUI socket lost too much under load reloads itself; the observer keeps its state across) is read once it
    has loaded again."""
    script = "() => ({seen: Object.fromEntries(window.__bench.seen), enter: window.__bench.enter})"
    for attempt in range(3):
        try:
            state = page.evaluate(script)
            break
        except Exception as error:  # playwright's Error: "Execution context was destroyed" while it navigates
            if attempt == 2 or "context was destroyed" not in str(error):
                raise
            page.wait_for_load_state("load", timeout=30_000)
    seen = {k: v / 1000 for k, v in state["seen"].items()}
    return seen, state["enter"] / 1000 if state["enter"] else None


def upstream_records(fake: FakeUpstreamProcess, since: int, prompts: list[str]) -> list[dict | None]:
    """The fake's stream record answering each prompt (matched by the prompt text in the request's messages)."""
    records = fake.streams(since)
    out: list[dict | None] = []
    for prompt in prompts:
        match = [r for r in records if prompt in json.dumps(r["request"].get("messages", []), ensure_ascii=False)]
        out.append(match[-1] if match else None)
    return out


def measure_streaming(bench: Bench, app: RunningApp, case: Case) -> dict[str, Any]:
    """One or more pages streaming one answer each at once: bytes, lag, CPU, database writes (see module doc)."""
    tag = bench.next_tag()
    pieces = markdown_pieces(case.tokens, tag)
    markers = [marker(tag, i) for i in range(case.tokens)]
    answer_bytes = len("".join(pieces).encode())
    # One browser context per page, like separate users: a context's pages share Chromium's limit of six HTTP/1.1
    # connections per host, which apps holding a long-lived request per page (Gradio's heartbeat) would exhaust.
    contexts = [bench.new_context() for _ in range(case.pages)]
    try:
        opened = [bench.open_page(context, app) for context in contexts]
        pages = [page for page, _ in opened]
        bench.fake.set_script(Script(pieces=pieces, rate=case.rate))
        since = len(bench.fake.streams())
        prompts = [f"Benchmark {case.name} page {j} of answer {tag.upper()}: stream please." for j in range(case.pages)]
        writes_before = app.db_writes()
        time.sleep(0.5)  # let the pages' start-up work finish before measuring
        server_before, browser_before = cpu_snapshot(app.tree()), cpu_snapshot(chromium_processes())
        started = time.time()
        for page, prompt in zip(pages, prompts, strict=True):
            send_prompt(page, app.spec, prompt)
        deadline = started + case.tokens / case.rate + bench.cap
        finished = wait_for_markers(pages, markers[-1], deadline)
        pages[0].wait_for_timeout(SETTLE * 1000)
        server_after, browser_after = cpu_snapshot(app.tree()), cpu_snapshot(chromium_processes())
        writes_after = app.db_writes()
        records = upstream_records(bench.fake, since, prompts)

        lags, last_lags, received = [], [], {"ws": 0, "http": 0, "static": 0}
        by_tenth: list[list[float]] = [[] for _ in range(10)]
        tokens_seen = 0
        for (page, net), record in zip(opened, records, strict=True):
            seen, enter = read_observer(page)
            if record is None or enter is None:
                continue
            written = record["written"]
            page_lags = []
            for i, m in enumerate(markers[: len(written)]):
                if m in seen:
                    page_lags.append(seen[m] - written[i])
                    by_tenth[i * 10 // case.tokens].append(seen[m] - written[i])
            tokens_seen += len(page_lags)
            lags += page_lags
            if markers[-1] in seen and len(written) == len(markers):
                last_lags.append(seen[markers[-1]] - written[-1])
            end = max((seen[m] for m in markers if m in seen), default=time.time()) + SETTLE
            for key, value in net.window(enter, end).items():
                received[key] += value
        total_tokens = case.tokens * case.pages
        streamed = received["ws"] + received["http"]
        durations = [r["written"][-1] - r["received_at"] for r in records if r and r["written"]]
        result: dict[str, Any] = {
            "finished": sum(finished),
            "pages": case.pages,
            "tokens_seen": tokens_seen,
            "tokens": total_tokens,
            "answer_bytes": answer_bytes * case.pages,
            "bytes": received,
            "streamed_kb": streamed / 1000,
            "static_kb": received["static"] / 1000,
            "bytes_ratio": streamed / (answer_bytes * case.pages),
            "overhead_bytes_per_token": (streamed - answer_bytes * case.pages) / total_tokens,
            "lag_p50_ms": _ms(percentile(lags, 50)),
            "lag_p99_ms": _ms(percentile(lags, 99)),
            "last_lag_ms": _ms(max(last_lags) if len(last_lags) == case.pages else None),
            "lag_p50_by_tenth_ms": [_ms(percentile(tenth, 50)) for tenth in by_tenth],
            "server_cpu_per_1k_s": cpu_delta(server_before, server_after) * 1000 / total_tokens,
            "browser_cpu_per_1k_s": cpu_delta(browser_before, browser_after) * 1000 / total_tokens,
            "answer_duration_s": statistics.mean(durations) if durations else None,
            "db_writes_per_answer": None,
        }
        if writes_before is not None and writes_after is not None:
            result["db_writes_per_answer"] = (writes_after - writes_before) / case.pages
        return result
    finally:
        for context in contexts:
            context.close()


def measure_ttft(bench: Bench, app: RunningApp, case: Case) -> dict[str, Any]:
    """``case.pages`` short answers, each on a fresh page: Enter -> first token in the DOM minus the upstream's TTFT."""
    overheads, upstream, finished = [], [], 0
    steps: dict[str, list[float]] = {}
    for _ in range(case.pages):
        tag = bench.next_tag()
        pieces = markdown_pieces(case.tokens, tag)
        context = bench.new_context()
        try:
            page, net = bench.open_page(context, app)
            bench.fake.set_script(Script(pieces=pieces, rate=case.rate))
            since = len(bench.fake.streams())
            prompt = f"Benchmark ttft answer {tag.upper()}: a short one please."
            time.sleep(0.3)
            send_prompt(page, app.spec, prompt)
            deadline = time.time() + case.tokens / case.rate + bench.cap
            finished += wait_for_markers([page], marker(tag, case.tokens - 1), deadline)[0]
            seen, enter = read_observer(page)
            [record] = upstream_records(bench.fake, since, [prompt])
            first = seen.get(marker(tag, 0))
            if record and record["written"] and first is not None and enter is not None:
                upstream_ttft = record["written"][0] - record["received_at"]
                upstream.append(upstream_ttft)
                overheads.append(first - enter - upstream_ttft)
                for name, at in ttft_steps(net, enter, record, first, marker(tag, 0)).items():
                    steps.setdefault(name, []).append(at)
        finally:
            context.close()
    return {
        "finished": finished,
        "answers": case.pages,
        "ttft_overhead_p50_ms": _ms(statistics.median(overheads) if overheads else None),
        "ttft_overhead_all_ms": [_ms(v) for v in overheads],
        "upstream_ttft_p50_ms": _ms(statistics.median(upstream) if upstream else None),
        "steps_p50_ms": {name: _ms(statistics.median(values)) for name, values in steps.items()},
    }


def ttft_steps(net: NetCapture, enter: float, record: dict, first: float, first_marker: str) -> dict[str, float]:
    """Where one answer's time to first token went, each step as seconds after Enter (wall clock): the upstream
    receiving the request and writing its first chunk (the fake's record); the first WebSocket frame of the page after
    Enter (the app's reply to the key press); the frame that brought the first token (``first_marker``) to the page;
    for an app that opens a socket per answer once the answer's element exists (Parley's answer views:
    ``/api/messages/<id>/stream``), that socket's creation, its handshake's answer and its first frame; last, the first
    token in the DOM (the observer)."""
    out = {"upstream_request": record["received_at"] - enter, "upstream_first_chunk": record["written"][0] - enter}
    frames = sorted(
        (at, payload)
        for s in net.sockets.values()
        for t, payload in s["frames"]
        for at in [net.wall(t)]
        if at is not None and at >= enter
    )
    if frames:
        out["first_frame"] = frames[0][0] - enter
    token_frame = next((at for at, payload in frames if first_marker in payload), None)
    if token_frame is not None:
        out["first_token_frame"] = token_frame - enter
    for socket in net.sockets.values():
        created = net.wall(socket["created"])
        if created is None or created < enter or "/api/messages/" not in socket["url"]:
            continue
        out["answer_socket_created"] = created - enter
        if socket["open"] is not None:
            out["answer_socket_open"] = net.wall(socket["open"]) - enter
        if socket["frames"]:
            out["answer_socket_first_frame"] = net.wall(socket["frames"][0][0]) - enter
        break
    out["first_token_in_dom"] = first - enter
    return out


#: Times the long conversation is opened again from the start page in the same tab (its warm figure: their p50).
WARM_OPENS = 3


def measure_long_conversation(bench: Bench, app: RunningApp, case: Case) -> dict[str, Any]:
    """Open the seeded long conversation: seconds until its newest message's marker is in the DOM (a fresh browser
    context, as the other cases: every script and style loaded cold), the server's RSS growth, and beside them in the
    same run the two figures that say what the time is made of: an empty page (the app's start page) opened the same
    cold way until its composer is there (the floor: loading the app itself), and the long conversation opened again
    from the app's start page in the same tab (warm: as a reader who clicks it in the drawer; p50 of
    ``WARM_OPENS``)."""
    if app.long_page is None:
        return {"n/a": True}
    path, newest = app.long_page
    context = bench.new_context()
    try:
        page = context.new_page()
        opened = time.time()
        page.goto(app.url + "/", wait_until="commit")
        page.wait_for_selector("textarea", state="attached", timeout=bench.cap * 1000)
        empty_s = time.time() - opened
    finally:
        context.close()
    context = bench.new_context()
    try:
        page = context.new_page()
        rss_before = sum(p.memory_info().rss for p in app.tree())
        cold = time.time()
        page.goto(app.url + path, wait_until="commit")
        finished = wait_for_markers([page], newest, cold + bench.cap)[0]
        seen, _ = read_observer(page)
        visible = page.get_by_text(newest).first.is_visible() if finished else False
        page.wait_for_timeout(SETTLE * 1000)
        rss_after = sum(p.memory_info().rss for p in app.tree())
        warm = []
        for _ in range(WARM_OPENS if finished else 0):
            page.goto(app.url + "/", wait_until="load")
            opened = time.time()
            page.goto(app.url + path, wait_until="commit")
            page.get_by_text(newest).first.wait_for(state="attached", timeout=bench.cap * 1000)
            warm.append(time.time() - opened)
        return {
            "finished": int(finished),
            "messages": case.messages,
            "visible_s": seen[newest] - cold if newest in seen else None,
            "marker_visible": visible,
            "rss_growth_mb": (rss_after - rss_before) / 2**20,
            "empty_page_s": empty_s,
            "visible_warm_s": statistics.median(warm) if warm else None,
        }
    finally:
        context.close()


def _ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds (``None`` stays ``None``)."""
    return None if seconds is None else seconds * 1000


# -- the table -----------------------------------------------------------------------------------------------------


@dataclass
class Column:
    """One column of a case's table."""

    key: str
    """Key in the case's result dict."""
    label: str
    """Header."""
    fmt: str = "{:.2f}"
    """Format of a value."""
    target: Callable[[dict, dict], float | None] | None = None
    """The target for Parley's value (given Parley's result for this case and all of Parley's results), or None."""


def _writes_target(result: dict, _all: dict) -> float | None:
    duration = result.get("answer_duration_s")
    return None if duration is None else 1 + 2 * duration


STREAM_COLUMNS = [
    Column("bytes_ratio", "bytes/answer", "{:.2f}", lambda r, a: 1.5),
    Column("streamed_kb", "recv kB", "{:.1f}"),
    Column("overhead_bytes_per_token", "B/token over", "{:.1f}"),
    Column("lag_p50_ms", "lag p50 ms", "{:.1f}"),
    Column("lag_p99_ms", "lag p99 ms", "{:.1f}"),
    Column("last_lag_ms", "last lag ms", "{:.1f}"),
    Column("server_cpu_per_1k_s", "srv CPU s/1k", "{:.3f}", lambda r, a: 0.3),
    Column("browser_cpu_per_1k_s", "brw CPU s/1k", "{:.3f}", lambda r, a: 2.0),
    Column("db_writes_per_answer", "db writes/ans", "{:.1f}", _writes_target),
    Column("static_kb", "static kB", "{:.0f}"),
]


def columns_for(case: Case) -> list[Column]:
    """The columns of ``case``'s table, with this case's targets."""
    if case.name == "ttft":
        return [
            Column("ttft_overhead_p50_ms", "TTFT overhead p50 ms", "{:.1f}", lambda r, a: 30.0),
            Column("upstream_ttft_p50_ms", "upstream TTFT ms", "{:.1f}"),
        ]
    if case.name == "long":
        return [
            Column("visible_s", "newest visible s", "{:.2f}", lambda r, a: 1.0),
            Column("empty_page_s", "empty page s", "{:.2f}"),
            Column("visible_warm_s", "warm open s", "{:.2f}"),
            Column("rss_growth_mb", "server RSS +MB", "{:.1f}", lambda r, a: 50.0),
        ]
    columns = [dataclasses.replace(c) for c in STREAM_COLUMNS]
    by_key = {c.key: c for c in columns}
    lag_target = 250.0 if case.pages >= 50 else 100.0 if case.pages > 1 else 20.0
    by_key["lag_p99_ms"].target = lambda r, a: lag_target
    if case.name == "8k":
        by_key["last_lag_ms"].target = lambda r, a: 50.0

        def browser_target(result: dict, everything: dict) -> float:
            """2 s per 1,000 tokens, and per token within 1.3x of the 1k case's (when it ran)."""
            one_k = (everything.get("1k") or {}).get("browser_cpu_per_1k_s")
            return min(2.0, 1.3 * one_k) if one_k is not None else 2.0

        by_key["browser_cpu_per_1k_s"].target = browser_target
    return columns


def _cell(value: Any, fmt: str) -> str:
    if value is None or isinstance(value, str):
        return value or "n/a"
    return fmt.format(value)


def render_table(case: Case, results: dict[str, dict], parley_all: dict[str, dict]) -> tuple[str, dict[str, Any]]:
    """The text table of one case (a row per app, Parley / best baseline, targets, pass/fail) and Parley's verdicts."""
    columns = columns_for(case)
    head = ["app", *[c.label for c in columns], "finished"]
    rows = []
    for name, result in results.items():
        if result.get("n/a"):
            rows.append([name, *["n/a"] * len(columns), "n/a"])
            continue
        if "error" in result:
            first_line = result["error"].splitlines()[0] if result["error"] else "?"
            rows.append([name, f"error: {first_line[:70]}"] + [""] * (len(columns)))
            continue
        done = f"{result.get('finished', 0)}/{result.get('pages', result.get('answers', 1))}"
        rows.append([name, *[_cell(result.get(c.key), c.fmt) for c in columns], done])
    parley = results.get("parley")
    verdicts: dict[str, Any] = {}
    if parley and "error" not in parley:
        ratio_row, target_row, pass_row = ["parley / best baseline"], ["target (parley)"], ["parley pass/fail"]
        for column in columns:
            ours = parley.get(column.key)
            others = [
                r.get(column.key)
                for n, r in results.items()
                if n != "parley" and isinstance(r.get(column.key), int | float)
            ]
            best = min(others) if others else None
            ratio_row.append(f"{ours / best:.2f}x" if isinstance(ours, int | float) and best else "n/a")
            target = column.target(parley, parley_all) if column.target else None
            target_row.append(f"<= {column.fmt.format(target)}" if target is not None else "")
            if target is None:
                pass_row.append("")
            elif not isinstance(ours, int | float):
                pass_row.append("n/a")
            else:
                ok = ours <= target
                verdicts[column.key] = {"value": ours, "target": target, "pass": ok}
                pass_row.append("PASS" if ok else "FAIL")
        rows += [ratio_row + [""], target_row + [""], pass_row + [""]]
    widths = [max(len(str(row[i])) for row in [head, *rows] if i < len(row)) for i in range(len(head))]
    lines = [f"== {case.title} ==", "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)))
    return "\n".join(lines), verdicts


#: The figures issue 19 sets targets for: (label, case, result key, target, baseline app shown beside Parley's, or
#: ``"parley:<key>"``: a floor in Parley's own result, e.g. its empty page opened the same way).
SUMMARY = [
    ("time to first token, overhead over the upstream's (p50), ms", "ttft", "ttft_overhead_p50_ms", 30.0,
     "naive-nicegui"),
    ("server CPU per 1,000 tokens to one page, s", "1k", "server_cpu_per_1k_s", 0.3, None),
    ("browser CPU per 1,000 tokens, s", "1k", "browser_cpu_per_1k_s", 2.0, None),
    ("10 pages at once, lag p99, ms", "10pages", "lag_p99_ms", 100.0, None),
    ("50 pages at once, lag p99, ms", "50pages", "lag_p99_ms", 250.0, None),
    ("bytes / answer bytes at 1,000 tokens", "1k", "bytes_ratio", 1.3, None),
    ("10,000 messages: newest visible after opening, s", "long", "visible_s", 1.0, "parley:empty_page_s"),
    ("10,000 messages: the same from the start page, same tab, s", "long", "visible_warm_s", 1.0,
     "parley:empty_page_s"),
    ("10,000 messages: server memory for the page, MB", "long", "rss_growth_mb", 50.0, None),
]  # fmt: skip


def render_summary(results: dict[str, dict[str, dict]]) -> tuple[str, list[dict[str, Any]]]:
    """The table of the figures with targets (``SUMMARY``): Parley's value, the target, the best baseline of the same
    run (or the one named) and Parley's ratio to it, pass or fail. Rows of cases that did not run are left out."""
    head = ["figure", "target", "Parley", "baseline (same run)", "Parley / baseline", "verdict"]
    rows: list[list[str]] = []
    saved: list[dict[str, Any]] = []
    for label, case, key, target, named in SUMMARY:
        by_app = results.get(case)
        if not by_app or not isinstance((by_app.get("parley") or {}).get(key), int | float):
            continue
        ours = by_app["parley"][key]
        others = {app: r[key] for app, r in by_app.items() if app != "parley" and isinstance(r.get(key), int | float)}
        if named is not None and named.startswith("parley:"):  # a floor Parley's own run measured beside it
            floor = by_app["parley"].get(named.removeprefix("parley:"))
            others = {named: floor} if isinstance(floor, int | float) else {}
        elif named is not None:
            others = {app: value for app, value in others.items() if app == named}
        best = min(others.items(), key=lambda item: item[1]) if others else None
        baseline = f"{best[1]:.3g} ({best[0]})" if best else "n/a"
        ratio = f"{ours / best[1]:.2f}x" if best and best[1] else "n/a"
        ok = ours <= target
        rows.append([label, f"<= {target:g}", f"{ours:.3g}", baseline, ratio, "PASS" if ok else "MISSED"])
        saved.append({"figure": label, "case": case, "key": key, "target": target, "parley": ours,
                      "baseline": best, "pass": ok})  # fmt: skip
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = ["== issue 19's figures ==", "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines), saved


# -- the run -------------------------------------------------------------------------------------------------------


def machine_info(browser_version: str) -> dict[str, Any]:
    """CPU count and model, Chromium and Python versions, OS."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "chromium": browser_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "playwright": importlib.metadata.version("playwright"),
    }


MEASURES: dict[str, Callable[[Bench, RunningApp, Case], dict[str, Any]]] = {
    "1k": measure_streaming,
    "8k": measure_streaming,
    "10pages": measure_streaming,
    "50pages": measure_streaming,
    "ttft": measure_ttft,
    "long": measure_long_conversation,
}


def run(app_names: list[str], case_names: list[str], quick: bool, out: Path, cap: float) -> dict[str, Any]:
    """Run every case for every app, print the tables, save and return the JSON report."""
    from playwright.sync_api import sync_playwright

    apps = available_apps()
    unknown = [n for n in app_names if n not in apps]
    if unknown:
        print(f"skipping unknown or not yet available apps: {', '.join(unknown)}", file=sys.stderr)
    selected = [apps[n] for n in app_names if n in apps]
    all_cases = cases(quick)
    chosen = [all_cases[n] for n in case_names]
    long_case = all_cases["long"] if "long" in case_names else None
    results: dict[str, dict[str, dict]] = {c.name: {} for c in chosen}
    versions: dict[str, dict[str, str]] = {}
    with FakeUpstreamProcess(models=[MODEL]) as fake, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        bench = Bench(fake, browser, cap)
        report: dict[str, Any] = {"machine": machine_info(browser.version)}
        try:
            for spec in selected:
                print(f"-- {spec.name}", file=sys.stderr, flush=True)
                try:
                    versions[spec.name] = app_versions(spec, app_python(spec))
                    seed = long_case.messages if long_case else None
                    with running_app(spec, fake, seed) as app:
                        for case in sorted(chosen, key=lambda c: c.name != RUN_FIRST):
                            print(f"   {case.name} ...", file=sys.stderr, flush=True)
                            try:
                                results[case.name][spec.name] = MEASURES[case.name](bench, app, case)
                            except Exception as error:  # one failing case must not lose the others
                                results[case.name][spec.name] = {"error": f"{type(error).__name__}: {error}"}
                            time.sleep(1.0)
                except Exception as error:
                    for case in chosen:
                        results[case.name].setdefault(spec.name, {"error": f"{type(error).__name__}: {error}"})
        finally:
            browser.close()
    tables, verdicts = [], {}
    parley_all = {name: r.get("parley") or {} for name, r in results.items()}
    for case in chosen:
        table, verdicts[case.name] = render_table(case, results[case.name], parley_all)
        tables.append(table)
    summary, summary_rows = render_summary(results)
    tables.append(summary)
    text = "\n\n".join(tables)
    print(text)
    report.update(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        args={"apps": app_names, "cases": case_names, "quick": quick, "cap_s": cap},
        cases={c.name: dataclasses.asdict(c) for c in chosen},
        app_versions=versions,
        results=results,
        parley_verdicts=verdicts,
        summary=summary_rows,
        table=text,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nsaved {out}")
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.streaming [--apps a,b] [--cases c,d] [--quick] [--out PATH] [--cap S]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.split("\n")[0])
    parser.add_argument("--apps", default=None, help="comma-separated apps (default: parley and every baseline)")
    parser.add_argument("--cases", default=",".join(MEASURES), help="comma-separated cases (default: all)")
    parser.add_argument("--quick", action="store_true", help="small answers and few pages: a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="JSON report path (default: bench/results/<time>.json)")
    parser.add_argument("--cap", type=float, default=CAP, help="seconds an app may trail the upstream's end")
    args = parser.parse_args(argv)
    app_names = args.apps.split(",") if args.apps else list(available_apps())
    case_names = args.cases.split(",")
    bad = [c for c in case_names if c not in MEASURES]
    if bad:
        parser.error(f"unknown cases: {', '.join(bad)} (choose from {', '.join(MEASURES)})")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"streaming-{'quick-' if args.quick else ''}{stamp}.json"
    run(app_names, case_names, args.quick, out, args.cap)


if __name__ == "__main__":
    main()
