"""Three Parley replicas behind HAProxy: relay lag, CPU per 1,000 tokens against one process, Redis memory per
answer, and what a replica killed with SIGKILL costs the others.

The stack, all real processes on loopback: a throwaway PostgreSQL (``tests.postgres``), a ``redis-server``
(``tests.redis_server``), the fake upstream in its own process (``tests.fake_upstream.FakeUpstreamProcess``: its CPU
is not in Parley's nor in this process's), three ``app.py`` replicas on one database and one Redis
(``PARLEY_REPLICA_LEASE=2``, one storage secret) and HAProxy with ``deploy/haproxy.cfg`` (its bind and server
addresses rewritten). Personal mode (no accounts), default checkpoint interval.

Readers are SSE clients in this process (async httpx + ``httpx_sse``, one asyncio task each, uvloop), not browser
pages: a hundred Chromium pages are too heavy for a 2-core machine. Answer ``n`` is sent on replica ``i = n % 3``
(``POST /api/conversations``, then ``POST /api/conversations/{id}/messages``, whose own SSE answer a task only drains:
the generator's reader, on the same replica) and followed by one reader of ``GET /api/messages/{id}/stream`` on
replica ``(i + 1) % 3``. The starts are spread over ``--ramp`` seconds; the fake waits ``FIRST_TOKEN_DELAY`` s before
the first token, then writes ``--rate`` tokens/s (``"w0 w1 ..."``).

Phases, each on a fresh database:

1. **baseline**, measured in the same run: the same answers on ONE ``app.py`` without Redis, on the same PostgreSQL
   server; the generator's stream and the reader both on that process.
2. **direct**: the three replicas, readers connected to their replica directly.
3. **proxy**: the same through HAProxy (the ``parley_replica`` cookie picks each request's replica, as a browser's
   sticky page would); then, unless ``--no-variant``, **proxy_no_delay**: again with ``option http-no-delay`` added
   to the file's ``defaults`` (a variant of the shipped file, to tell HAProxy's own delay of small chunks apart).
4. **kill**: ``--kill-answers`` longer answers on the three replicas, each followed from both other replicas; after
   ``--kill-after`` s of tokens replica ``a`` gets SIGKILL.

Figures:

* **lag** of each token from the fake's write (``StreamRecord.written[k]``, ``time.time()`` in the fake's process)
  to its arrival at the reader (``time.time()`` here, same machine), tokens told apart by the text's length;
  p50/p99/max, against the target p99 <= 50 ms. Tokens written before the reader had its ``message_start`` are left
  out (a catch-up, not a relay delay); this process's own loop lag is shown beside, as it inflates the figures.
* **CPU** (user + system, ``psutil``) of the Parley processes per 1,000 tokens delivered to the readers (the
  generators' own streams deliver as many again, in every phase alike), and its ratio to the baseline; Redis,
  PostgreSQL (postmaster and backends), HAProxy, the fake and this process beside it; idle CPU of the Parley
  processes before the answers; the machine's busy cores, and those used by none of these (another job: the lag
  figures mean little when the machine is saturated).
* **Redis memory** after the direct phase's answers ended (their streams are kept 300 s): ``MEMORY USAGE
  parley:answer:<id> SAMPLES 0`` per answer, median and total, entries per stream, and ``INFO memory``
  ``used_memory`` (with its dataset and client-buffer parts) before and after.
* **after kill -9**: characters lost by the readers on the surviving replicas of the answers the survivors generate
  (target 0; any text that is not exactly the fake's counts), and the seconds from the kill until every answer of
  the killed replica is ``interrupted`` in the database (polled every 0.1 s), with what their readers on the
  survivors received.

No figure is asserted. Printed: a table; saved: JSON in ``bench/results/replicas-*.json`` with the machine's
description. Needs ``postgresql``, ``redis-server`` and ``haproxy`` (Debian packages; ``make test`` installs them).

Run from the repository root::

    .venv/bin/python -m bench.replicas            # 100 answers x 200 tokens at 20 tokens/s (~2 min)
    .venv/bin/python -m bench.replicas --quick    # 10 answers x 50 tokens (~45 s, mostly start-ups)
    .venv/bin/python -m bench.replicas --answers 30 --no-variant   # a lighter load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import aconnect_sse

from bench.common import fmt
from bench.compare import loop_factory
from bench.streaming import machine_info

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
#: Target of the issue: a token's lag from the upstream's write to a reader on another replica, p99.
LAG_P99_TARGET_MS = 50.0
#: Seconds of the replicas' lease (``PARLEY_REPLICA_LEASE``): a dead replica's answers are marked a few after.
LEASE = 2.0
#: Seconds the fake waits before an answer's first token (the readers connect meanwhile).
FIRST_TOKEN_DELAY = 1.0
#: Seconds the Parley processes are left idle before each batch, to show what they cost with nothing to do.
IDLE_S = 2.0
#: Seconds between two looks at the database for the killed replica's answers.
POLL_S = 0.1
LETTERS = "abc"
#: The line the proxy variant adds to deploy/haproxy.cfg's ``defaults``: no MSG_MORE, small chunks sent at once.
NO_DELAY = "option http-no-delay"


# -- the processes ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The shared processes: PostgreSQL, Redis, the fake upstream; and a temporary folder."""

    root: Path
    postgres: Any
    redis: Any
    upstream: Any


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    """Start PostgreSQL, Redis and the fake upstream process; stop them and remove the folders afterwards."""
    from tests.fake_upstream import FakeUpstreamProcess
    from tests.postgres import PostgresServer, find_binaries
    from tests.redis_server import RedisServer

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed (make test installs Debian's postgresql package)")
    root = Path(tempfile.mkdtemp(prefix="parley-bench-replicas-"))
    postgres = redis = upstream = None
    try:
        postgres = PostgresServer(binaries).start()
        redis = RedisServer().start()
        upstream = FakeUpstreamProcess().start()
        yield Stack(root, postgres, redis, upstream)
    finally:
        if upstream is not None:
            upstream.stop()
        if redis is not None:
            redis.close()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Parley:
    """Running app.py processes: their URLs (direct, and through the proxy when there is one) and processes."""

    database_url: str
    urls: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    front: str | None = None
    proxy: subprocess.Popen | None = None


@contextlib.contextmanager
def parley(made: Stack, name: str, count: int, redis: bool) -> Iterator[Parley]:
    """``count`` app.py processes on a new database (with the Redis when ``redis``), stopped afterwards."""
    from tests.browser import free_port, serve

    database_url = made.postgres.create_database()
    env = {"DATABASE_URL": database_url, "PARLEY_STORAGE_SECRET": secrets.token_urlsafe(24)}
    if redis:
        made.redis.restart()  # empty: nothing of a previous phase
        env |= {"PARLEY_REDIS_URL": made.redis.url, "PARLEY_REPLICA_LEASE": f"{LEASE:g}"}
    running = Parley(database_url)
    with contextlib.ExitStack() as stack_:
        for index in range(count):
            port = free_port()
            process = stack_.enter_context(serve(made.root / f"{name}-{index}", made.upstream, port, **env))
            running.urls.append(f"http://127.0.0.1:{port}")
            running.processes.append(process)
        yield running


@contextlib.contextmanager
def haproxy(made: Stack, running: Parley, extra: str | None = None) -> Iterator[None]:
    """HAProxy with deploy/haproxy.cfg in front of ``running``'s three replicas (``running.front``); ``extra``: a
    line added to its ``defaults`` section (a variant of the shipped file, for comparison)."""
    from tests.browser import free_port

    binary = shutil.which("haproxy")
    if binary is None:
        raise SystemExit("haproxy is not installed (make test installs Debian's haproxy package)")
    port = free_port()
    config = (ROOT / "deploy" / "haproxy.cfg").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    for number, url in enumerate(running.urls, start=1):
        config = config.replace(f"127.0.0.1:808{number}", url.removeprefix("http://"))
    if extra:
        config = config.replace("\ndefaults\n", f"\ndefaults\n    {extra}\n", 1)
        assert extra in config, "no defaults section in deploy/haproxy.cfg"
    path = made.root / "haproxy.cfg"
    path.write_text(config)
    proxy = subprocess.Popen([binary, "-f", str(path), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        front = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not _healthy(front, LETTERS[: len(running.urls)]):
            if proxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("HAProxy did not start, or does not reach every replica")
            time.sleep(0.2)
        running.front, running.proxy = front, proxy
        yield
    finally:
        running.front = running.proxy = None
        proxy.terminate()
        try:
            proxy.wait(5)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


def _healthy(front: str, letters: str) -> bool:
    """Whether the proxy answers /healthz on each replica (picked by its cookie)."""
    try:
        return all(
            httpx.get(front + "/healthz", cookies={"parley_replica": letter}, timeout=1).status_code == 200
            for letter in letters
        )
    except httpx.HTTPError:
        return False


def _errors_logged(process: subprocess.Popen) -> int:
    """ERROR lines and ASGI exceptions in a server_process's standard error so far."""
    from tests.browser import stderr_text

    log = stderr_text(process)
    return sum(1 for line in log.splitlines() if " ERROR " in line or "Exception in ASGI application" in line)


# -- CPU ----------------------------------------------------------------------------------------------------------


def _cpu(pid: int, reaped_children: bool = False) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants (and its reaped children's, when asked: the
    postmaster waits for the backends that ended); 0 when it is gone."""
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = times.user + times.system
        if reaped_children:
            total += times.children_user + times.children_system
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return total
    except psutil.Error:
        return 0.0


def _postmaster(made: Stack) -> int:
    return int((made.postgres.data / "postmaster.pid").read_text().split("\n", 1)[0])


class CpuMeter:
    """CPU seconds of the Parley processes and of each other part, between ``start`` and ``stop``."""

    def __init__(self, made: Stack, running: Parley) -> None:
        self.made, self.running = made, running
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}

    def sample(self) -> dict[str, Any]:
        return {
            "time": time.perf_counter(),
            "parley": [_cpu(p.pid) for p in self.running.processes],
            "redis": _cpu(self.made.redis.process.pid) if self.made.redis.process else 0.0,
            "postgres": _cpu(_postmaster(self.made), reaped_children=True),
            "haproxy": _cpu(self.running.proxy.pid) if self.running.proxy else 0.0,
            "upstream": _cpu(self.made.upstream.pid),
            "bench": time.process_time(),
            "machine": psutil.cpu_times(),
        }

    def start(self) -> None:
        self.before = self.sample()

    def stop(self) -> dict[str, Any]:
        """The CPU seconds used since ``start``: ``parley`` (all its processes), ``per_replica``, and the others'."""
        self.after = after = self.sample()
        before = self.before
        wall = after["time"] - before["time"]
        per_replica = [b - a if b >= a else None for a, b in zip(before["parley"], after["parley"], strict=True)]
        machine0, machine1 = before["machine"], after["machine"]
        idle = sum(getattr(machine1, f) - getattr(machine0, f) for f in ("idle", "iowait") if hasattr(machine0, f))
        return {
            "wall_s": round(wall, 3),
            "parley_s": round(sum(x for x in per_replica if x is not None), 3),
            "per_replica_s": [None if x is None else round(x, 3) for x in per_replica],
            **{f"{key}_s": round(after[key] - before[key], 3) for key in ("redis", "postgres", "haproxy", "upstream")},
            "bench_s": round(after["bench"] - before["bench"], 3),
            "machine_busy_cores": round((sum(machine1) - sum(machine0) - idle) / wall, 3) if wall else None,
        } | self._others(wall, sum(machine1) - sum(machine0) - idle)

    def _others(self, wall: float, busy: float) -> dict[str, Any]:
        """Cores used by processes that are none of the measured ones (another job on the machine)."""
        before, after = self.before, self.after
        ours = sum(after["parley"]) - sum(before["parley"])
        ours += sum(after[key] - before[key] for key in ("redis", "postgres", "haproxy", "upstream", "bench"))
        return {"others_cores": round((busy - ours) / wall, 3) if wall else None}


# -- the readers --------------------------------------------------------------------------------------------------


@dataclass
class Reader:
    """One SSE reader of an answer: where, what it received and when (``time.time()``)."""

    replica: int
    text: str = ""
    connected_at: float | None = None  # its message_start arrived
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, length of text so far)
    done: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Answer:
    """One answer of a batch: its generator's replica and stream, its readers."""

    index: int
    replica: int
    prompt: str
    message_id: int | None = None
    generator_done: str | None = None  # the done event's status on the generator's own stream
    generator_error: str | None = None
    readers: list[Reader] = field(default_factory=list)


_MESSAGE_START = re.compile(r'"assistant_message_id":(\d+)')
_DONE = re.compile(r'event: done\r?\ndata: \{"status":"(\w+)"')


async def _generate(client: httpx.AsyncClient, answer: Answer, started: asyncio.Event) -> None:
    """Send the answer's message and drain its SSE answer (only the message id and the done status are parsed)."""
    try:
        conversation = (await client.post("/api/conversations")).raise_for_status().json()["id"]
        body = {"content": answer.prompt}
        async with client.stream("POST", f"/api/conversations/{conversation}/messages", json=body) as response:
            response.raise_for_status()
            head, tail = "", ""
            async for chunk in response.aiter_text():
                if answer.message_id is None:
                    head += chunk
                    if (found := _MESSAGE_START.search(head)) is not None:
                        answer.message_id = int(found.group(1))
                        started.set()
                seen = tail + chunk
                if (done := _DONE.search(seen)) is not None:
                    answer.generator_done = done.group(1)
                tail = seen[-200:]
    except httpx.HTTPError as error:
        answer.generator_error = f"{type(error).__name__}: {error}"
    finally:
        started.set()


async def _follow(client: httpx.AsyncClient, message_id: int, reader: Reader) -> None:
    """Read ``GET /api/messages/{id}/stream`` to its end, noting when each delta arrived."""
    try:
        async with aconnect_sse(client, "GET", f"/api/messages/{message_id}/stream") as source:
            async for sse in source.aiter_sse():
                now = time.time()
                if sse.event == "text_delta":
                    reader.text += json.loads(sse.data)["delta"]
                    reader.arrivals.append((now, len(reader.text)))
                elif sse.event == "message_start":
                    reader.connected_at = now
                elif sse.event == "done":
                    reader.done = json.loads(sse.data)
                    return
    except httpx.HTTPError as error:
        reader.error = f"{type(error).__name__}: {error}"


class LoopLag:
    """This process's own event-loop lag (a 10 ms ticker): reader arrival times include it."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - before - 0.01)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return _percentiles([lag * 1000 for lag in self.lags])


def _clients(urls: list[str], cookies: list[str | None]) -> list[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=400)
    return [
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, connect=10), limits=limits,
                          cookies={"parley_replica": cookie} if cookie else None)
        for url, cookie in zip(urls, cookies, strict=True)
    ]  # fmt: skip


async def _batch(
    gen_clients: list[httpx.AsyncClient],
    read_clients: list[httpx.AsyncClient],
    answers: list[Answer],
    followers: int,
    ramp: float,
    timeout: float,
    during: Any = None,
) -> float:
    """Send ``answers`` (starts spread over ``ramp`` s), each followed by ``followers`` readers on the next replicas
    (``(i + 1) % n``, ``(i + 2) % n``); ``during()`` runs beside them once all have started. Returns the wall
    seconds until every stream ended (or ``timeout``)."""
    count = len(read_clients)
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()

    async def start(answer: Answer) -> None:
        await asyncio.sleep(answer.index * ramp / len(answers))
        started = asyncio.Event()
        tasks.append(loop.create_task(_generate(gen_clients[answer.replica], answer, started)))
        await started.wait()
        if answer.message_id is None:
            return
        for step in range(1, followers + 1):
            reader = Reader((answer.replica + step) % count)
            answer.readers.append(reader)
            tasks.append(loop.create_task(_follow(read_clients[reader.replica], answer.message_id, reader)))

    began = time.perf_counter()
    await asyncio.gather(*(start(answer) for answer in answers))
    extra = loop.create_task(during()) if during is not None else None
    _done, pending = await asyncio.wait(tasks, timeout=max(1.0, timeout - (time.perf_counter() - began)))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - began
    if extra is not None:
        await extra
    return wall


# -- figures ------------------------------------------------------------------------------------------------------


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "samples": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"p50": round(rank(0.5), 2), "p99": round(rank(0.99), 2), "max": round(ordered[-1], 2),
            "samples": len(ordered)}  # fmt: skip


def _records(upstream: Any) -> dict[str, dict[str, Any]]:
    """The fake's stream records by the prompt (the last user message) of their request."""
    found = {}
    for record in upstream.streams():
        messages = record["request"].get("messages") or []
        users = [m.get("content") for m in messages if m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            found[users[-1]] = record
    return found


def _token_ends(tokens: int) -> list[int]:
    """The text's length once token ``k`` is in, for each ``k`` (the fake's tokens are ``"w{k} "``)."""
    from tests.fake_upstream import FakeUpstream

    ends, length = [], 0
    for k in range(tokens):
        length += len(FakeUpstream.token(k))
        ends.append(length)
    return ends


def _lags(reader: Reader, written: list[float], ends: list[int]) -> tuple[list[tuple[int, float]], int, int]:
    """``(k, milliseconds)`` from token ``k``'s write to its arrival at ``reader``, for the tokens written after the
    reader connected; also the tokens delivered, and those left out (written before it connected)."""
    lags, skipped, k = [], 0, 0
    for arrived, length in reader.arrivals:
        while k < len(ends) and k < len(written) and ends[k] <= length:
            if reader.connected_at is not None and written[k] >= reader.connected_at:
                lags.append((k, (arrived - written[k]) * 1000))
            else:
                skipped += 1
            k += 1
    return lags, k, skipped


def expected_text(tokens: int) -> str:
    from tests.fake_upstream import FakeUpstream

    return "".join(FakeUpstream.token(k) for k in range(tokens))


def _summarize(answers: list[Answer], records: dict[str, dict[str, Any]], tokens: int) -> dict[str, Any]:
    ends, expected = _token_ends(tokens), expected_text(tokens)
    lags: list[tuple[int, float]] = []
    delivered = skipped = 0
    for answer in answers:
        written = (records.get(answer.prompt) or {}).get("written") or []
        for reader in answer.readers:
            these, count, left_out = _lags(reader, written, ends)
            lags += these
            delivered += count
            skipped += left_out
    readers = [reader for answer in answers for reader in answer.readers]
    return {
        "answers": len(answers),
        "upstream_streams": sum(1 for answer in answers if answer.prompt in records),
        "readers": len(readers),
        "readers_complete": sum(
            1 for r in readers if r.text == expected and (r.done or {}).get("status") == "complete"
        ),
        "reader_errors": sorted({r.error for r in readers if r.error})[:5],
        "generators_complete": sum(1 for a in answers if a.generator_done == "complete"),
        "generator_errors": sorted({a.generator_error for a in answers if a.generator_error})[:5],
        "tokens_delivered": delivered,
        "lag_ms": _percentiles([lag for _k, lag in lags]),
        "lag_ms_by_third": [  # tokens of the answers' first, middle and last third: falling behind, or steady
            _percentiles([lag for k, lag in lags if third * tokens <= 3 * k < (third + 1) * tokens])
            for third in range(3)
        ],
        "lag_tokens_left_out": skipped,
    }


async def _idle_cpu(made: Stack, running: Parley) -> float:
    """Cores the Parley processes use with nothing to do, over ``IDLE_S``."""
    meter = CpuMeter(made, running)
    meter.start()
    await asyncio.sleep(IDLE_S)
    figures = meter.stop()
    return round(figures["parley_s"] / figures["wall_s"], 4)


async def measure(
    made: Stack, running: Parley, *, answers: int, tokens: int, rate: float, ramp: float, via_proxy: bool, tag: str
) -> tuple[dict[str, Any], list[Answer]]:
    """One batch of ``answers`` answers, each followed by one reader on the next replica: lag, CPU, outcomes."""
    from tests.fake_upstream import Script

    count = len(running.urls)
    if via_proxy:
        assert running.front is not None
        urls, cookies = [running.front] * count, list(LETTERS[:count])
    else:
        urls, cookies = running.urls, [None] * count
    gen_clients, read_clients = _clients(urls, cookies), _clients(urls, cookies)
    made.upstream.reset()
    made.upstream.set_script(Script(tokens=tokens, rate=rate, first_token_delay=FIRST_TOKEN_DELAY))
    batch = [Answer(n, n % count, f"{tag} answer {n}: tell me about rivers") for n in range(answers)]
    try:
        idle = await _idle_cpu(made, running)
        meter, loop_lag = CpuMeter(made, running), LoopLag()
        meter.start()
        loop_lag.start()
        wall = await _batch(gen_clients, read_clients, batch, 1, ramp, timeout=ramp + tokens / rate + 60)
        own_lag = await loop_lag.stop()
        cpu = meter.stop()
    finally:
        for client in gen_clients + read_clients:
            await client.aclose()
    figures = _summarize(batch, _records(made.upstream), tokens)
    delivered = figures["tokens_delivered"]
    figures |= {
        "replicas": count,
        "via_proxy": via_proxy,
        "wall_s": round(wall, 3),
        "cpu": cpu,
        "cpu_ms_per_1k_tokens": round(cpu["parley_s"] / delivered * 1e6, 2) if delivered else None,
        "cpu_ms_per_1k_tokens_with_redis_postgres_proxy": round(
            (cpu["parley_s"] + cpu["redis_s"] + cpu["postgres_s"] + cpu["haproxy_s"]) / delivered * 1e6, 2
        )
        if delivered
        else None,  # fmt: skip
        "parley_cores": round(cpu["parley_s"] / cpu["wall_s"], 3) if cpu["wall_s"] else None,
        "parley_idle_cores": idle,
        "bench_loop_lag_ms": own_lag,
        "errors_logged": [_errors_logged(p) for p in running.processes],
    }
    return figures, batch


#: What ``redis_memory`` reports of ``INFO memory`` and ``INFO clients``, before and after.
MEMORY_FIELDS = ("used_memory", "used_memory_dataset", "mem_clients_normal", "connected_clients")


def redis_memory(made: Stack, batch: list[Answer], before: dict[str, int]) -> dict[str, Any]:
    """MEMORY USAGE of each answer's stream (``SAMPLES 0``: every entry), entries, TTL, and ``INFO``'s figures."""
    import redis

    client = redis.Redis.from_url(made.redis.url)
    try:
        usage, entries, ttls = [], [], []
        for answer in batch:
            if answer.message_id is None:
                continue
            key = f"parley:answer:{answer.message_id}"
            size = client.memory_usage(key, samples=0)
            if size is None:
                continue
            usage.append(size)
            entries.append(client.xlen(key))
            ttls.append(client.ttl(key))
        keys = client.dbsize()
    finally:
        client.close()
    after = _redis_info(made)
    used_before, used_after = before["used_memory"], after["used_memory"]
    return {
        "streams": len(usage),
        "bytes_per_answer_median": statistics.median(usage) if usage else None,
        "bytes_per_answer_max": max(usage) if usage else None,
        "bytes_total": sum(usage),
        "entries_per_answer_median": statistics.median(entries) if entries else None,
        "bytes_per_entry": round(sum(usage) / sum(entries), 1) if entries and sum(entries) else None,
        "ttl_s_min": min(ttls) if ttls else None,
        "used_memory_before": used_before,
        "used_memory_after": used_after,
        "used_memory_delta": used_after - used_before,
        "used_memory_delta_per_answer": round((used_after - used_before) / len(usage)) if usage else None,
        "keys_in_redis": keys,
        "info_before": before,
        "info_after": after,
    }


def _redis_info(made: Stack) -> dict[str, int]:
    """``used_memory``, ``used_memory_dataset``, ``mem_clients_normal`` (client buffers) and ``connected_clients``."""
    import redis

    client = redis.Redis.from_url(made.redis.url)
    try:
        info = {**client.info("memory"), **client.info("clients")}
    finally:
        client.close()
    return {key: int(info[key]) for key in MEMORY_FIELDS if key in info}


async def kill_phase(
    made: Stack, running: Parley, *, answers: int, tokens: int, rate: float, ramp: float, kill_after: float
) -> dict[str, Any]:
    """Answers on the three replicas, each followed from both others; SIGKILL replica 0 after ``kill_after`` s of
    tokens; then what the readers on the survivors got and when the killed replica's answers were marked."""
    from chat.store import Status, Store
    from tests.fake_upstream import Script

    count, victim = len(running.urls), 0
    gen_clients, read_clients = _clients(running.urls, [None] * count), _clients(running.urls, [None] * count)
    made.upstream.reset()
    made.upstream.set_script(Script(tokens=tokens, rate=rate, first_token_delay=FIRST_TOKEN_DELAY))
    batch = [Answer(n, n % count, f"kill answer {n}: tell me about rivers") for n in range(answers)]
    store = Store(running.database_url)
    killed: dict[str, Any] = {}

    async def kill_and_watch() -> None:
        await asyncio.sleep(FIRST_TOKEN_DELAY + kill_after)
        ids = [a.message_id for a in batch if a.replica == victim and a.message_id is not None]
        before = await asyncio.to_thread(lambda: [store.get_message(i) for i in ids])
        killed["checkpointed_before_kill"] = sum(1 for message in before if message.content)
        running.processes[victim].send_signal(signal.SIGKILL)
        at = time.monotonic()
        killed["at_wall"] = time.time()
        await asyncio.to_thread(running.processes[victim].wait)
        marked: dict[int, float] = {}
        while len(marked) < len(ids) and time.monotonic() - at < 30:
            for message_id in ids:
                if message_id not in marked:
                    message = await asyncio.to_thread(store.get_message, message_id)
                    if message.status == Status.interrupted:
                        marked[message_id] = time.monotonic() - at
                    elif message.status != Status.streaming:
                        marked[message_id] = float("nan")  # ended otherwise: shown in statuses below
            await asyncio.sleep(POLL_S)
        killed["marked_s"] = marked
        killed["ids"] = ids

    try:
        wall = await _batch(gen_clients, read_clients, batch, 2, ramp, timeout=ramp + tokens / rate + 60,
                            during=kill_and_watch)  # fmt: skip
    finally:
        for client in gen_clients + read_clients:
            await client.aclose()
    try:
        expected = expected_text(tokens)
        survivors = [a for a in batch if a.replica != victim]
        checked = [r for a in survivors for r in a.readers if r.replica != victim]
        lost = 0
        for reader in checked:
            common = 0
            for got, want in zip(reader.text, expected, strict=False):
                if got != want:
                    break
                common += 1
            lost += len(expected) - common  # what is missing, or wrong from the first difference on
        victims = [a for a in batch if a.replica == victim]
        stored = {a.message_id: store.get_message(a.message_id) for a in victims if a.message_id is not None}
        victim_readers = [(a, r) for a in victims for r in a.readers if r.replica != victim]
        marked = killed.get("marked_s", {})
        times = sorted(t for t in marked.values() if t == t)
        streaming_left = len(store.streaming_answers())
    finally:
        store.close()
    statuses: dict[str, int] = {}
    for message in stored.values():
        statuses[str(getattr(message.status, "value", message.status))] = (
            statuses.get(str(getattr(message.status, "value", message.status)), 0) + 1
        )
    ahead = [len(r.text) - len(stored[a.message_id].content) for a, r in victim_readers if a.message_id in stored]
    return {
        "answers": answers,
        "tokens_per_answer": tokens,
        "killed_replica": LETTERS[victim],
        "wall_s": round(wall, 3),
        "survivor_answers": len(survivors),
        "survivor_readers_checked": len(checked),
        "survivor_readers_exact": sum(1 for r in checked if r.text == expected),
        "survivor_readers_done_complete": sum(1 for r in checked if (r.done or {}).get("status") == "complete"),
        "characters_lost": lost,
        "survivor_reader_errors": sorted({r.error for r in checked if r.error})[:5],
        "survivor_generators_complete": sum(1 for a in survivors if a.generator_done == "complete"),
        "killed_answers": len(victims),
        "killed_answers_checkpointed_before_kill": killed.get("checkpointed_before_kill"),
        "killed_answers_marked": len(times),
        "killed_answer_statuses": statuses,
        "marked_s": {
            "first": round(times[0], 3) if times else None,
            "median": round(statistics.median(times), 3) if times else None,
            "last": round(times[-1], 3) if times else None,
        },  # fmt: skip
        "killed_readers_on_survivors": len(victim_readers),
        "killed_readers_done_interrupted": sum(
            1 for _a, r in victim_readers if (r.done or {}).get("status") == "interrupted"
        ),
        "killed_readers_text_a_prefix": sum(1 for _a, r in victim_readers if expected.startswith(r.text)),
        "killed_readers_chars_beyond_checkpoint_median": statistics.median(ahead) if ahead else None,
        "streaming_left": streaming_left,
        "errors_logged": [_errors_logged(p) for p in running.processes],
        "lease_s": LEASE,
    }


# -- the run ------------------------------------------------------------------------------------------------------


async def _run(made: Stack, args: argparse.Namespace) -> dict[str, Any]:
    common = {"answers": args.answers, "tokens": args.tokens, "rate": args.rate, "ramp": args.ramp}
    result: dict[str, Any] = {}
    print("baseline: one process, no Redis ...", file=sys.stderr, flush=True)
    with parley(made, "baseline", 1, redis=False) as single:
        result["baseline"], _ = await measure(made, single, via_proxy=False, tag="baseline", **common)
    print("three replicas ...", file=sys.stderr, flush=True)
    with parley(made, "replica", 3, redis=True) as cluster:
        info_before = _redis_info(made)
        result["direct"], batch = await measure(made, cluster, via_proxy=False, tag="direct", **common)
        result["redis"] = redis_memory(made, batch, info_before)
        print("through HAProxy ...", file=sys.stderr, flush=True)
        with haproxy(made, cluster):
            result["proxy"], _ = await measure(made, cluster, via_proxy=True, tag="proxy", **common)
        if not args.no_variant:
            print(f"through HAProxy with {NO_DELAY!r} ...", file=sys.stderr, flush=True)
            with haproxy(made, cluster, extra=NO_DELAY):
                result["proxy_no_delay"], _ = await measure(made, cluster, via_proxy=True, tag="nodelay", **common)
        print("kill -9 ...", file=sys.stderr, flush=True)
        result["kill"] = await kill_phase(made, cluster, answers=args.kill_answers, tokens=args.kill_tokens,
                                          rate=args.rate, ramp=args.ramp, kill_after=args.kill_after)  # fmt: skip
    return result


def code_version() -> dict[str, Any]:
    """The commit measured, and a fingerprint of the uncommitted changes to it (chat/ and app.py, untracked files in
    chat/ included): figures of two runs compare only when both match."""
    import hashlib

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout

    digest = hashlib.sha256(git("diff", "HEAD", "--", "chat", "app.py").encode())
    untracked = sorted(git("ls-files", "--others", "--exclude-standard", "--", "chat").split())
    for name in untracked:
        with contextlib.suppress(OSError):
            digest.update(name.encode() + (ROOT / name).read_bytes())
    changed = git("status", "--short", "--", "chat", "app.py").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "changed_files": len(changed),
            "changes_sha256": digest.hexdigest()[:16]}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = {k: v for k, v in machine_info("").items() if k != "chromium"}
    config = {
        "answers": args.answers,
        "tokens_per_answer": args.tokens,
        "rate_tokens_per_s": args.rate,
        "ramp_s": args.ramp,
        "first_token_delay_s": FIRST_TOKEN_DELAY,
        "kill_answers": args.kill_answers,
        "kill_tokens_per_answer": args.kill_tokens,
        "kill_after_s": args.kill_after,
        "lease_s": LEASE,
        "baseline": "one app.py, no Redis, on the same PostgreSQL server (its own database)",
        "readers": "SSE clients (httpx + httpx_sse) in the bench process, one task each; not browser pages",
        "upstream": "tests.fake_upstream.FakeUpstreamProcess, its own process",
        "loop": loop_factory().__module__.split(".")[0],
        "quick": args.quick,
        "code": code_version(),
    }
    with stack() as made:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            figures = runner.run(_run(made, args))
    result: dict[str, Any] = {"config": config, "machine": machine, **figures}

    def ratio(phase: str, key: str) -> float | None:
        a, b = result[phase].get(key), result["baseline"].get(key)
        return round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    result["ratios"] = {
        f"{phase}_{key}": ratio(phase, key)
        for phase in PHASES[1:]
        if phase in result
        for key in ("cpu_ms_per_1k_tokens", "cpu_ms_per_1k_tokens_with_redis_postgres_proxy")
    }
    return result


#: The phases measured with the same answers, in the table's order (the baseline first).
PHASES = ("baseline", "direct", "proxy", "proxy_no_delay")


def _delta(redis: dict[str, Any], key: str) -> str:
    """``+N KiB`` between ``info_before`` and ``info_after``."""
    a, b = redis["info_before"].get(key), redis["info_after"].get(key)
    return f"{(b - a) / 1024:+.1f} KiB" if a is not None and b is not None else "-"


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    c = result["config"]
    names = [name for name in PHASES if name in result]
    titles = {"baseline": "1 process", "direct": "3 direct", "proxy": "3 proxy", "proxy_no_delay": "3 nodelay"}

    def get(phase: dict, keys: tuple[str, ...]) -> Any:
        value: Any = phase
        for key in keys:
            if isinstance(value, list):
                value = value[int(key)] if int(key) < len(value) else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        return value

    def line(label: str, *keys: str, ratio: bool = False) -> str:
        values = [get(result[name], keys) for name in names]
        ratios = ""
        if ratio and isinstance(values[0], int | float) and values[0]:
            ratios = "".join(
                f" {v / values[0]:>8.2f}x" if isinstance(v, int | float) else f" {'':>9}" for v in values[1:]
            )
        return f"{label:<44}" + "".join(f" {fmt(v):>10}" for v in values) + ratios

    r, k = result["redis"], result["kill"]
    lines = [
        f"{c['answers']} answers x {c['tokens_per_answer']} tokens at {c['rate_tokens_per_s']:g} tokens/s, started "
        f"over {c['ramp_s']:g} s; one SSE reader each on the next replica; {result['machine']['cpu_count']} CPUs, "
        f"loop={c['loop']}; code {c['code']['commit'][:10]} + {c['code']['changed_files']} changed files "
        f"({c['code']['changes_sha256']})",
        f"{'':<44}"
        + "".join(f" {titles[name]:>10}" for name in names)
        + "".join(f" {titles[name].split()[1]:>9}" for name in names[1:]),
        line("lag p50, upstream write -> reader (ms)", "lag_ms", "p50"),
        line(f"lag p99 (ms, target <= {LAG_P99_TARGET_MS:g})", "lag_ms", "p99"),
        line("lag max (ms)", "lag_ms", "max"),
        line("lag p99, answers' first third (ms)", "lag_ms_by_third", "0", "p99"),
        line("lag p99, middle third (ms)", "lag_ms_by_third", "1", "p99"),
        line("lag p99, last third (ms)", "lag_ms_by_third", "2", "p99"),
        line("  tokens measured", "lag_ms", "samples"),
        line("  tokens left out (written before connect)", "lag_tokens_left_out"),
        line("  bench loop lag p99 (ms)", "bench_loop_lag_ms", "p99"),
        line("CPU ms per 1k tokens, Parley processes", "cpu_ms_per_1k_tokens", ratio=True),
        line("  + Redis, PostgreSQL, HAProxy", "cpu_ms_per_1k_tokens_with_redis_postgres_proxy", ratio=True),
        line("CPU s, Parley processes", "cpu", "parley_s", ratio=True),
        line("  Redis CPU s", "cpu", "redis_s"),
        line("  PostgreSQL CPU s", "cpu", "postgres_s"),
        line("  HAProxy CPU s", "cpu", "haproxy_s"),
        line("  fake upstream CPU s (own process)", "cpu", "upstream_s"),
        line("  bench process CPU s (readers)", "cpu", "bench_s"),
        line("Parley cores while streaming", "parley_cores"),
        line("Parley cores idle, before", "parley_idle_cores"),
        line("machine busy (cores)", "cpu", "machine_busy_cores"),
        line("  of which none of the above", "cpu", "others_cores"),
        line("wall s", "wall_s"),
        line("tokens delivered to readers", "tokens_delivered"),
        line("readers exact and complete", "readers_complete"),
        line("generators' streams complete", "generators_complete"),
        "",
        f"Redis, after the direct phase: {r['streams']} answer streams, MEMORY USAGE median "
        f"{fmt(r['bytes_per_answer_median'])} B (max {fmt(r['bytes_per_answer_max'])} B, total "
        f"{r['bytes_total'] / 1024:.1f} KiB), {fmt(r['entries_per_answer_median'])} entries each "
        f"({fmt(r['bytes_per_entry'])} B/entry), TTL >= {r['ttl_s_min']} s; used_memory "
        f"{r['used_memory_before'] / 1024:.0f} -> {r['used_memory_after'] / 1024:.0f} KiB "
        f"(+{r['used_memory_delta'] / 1024:.1f} KiB, {fmt(r['used_memory_delta_per_answer'])} B per answer), of "
        f"which dataset {_delta(r, 'used_memory_dataset')} and client buffers {_delta(r, 'mem_clients_normal')} "
        f"({r['info_before'].get('connected_clients')} -> {r['info_after'].get('connected_clients')} clients)",
        "",
        f"kill -9 of replica {k['killed_replica']} after {c['kill_after_s']:g} s of tokens ({k['answers']} answers x "
        f"{k['tokens_per_answer']} tokens, each followed from both other replicas, lease {k['lease_s']:g} s):",
        f"  survivors' answers: {k['survivor_readers_exact']}/{k['survivor_readers_checked']} readers on surviving "
        f"replicas got the exact text, characters lost {k['characters_lost']} (target 0); "
        f"{k['survivor_generators_complete']}/{k['survivor_answers']} generator streams complete",
        f"  killed replica's answers ({k['killed_answers_checkpointed_before_kill']} with a checkpoint before the "
        f"kill): {k['killed_answers_marked']}/{k['killed_answers']} marked interrupted, "
        f"{fmt(k['marked_s']['first'])} / {fmt(k['marked_s']['median'])} / {fmt(k['marked_s']['last'])} s after "
        f"the kill (first / median / last); statuses {k['killed_answer_statuses']}; readers on survivors: "
        f"{k['killed_readers_done_interrupted']}/{k['killed_readers_on_survivors']} ended interrupted, "
        f"{k['killed_readers_text_a_prefix']} with a prefix of the text, median "
        f"{fmt(k['killed_readers_chars_beyond_checkpoint_median'])} characters beyond the stored checkpoint",
        f"  answers left streaming: {k['streaming_left']}",
        f"ratios vs 1 process: {result['ratios']}",
    ]
    for name in [*names, "kill"]:
        phase = result[name]
        problems = {key: phase[key] for key in ("reader_errors", "generator_errors", "survivor_reader_errors")
                    if phase.get(key)}  # fmt: skip
        if any(phase.get("errors_logged") or []):
            problems["errors_logged"] = phase["errors_logged"]
        if problems:
            lines.append(f"{name}: {problems}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the table, save the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=100, help="concurrent answers (default 100)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer (default 200, 10 s)")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second per answer (default 20)")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds the starts are spread over (default 2)")
    parser.add_argument("--kill-answers", type=int, default=30, help="answers of the kill phase (default 30)")
    parser.add_argument("--kill-tokens", type=int, default=300, help="tokens per answer there (default 300, 15 s)")
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds of tokens before the kill (default 4)")
    parser.add_argument("--no-variant", action="store_true", help=f"skip the proxy variant with {NO_DELAY!r}")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 answers x 50 tokens, 6 in the kill phase")
    parser.add_argument("--json", type=Path, help="where to save the results (default bench/results/replicas-*.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.answers, args.tokens, args.ramp = 10, 50, 0.5
        args.kill_answers, args.kill_tokens, args.kill_after = 6, 100, 2.0
    if args.kill_after + 1 >= args.kill_tokens / args.rate:
        parser.error("--kill-after must leave at least a second of the kill phase's answers (--kill-tokens / --rate)")
    result = run(args)
    print(format_table(result))
    path = args.json or RESULTS / f"replicas-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
