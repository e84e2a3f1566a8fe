"""What reading a streamed chat completion costs, per chunk, by the way it is parsed (issue 19, part 3).

The same long answers (default 20 concurrent × 2,000 tokens at 200 tokens/s each) from the tests' fake upstream in its
own process (``tests.fake_upstream.FakeUpstreamProcess``, so its CPU stays out of the figure) are read in this process
in several ways, each reading the same fields of every chunk that ``chat/provider/stream.py`` reads (``choices[0]``'s
``delta.content``, ``reasoning_content`` / ``reasoning``, ``tool_calls``, ``finish_reason``; ``usage``):

* ``sdk_typed`` (the baseline): the openai SDK's typed stream, ``client.chat.completions.create(stream=True)``, one
  ``ChatCompletionChunk`` model per chunk (what the provider does today);
* ``raw_sse_jiter``: the SDK's raw streaming response (``client.chat.completions.with_streaming_response.create``: the
  SDK builds, sends and maps the HTTP status of the request), its httpx2 response read with httpx-sse's
  ``EventSource`` and each ``data`` parsed by jiter (the JSON parser the SDK itself depends on) into dicts;
* ``raw_sse_orjson``: the same with orjson;
* ``raw_sse_json``: the same with the standard library's ``json`` (shows what the parser alone is worth);
* ``raw_sdk_decoder_jiter``: the raw response through the SDK's own SSE decoder (``openai._streaming.SSEDecoder``, a
  private class: measured to compare, not to use) and jiter;
* ``raw_bytes`` (the floor, not a parser): the raw response's bytes only, counting ``data:`` lines. What is left
  when nothing is parsed: the SDK's request, httpx2 and the loop.

Figures: CPU microseconds of this process per chunk (``time.process_time``, every thread) and each variant's ratio to
``sdk_typed`` in the same run; rounds alternate the order and report medians. Every variant must read the same text,
``finish_reason`` and ``usage``, or the run fails.

Run from the repository root::

    .venv/bin/python -m bench.provider_parse             # 3 rounds, about 3 minutes
    .venv/bin/python -m bench.provider_parse --quick     # a smoke run of a few seconds
    .venv/bin/python -m bench.provider_parse --rate 0    # the fake sends as fast as it can (reads batch chunks)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL = "fake-model"
PROMPT = "Tell me a long story about a lighthouse keeper."
RESULTS = Path(__file__).parent / "results"


@dataclass
class Read:
    """What one variant read of one answer: text, reasoning, tool-call deltas, finish_reason, usage, chunks."""

    text: list[str] = field(default_factory=list)
    reasoning: int = 0
    tool_call_deltas: int = 0
    finish_reason: str | None = None
    usage: tuple[int | None, int | None] | None = None
    chunks: int = 0


def _request(model: str = MODEL) -> dict[str, Any]:
    """The request's arguments, as ``Provider._create`` sends them (streamed, usage in the stream)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0.7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


# -- the variants: each reads one answer into a Read -------------------------------------------------------------------


async def sdk_typed(client: Any, read: Read) -> None:
    """The SDK's typed stream: ``ChatCompletionChunk`` objects (reasoning from ``model_extra``, as ``reasoning.py``)."""
    stream = await client.chat.completions.create(**_request())
    try:
        async for chunk in stream:
            read.chunks += 1
            if chunk.usage is not None:
                read.usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    read.text.append(delta.content)
                extra = delta.model_extra or {}
                if extra.get("reasoning_content") or extra.get("reasoning"):
                    read.reasoning += 1
                if delta.tool_calls:
                    read.tool_call_deltas += len(delta.tool_calls)
            if choice.finish_reason:
                read.finish_reason = choice.finish_reason
    finally:
        await stream.close()


def _take(read: Read, data: Any) -> None:
    """Read one chunk's JSON object (a dict) the way ``sdk_typed`` reads its model."""
    read.chunks += 1
    usage = data.get("usage")
    if usage is not None:
        read.usage = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    choices = data.get("choices")
    if not choices:
        return
    choice = choices[0]
    delta = choice.get("delta")
    if delta is not None:
        content = delta.get("content")
        if content:
            read.text.append(content)
        if delta.get("reasoning_content") or delta.get("reasoning"):
            read.reasoning += 1
        calls = delta.get("tool_calls")
        if calls:
            read.tool_call_deltas += len(calls)
    if choice.get("finish_reason"):
        read.finish_reason = choice["finish_reason"]


def _raw_sse(parse: Callable[[str], Any]) -> Callable[[Any, Read], Awaitable[None]]:
    """A variant: the SDK's raw streaming response, httpx-sse's events, ``parse`` on each ``data``."""
    from httpx_sse import EventSource

    async def variant(client: Any, read: Read) -> None:
        async with client.chat.completions.with_streaming_response.create(**_request()) as response:
            async for sse in EventSource(response.http_response).aiter_sse():
                if sse.data.startswith("[DONE]"):
                    break
                _take(read, parse(sse.data))

    return variant


async def raw_sdk_decoder_jiter(client: Any, read: Read) -> None:
    """The raw response through the SDK's own (private) SSE decoder, each ``data`` parsed by jiter."""
    import jiter
    from openai._streaming import SSEDecoder

    async with client.chat.completions.with_streaming_response.create(**_request()) as response:
        async for sse in SSEDecoder().aiter_bytes(response.http_response.aiter_bytes()):
            if sse.data.startswith("[DONE]"):
                break
            _take(read, jiter.from_json(sse.data.encode()))


async def raw_bytes(client: Any, read: Read) -> None:
    """The floor: the raw response's bytes, ``data:`` lines counted, nothing parsed (no text is read)."""
    async with client.chat.completions.with_streaming_response.create(**_request()) as response:
        async for block in response.http_response.aiter_bytes():
            read.chunks += block.count(b"data: {")


def variants() -> dict[str, Callable[[Any, Read], Awaitable[None]]]:
    """The variants by name, the baseline first."""
    import jiter
    import orjson

    return {
        "sdk_typed": sdk_typed,
        "raw_sse_jiter": _raw_sse(lambda data: jiter.from_json(data.encode())),
        "raw_sse_orjson": _raw_sse(orjson.loads),
        "raw_sse_json": _raw_sse(json.loads),
        "raw_sdk_decoder_jiter": raw_sdk_decoder_jiter,
        "raw_bytes": raw_bytes,
    }


#: Variants that do not read the text (their reads are not compared).
FLOORS = {"raw_bytes"}


# -- measuring ------------------------------------------------------------------------------------------------------


async def _measure(
    name: str, variant: Callable[[Any, Read], Awaitable[None]], base_url: str, answers: int
) -> tuple[dict[str, Any], list[Read]]:
    """Read ``answers`` answers at once with ``variant``; CPU seconds of this process and chunks read."""
    import openai
    import psutil

    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="none", timeout=openai.Timeout(120.0, connect=10.0), max_retries=0
    )  # as Provider builds it
    await client.models.list()  # the connection pool warm, the SDK's lazy imports done
    reads = [Read() for _ in range(answers)]
    system0, cpu0, wall0 = psutil.cpu_times(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(variant(client, read) for read in reads))
    system1, cpu1, wall1 = psutil.cpu_times(), time.process_time(), time.perf_counter()
    await client.close()
    chunks = sum(read.chunks for read in reads)
    idle = sum(getattr(system1, f) - getattr(system0, f) for f in ("idle", "iowait") if hasattr(system0, f))
    busy = sum(system1) - sum(system0) - idle
    seconds = wall1 - wall0
    figures = {
        "chunks": chunks,
        "wall_s": round(seconds, 3),
        "cpu_s": round(cpu1 - cpu0, 4),
        "cpu_us_per_chunk": round((cpu1 - cpu0) / chunks * 1e6, 2) if chunks else None,
        "own_cores": round((cpu1 - cpu0) / seconds, 3),
        "machine_busy_cores": round(busy / seconds, 3),
    }
    return figures, reads


def _check(name: str, reads: list[Read], expected: list[Read]) -> list[str]:
    """Differences between what ``name`` read and what the baseline read (empty: the same)."""
    problems = []
    for index, (got, want) in enumerate(zip(reads, expected, strict=True)):
        if "".join(got.text) != "".join(want.text):
            problems.append(f"{name}: answer {index}: text differs")
        if (got.finish_reason, got.usage, got.chunks) != (want.finish_reason, want.usage, want.chunks):
            problems.append(
                f"{name}: answer {index}: {(got.finish_reason, got.usage, got.chunks)} "
                f"!= {(want.finish_reason, want.usage, want.chunks)}"
            )
    return problems


def run(answers: int, tokens: int, rate: float, rounds: int, names: list[str] | None = None) -> dict[str, Any]:
    """Measure every variant (or ``names``) ``rounds`` times against one fake upstream process.

    Args:
        answers: answers read at once.
        tokens: content tokens per answer.
        rate: tokens per second of each answer (0: as fast as the fake can send).
        rounds: repetitions, the order of the variants alternating; figures are medians.
        names: variants to run (the baseline ``sdk_typed`` is always run).

    Returns:
        A JSON-able dict: ``config``, ``machine``, ``variants`` (median figures by name: ``cpu_us_per_chunk``, CPU
        seconds, cores, and ``ratio_to_sdk_typed``), ``rounds`` (each round's figures) and ``problems`` (reads that
        differ from the baseline's; empty when all agree).

    Raises:
        RuntimeError: the fake upstream did not start.
    """
    import httpx_sse
    import jiter
    import openai
    import orjson

    from tests.fake_upstream import FakeUpstreamProcess, Script

    table = variants()
    chosen = ["sdk_typed"] + [name for name in (names or list(table)) if name != "sdk_typed"]
    per_round: list[dict[str, dict[str, Any]]] = []
    problems: list[str] = []
    with FakeUpstreamProcess() as fake:
        fake.set_script(Script(tokens=tokens, rate=rate or None))
        for index in range(rounds):
            order = chosen if index % 2 == 0 else list(reversed(chosen))
            figures: dict[str, dict[str, Any]] = {}
            reads: dict[str, list[Read]] = {}
            for name in order:
                fake.reset()
                fake.set_script(Script(tokens=tokens, rate=rate or None))
                figures[name], reads[name] = asyncio.run(_measure(name, table[name], fake.base_url, answers))
                print(
                    f"round {index + 1} {name}: {figures[name]['cpu_us_per_chunk']} µs/chunk, "
                    f"{figures[name]['chunks']} chunks, machine busy {figures[name]['machine_busy_cores']} cores",
                    file=sys.stderr,
                    flush=True,
                )
            baseline = reads["sdk_typed"]
            if any(read.finish_reason != "stop" or len(read.text) != tokens for read in baseline):
                problems.append(f"round {index + 1}: the baseline did not read {tokens} tokens and a stop")
            for name in chosen:
                if name not in FLOORS and name != "sdk_typed":
                    problems += _check(name, reads[name], baseline)
            per_round.append({name: figures[name] for name in chosen})

    medians: dict[str, dict[str, Any]] = {}
    for name in chosen:
        values = [r[name] for r in per_round]
        medians[name] = {key: statistics.median(v[key] for v in values) for key in values[0]}
    base = medians["sdk_typed"]["cpu_us_per_chunk"]
    for name in chosen:
        per_chunk = medians[name]["cpu_us_per_chunk"]
        medians[name]["ratio_to_sdk_typed"] = round(per_chunk / base, 3) if base and per_chunk else None
        medians[name]["saved_us_per_chunk"] = round(base - per_chunk, 2) if base and per_chunk else None
    return {
        "config": {
            "answers": answers,
            "tokens_per_answer": tokens,
            "rate_tokens_per_s": rate or None,
            "rounds": rounds,
            "variants": chosen,
        },
        "machine": {
            "cpus": multiprocessing.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "openai": openai.__version__,
            "httpx_sse": getattr(httpx_sse, "__version__", None),
            "jiter": jiter.__version__,
            "orjson": orjson.__version__,
        },
        "variants": medians,
        "rounds": per_round,
        "problems": problems,
    }


def format_table(result: dict[str, Any]) -> str:
    """The medians as a text table: CPU µs per chunk, ratio to ``sdk_typed``, µs saved per chunk."""
    c = result["config"]
    rate = f"{c['rate_tokens_per_s']:g} tokens/s" if c["rate_tokens_per_s"] else "as fast as the fake sends"
    lines = [
        f"{c['answers']} answers x {c['tokens_per_answer']} tokens at {rate}, median of {c['rounds']} round(s), "
        f"{result['machine']['cpus']} CPUs",
        f"{'variant':<24} {'µs/chunk':>9} {'ratio':>7} {'saved µs':>9} {'cores':>6} {'busy':>6}",
    ]
    for name, v in result["variants"].items():
        lines.append(
            f"{name:<24} {v['cpu_us_per_chunk']:>9.1f} {v['ratio_to_sdk_typed']:>7.3f} "
            f"{v['saved_us_per_chunk']:>9.1f} {v['own_cores']:>6.2f} {v['machine_busy_cores']:>6.2f}"
        )
    if result["problems"]:
        lines.append("PROBLEMS: " + "; ".join(result["problems"][:10]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the table, save the JSON; exit 1 when a variant read something else."""
    parser = argparse.ArgumentParser(prog="python -m bench.provider_parse", description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=20, help="answers read at once (default 20)")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per answer (default 2000)")
    parser.add_argument("--rate", type=float, default=200.0, help="tokens/s per answer; 0: flat out (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, order alternating; medians (default 3)")
    parser.add_argument("--variants", help="comma-separated variants (default all): " + ", ".join(variants()))
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 answers x 200 tokens, 1 round")
    parser.add_argument("--json", type=Path, help="where to save (default bench/results/provider_parse-*.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.answers, args.tokens, args.rounds = 5, 200, 1
    try:
        import uvloop

        uvloop.install()  # what Parley runs on
    except ImportError:
        print("uvloop is not installed; using asyncio", file=sys.stderr)
    names = args.variants.split(",") if args.variants else None
    result = run(args.answers, args.tokens, args.rate, args.rounds, names)
    print(format_table(result))
    path = args.json or RESULTS / f"provider_parse-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
