"""What accounts cost: the same requests to Parley without accounts (the baseline, same run) and with them.

Two Parley processes, one after the other, answer from the same fake upstream (a child process):

* personal mode (no users): the baseline;
* team mode (two users): each request authenticated by an API token (``Authorization: Bearer``) or by a login
  session (the signed cookie), which costs one indexed database read per request.

Measured, sequentially from one client (httpx, keep-alive), ``--requests`` times each:

* ``GET /api/conversations`` (a small list): latency p50/p99 in ms, and the ratio to the baseline's p50;
* ``POST /v1/chat/completions`` streaming a 20-token answer: time to the first content chunk (TTFT as a client
  sees it) p50/p99 in ms, and the ratio;
* ``POST /login``: p50/p99 in ms (argon2id verification, argon2-cffi's defaults: 64 MiB, 3 passes).

Run from the repository root::

    .venv/bin/python -m bench.auth             # 200 list requests, 40 answers, 10 logins per mode
    .venv/bin/python -m bench.auth --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.browser import clean_env as environment
from tests.browser import free_port, server_process
from tests.fake_upstream import FakeUpstreamProcess, Script
from tests.helpers import PASSWORD, add_users, api_token


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples`` in milliseconds (nearest rank)."""
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def timed(function: Callable[[], object], times: int) -> list[float]:
    """Seconds each of ``times`` calls of ``function`` took (after two warm-up calls)."""
    for _ in range(2):
        function()
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def first_chunk(client: httpx.Client) -> None:
    """Stream a chat completion; return once its first content chunk arrived, after reading the rest."""
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "store": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                break
        for _ in lines:
            pass


@contextlib.contextmanager
def parley(data_dir: Path, upstream: FakeUpstreamProcess) -> Iterator[str]:
    """Parley serving from ``data_dir`` on a free port; yields its base URL."""
    port = free_port()
    env = environment(
        OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY="bench-key", PARLEY_MODEL="fake-model",
        PARLEY_DATA_DIR=str(data_dir), PARLEY_MESSAGES_PER_MINUTE="100000", PARLEY_CONCURRENT_ANSWERS="100",
    )  # fmt: skip
    with server_process(["app.py", "--port", str(port)], f"http://127.0.0.1:{port}/login", env):
        yield f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.auth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="list requests per mode")
    parser.add_argument("--answers", type=int, default=40, help="streamed answers per mode")
    parser.add_argument("--logins", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20 requests, 5 answers, 3 logins")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.requests, arguments.answers, arguments.logins = 20, 5, 3
    rows: list[tuple[str, list[float]]] = []
    with FakeUpstreamProcess(models=["fake-model"]) as upstream, tempfile.TemporaryDirectory() as folder:
        upstream.set_script(Script(tokens=20))
        personal, team = Path(folder) / "personal", Path(folder) / "team"
        with parley(personal, upstream) as url, httpx.Client(base_url=url, timeout=30) as client:
            rows.append(
                ("list, no accounts (baseline)", timed(lambda: client.get("/api/conversations"), arguments.requests))
            )
            rows.append(("first chunk, no accounts (baseline)", timed(lambda: first_chunk(client), arguments.answers)))
        users = add_users(team, "ann", "bob")
        token = api_token(team, users["ann"])
        with parley(team, upstream) as url:
            with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
                rows.append(("list, API token", timed(lambda: client.get("/api/conversations"), arguments.requests)))
                rows.append(("first chunk, API token", timed(lambda: first_chunk(client), arguments.answers)))
            with httpx.Client(base_url=url, timeout=30) as client:
                login = {"name": "bob", "password": PASSWORD}
                rows.append(("login (argon2id)", timed(lambda: client.post("/login", json=login), arguments.logins)))
                rows.append(("list, login cookie", timed(lambda: client.get("/api/conversations"), arguments.requests)))
    baseline = {"list": percentiles(rows[0][1])[0], "first chunk": percentiles(rows[1][1])[0]}
    print(f"{'what':40} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'× baseline p50':>15}")
    for name, samples in rows:
        p50, p99 = percentiles(samples)
        kind = next((key for key in baseline if name.startswith(key)), None)
        ratio = f"{p50 / baseline[kind]:.2f}" if kind else ""
        print(f"{name:40} {len(samples):5d} {p50:8.1f} {p99:8.1f} {ratio:>15}")
    print(f"(mean of the baseline list requests: {statistics.fmean(rows[0][1]) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
