"""Compare mode's server CPU per 1,000 tokens, against the same answers one at a time.

Parley's ``Engine`` runs in this process (one asyncio loop, uvloop when installed, as ``ui.run`` picks it) on a
fresh SQLite file per phase, with ``chat.provider.Provider`` pointed at ``tests.fake_upstream.FakeUpstream`` serving
the models ``m1``, ``m2`` and ``m3``. The fake runs in a spawned child process (as in ``bench.engine_load``), so its
CPU and GIL stay out of the figures; its own CPU is reported beside them. Each answer is ``--tokens`` tokens at
``--rate`` tokens/s and has one subscriber counting its deltas (as a browser tab would).

Two phases, each in a fresh event loop, after a short warm-up answer in the same mode (connections opened):

* **sequential** (the baseline, measured in the same run): the three answers one after another, each a new
  conversation through ``engine.send(None, text, model=m)``, each waited for before the next is sent;
* **compare**: ``engine.compare(None, text, ["m1", "m2", "m3"])``, the three answers streaming at once, all waited.

Per phase: CPU seconds of this process (``time.process_time``: every thread, the loop and the ``to_thread`` database
writes) and wall seconds from the first send until the last answer has ended, per 1,000 tokens delivered to the
subscribers; the CPU of the whole machine (cores) to tell a noisy neighbour; and, after the answers, the process's
CPU over ``IDLE_S`` seconds of nothing to do (what scales with wall time rather than tokens); the database commits
(checkpoints of partial text are one transaction per interval for all the answers streaming). The phases alternate
their order round after round; the figures are medians over ``--rounds``. Printed: a table with compare / sequential
ratios; saved: JSON in ``bench/results/compare-*.json`` with the machine's description.

Run from the repository root::

    .venv/bin/python -m bench.compare            # 5 rounds of 3 answers x 400 tokens at 200 tokens/s (~1 min)
    .venv/bin/python -m bench.compare --quick    # a few seconds' smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import PipedProcess, fmt
from bench.streaming import machine_info

MODELS = ("m1", "m2", "m3")
PROMPT = "Tell me a long story about a lighthouse keeper."
RESULTS = Path(__file__).parent / "results"
#: Tokens of the warm-up answer each phase starts with (not measured).
WARM_TOKENS = 5
#: Seconds the engine is left idle after the answers, to show its CPU with nothing to do.
IDLE_S = 1.0


# -- the fake upstream, in its own process (also used by bench.attachments) ------------------------------------------


def _upstream_main(conn: multiprocessing.connection.Connection, models: Sequence[str], script: dict[str, Any]) -> None:
    """Child process: a FakeUpstream serving ``models`` with ``Script(**script)`` until told to stop.

    Commands on ``conn`` (tuples): ``("script", fields)``, ``("reset",)`` (forget streams, restart the CPU counter),
    ``("stats",)``, ``("streams", since)`` (a summary of each stream record from index ``since``), ``("stop",)``.
    Each stream record also gets ``body_bytes``: the bytes of the request body as received.
    """
    from tests.fake_upstream import FakeUpstream, Script

    class MeasuredUpstream(FakeUpstream):
        async def _chat_completions(self, request: Any) -> Any:
            size = len(await request.body())  # Starlette keeps the body: the fake's own read gets the same bytes
            before = len(self.streams)
            response = await super()._chat_completions(request)
            if len(self.streams) > before:  # no await in between: this request's record
                self.streams[-1].body_bytes = size  # type: ignore[attr-defined]
            return response

    fake = MeasuredUpstream(models=models).start()
    fake.script = Script(**script)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    conn.send(fake.port)
    while True:
        command, *args = conn.recv()
        if command == "script":
            fake.script = Script(**args[0])
            conn.send(None)
        elif command == "reset":
            fake.streams.clear()
            fake.requests.clear()
            fake.log.clear()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            conn.send(None)
        elif command == "stats":
            streams = list(fake.streams)
            conn.send(
                {
                    "cpu_s": round(time.process_time() - cpu0, 4),
                    "wall_s": round(time.perf_counter() - wall0, 4),
                    "streams": len(streams),
                    "tokens_sent": sum(s.tokens_sent for s in streams),
                    "finished": sum(s.finished for s in streams),
                }
            )
        elif command == "streams":
            conn.send([_summary(record) for record in list(fake.streams)[args[0] :]])
        elif command == "stop":
            fake.stop()
            conn.send(None)
            return


def _summary(record: Any) -> dict[str, Any]:
    """What a bench needs of a stream record (not the request body, which may be megabytes)."""
    messages = record.request.get("messages") or []
    contents = [m.get("content") for m in messages if isinstance(m, dict)]
    images = sum(
        1
        for content in contents
        if isinstance(content, list)
        for part in content
        if isinstance(part, dict) and part.get("type") == "image_url"
    )
    return {
        "model": record.request.get("model"),
        "received_at": record.received_at,
        "body_bytes": getattr(record, "body_bytes", None),
        "messages": len(messages),
        "image_parts": images,
        "tokens_sent": record.tokens_sent,
        "finished": record.finished,
    }


class UpstreamProcess(PipedProcess):
    """A FakeUpstream (request body sizes recorded) running in a spawned child process.

    Args:
        models: the model ids it serves.
        script: fields of its ``Script`` (``tests.fake_upstream.Script``).
    """

    def __init__(self, models: Sequence[str], **script: Any) -> None:
        super().__init__(_upstream_main, (tuple(models), script))

    def _stop_message(self) -> Any:
        return ("stop",)

    def script(self, **fields: Any) -> None:
        """Use ``Script(**fields)`` for the next requests."""
        self._ask(("script", fields))

    def reset(self) -> None:
        """Forget past streams; restart the upstream's CPU counter."""
        self._ask(("reset",))

    def stats(self) -> dict[str, Any]:
        """Since the last reset: ``cpu_s`` (CPU seconds), ``wall_s``, ``streams``, ``tokens_sent``, ``finished``."""
        return self._ask(("stats",))

    def streams(self, since: int = 0) -> list[dict[str, Any]]:
        """The stream records from index ``since``: ``model``, ``received_at`` (``time.time()`` seconds when the
        whole request had been read), ``body_bytes``, ``messages``, ``image_parts``, ``tokens_sent``, ``finished``."""
        return self._ask(("streams", since))

    def __enter__(self) -> UpstreamProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed (what Parley runs on through uvicorn), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


# -- one phase ------------------------------------------------------------------------------------------------------


async def _answers(engine: Any, mode: str, models: Sequence[str], counts: list[int]) -> list[Any]:
    """The three answers in ``mode`` (``sequential`` or ``compare``), each with a delta-counting subscriber
    (``counts``, one per model); returns the finished messages."""
    from chat.engine import TextDelta

    def counter(index: int) -> Callable[[Any], None]:
        def on_event(item: Any) -> None:
            if type(item) is TextDelta:
                counts[index] += 1

        return on_event

    if mode == "sequential":
        finished = []
        for index, model in enumerate(models):
            _user, assistant = await engine.send(None, PROMPT, model=model)
            generation = engine.live(assistant.id)
            assert generation is not None
            generation.subscribe(counter(index))
            finished.append(await generation.wait())
        return finished
    _user, answers = await engine.compare(None, PROMPT, list(models))
    generations = [engine.live(answer.id) for answer in answers]
    assert all(g is not None for g in generations)
    for index, generation in enumerate(generations):
        generation.subscribe(counter(index))
    return list(await asyncio.gather(*(g.wait() for g in generations)))


async def _phase(upstream: UpstreamProcess, data_dir: Path, mode: str, tokens: int, rate: float) -> dict[str, Any]:
    """One warm-up round of short answers in ``mode``, then the measured one: CPU and wall seconds per 1k tokens,
    the upstream's figures, and the machine's busy cores over the measured window (``machine``: all processes,
    this one's share, and what is neither this process nor the upstream)."""
    import psutil
    from sqlalchemy import event

    from chat.engine import Engine
    from chat.provider import Provider
    from chat.store import Status, Store

    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    store.migrate()
    provider = Provider(upstream.base_url, "none")
    engine = Engine(store, provider, default_model=MODELS[0])
    upstream.script(tokens=WARM_TOKENS, rate=None)
    await _answers(engine, mode, MODELS, [0] * len(MODELS))
    upstream.script(tokens=tokens, rate=rate)
    upstream.reset()
    counts = [0] * len(MODELS)
    commits, lock = [0], threading.Lock()

    def on_commit(_connection: Any) -> None:  # in the store's threads
        with lock:
            commits[0] += 1

    event.listen(store.engine, "commit", on_commit)
    checkpoints0 = engine.checkpoints
    system0, cpu0, wall0 = psutil.cpu_times(), time.process_time(), time.perf_counter()
    messages = await _answers(engine, mode, MODELS, counts)
    system1, cpu1, wall1 = psutil.cpu_times(), time.process_time(), time.perf_counter()
    db_commits, checkpoints = commits[0], engine.checkpoints - checkpoints0
    upstream_stats = upstream.stats()
    idle0 = time.process_time()
    await asyncio.sleep(IDLE_S)  # what the open engine costs with no answer (it scales with wall time, not tokens)
    idle_cpu = time.process_time() - idle0
    await engine.shutdown()
    await provider.close()
    store.close()
    delivered = sum(counts)
    cpu, wall = cpu1 - cpu0, wall1 - wall0
    machine_idle = sum(getattr(system1, f) - getattr(system0, f) for f in ("idle", "iowait") if hasattr(system0, f))
    busy = sum(system1) - sum(system0) - machine_idle
    return {
        "tokens": delivered,
        "answers_complete": sum(m.status == Status.complete for m in messages),
        "statuses": sorted({str(m.status) for m in messages}),
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "cpu_ms_per_1k_tokens": round(cpu / delivered * 1e6, 2) if delivered else None,
        "wall_s_per_1k_tokens": round(wall / delivered * 1000, 4) if delivered else None,
        "cpu_cores": round(cpu / wall, 4) if wall else None,
        "idle_cpu_ms_per_s": round(idle_cpu / IDLE_S * 1000, 3),
        "db_commits": db_commits,
        "checkpoint_transactions": checkpoints,
        "upstream": upstream_stats,
        "machine": {
            "busy_cores": round(busy / wall, 3),
            "own_cores": round(cpu / wall, 3),
            "others_cores": round((busy - cpu - upstream_stats["cpu_s"]) / wall, 3),
        },
    }


def _run_phase(upstream: UpstreamProcess, mode: str, tokens: int, rate: float) -> dict[str, Any]:
    """``_phase`` in a fresh event loop and temporary folder."""
    with tempfile.TemporaryDirectory(prefix="parley-bench-compare-") as folder:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(_phase(upstream, Path(folder), mode, tokens, rate))


# -- the run ----------------------------------------------------------------------------------------------------------

PHASES = ("sequential", "compare")


def _median(values: list[Any]) -> Any:
    """Leaf by leaf median of equally shaped results: numbers take the median, other leaves the first value."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _median([v[k] for v in values if isinstance(v, dict) and k in v]) for k in first}
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        middle = statistics.median(numbers)
        return round(middle, 4) if isinstance(middle, float) else middle
    return first


def run(tokens: int, rate: float, rounds: int) -> dict[str, Any]:
    """Both phases ``rounds`` times (order alternating); medians, per-round figures and compare / sequential ratios."""
    import openai

    machine = {k: v for k, v in machine_info("").items() if k != "chromium"}
    config = {
        "models": list(MODELS),
        "tokens_per_answer": tokens,
        "rate_tokens_per_s": rate,
        "rounds": rounds,
        "loop": loop_factory().__module__.split(".")[0],
        "openai": openai.__version__,
    }
    per_round: list[dict[str, Any]] = []
    with UpstreamProcess(MODELS, tokens=tokens, rate=rate) as upstream:
        for index in range(rounds):
            order = PHASES if index % 2 == 0 else tuple(reversed(PHASES))
            figures = {}
            for mode in order:
                figures[mode] = _run_phase(upstream, mode, tokens, rate)
                f = figures[mode]
                print(f"round {index + 1} {mode}: {f['cpu_ms_per_1k_tokens']} CPU ms/1k tokens, "
                      f"{f['wall_s_per_1k_tokens']} wall s/1k tokens, {f['tokens']} tokens, "
                      f"machine busy {f['machine']['busy_cores']} cores", file=sys.stderr, flush=True)  # fmt: skip
            per_round.append(figures)
    result: dict[str, Any] = {"config": config, "machine": machine}
    for mode in PHASES:
        result[mode] = _median([figures[mode] for figures in per_round])

    def ratio(key: str) -> float | None:
        a, b = result["compare"][key], result["sequential"][key]
        return round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    result["ratios"] = {key: ratio(key) for key in ("cpu_ms_per_1k_tokens", "wall_s_per_1k_tokens", "cpu_cores")}
    result["per_round_cpu_ratio"] = [
        round(f["compare"]["cpu_ms_per_1k_tokens"] / f["sequential"]["cpu_ms_per_1k_tokens"], 3)
        if f["compare"]["cpu_ms_per_1k_tokens"] and f["sequential"]["cpu_ms_per_1k_tokens"]
        else None
        for f in per_round
    ]
    result["rounds"] = per_round
    return result


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    c, s, p = result["config"], result["sequential"], result["compare"]

    def line(label: str, keys: tuple[str, ...], ratio: bool = True) -> str:
        def get(phase: dict) -> Any:
            value: Any = phase
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            return value

        a, b = get(s), get(p)
        r = f"{b / a:.2f}x" if ratio and isinstance(a, int | float) and isinstance(b, int | float) and a else ""
        return f"{label:<38} {fmt(a):>12} {fmt(b):>12} {r:>8}"

    machine = result["machine"]
    return "\n".join(
        [
            f"3 answers ({', '.join(c['models'])}) x {c['tokens_per_answer']} tokens at {c['rate_tokens_per_s']:g} "
            f"tokens/s, loop={c['loop']}, {machine['cpu_count']} CPUs, median of {c['rounds']} round(s)",
            f"{'':<38} {'sequential':>12} {'compare':>12} {'ratio':>8}",
            line("CPU ms per 1k tokens (this process)", ("cpu_ms_per_1k_tokens",)),
            line("wall s per 1k tokens", ("wall_s_per_1k_tokens",)),
            line("CPU (cores, this process)", ("cpu_cores",)),
            line("CPU s", ("cpu_s",)),
            line("CPU idle after, engine open (ms/s)", ("idle_cpu_ms_per_s",), False),
            line("wall s", ("wall_s",)),
            line("database commits", ("db_commits",)),
            line("  of which checkpoint transactions", ("checkpoint_transactions",)),
            line("tokens delivered", ("tokens",), False),
            line("answers complete", ("answers_complete",), False),
            line("upstream CPU s (own process)", ("upstream", "cpu_s"), False),
            line("upstream tokens sent", ("upstream", "tokens_sent"), False),
            line("machine busy, all processes (cores)", ("machine", "busy_cores"), False),
            line("  of which neither us nor upstream", ("machine", "others_cores"), False),
            f"compare / sequential CPU per 1k tokens, each round: {result['per_round_cpu_ratio']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the table, save the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=400, help="tokens per answer (default 400)")
    parser.add_argument("--rate", type=float, default=200.0, help="tokens per second per answer (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of both phases, medians (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 tokens at 200 tokens/s, 1 round")
    parser.add_argument("--json", type=Path, help="where to save the results (default bench/results/compare-*.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.rate, args.rounds = 100, 200.0, 1
    result = run(args.tokens, args.rate, args.rounds)
    result["config"]["quick"] = args.quick
    print(format_table(result))
    path = args.json or RESULTS / f"compare-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
