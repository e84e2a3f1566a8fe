"""Engine-only load: many concurrent answers through Parley's Engine, no browser.

What it measures, in the process that runs the engine (one asyncio loop, uvloop by default as
``ui.run`` picks it through uvicorn when installed):

* event-loop lag: a ticker sleeps ``TICK`` seconds in a loop and records the overshoot
  (actual − asked), p50/p99/max in milliseconds, over the steady part of the run (every answer
  streaming, none finished) and over the whole run (burst of sends and final writes included);
* CPU seconds of this process (every thread: the loop and the ``to_thread`` database writes) per
  1,000 tokens delivered;
* tokens per second delivered in total, against the target ``answers × rate``;
* answers completed, database commits per answer against the issue's target
  ``1 + 2 × duration`` (duration in seconds, as stored with the answer).

Each answer has one subscriber (as a browser tab would) that counts the deltas.

The upstream is ``tests.fake_upstream.FakeUpstream`` in a separate process (spawned), so its CPU
and GIL stay out of the measurement; its own CPU and loop lag are reported to show whether it kept
up. The baseline, measured in the same run against the same upstream at the same concurrency, is the
floor: the same number of raw ``openai.AsyncOpenAI`` streams consumed in a loop, with no engine, no
database and no subscribers.

``--ceiling`` then searches the **ceiling** (issue 19, part 7): the highest total tokens/s delivered to subscribers
with the steady loop lag p99 ≤ 50 ms, for raw SDK streams and for Parley in the same run (``ceiling``: more answers
at 50 tokens/s each per step, each followed by ``Engine.follow`` as a page's stream follows it), with the cores the
fake upstream and the other processes used beside it; each step first waits up to a minute for a quiet machine. About
4 minutes on 2 cores (more while it waits); ``--ceiling-only`` skips the usual phases.

``--checkpoint-interval`` changes Parley's setting (a large value turns checkpoints off, to see what
they cost). The machine is shared: each phase also
reports the cores used by other processes; use ``--rounds N`` (medians) when that is high.

Run from the repository root::

    .venv/bin/python -m bench.engine_load            # 200 answers × 400 tokens at 20 tokens/s
    .venv/bin/python -m bench.engine_load --quick    # a few seconds' smoke run
    .venv/bin/python -m bench.engine_load --rounds 3
    .venv/bin/python -m bench.engine_load --ceiling  # and the ceiling search
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import multiprocessing
import multiprocessing.connection
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import PipedProcess, fmt

#: Seconds the lag ticker asks to sleep each time.
TICK = 0.010
#: Seconds between two samples of (tokens delivered, CPU seconds).
SAMPLE_EVERY = 0.25
#: Seconds cut off both ends of the steady window (after the last first token, before the first end).
MARGIN = 0.5
#: Target of the issue: event-loop lag p99 at most this many milliseconds.
LAG_P99_TARGET_MS = 50.0
#: The model the fake upstream serves.
MODEL = "fake-model"
PROMPT = "Tell me a long story about a lighthouse keeper."
RESULTS = Path(__file__).parent / "results"


# -- the fake upstream, in its own process ---------------------------------------------------------------------------


def _upstream_main(conn: multiprocessing.connection.Connection, tokens: int, rate: float) -> None:
    """Child process: serve a FakeUpstream streaming ``tokens`` tokens at ``rate`` tokens/s until told to stop.

    Commands on ``conn``: ``"reset"`` (forget streams, restart the CPU and lag counters),
    ``"stats"`` (answer a dict), ``"stop"``.
    """
    from tests.fake_upstream import FakeUpstream, Script

    fake = FakeUpstream().start()
    fake.script = Script(tokens=tokens, rate=rate)
    lags: list[float] = []

    async def ticker() -> None:  # the upstream's own loop lag: shows when the fake falls behind
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - before - TICK)

    loop = getattr(fake, "_loop", None)
    if loop is not None:
        asyncio.run_coroutine_threadsafe(ticker(), loop)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    conn.send(fake.port)
    while True:
        command = conn.recv()
        if command == "reset":
            fake.streams.clear()
            fake.requests.clear()
            fake.log.clear()
            lags.clear()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            conn.send(None)
        elif command == "stats":
            streams = list(fake.streams)
            samples = sorted(lags)
            conn.send(
                {
                    "cpu_s": time.process_time() - cpu0,
                    "wall_s": time.perf_counter() - wall0,
                    "streams": len(streams),
                    "tokens_sent": sum(s.tokens_sent for s in streams),
                    "finished": sum(s.finished for s in streams),
                    "client_disconnected": sum(s.client_disconnected for s in streams),
                    "lag_p99_ms": _quantile(samples, 0.99) * 1000 if samples else None,
                    "lag_max_ms": samples[-1] * 1000 if samples else None,
                }
            )
        elif command == "stop":
            fake.stop()
            conn.send(None)
            return


class UpstreamProcess(PipedProcess):
    """A FakeUpstream running in a spawned child process.

    Args:
        tokens: content tokens per answer.
        rate: tokens per second per answer.
    """

    def __init__(self, tokens: int, rate: float) -> None:
        super().__init__(_upstream_main, (tokens, rate))

    def reset(self) -> None:
        """Forget past streams; restart the upstream's CPU (seconds) and loop-lag counters."""
        self._ask("reset")

    def stats(self) -> dict[str, Any]:
        """Since the last reset: ``cpu_s`` (CPU seconds), ``wall_s``, ``streams``, ``tokens_sent``,
        ``finished``, ``client_disconnected``, ``lag_p99_ms`` and ``lag_max_ms`` (milliseconds)."""
        return self._ask("stats")


# -- measuring ------------------------------------------------------------------------------------------------------


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an ascending list, nearest rank."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


@dataclass
class Answer:
    """What the client side saw of one answer; times are ``time.perf_counter()`` seconds."""

    sent: float = 0.0
    first: float | None = None
    end: float | None = None
    deltas: int = 0
    status: str | None = None
    duration: float | None = None  # as stored by the engine (seconds), Parley only


class Probe:
    """The loop-lag ticker and the sampler of tokens delivered and CPU seconds, in the measured loop.

    Args:
        upstream_pid: the fake upstream's process id: when given, each sample also reads its CPU seconds and the
            whole machine's busy CPU seconds (psutil, a read of ``/proc``), so that a window reports the cores the
            upstream and everything else used beside this process.
    """

    def __init__(self, upstream_pid: int | None = None) -> None:
        import psutil

        self.tokens = 0  # tokens delivered so far (incremented by the consumers)
        self.lags: list[tuple[float, float]] = []  # (perf_counter s, lag s)
        self.samples: list[tuple[float, int, float]] = []  # (perf_counter s, tokens, process CPU s)
        self.others: list[tuple[float, float]] = []  # (upstream CPU s, machine busy CPU s), one per sample
        self._upstream = psutil.Process(upstream_pid) if upstream_pid else None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start ticking and sampling on the running loop."""
        self.sample()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick()), loop.create_task(self._sample())]

    async def stop(self) -> None:
        """Stop ticking; take a last sample."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.sample()

    def sample(self) -> None:
        """Record (now, tokens, CPU seconds of this process); with an upstream, its CPU seconds and the machine's."""
        self.samples.append((time.perf_counter(), self.tokens, time.process_time()))
        if self._upstream is not None:
            import psutil

            times, system = self._upstream.cpu_times(), psutil.cpu_times()
            idle = system.idle + getattr(system, "iowait", 0.0)
            self.others.append((times.user + times.system, sum(system) - idle))

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.lags.append((now, now - before - TICK))

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            self.sample()

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Figures over ``[start, end]`` (perf_counter seconds): lag in ms, tokens/s, CPU s per 1,000 tokens."""
        lags = sorted(lag for t, lag in self.lags if start <= t <= end)
        indices = [i for i, s in enumerate(self.samples) if start <= s[0] <= end] or list(range(len(self.samples)))
        first, last = indices[0], indices[-1]
        (t0, k0, c0), (t1, k1, c1) = self.samples[first], self.samples[last]
        tokens, seconds, cpu = k1 - k0, t1 - t0, c1 - c0
        cores: dict[str, Any] = {}
        if self.others and seconds > 0:
            (u0, m0), (u1, m1) = self.others[first], self.others[last]
            cores = {
                "upstream_cores": round((u1 - u0) / seconds, 3),
                "machine_busy_cores": round((m1 - m0) / seconds, 3),
                "other_cores": round((m1 - m0 - (u1 - u0) - cpu) / seconds, 3),  # neither us nor the upstream
            }
        return {
            "seconds": round(end - start, 3),
            "lag_ms": {
                "p50": round(_quantile(lags, 0.50) * 1000, 2),
                "p99": round(_quantile(lags, 0.99) * 1000, 2),
                "max": round(lags[-1] * 1000, 2) if lags else None,
                "ticks": len(lags),
            },
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "cpu_s": round(cpu, 3),
            "cpu_fraction_of_core": round(cpu / seconds, 3) if seconds > 0 else None,
            "cpu_s_per_1k_tokens": round(cpu / tokens * 1000, 4) if tokens else None,
            **cores,
        }


def _summarize(
    probe: Probe, answers: list[Answer], started: float, ended: float, rate: float, tokens: int
) -> dict[str, Any]:
    """The phase's figures: steady window, whole run, answers (ms, s, counts)."""
    firsts = [a.first for a in answers if a.first is not None]
    ends = [a.end for a in answers if a.end is not None]
    steady_start = (max(firsts) if firsts else started) + MARGIN
    steady_end = (min(ends) if ends else ended) - MARGIN
    steady = steady_end - steady_start >= 2.0
    if not steady:
        steady_start, steady_end = started, ended
    expected = (tokens - 1) / rate if rate else 0.0  # the fake sends token i at i / rate
    streams = sorted(a.end - a.first for a in answers if a.end is not None and a.first is not None)
    ttfts = sorted(a.first - a.sent for a in answers if a.first is not None)
    return {
        "steady_window": steady,
        "steady": probe.window(steady_start, steady_end),
        "whole": probe.window(started, ended),
        "answers": {
            "started": len(answers),
            "completed": sum(1 for a in answers if a.end is not None and a.deltas == tokens),
            "tokens_per_answer_min": min((a.deltas for a in answers), default=0),
            "ttft_s_p50": round(_quantile(ttfts, 0.5), 3) if ttfts else None,
            "ttft_s_max": round(ttfts[-1], 3) if ttfts else None,
            "stream_s_expected": round(expected, 3),
            "stream_s_p50": round(_quantile(streams, 0.5), 3) if streams else None,
            "stream_s_max": round(streams[-1], 3) if streams else None,
        },
    }


def _new_loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


# -- the two phases -------------------------------------------------------------------------------------------------


async def _baseline(
    base_url: str, answers: int, rate: float, tokens: int, upstream_pid: int | None = None
) -> dict[str, Any]:
    """The floor: ``answers`` raw AsyncOpenAI streams at once, deltas counted, nothing else (``upstream_pid``: see
    ``Probe``)."""
    import openai

    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="none", timeout=openai.Timeout(120.0, connect=10.0), max_retries=0
    )  # as Provider builds it
    probe = Probe(upstream_pid)
    records = [Answer() for _ in range(answers)]

    async def consume(record: Answer) -> None:
        record.sent = time.perf_counter()
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            temperature=0.7,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                if record.first is None:
                    record.first = time.perf_counter()
                record.deltas += 1
                probe.tokens += 1
        record.end = time.perf_counter()
        record.status = "complete"

    probe.start()
    started = time.perf_counter()
    results = await asyncio.gather(*(consume(r) for r in records), return_exceptions=True)
    ended = time.perf_counter()
    await probe.stop()
    await client.close()
    summary = _summarize(probe, records, started, ended, rate, tokens)
    summary["errors"] = sorted({f"{type(e).__name__}: {e}"[:200] for e in results if isinstance(e, BaseException)})
    return summary


async def _parley(
    base_url: str,
    data_dir: Path,
    answers: int,
    rate: float,
    tokens: int,
    checkpoint_interval: float | None = None,
    *,
    follow: bool = False,
    upstream_pid: int | None = None,
) -> dict[str, Any]:
    """Parley: ``answers`` answers sent at once through the Engine wired by ``build_services``, one
    conversation and one delta-counting subscriber each, on an SQLite file in ``data_dir``.

    With ``follow``, each answer's subscriber is ``Engine.follow`` consumed in its own task, as the page's stream
    (``chat/api/stream.py``) consumes it, minus the socket: text deltas joined while the task waited arrive as one,
    so tokens are counted as the fake's tokens in the text (each ``"w{i} "`` ends with one space). Without it, a
    ``Generation.subscribe`` callback counts each delta (the cheapest subscriber). ``upstream_pid``: see ``Probe``.
    """
    from sqlalchemy import event

    from chat.config import Settings
    from chat.engine import LOCAL, Finished, TextDelta
    from chat.server import build_services

    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir}/parley.db",
        openai_base_url=base_url,
        openai_api_key="none",
        model=MODEL,
        **({} if checkpoint_interval is None else {"checkpoint_interval": checkpoint_interval}),
    )
    services = build_services(settings)
    store, provider, engine = services.store, services.provider, services.engine
    store.migrate()
    engine.recover()
    pool = provider.client._client._transport._pool  # httpx(2) connection pool of the SDK client
    wiring = {
        "provider_max_concurrency": None if provider._slots is None else provider._slots._value,
        "pool_max_connections": getattr(pool, "_max_connections", None),
        "pool_max_keepalive_connections": getattr(pool, "_max_keepalive_connections", None),
        "checkpoint_interval_s": engine.checkpoint_interval,
    }

    commits = [0]
    lock = threading.Lock()

    def on_commit(_connection: Any) -> None:
        with lock:
            commits[0] += 1

    event.listen(store.engine, "commit", on_commit)
    conversations = [await engine.create_conversation() for _ in range(answers)]  # setup, not measured

    probe = Probe(upstream_pid)
    records = [Answer() for _ in range(answers)]

    async def follower(message_id: int, record: Answer) -> None:
        async for item in engine.follow(message_id, 0, LOCAL):
            if type(item) is TextDelta:
                if record.first is None:
                    record.first = time.perf_counter()
                count = item.text.count(" ")
                record.deltas += count
                probe.tokens += count
            elif type(item) is Finished:
                record.end = time.perf_counter()
                record.status = str(item.message.status)
                record.duration = item.message.duration
                break

    def subscriber_for(record: Answer) -> Callable[[Any], None]:
        def on_event(item: Any) -> None:
            if type(item) is TextDelta:
                if record.first is None:
                    record.first = time.perf_counter()
                record.deltas += 1
                probe.tokens += 1
            elif type(item) is Finished:
                record.end = time.perf_counter()
                record.status = str(item.message.status)
                record.duration = item.message.duration

        return on_event

    probe.start()
    await asyncio.sleep(0.05)
    commits_before = commits[0]
    checkpoints_before = engine.checkpoints
    started = time.perf_counter()
    generations = []
    followers: list[asyncio.Task[None]] = []
    for conversation_id, record in zip(conversations, records, strict=True):
        record.sent = time.perf_counter()
        _user, assistant = await engine.send(conversation_id, PROMPT)
        generation = engine.live(assistant.id)
        assert generation is not None
        if follow:
            followers.append(asyncio.create_task(follower(assistant.id, record)))
        else:
            generation.subscribe(subscriber_for(record))
        generations.append(generation)
    sends_took = time.perf_counter() - started  # the sends one after the other (the store works in a thread)
    commits_at_sends = commits[0] - commits_before
    results = await asyncio.gather(*(g.wait() for g in generations), *followers, return_exceptions=True)
    ended = time.perf_counter()
    await probe.stop()
    commits_total = commits[0] - commits_before
    checkpoints = engine.checkpoints - checkpoints_before
    await engine.shutdown()
    await provider.close()
    store.close()

    summary = _summarize(probe, records, started, ended, rate, tokens)
    durations = [r.duration for r in records if r.duration is not None]
    allowed = sum(1 + 2 * d for d in durations)
    summary["answers"]["statuses"] = {s: sum(r.status == s for r in records) for s in {r.status for r in records}}
    summary["sends"] = {
        "sequential_s": round(sends_took, 3),
        "ms_per_send": round(sends_took / answers * 1000, 2),
        "commits": commits_at_sends,
    }
    summary["db"] = {
        "commits": commits_total,
        "checkpoints": checkpoints,
        "commits_per_answer": round(commits_total / answers, 2),
        "answer_duration_s_mean": round(statistics.fmean(durations), 3) if durations else None,
        "target_per_answer_mean": round(allowed / len(durations), 2) if durations else None,
        "ratio_to_target": round(commits_total / allowed, 3) if allowed else None,
    }
    summary["wiring"] = wiring
    summary["errors"] = sorted({f"{type(e).__name__}: {e}"[:200] for e in results if isinstance(e, BaseException)})
    return summary


def _run_phase(
    name: str, coroutine_factory: Callable[[], Any], loop: str, profile: Path | None
) -> tuple[dict[str, Any], str | None]:
    """Run one phase in a fresh event loop; optionally under cProfile (which inflates every figure).

    Adds ``machine``: CPU of the whole machine over the phase, in cores (``busy_cores``), and this
    process's share (``own_cores``), to tell a noisy neighbour from a slow Parley.
    """
    import psutil

    profiler = cProfile.Profile() if profile else None
    system0, own0, wall0 = psutil.cpu_times(), time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=_new_loop_factory(loop)) as runner:
        if profiler:
            profiler.enable()
        try:
            result = runner.run(coroutine_factory())
        finally:
            if profiler:
                profiler.disable()
    system1, own1, wall1 = psutil.cpu_times(), time.process_time(), time.perf_counter()
    idle = sum(getattr(system1, f) - getattr(system0, f) for f in ("idle", "iowait") if hasattr(system0, f))
    busy = sum(system1) - sum(system0) - idle
    result["machine"] = {
        "wall_s": round(wall1 - wall0, 3),
        "busy_cores": round(busy / (wall1 - wall0), 3),
        "own_cores": round((own1 - own0) / (wall1 - wall0), 3),
        "steal_cores": round((getattr(system1, "steal", 0) - getattr(system0, "steal", 0)) / (wall1 - wall0), 3),
    }
    report = None
    if profiler and profile:
        path = profile.with_name(f"{profile.stem}-{name}{profile.suffix or '.prof'}")
        profiler.dump_stats(path)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        report = f"cProfile of {name} ({path}), by own time:\n{out.getvalue()}"
    return result, report


def _median(values: list[Any]) -> Any:
    """Leaf by leaf median of equally shaped results: numbers take the median, other leaves the first value."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _median([v[k] for v in values if isinstance(v, dict) and k in v]) for k in first}
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        if all(isinstance(v, int) for v in numbers):
            return statistics.median_low(numbers)
        middle = statistics.median(numbers)
        return round(middle, 4) if isinstance(middle, float) else middle
    return first


PHASES = ("baseline", "parley")


def machine_info() -> dict[str, Any]:
    """What ran the benchmark: ``python``, ``openai`` and ``httpx`` versions, ``cpus`` (logical CPUs), ``platform``."""
    import httpx
    import openai

    return {
        "python": platform.python_version(),
        "openai": openai.__version__,
        "httpx": httpx.__version__,
        "cpus": multiprocessing.cpu_count(),
        "platform": platform.platform(),
    }


def run(
    answers: int,
    rate: float,
    tokens: int,
    *,
    loop: str = "uvloop",
    rounds: int = 1,
    phases: tuple[str, ...] = ("baseline", "parley"),
    checkpoint_interval: float | None = None,
    profile: Path | None = None,
) -> dict:
    """Measure ``answers`` concurrent answers of ``tokens`` tokens at ``rate`` tokens/s each.

    Args:
        answers: concurrent answers (and raw streams in the baseline).
        rate: tokens per second of each answer.
        tokens: tokens per answer (each answer lasts about ``tokens / rate`` seconds).
        loop: ``"uvloop"`` (what Parley runs on when uvloop is installed) or ``"asyncio"``.
        rounds: how many times to run the phases (order alternating each round); the headline
            figures are the median over rounds, leaf by leaf.
        phases: which of ``"baseline"`` and ``"parley"`` to run; both for the ratios.
        checkpoint_interval: Parley's ``checkpoint_interval`` in seconds (None: its default setting).
        profile: when set, cProfile each phase into ``<stem>-<phase>.prof`` beside it (figures inflated).

    Returns:
        A JSON-able dict: ``config``; ``baseline`` and ``parley`` (medians over rounds): lag in ms,
        CPU in seconds and cores, CPU s per 1,000 tokens, tokens/s, answers, the fake ``upstream``'s
        CPU seconds and loop lag, ``machine`` (cores busy on the whole machine); ``rounds`` (each
        round's figures); ``ratios`` (Parley / baseline); ``verdict`` (lag p99 ≤ ``LAG_P99_TARGET_MS`` ms, ...).
    """
    config = {
        "answers": answers,
        "rate_tokens_per_s": rate,
        "tokens_per_answer": tokens,
        "target_tokens_per_s": answers * rate,
        "loop": loop,
        "rounds": rounds,
        "tick_s": TICK,
        **machine_info(),
        "profiled": bool(profile),
    }
    factories: dict[str, Callable[[str, Path], Any]] = {
        "baseline": lambda url, _tmp: _baseline(url, answers, rate, tokens),
        "parley": lambda url, tmp: _parley(url, tmp, answers, rate, tokens, checkpoint_interval),
    }
    upstream = UpstreamProcess(tokens, rate)
    reports: list[str] = []
    per_round: list[dict[str, Any]] = []
    try:
        for index in range(rounds):
            order = phases if index % 2 == 0 else tuple(reversed(phases))
            figures: dict[str, Any] = {}
            for name in order:
                upstream.reset()
                with tempfile.TemporaryDirectory(prefix="parley-engine-load-") as tmp:
                    figures[name], report = _run_phase(
                        name, lambda n=name, t=tmp: factories[n](upstream.base_url, Path(t)), loop, profile
                    )
                figures[name]["upstream"] = upstream.stats()
                if report:
                    reports.append(report)
                _progress(index, name, figures[name])
            per_round.append(figures)
    finally:
        upstream.stop()

    result: dict[str, Any] = {"config": config}
    for name in phases:
        result[name] = _median([figures[name] for figures in per_round])
    result["rounds"] = per_round

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    if "parley" in result:
        parley = result["parley"]
        if "baseline" in result:
            ps, bs = parley["steady"], result["baseline"]["steady"]
            result["ratios"] = {
                "cpu_per_1k_tokens": ratio(ps["cpu_s_per_1k_tokens"], bs["cpu_s_per_1k_tokens"]),
                "lag_p99": ratio(ps["lag_ms"]["p99"], bs["lag_ms"]["p99"]),
                "tokens_per_s": ratio(ps["tokens_per_s"], bs["tokens_per_s"]),
            }
        result["verdict"] = {
            "lag_p99_target_ms": LAG_P99_TARGET_MS,
            "steady_lag_p99_ok": parley["steady"]["lag_ms"]["p99"] <= LAG_P99_TARGET_MS,
            "whole_run_lag_p99_ok": parley["whole"]["lag_ms"]["p99"] <= LAG_P99_TARGET_MS,
            "db_writes_ok": (parley["db"]["ratio_to_target"] or 0) <= 1.0,
            "all_answers_completed": all(f["parley"]["answers"]["completed"] == answers for f in per_round),
        }
    result["profiles"] = reports
    return result


# -- the ceiling: the highest rate delivered with the loop's lag p99 within the target -----------------------------

#: Tokens per second of each answer in the ceiling search: a fast hosted model's streaming speed.
CEILING_RATE = 50.0
#: Seconds each answer of a ceiling step streams (its steady window is this, less the ramp and the margins).
CEILING_SECONDS = 16.0
#: A step is marked noisy when processes other than this one and the fake upstream used more cores than this.
NOISY_CORES = 0.25
#: A step delivers its offered rate when its steady window delivers at least this share of it.
DELIVERED_SHARE = 0.95


@dataclass
class _Search:
    """One kind's search for its ceiling over concurrent answers: grow by ``factor`` until a step fails, then halve
    the gap between the best pass and the lowest fail ``refine`` times (if the first step fails: halve down)."""

    start: int
    factor: float
    refine: int
    most: int
    passed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    refined: int = 0

    def record(self, answers: int, passed: bool) -> None:
        """Take a step's outcome."""
        if self.failed:
            self.refined += 1
        (self.passed if passed else self.failed).append(answers)

    def next(self) -> int | None:
        """The next step's number of answers, or None when the search is over."""
        if not self.passed and not self.failed:
            return self.start
        if not self.failed:
            last = self.passed[-1]
            return None if last >= self.most else max(last + 1, round(last * self.factor))
        high = min(self.failed)
        if not self.passed:
            return high // 2 if high >= 4 else None
        low = max(self.passed)
        middle = (low + high) // 2
        if self.refined >= self.refine or low > high or high - low <= max(2, low // 20):
            return None
        return middle


def _wait_for_quiet(most: float) -> float:
    """Wait up to ``most`` seconds until the machine is quiet (other processes use fewer than ``NOISY_CORES`` cores over
    2 s, psutil; called between steps, while this process and the fake upstream idle). Returns the seconds waited."""
    import psutil

    started = time.perf_counter()
    while time.perf_counter() - started < most:
        if psutil.cpu_percent(interval=2.0) / 100 * psutil.cpu_count() < NOISY_CORES:
            break
    return round(time.perf_counter() - started, 1)


def _judge(figures: dict[str, Any], answers: int, rate: float) -> dict[str, Any]:
    """One ceiling step's row: offered and delivered tokens/s, lag (ms), cores, and whether it passed (with why not)."""
    steady = figures["steady"]
    offered = answers * rate
    delivered = steady["tokens_per_s"] or 0.0
    upstream = figures.get("upstream") or {}
    why = []
    if steady["lag_ms"]["p99"] > LAG_P99_TARGET_MS:
        why.append(f"lag p99 {steady['lag_ms']['p99']} ms > {LAG_P99_TARGET_MS:g}")
    if delivered < DELIVERED_SHARE * offered:
        why.append(f"delivered {delivered:.0f} < {DELIVERED_SHARE:.0%} of {offered:.0f} tokens/s")
    if figures["answers"]["completed"] < answers:
        why.append(f"{answers - figures['answers']['completed']} answers incomplete")
    if not figures["steady_window"]:
        why.append("no steady window")
    return {
        "answers": answers,
        "offered_tokens_per_s": offered,
        "delivered_tokens_per_s": delivered,
        "steady_s": steady["seconds"],
        "lag_ms": steady["lag_ms"],
        "own_cores": steady["cpu_fraction_of_core"],
        "cpu_s_per_1k_tokens": steady["cpu_s_per_1k_tokens"],
        "upstream_cores": steady.get("upstream_cores"),
        "machine_busy_cores": steady.get("machine_busy_cores"),
        "other_cores": steady.get("other_cores"),
        "upstream_lag_p99_ms": upstream.get("lag_p99_ms"),
        "upstream_behind": (upstream.get("lag_p99_ms") or 0) > LAG_P99_TARGET_MS,
        "noisy": (steady.get("other_cores") or 0) > NOISY_CORES,
        "completed": figures["answers"]["completed"],
        "passed": not why,
        "why_not": "; ".join(why) or None,
        "errors": figures.get("errors") or [],
    }


def ceiling(
    *,
    rate: float = CEILING_RATE,
    seconds: float = CEILING_SECONDS,
    start: int = 40,
    factor: float = 1.5,
    refine: int = 2,
    most: int = 2000,
    retry: bool = True,
    quiet_wait: float = 60.0,
    loop: str = "uvloop",
    checkpoint_interval: float | None = None,
) -> dict[str, Any]:
    """Search the highest total tokens/s delivered to subscribers with the loop's lag p99 within the target, for raw
    SDK streams (the baseline) and for Parley, in the same run.

    Each step runs ``N`` concurrent answers at ``rate`` tokens/s each, ``seconds`` long, in a fresh loop (and, for
    Parley, a fresh database), each answer followed by one ``Engine.follow`` consumer (Parley) or read by its own
    reader (raw). The offered rate grows with ``N`` (more answers at a model's speed, as more people chat), by
    ``factor`` from ``start`` until a step fails; then the gap between the best pass and the lowest fail is halved
    ``refine`` times. The two searches take turns, step by step, so both see the same machine over time. A step
    passes when, over its steady window (every answer streaming), lag p99 ≤ ``LAG_P99_TARGET_MS`` ms, it delivered
    at least ``DELIVERED_SHARE`` of the offered tokens/s and every answer completed.

    Args:
        rate: tokens per second of each answer.
        seconds: how long each answer streams (tokens per answer: ``rate × seconds``).
        start: answers in the first step.
        factor: growth of the answers from one step to the next until a failure.
        refine: halvings of the gap after the first failure.
        most: the search stops growing past this many answers.
        retry: run a failed step once more, and take the second attempt (the machine is shared: a neighbour's burst
            can fail one step); the row keeps the first attempt's figures.
        quiet_wait: before each step, wait up to this many seconds for the other processes to use fewer than
            ``NOISY_CORES`` cores (0: do not wait); each row says how long it waited.
        loop: ``"uvloop"`` or ``"asyncio"``.
        checkpoint_interval: Parley's setting (None: its default).

    Returns:
        ``{"config", "baseline": {"steps", "ceiling"}, "parley": {...}, "ratio"}``: each step's row (``_judge``:
        tokens/s, lag ms, cores of this process, of the fake upstream and of the others), the ceiling (the passing
        step that delivered the most tokens/s, or None) and Parley's ceiling over the baseline's.
    """
    tokens = round(rate * seconds)
    searches = {name: _Search(start, factor, refine, most) for name in PHASES}
    steps: dict[str, list[dict[str, Any]]] = {name: [] for name in PHASES}
    upstream = UpstreamProcess(tokens, rate)
    pid = upstream.process.pid

    def step(name: str, answers: int) -> dict[str, Any]:
        waited = _wait_for_quiet(quiet_wait) if quiet_wait > 0 else 0.0
        upstream.reset()
        with tempfile.TemporaryDirectory(prefix="parley-engine-ceiling-") as tmp:

            def phase() -> Any:
                if name == "baseline":
                    return _baseline(upstream.base_url, answers, rate, tokens, upstream_pid=pid)
                return _parley(
                    upstream.base_url, Path(tmp), answers, rate, tokens, checkpoint_interval, follow=True,
                    upstream_pid=pid,
                )  # fmt: skip

            figures, _report = _run_phase(name, phase, loop, None)
        figures["upstream"] = upstream.stats()
        row = _judge(figures, answers, rate)
        row["machine"] = figures["machine"]
        row["waited_for_quiet_s"] = waited
        print(
            f"ceiling {name}: {answers} answers, offered {row['offered_tokens_per_s']:.0f} tokens/s, "
            f"delivered {row['delivered_tokens_per_s']:.0f}, lag p99 {row['lag_ms']['p99']} ms, own "
            f"{row['own_cores']} cores, upstream {row['upstream_cores']}, others {row['other_cores']}: "
            + ("pass" if row["passed"] else f"FAIL ({row['why_not']})"),
            file=sys.stderr,
            flush=True,
        )
        return row

    try:
        while True:
            progressed = False
            for name in PHASES:  # the two searches take turns
                answers = searches[name].next()
                if answers is None:
                    continue
                progressed = True
                row = step(name, answers)
                if not row["passed"] and retry:  # once more: one burst of a neighbour's work should not decide
                    first = row
                    row = step(name, answers)
                    row["first_attempt"] = {k: first[k] for k in ("lag_ms", "delivered_tokens_per_s", "why_not")}
                steps[name].append(row)
                searches[name].record(answers, row["passed"])
            if not progressed:
                break
    finally:
        upstream.stop()

    result: dict[str, Any] = {
        "config": {
            "rate_tokens_per_s": rate,
            "seconds": seconds,
            "tokens_per_answer": tokens,
            "start": start,
            "factor": factor,
            "refine": refine,
            "retry_failed_steps": retry,
            "quiet_wait_s": quiet_wait,
            "lag_p99_target_ms": LAG_P99_TARGET_MS,
            "delivered_share": DELIVERED_SHARE,
            "loop": loop,
            **machine_info(),
        }
    }
    for name in PHASES:
        passing = [row for row in steps[name] if row["passed"]]
        best = max(passing, key=lambda row: row["delivered_tokens_per_s"], default=None)
        lowest_fail = min((row for row in steps[name] if not row["passed"]), key=lambda r: r["answers"], default=None)
        result[name] = {
            "steps": sorted(steps[name], key=lambda row: row["answers"]),
            "ceiling": best,
            "ceiling_tokens_per_s": best["delivered_tokens_per_s"] if best else None,
            "first_failure": lowest_fail,
            "searched_to_the_end": lowest_fail is not None,
        }
    b, p = result["baseline"]["ceiling_tokens_per_s"], result["parley"]["ceiling_tokens_per_s"]
    result["ratio"] = round(p / b, 3) if b and p else None
    return result


def format_ceiling(result: dict[str, Any]) -> str:
    """The ceiling search as text: each step of both kinds, both ceilings and their ratio."""
    c = result["config"]
    lines = [
        f"ceiling: highest tokens/s delivered with steady lag p99 <= {c['lag_p99_target_ms']:g} ms; answers at "
        f"{c['rate_tokens_per_s']:g} tokens/s for {c['seconds']:g} s each, more answers per step",
        f"{'':<9} {'answers':>7} {'offered':>8} {'delivered':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'own':>5} {'s/1k':>6} {'upstr':>5} {'others':>6}  result",
    ]
    for name in PHASES:
        for row in result[name]["steps"]:
            lag = row["lag_ms"]
            lines.append(
                f"{name:<9} {row['answers']:>7} {row['offered_tokens_per_s']:>8.0f} "
                f"{row['delivered_tokens_per_s']:>9.0f} {fmt(lag['p50']):>7} {fmt(lag['p99']):>7} "
                f"{fmt(lag['max']):>7} {fmt(row['own_cores']):>5} {fmt(row['cpu_s_per_1k_tokens']):>6} "
                f"{fmt(row['upstream_cores']):>5} {fmt(row['other_cores']):>6}  "
                + ("pass" if row["passed"] else f"fail: {row['why_not']}")
                + (" (the fake upstream fell behind)" if row["upstream_behind"] else "")
                + (" (noisy)" if row["noisy"] else "")
                + (f" (first attempt: {row['first_attempt']['why_not']})" if row.get("first_attempt") else "")
            )
    for name in PHASES:
        best, fail = result[name]["ceiling"], result[name]["first_failure"]
        if best is None:
            lines.append(f"{name} ceiling: none (even the first step failed)")
            continue
        tail = f"; the next step, {fail['answers']} answers, failed" if fail else "; no step failed (a lower bound)"
        lines.append(
            f"{name} ceiling: {best['delivered_tokens_per_s']:.0f} tokens/s ({best['answers']} answers, lag p99 "
            f"{best['lag_ms']['p99']} ms, own {best['own_cores']} cores, the fake upstream "
            f"{best['upstream_cores']} cores, others {best['other_cores']}){tail}"
        )
    lines.append(f"ceiling ratio parley / baseline: {fmt(result['ratio'])}")
    return "\n".join(lines)


def _progress(index: int, name: str, figures: dict[str, Any]) -> None:
    """One line on standard error per phase run."""
    steady = figures["steady"]
    print(
        f"round {index + 1} {name}: lag p99 {steady['lag_ms']['p99']} ms, "
        f"{steady['cpu_s_per_1k_tokens']} CPU s/1k tokens, {steady['tokens_per_s']} tokens/s, "
        f"machine busy {figures['machine']['busy_cores']} cores (own {figures['machine']['own_cores']}, "
        f"upstream {_per_s(figures['upstream']):.2f})",
        file=sys.stderr,
        flush=True,
    )


# -- the command ----------------------------------------------------------------------------------------------------


def format_table(result: dict) -> str:
    """The figures as a small text table (ms, s, tokens/s, CPU s per 1,000 tokens, cores)."""
    b, p = result.get("baseline", {}), result.get("parley", {})
    c = result["config"]

    def get(phase: dict, *keys: str) -> Any:
        value: Any = phase
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    extra = [name for name in PHASES[2:] if name in result]  # optional phases, shown after the ratio

    def line(label: str, bv: Any, pv: Any, ratio: bool = True, more: tuple[Any, ...] = ()) -> str:
        r = f"{pv / bv:.2f}x" if ratio and isinstance(bv, int | float) and isinstance(pv, int | float) and bv else ""
        tail = "".join(f" {fmt(v):>10}" for v in more)
        return f"{label:<36} {fmt(bv):>10} {fmt(pv):>10} {r:>8}{tail}"

    def row(label: str, keys: tuple[str, ...], ratio: bool = True) -> str:
        more = tuple(get(result[name], *keys) for name in extra)
        return line(label, get(b, *keys), get(p, *keys), ratio, more)

    lines = [
        f"{c['answers']} answers x {c['tokens_per_answer']} tokens at {c['rate_tokens_per_s']:g} tokens/s "
        f"(target {c['target_tokens_per_s']:g} tokens/s), loop={c['loop']}, {c['cpus']} CPUs, "
        f"median of {c['rounds']} round(s)" + (", PROFILED (figures inflated)" if c["profiled"] else ""),
        f"{'':<36} {'baseline':>10} {'parley':>10} {'ratio':>8}" + "".join(f" {name:>10}" for name in extra),
        row("steady window (s)", ("steady", "seconds"), False),
        row("lag p50, steady (ms)", ("steady", "lag_ms", "p50")),
        row("lag p99, steady (ms)", ("steady", "lag_ms", "p99")),
        row("lag max, steady (ms)", ("steady", "lag_ms", "max")),
        row("lag p99, whole run (ms)", ("whole", "lag_ms", "p99")),
        row("lag max, whole run (ms)", ("whole", "lag_ms", "max")),
        row("tokens/s delivered, steady", ("steady", "tokens_per_s")),
        row("CPU, steady (cores)", ("steady", "cpu_fraction_of_core")),
        row("CPU s per 1k tokens, steady", ("steady", "cpu_s_per_1k_tokens")),
        row("CPU s per 1k tokens, whole run", ("whole", "cpu_s_per_1k_tokens")),
        row("answers completed", ("answers", "completed"), False),
        row("time to first token p50 (s)", ("answers", "ttft_s_p50"), False),
        row("time to first token max (s)", ("answers", "ttft_s_max"), False),
        row("stream duration expected (s)", ("answers", "stream_s_expected"), False),
        row("stream duration max (s)", ("answers", "stream_s_max"), False),
        row("upstream tokens sent", ("upstream", "tokens_sent"), False),
        line(
            "upstream CPU (cores)",
            _per_s(get(b, "upstream")),
            _per_s(get(p, "upstream")),
            False,
            tuple(_per_s(result[name]["upstream"]) for name in extra),
        ),
        row("upstream loop lag p99 (ms)", ("upstream", "lag_p99_ms"), False),
        row("machine busy, all processes (cores)", ("machine", "busy_cores"), False),
        line(
            "  of which neither us nor upstream",
            _others(b),
            _others(p),
            False,
            tuple(_others(result[n]) for n in extra),
        ),
        "",
    ]
    if p:
        lines += [
            f"sends: {c['answers']} sends one after the other took {p['sends']['sequential_s']:.3f} s "
            f"({p['sends']['ms_per_send']:.2f} ms each, {p['sends']['commits']} commits)",
            f"db commits per answer: {p['db']['commits_per_answer']} ({p['db']['checkpoints']} checkpoints in all); "
            f"target 1 + 2 x duration = {p['db']['target_per_answer_mean']} -> ratio {p['db']['ratio_to_target']}",
            f"wiring: {p['wiring']}",
        ]
    if c["rounds"] > 1:
        for index, figures in enumerate(result["rounds"]):
            lines.append(
                f"round {index + 1}: "
                + "; ".join(
                    f"{name} lag p99 {f['steady']['lag_ms']['p99']} ms, {f['steady']['cpu_s_per_1k_tokens']} CPU s/1k"
                    for name, f in figures.items()
                )
            )
    if "verdict" in result:
        lines.append(f"verdict: {result['verdict']}")
    for phase, figures in [("baseline", b), ("parley", p)] + [(name, result[name]) for name in extra]:
        if figures.get("errors"):
            lines.append(f"{phase} errors: {figures['errors']}")
        if figures and not figures.get("steady_window"):
            lines.append(f"{phase}: too short for a steady window; 'steady' figures cover the whole run")
    return "\n".join(lines)


def _others(phase: dict) -> float | None:
    """Cores used on the machine by processes other than this one and the fake upstream."""
    if not phase or "machine" not in phase:
        return None
    machine = phase["machine"]
    return round(machine["busy_cores"] - machine["own_cores"] - (_per_s(phase["upstream"]) or 0), 3)


def _per_s(stats: dict | None) -> float | None:
    """Cores used: CPU seconds per wall-clock second."""
    return stats["cpu_s"] / stats["wall_s"] if stats and stats.get("wall_s") else None


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark, print the table, save the JSON; exit 1 when lag p99 misses the target."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_load", description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=200, help="concurrent answers (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second per answer (default 20)")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per answer (default 400, ~20 s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 answers x 80 tokens at 20 tokens/s")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop (default uvloop)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat both phases, report medians (default 1)")
    parser.add_argument("--phases", default="baseline,parley", help="comma-separated: baseline, parley (default both)")
    parser.add_argument(
        "--checkpoint-interval", type=float, help="Parley's checkpoint_interval in seconds (default: its setting)"
    )
    parser.add_argument("--profile", type=Path, help="cProfile each phase into PATH-<phase>.prof (inflates figures)")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="then search the highest tokens/s delivered with lag p99 <= 50 ms, raw SDK and Parley (about 4 minutes)",
    )
    parser.add_argument("--ceiling-only", action="store_true", help="only the ceiling search (no usual phases)")
    parser.add_argument(
        "--ceiling-rate", type=float, default=CEILING_RATE, help=f"ceiling: tokens/s per answer ({CEILING_RATE:g})"
    )
    parser.add_argument(
        "--ceiling-seconds", type=float, default=CEILING_SECONDS, help=f"ceiling: s per step ({CEILING_SECONDS:g})"
    )
    parser.add_argument("--ceiling-start", type=int, default=40, help="ceiling: answers in the first step (40)")
    parser.add_argument("--ceiling-factor", type=float, default=1.5, help="ceiling: growth per step (1.5)")
    parser.add_argument("--ceiling-refine", type=int, default=2, help="ceiling: halvings after a failure (2)")
    parser.add_argument(
        "--ceiling-quiet-wait", type=float, default=60.0, help="ceiling: most s to wait for a quiet machine per step"
    )
    parser.add_argument(
        "--json", type=Path, help="where to save the results (default bench/results/engine_load-*.json)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.answers, args.rate, args.tokens = 20, 20.0, 80
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop is not installed; using asyncio", file=sys.stderr)
            args.loop = "asyncio"
    phases = tuple(name for name in PHASES if name in args.phases.split(","))
    result: dict[str, Any] = {"config": machine_info(), "profiles": []}
    if not args.ceiling_only:
        result = run(
            args.answers,
            args.rate,
            args.tokens,
            loop=args.loop,
            rounds=args.rounds,
            phases=phases,
            checkpoint_interval=args.checkpoint_interval,
            profile=args.profile,
        )
        for report in result["profiles"]:
            print(report)
        print(format_table(result))
    if args.ceiling or args.ceiling_only:
        options: dict[str, Any] = {
            "rate": args.ceiling_rate,
            "seconds": args.ceiling_seconds,
            "start": args.ceiling_start,
            "factor": args.ceiling_factor,
            "refine": args.ceiling_refine,
            "quiet_wait": args.ceiling_quiet_wait,
        }
        if args.quick:  # two short steps each
            options.update(
                seconds=6.0, start=min(args.ceiling_start, 10), factor=2.0, refine=0, most=20, quiet_wait=0.0
            )
        result["ceiling"] = ceiling(loop=args.loop, checkpoint_interval=args.checkpoint_interval, **options)
        print(format_ceiling(result["ceiling"]))
    path = args.json or RESULTS / f"engine_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result["profiles"] = [r.split("\n", 1)[0] for r in result["profiles"]]
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 0 if result.get("verdict", {}).get("steady_lag_p99_ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
