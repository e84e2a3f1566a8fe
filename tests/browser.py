"""Helpers for the tests that need a real server process and a real headless Chromium (Debian's package): the
project's folder ``ROOT``, free ports, app.py (or any server) in a subprocess, Chromium. The other shared helpers are in
``helpers.py``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
#: Flags for a root, headless, offline Chromium (without the background-networking ones it tries Google's hosts).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without pytest's variables (NiceGUI would start in test mode), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@contextlib.contextmanager
def server_process(
    args: list[str], ready_url: str, env: dict[str, str], timeout: float = 60
) -> Iterator[subprocess.Popen]:
    """Start ``python *args`` in the project folder, wait until ``ready_url`` answers, stop it (SIGTERM) afterwards.

    Its standard error goes to a temporary file, not a pipe: nobody reads a pipe while the tests run, and a server
    that logs more than the pipe holds (64 KiB: a few dozen answers' worth of request logs) would block on its next
    log line and hang. The file's tail is shown when the process does not start.
    """
    stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    process.stderr_file = stderr  # type: ignore[attr-defined]  # read by ``stderr_text``
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    stderr.seek(0)
                    pytest.fail(f"{args[0]} did not start:\n{stderr.read()[-3000:]}")
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium driven by Playwright. ``expect`` waits up to 10 s (not 5): the two cores are shared by the
    server, Chromium and pytest, and a slow machine must not fail a test that asserts what the page ends up showing."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def serve(tmp_path: Path, upstream, port: int, **env: str):
    """app.py serving on ``port`` (a ``server_process``), answering from the fake ``upstream``, its data in
    ``tmp_path / "data"``; ``env`` adds or overrides environment variables (e.g. ``PARLEY_READ_TIMEOUT="5"``)."""
    variables = {
        "OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": "test-key", "PARLEY_MODEL": "fake-model",
        "PARLEY_DATA_DIR": str(tmp_path / "data"), **env,
    }  # fmt: skip
    return server_process(["app.py", "--port", str(port)], f"http://127.0.0.1:{port}/", clean_env(**variables))


def assert_no_errors(process: subprocess.Popen) -> None:
    """Fail when the server logged an ERROR or an ASGI exception (WARNINGs may carry tracebacks: they are fine)."""
    log = stderr_text(process)
    assert " ERROR " not in log and "Exception in ASGI application" not in log, log[-3000:]


def stderr_text(process: subprocess.Popen) -> str:
    """What a ``server_process`` wrote to its standard error so far."""
    log = process.stderr_file  # type: ignore[attr-defined]
    log.flush()
    log.seek(0)
    return log.read()


def seconds_to_exit(process: subprocess.Popen, signal_number: int, timeout: float = 15) -> float:
    """Send ``signal_number`` to ``process`` and return the seconds until it exited (fail after ``timeout`` s)."""
    started = time.monotonic()
    process.send_signal(signal_number)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the process did not exit within {timeout:g} s of signal {signal_number}")
    return time.monotonic() - started
