"""Nothing lost when a process dies: the app killed (SIGKILL) or stopped (SIGTERM) mid-answer, and the embedded
model's server killed mid-answer. Real processes, real signals, a real SQLite file, the fake upstream over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from chat.config import DEFAULT_EMBEDDED_MODEL
from chat.engine import Engine
from chat.provider import EMBEDDED_MODELS, EmbeddedModelServer, ProviderError
from chat.server import embedded_provider
from chat.store import Message, Status, Store

from . import browser
from .browser import ROOT, chromium, free_port, seconds_to_exit, stderr_text
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, wait_for, wait_until

#: A long, slow answer: 400 tokens at 40 per second (10 s), so a signal always lands mid-answer.
SLOW = Script(tokens=400, rate=40)
#: The question, with a line break, non-ASCII and an emoji: it must come back byte for byte.
QUESTION = "Tell me a long story about a river.\n«Slowly», please 🙂"
INTERRUPTED = "Parley was stopped while this answer was streaming."


def tokens(n: int) -> str:
    """The text of the fake upstream's first ``n`` generated tokens."""
    return "".join(FakeUpstream.token(i) for i in range(n))


def whole_tokens(text: str) -> int:
    """How many of the fake upstream's tokens ``text`` is made of; fails unless it is exactly such a prefix."""
    n = text.count(" ")
    assert text == tokens(n), f"not a prefix of the streamed answer: {text[:80]!r}…"
    return n


# -- the app as a process, in Chromium ------------------------------------------------------------------------------


def serve(data_dir: Path, upstream: FakeUpstream, port: int):
    """app.py on ``port`` answering from the fake upstream, saving a streaming answer every 0.2 s, data in
    ``data_dir`` (named ``data``); yields the Popen."""
    assert data_dir.name == "data"
    return browser.serve(data_dir.parent, upstream, port, PARLEY_CHECKPOINT_INTERVAL="0.2", PARLEY_READ_TIMEOUT="5")


def answer(store: Store) -> Message | None:
    """The first conversation's assistant message, as stored now (None before it exists)."""
    path = store.path(1) if store.list_conversations() else []
    return path[1] if len(path) == 2 else None


def checkpoint(store: Store) -> str:
    """The partial text saved for the answer, "" while none is."""
    message = answer(store)
    return message.content if message is not None and message.status == Status.streaming else ""


def send_question(page, url: str) -> None:
    """Open Parley, type the question (Shift+Enter for its line break), send it, see the answer start streaming."""
    page.goto(url + "/")
    composer = page.get_by_placeholder("Message Parley")
    first, second = QUESTION.split("\n")
    composer.fill(first)
    composer.press("Shift+Enter")
    composer.type(second)
    composer.press("Enter")
    page.wait_for_url("**/c/1")
    expect(page.locator(".parley-message-body").last).to_contain_text("w3", timeout=10_000)


@pytest.mark.browser
def test_sigkill_mid_answer_keeps_the_last_checkpoint_and_retry_answers_again(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.script = SLOW
    data_dir, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    with chromium() as browser:
        page = browser.new_page()
        with serve(data_dir, upstream, port) as app:
            send_question(page, url)
            with opened_store(data_dir) as store:
                seen = wait_until(lambda: checkpoint(store), timeout=10, what="a checkpoint of the answer")
            app.kill()  # SIGKILL: no shutdown hook, no final write
            app.wait(5)
            page.close()  # an open tab would reload itself when the new server comes up
        assert app.returncode == -signal.SIGKILL
        with opened_store(data_dir) as store:
            killed = answer(store)
        assert killed is not None
        assert killed.status == Status.streaming  # as the dead process left it: only a restart can tell
        assert killed.content.startswith(seen)
        saved = whole_tokens(killed.content)
        assert 0 < saved < SLOW.tokens
        record = upstream.streams[0]
        assert record.ended.wait(5) and record.client_disconnected and not record.finished

        restarted = time.monotonic()
        with serve(data_dir, upstream, port):
            restart_seconds = time.monotonic() - restarted
            with opened_store(data_dir) as store:
                path = store.path(1)
            assert [m.content for m in path] == [QUESTION, killed.content]  # the question exactly, the checkpoint
            assert path[1].status == Status.interrupted
            assert path[1].error

            page = browser.new_page()
            page.goto(url + "/c/1")
            expect(page.locator(".parley-user-message")).to_have_text(QUESTION)
            body = page.locator(".parley-message-body").last
            expect(body).to_have_text(killed.content.strip())
            footer = page.locator(".parley-message-footer").last
            expect(footer).to_contain_text("Interrupted")
            retry = footer.get_by_role("button", name="Retry")
            expect(retry).to_be_visible()

            upstream.script = Script(tokens=30, rate=200)
            retry.click()
            expect(body).to_have_text(tokens(30).strip(), timeout=10_000)
            expect(footer.get_by_text("2/2")).to_be_visible(timeout=10_000)  # the new variant, the old one kept
            expect(footer).not_to_contain_text("Interrupted")
            with opened_store(data_dir) as store:
                wait_until(lambda: store.path(1)[1].status == Status.complete, timeout=5, what="the retry to end")
                path, every = store.path(1), store.messages(1)
        assert [m.content for m in path] == [QUESTION, tokens(30)]
        assert path[1].finish_reason == "stop"
        assert [(m.status, m.content) for m in every if m.id == killed.id] == [(Status.interrupted, killed.content)]
        assert len(upstream.streams) == 2 and upstream.streams[1].request["messages"][-1]["content"] == QUESTION
    print(f"\nSIGKILL: checkpoint {saved} tokens of {SLOW.tokens}; restart to serving {restart_seconds:.2f} s")


@pytest.mark.browser
def test_sigterm_mid_answer_exits_fast_stores_the_partial_text_and_ends_the_upstream_stream(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.script = SLOW
    data_dir, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    with chromium() as browser:
        page = browser.new_page()
        with serve(data_dir, upstream, port) as app:
            send_question(page, url)  # the page stays open, following the answer, while the app stops
            with opened_store(data_dir) as store:
                seen = wait_until(lambda: checkpoint(store), timeout=10, what="a checkpoint of the answer")
            exit_seconds = seconds_to_exit(app, signal.SIGTERM)
            log = stderr_text(app)
            # NiceGUI's teardown gave up on a task that was still running 2 s after it was cancelled. On a starved
            # machine the line can come with no task named: every task had ended by then, only late.
            teardown_stuck = re.search(r"Could not cancel \d+ tasks within timeout: \S", log)
            record = upstream.streams[0]
            assert record.ended.wait(5), "the upstream is still streaming"
            sent_by_upstream = record.tokens_sent
            time.sleep(0.3)  # not a wait for anything: "nothing more is sent" is only worth checking after a while
            assert record.tokens_sent == sent_by_upstream
    assert exit_seconds < 5, f"SIGTERM took {exit_seconds:.2f} s"
    assert not teardown_stuck, log[-3000:]  # every task ended when asked
    assert record.client_disconnected and not record.finished
    assert sent_by_upstream < SLOW.tokens
    with opened_store(data_dir) as store:
        path = store.path(1)
    assert path[0].content == QUESTION
    stopped = path[1]
    assert stopped.status == Status.interrupted
    assert stopped.error == INTERRUPTED  # stored by the shutdown itself, not by the next start's recovery
    assert stopped.content.startswith(seen) and len(stopped.content) >= len(seen)
    stored = whole_tokens(stopped.content)
    assert len(seen.split()) <= stored <= sent_by_upstream
    print(
        f"\nSIGTERM: exited in {exit_seconds:.2f} s (status {app.returncode}, teardown stuck: {teardown_stuck}); "
        f"stored {stored} tokens, last checkpoint seen {len(seen.split())}, upstream sent {sent_by_upstream}"
    )


# -- the embedded model's server process, in process with the engine ------------------------------------------------

#: The default embedded model, which these tests serve.
EMBEDDED = EMBEDDED_MODELS[DEFAULT_EMBEDDED_MODEL]
#: The fake upstream in its own process, serving the embedded model's name: the "embedded server" of these tests.
FAKE_EMBEDDED = [sys.executable, "-m", "tests.fake_upstream", "--port", "{port}", "--models", EMBEDDED.id]


@pytest.fixture
def embedded_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the server's child import ``tests.fake_upstream`` from any working directory."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


async def running_engine(store: Store, server: EmbeddedModelServer) -> tuple[Engine, Callable]:
    """The provider and engine exactly as ``build_services`` wires the embedded model; returns them with a closer."""
    provider = embedded_provider(server, connect_timeout=2, read_timeout=5, max_tokens=None)
    engine = Engine(store, provider, default_model=EMBEDDED.id, checkpoint_interval=0.2)
    engine.recover()

    async def close() -> None:
        await engine.shutdown()
        await provider.close()
        await server.stop()

    return engine, close


@pytest.fixture
async def embedded(
    store: Store, tmp_path: Path, embedded_env: None
) -> AsyncIterator[tuple[EmbeddedModelServer, Engine]]:
    """A started fake "embedded model server" and the engine answering through it."""
    server = EmbeddedModelServer(EMBEDDED, log_file=tmp_path / "embedded.log", command=FAKE_EMBEDDED)
    engine, close = await running_engine(store, server)
    server.start()
    await server.wait_ready()
    yield server, engine
    await close()


async def set_script(server: EmbeddedModelServer, script: Script) -> None:
    """Script the fake embedded server's next answers (through its control API)."""
    async with httpx.AsyncClient() as client:
        fields = {key: value for key, value in vars(script).items() if value != getattr(Script(), key)}
        response = await client.put(f"http://127.0.0.1:{server.port}/_fake/script", json=fields)
        response.raise_for_status()


async def fake_streams(server: EmbeddedModelServer) -> list[dict]:
    """The fake embedded server's records of the requests it took (through its control API)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/_fake/streams")
        response.raise_for_status()
        return response.json()


def never_streaming(store: Store) -> None:
    """Assert no stored message is left ``streaming``."""
    conversations = store.list_conversations()
    left = [m.id for c in conversations for m in store.messages(c.id) if m.status == Status.streaming]
    assert not left, f"messages left streaming: {left}"


def assert_embedded_stop_reason(message: Message, server: EmbeddedModelServer, how: str) -> None:
    assert message.status == Status.error
    assert message.error is not None
    assert f"The embedded model stopped ({how})" in message.error, message.error
    assert "restarts with the next message" in message.error
    assert str(server.log_file) in message.error


async def test_embedded_server_killed_mid_answer_is_an_error_and_the_next_message_restarts_it(
    embedded: tuple[EmbeddedModelServer, Engine], store: Store
) -> None:
    server, engine = embedded
    assert server.process is not None
    first_pid = server.process.pid
    await set_script(server, SLOW)
    user, assistant = await engine.send(None, QUESTION)
    generation = engine.live(assistant.id)
    assert generation is not None
    await wait_for(lambda: generation.size >= len(tokens(8)), what="some deltas")
    await wait_for(lambda: store.get_message(assistant.id).content, what="a checkpoint")
    before_kill = generation.text

    killed_at = time.monotonic()
    os.kill(first_pid, signal.SIGKILL)
    failed = await asyncio.wait_for(generation.wait(), 5)
    error_seconds = time.monotonic() - killed_at

    stored = store.get_message(assistant.id)
    assert (stored.status, stored.content) == (failed.status, failed.content)
    assert_embedded_stop_reason(stored, server, "killed by SIGKILL")
    assert stored.content.startswith(before_kill)  # the partial text is kept, every delta that arrived
    assert 8 <= whole_tokens(stored.content) < SLOW.tokens
    assert store.get_message(user.id).content == QUESTION
    never_streaming(store)
    assert not server.running

    restarted_at = time.monotonic()
    _, again = await engine.send(user.conversation_id, "And then?")
    generation = engine.live(again.id)
    assert generation is not None
    done = await asyncio.wait_for(generation.wait(), 15)
    restart_seconds = time.monotonic() - restarted_at
    assert server.process is not None and server.process.pid != first_pid and server.running
    assert done.status == Status.complete, done.error
    assert done.content == tokens(20)  # the restarted fake's default answer
    assert [m.status for m in store.path(user.conversation_id)] == [
        Status.complete, Status.error, Status.complete, Status.complete
    ]  # fmt: skip
    never_streaming(store)
    print(
        f"\nembedded SIGKILL: error stored {error_seconds:.2f} s after the kill; restart+answer {restart_seconds:.2f} s"
    )


async def test_embedded_server_killed_before_its_first_token_leaves_no_message_streaming(
    embedded: tuple[EmbeddedModelServer, Engine], store: Store
) -> None:
    server, engine = embedded
    assert server.process is not None
    await set_script(server, Script(hang=True))  # takes the request, never answers
    _, assistant = await engine.send(None, "Hello?")
    generation = engine.live(assistant.id)
    assert generation is not None
    await wait_for(lambda: generation.phase == "thinking", what="the request to be sent")
    await wait_for(lambda: fake_streams(server), what="the request to reach the fake (which holds it)")
    server.process.send_signal(signal.SIGKILL)
    failed = await asyncio.wait_for(generation.wait(), 5)
    assert failed.content == ""
    assert_embedded_stop_reason(store.get_message(assistant.id), server, "killed by SIGKILL")
    never_streaming(store)


async def test_embedded_server_killed_while_starting_is_an_error_and_the_next_message_starts_it(
    store: Store, tmp_path: Path, embedded_env: None
) -> None:
    commands = iter([[sys.executable, "-c", "import time; time.sleep(60)"], FAKE_EMBEDDED])  # never ready, then fine
    ports: list[int] = []

    def command(port: int) -> list[str]:
        ports.append(port)
        return [arg.replace("{port}", str(port)) for arg in next(commands)]

    server = EmbeddedModelServer(EMBEDDED, log_file=tmp_path / "embedded.log", command=command)
    engine, close = await running_engine(store, server)
    try:
        user, assistant = await engine.send(None, "Hello?")
        generation = engine.live(assistant.id)
        assert generation is not None
        await wait_for(lambda: server.process is not None, what="the server process")
        assert generation.phase == "loading"
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        failed = await asyncio.wait_for(generation.wait(), 5)
        assert failed.status == Status.error
        reason = f"The embedded model server ended while starting (killed by SIGKILL); see {server.log_file}."
        assert failed.error == reason
        never_streaming(store)

        _, again = await engine.send(user.conversation_id, "Hello again?")
        generation = engine.live(again.id)
        assert generation is not None
        done = await asyncio.wait_for(generation.wait(), 15)
        assert done.status == Status.complete and done.content == tokens(20)
        assert len(ports) == 2
    finally:
        await close()


def test_explain_leaves_failures_of_a_running_server_alone(tmp_path: Path) -> None:
    """A live server's own failure (e.g. an HTTP error) is not blamed on an exit."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        server = EmbeddedModelServer(EMBEDDED, log_file=tmp_path / "e.log", command=["true"])
        failure = ProviderError("The model server failed (500).", status=500)
        assert server.explain(failure) is failure  # never started
        server.process = sleeper
        assert server.explain(failure) is failure
        timeout = ProviderError("no text")
        started = time.monotonic()
        assert server.explain(timeout) is timeout
        assert time.monotonic() - started < 1
        sleeper.send_signal(signal.SIGTERM)
        lost = ProviderError("The connection to the model server broke.", connection_lost=True)
        explained = server.explain(lost)  # waits a moment for the exit to show, as the connection is gone
        assert explained.reason.startswith("The embedded model stopped (killed by SIGTERM)")
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.slow
async def test_real_embedded_server_killed_mid_answer_is_an_error_and_the_next_message_restarts_it(
    store: Store, tmp_path: Path
) -> None:
    """The same with llama-cpp-python's server and the packaged model (loads in a few seconds)."""
    server = EmbeddedModelServer(EMBEDDED, n_ctx=2048, log_file=tmp_path / "embedded.log")
    engine, close = await running_engine(store, server)
    try:
        user, assistant = await engine.send(None, "Write a very long story about a dragon, with many chapters.")
        generation = engine.live(assistant.id)
        assert generation is not None
        await wait_for(lambda: generation.size > 40, timeout=120, what="some deltas from the real model")
        assert server.process is not None
        first_pid = server.process.pid
        before_kill = generation.text
        server.process.send_signal(signal.SIGKILL)
        failed = await asyncio.wait_for(generation.wait(), 5)
        assert_embedded_stop_reason(store.get_message(assistant.id), server, "killed by SIGKILL")
        assert failed.content.startswith(before_kill)
        never_streaming(store)

        restarted_at = time.monotonic()
        _, again = await engine.send(user.conversation_id, "What is the capital of France?")
        generation = engine.live(again.id)
        assert generation is not None
        done = await asyncio.wait_for(generation.wait(), 180)
        assert done.status == Status.complete, done.error
        assert done.content.strip()
        assert server.process.pid != first_pid and server.running
        print(f"\nreal embedded model: restart + answer {time.monotonic() - restarted_at:.1f} s")
    finally:
        await close()
