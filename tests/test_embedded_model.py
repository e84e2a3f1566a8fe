"""End to end with the real embedded models (SmolLM2 135M Instruct by default, Gemma 3 270M on request, in
llama-cpp-python's server): slow, real tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import psutil
import pytest
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from chat.config import Settings
from chat.server import Services, build_services
from chat.store import Status

from .browser import ROOT
from .helpers import opened_store, send, stored_path, wait_for

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
    time.sleep(seconds)  # the window measured, not a wait for anything
    after = process.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


async def test_real_model_streams_into_the_page_and_stops(embedded_user: tuple[User, Path]) -> None:
    user, data_dir = embedded_user
    await user.open("/")
    await user.should_see("SmolLM2 135M Instruct")  # the start page names the built-in model
    await user.should_see(marker="welcome-hint")  # and how to connect a stronger one
    assert len(user.find(marker="example-prompt").elements) == 4
    await send(user, "What is the capital of France?")
    await wait_for(lambda: len(stored_path(data_dir)) == 2, timeout=30)
    await wait_for(lambda: stored_path(data_dir)[1].status != Status.streaming, timeout=180)
    answer = stored_path(data_dir)[1]
    assert answer.status == Status.complete, answer.error
    assert answer.content.strip() and answer.model == "smollm2-135m-instruct"
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

    async def quiet() -> bool:  # llama.cpp stops when it notices the closed connection: its CPU time is the only sign
        return await asyncio.to_thread(cpu_seconds_over, server, 0.5) < 0.25 * 0.5

    await wait_for(quiet, timeout=5, what="the model to stop computing after Stop")
    idle = await asyncio.to_thread(cpu_seconds_over, server, 1.5)
    assert busy > 0.5, f"the server should have been computing tokens ({busy:.2f} CPU s in 1 s)"
    assert idle < 0.25 * 1.5, f"generation did not end: {idle:.2f} CPU s in 1.5 s after Stop"
    await asyncio.sleep(0.5)  # not a wait for anything: "nothing is written after cancel" needs time to have passed
    with opened_store(data_dir) as store:
        assert store.get_message(stored_path(data_dir)[3].id).content == partial  # nothing written after cancel


#: Text of the chat formats' special tokens, which must never reach a stored answer.
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>")


@pytest.fixture
async def services(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    """Parley's services wired by ``build_services`` with no upstream, with the settings ``request.param`` adds, and
    the embedded model's server started."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "PARLEY_MODEL", "PARLEY_EMBEDDED_MODEL", "PARLEY_MAX_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None, data_dir=tmp_path, embedded_context=2048, **getattr(request, "param", {}))
    services = build_services(settings)
    services.store.migrate()
    services.engine.recover()
    assert services.embedded is not None
    services.embedded.start()
    await services.embedded.wait_ready()
    print(f"\n{services.embedded.model.name}: loaded in {services.embedded.load_seconds:.1f} s")
    yield services
    await services.engine.shutdown()
    await services.provider.close()
    await services.embedded.stop()
    services.store.close()


async def prompt_tokens(services: Services, messages: list[dict[str, str]]) -> int:
    """The ``usage.prompt_tokens`` the embedded model's server reports for ``messages`` (one token generated)."""
    assert services.embedded is not None
    async with openai.AsyncOpenAI(base_url=services.embedded.base_url, api_key="none") as client:
        request: dict = {"model": services.embedded.model.id, "messages": messages, "max_tokens": 1}
        completion = await client.chat.completions.create(**request)
    assert completion.usage is not None
    return completion.usage.prompt_tokens


async def answer_of(services: Services, text: str):
    """Send ``text`` as a new conversation's first message; the stored answer once it ended, complete."""
    _, assistant = await services.engine.send(None, text)
    generation = services.engine.live(assistant.id)
    assert generation is not None
    await asyncio.wait_for(generation.wait(), 120)
    answer = services.store.get_message(assistant.id)
    assert answer.status == Status.complete, answer.error
    return answer


#: Requests whose prompt tokens are compared with the server's count: with and without a system message.
COUNTED = [
    [{"role": "user", "content": "Write a Python function that reverses a string, with an example."}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Hi there!\n\nHow are you?"},
        {"role": "assistant", "content": " Fine, thanks. 🙂"},
        {"role": "user", "content": "Tell me about 東京 and <|im_start|>"},
    ],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "?"}],
]


async def test_default_model_ends_its_answer_and_its_prompt_count_is_the_servers(services: Services) -> None:
    """SmolLM2 ends its turn by itself (``stop`` well before ``max_tokens``) with no chat-format token in the text,
    and the ChatML counter counts each request exactly as llama-cpp-python's server does."""
    engine = services.engine
    assert services.embedded_model is not None and services.embedded_model.id == "smollm2-135m-instruct"
    assert engine.default_model == "smollm2-135m-instruct"
    assert await services.provider.models() == ["smollm2-135m-instruct"]
    started = time.monotonic()
    answer = await answer_of(services, "Write a Python function that reverses a string, with an example.")
    assert answer.model == "smollm2-135m-instruct"
    assert answer.finish_reason == "stop"
    assert answer.completion_tokens and 10 < answer.completion_tokens < services.provider.max_tokens
    assert "def " in answer.content
    assert not [token for token in SPECIAL_TOKENS if token in answer.content], answer.content
    print(f"reverse-string answer: {answer.completion_tokens} tokens in {time.monotonic() - started:.1f} s")

    counter = await asyncio.to_thread(services.provider.counters.load, engine.default_model)
    assert counter.exact
    for messages in COUNTED:
        assert counter.count(messages) == await prompt_tokens(services, messages), messages


@pytest.mark.parametrize("services", [{"embedded_model": "gemma-3-270m", "max_tokens": 24}], indirect=True)
async def test_embedded_model_gemma_serves_gemma(services: Services) -> None:
    """``--embedded-model gemma-3-270m``: Gemma answers, stored under its id; the Gemma counter is the server's
    count without a system message, and over-counts (never under-counts) a request with one."""
    engine = services.engine
    assert services.embedded_model is not None and services.embedded_model.name == "Gemma 3 270M"
    assert engine.default_model == "gemma-3-270m"
    answer = await answer_of(services, "Once upon a time, in a village by the sea,")
    assert answer.model == "gemma-3-270m" and answer.content.strip()
    assert answer.completion_tokens and answer.completion_tokens <= 24
    assert not [token for token in SPECIAL_TOKENS if token in answer.content], answer.content

    counter = await asyncio.to_thread(services.provider.counters.load, engine.default_model)
    assert counter.exact
    for messages in COUNTED:
        sent = services.provider.system_into_first_turn(messages)  # what the provider sends Gemma
        server = await prompt_tokens(services, sent)
        assert counter.count(messages) == server if sent == messages else counter.count(messages) >= server
