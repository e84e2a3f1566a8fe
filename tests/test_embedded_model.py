"""End to end with the real embedded model (Gemma 3 270M in llama.cpp's server): slow, real tokens."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
import pytest
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from chat.store import Status

from .conftest import ROOT, opened_store
from .test_ui import send, stored_path, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
async def embedded_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The simulated user on app.py with no upstream configured: Parley starts its embedded model."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "PARLEY_MODEL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARLEY_EMBEDDED_CONTEXT", "2048")
    async with user_simulation(main_file=ROOT / "app.py") as user:
        yield user, tmp_path / "data"


def llama_server() -> psutil.Process:
    """The embedded model's server process (a child of this test process)."""
    for child in psutil.Process().children(recursive=True):
        if "llama_cpp.server" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no llama_cpp.server child process")


def cpu_seconds_over(process: psutil.Process, seconds: float) -> float:
    """CPU seconds (user + system) the process used during the next ``seconds``."""
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


async def test_real_model_streams_into_the_page_and_stops(embedded_user: tuple[User, Path]) -> None:
    user, data_dir = embedded_user
    await user.open("/")
    await send(user, "What is the capital of France?")
    await wait_for(lambda: len(stored_path(data_dir)) == 2, timeout=30)
    await wait_for(lambda: stored_path(data_dir)[1].status != Status.streaming, timeout=180)
    answer = stored_path(data_dir)[1]
    assert answer.status == Status.complete, answer.error
    assert answer.content.strip() and answer.model == "gemma-3-270m"
    assert answer.completion_tokens and answer.completion_tokens > 1
    assert answer.finish_reason in {"stop", "length"}
    await user.open("/c/1")
    await user.should_see(answer.content.strip()[:20])

    # a long answer, stopped mid-way: stored cancelled with its partial text, and the model stops computing
    await send(user, "Write a very long story about a dragon, with many chapters.")
    await wait_for(lambda: len(stored_path(data_dir)) == 4 and len(stored_path(data_dir)[3].content) > 40, timeout=120)
    server = llama_server()
    busy = await asyncio.to_thread(cpu_seconds_over, server, 1.0)
    user.find(marker="stop").click()
    await wait_for(lambda: stored_path(data_dir)[3].status == Status.cancelled, timeout=10)
    partial = stored_path(data_dir)[3].content
    assert len(partial) > 40
    await asyncio.sleep(1.0)
    idle = await asyncio.to_thread(cpu_seconds_over, server, 1.5)
    assert busy > 0.5, f"the server should have been computing tokens ({busy:.2f} CPU s in 1 s)"
    assert idle < 0.25 * 1.5, f"generation did not end: {idle:.2f} CPU s in 1.5 s after Stop"
    await asyncio.sleep(0.5)
    with opened_store(data_dir) as store:
        assert store.get_message(stored_path(data_dir)[3].id).content == partial  # nothing written after cancel
