"""What a tool step costs Parley beyond the tool's own time, against a direct loop in the same run.

A tool step is the gap between the upstream writing the last delta of a turn that calls a tool and the next request
(carrying the tool's result) arriving at the upstream: the fake upstream (``tests.fake_upstream``, in this process's
thread) records both times. Three figures per run, each over ``--rounds`` answers of ``--steps`` sequential
``calculator`` calls:

* **direct call**: ``Toolbox.call`` on its own (the tool's own time);
* **raw loop**: the floor — the openai SDK streaming the turn, Parley's tool-call accumulator, a direct
  ``Toolbox.call``, the follow-up request; no engine, no database, no event log;
* **Parley**: the engine's loop (event log, checks, checkpoints, SQLite file) through the same upstream.

Printed: milliseconds per step (p50, p90) for each, and Parley's cost over the raw loop per step.

Run from the repository root: ``.venv/bin/python -m bench.tools`` (about 20 s), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import openai

from chat.engine import Engine
from chat.engine.tool_loop import ToolLimits, ToolLoop
from chat.provider import Provider, ToolCallAccumulator
from chat.store import Store
from chat.tools import Toolbox
from tests.fake_upstream import FakeUpstream, Script, content_deltas, openai_tool_call_deltas


def scripts(steps: int) -> list[Script]:
    """An answer of ``steps`` sequential calculator calls, then a short text."""
    turns = [
        Script(deltas=[*content_deltas("Computing. "), *openai_tool_call_deltas(
            [("calculator", {"expression": f"{n}*{n}"})], ids=[f"call_{n}"])], finish_reason="tool_calls")
        for n in range(steps)
    ]  # fmt: skip
    return [*turns, Script(deltas=content_deltas("Done."))]


def gaps(fake: FakeUpstream, first: int) -> list[float]:
    """Seconds from each turn's last written delta to the next request's arrival, over the requests of one answer
    (those from index ``first``)."""
    streams = fake.streams[first:]
    return [later.received_at - earlier.written[-1] for earlier, later in zip(streams, streams[1:], strict=False)]


async def direct(toolbox: Toolbox, calls: int) -> list[float]:
    tool = next(t for t in await toolbox.tools() if t.name == "calculator")
    times = []
    for n in range(calls):
        started = time.perf_counter()
        await toolbox.call(tool, {"expression": f"{n}*{n}"})
        times.append(time.perf_counter() - started)
    return times


async def raw_loop(fake: FakeUpstream, toolbox: Toolbox, steps: int) -> None:
    """One answer with the openai SDK and a direct tool call per step (the floor)."""
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
    tools = await toolbox.tools()
    by_name = {tool.name: tool for tool in tools}
    definitions = [tool.openai_tool() for tool in tools]
    messages: list[dict] = [{"role": "user", "content": "Compute."}]
    fake.scripts = scripts(steps)
    for _ in range(steps + 1):
        stream = await client.chat.completions.create(model="fake-model", messages=messages, tools=definitions,
                                                      stream=True)  # type: ignore[arg-type]  # fmt: skip
        accumulator, text = ToolCallAccumulator(), ""
        async for chunk in stream:
            if chunk.choices:
                delta = chunk.choices[0].delta
                text += delta.content or ""
                accumulator.add(delta.tool_calls or [])
        calls = accumulator.calls
        if not calls:
            break
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            }
        )
        for call in calls:
            tool = by_name[call.name]
            output = await toolbox.call(tool, toolbox.parse_arguments(tool, call.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output.text})
    await client.close()


async def parley(fake: FakeUpstream, engine: Engine, steps: int) -> None:
    fake.scripts = scripts(steps)
    _, assistant = await engine.send(None, "Compute.")
    generation = engine.live(assistant.id)  # type: ignore[arg-type]
    assert generation is not None
    message = await generation.wait()
    assert message.content.endswith("Done."), message


def summary(name: str, seconds: list[float]) -> tuple[float, str]:
    ms = sorted(1000 * s for s in seconds)
    p50, p90 = statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]
    return p50, f"{name:<14} {p50:8.2f} {p90:8.2f}   (n={len(ms)})"


async def main(rounds: int, steps: int) -> None:
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        store.migrate()
        toolbox = Toolbox()
        provider = Provider(fake.base_url, "k")
        engine = Engine(store, provider, default_model="fake-model", tools=ToolLoop(toolbox, store, ToolLimits(
            max_steps=steps + 1, max_calls=10 * steps)))  # fmt: skip
        direct_times, raw_gaps, parley_gaps = [], [], []
        await raw_loop(fake, toolbox, 2)  # warm up both paths (connections, imports)
        await parley(fake, engine, 2)
        for _ in range(rounds):  # alternate, so both see the same machine
            direct_times += await direct(toolbox, steps)
            first = len(fake.streams)
            await raw_loop(fake, toolbox, steps)
            raw_gaps += gaps(fake, first)
            first = len(fake.streams)
            await parley(fake, engine, steps)
            parley_gaps += gaps(fake, first)
        await engine.shutdown()
        await provider.close()
        await toolbox.aclose()
        store.close()
    print(f"tool step: last delta of a turn -> next request at the upstream, ms ({rounds} answers x {steps} steps)")
    print(f"{'':<14} {'p50':>8} {'p90':>8}")
    _, line = summary("direct call", direct_times)
    print(line)
    raw50, line = summary("raw loop", raw_gaps)
    print(line)
    parley50, line = summary("Parley", parley_gaps)
    print(line)
    print(f"Parley's cost per tool step over the raw loop: {parley50 - raw50:+.2f} ms (p50), "
          f"ratio {parley50 / raw50:.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="answers per path")
    parser.add_argument("--steps", type=int, default=5, help="sequential tool calls per answer")
    parser.add_argument("--quick", action="store_true", help="3 answers of 3 steps")
    args = parser.parse_args()
    asyncio.run(main(3, 3) if args.quick else main(args.rounds, args.steps))
