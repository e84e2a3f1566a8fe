"""The fault matrix (README, "Faults"): every upstream fault injected for real by the fake upstream HTTP server, and
what the user sees and what is stored. Each row of the README's table names the test here that backs it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nicegui.testing import User

from chat.engine import Phase, PhaseChanged
from chat.store import Status, Store

from .browser import free_port
from .fake_upstream import FakeUpstream, Script
from .helpers import send, stored_path, wait_for

#: Short timeouts and retries so that the matrix runs in seconds (the defaults are 120 s, 60 s, 3 retries, 30 s).
READ_TIMEOUT, IDLE_TIMEOUT, RETRIES, RETRY_BUDGET = 1.0, 0.5, 2, 3.0


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: how to cause the fault, and what must follow."""

    script: Script = field(default_factory=Script)
    base_url: str | None = None  # None: the fake upstream; "refused": a free port nobody listens on
    model: str = "fake-model"
    status: Status = Status.error
    kept: int = 0  # tokens of the partial answer that must be kept
    reason: str = ""  # part of the reason shown and stored
    requests: int = 1  # chat completion requests the fake must have received (retries included)
    finish_reason: str | None = None
    error_status: int | None = None  # the upstream's HTTP status, stored with the error (None: it sent none)


TOKENS = 10
FAULTS = {
    "connection refused": Fault(
        base_url="refused", reason="Could not reach the model server at 127.0.0.1:", requests=0
    ),
    "unresolvable host": Fault(
        base_url="http://parley-no-such-host.invalid/v1",
        reason="parley-no-such-host.invalid: its host name does not resolve",
        requests=0,
    ),
    "401 bad API key": Fault(Script(status=401), reason="rejected the API key (401)", error_status=401),
    "403 forbidden": Fault(
        Script(status=403, error_message="no access"),
        reason="may not use this model or endpoint (403): no access",
        error_status=403,
    ),
    "404 unknown model": Fault(
        model="no-such-model", reason="does not know the model “no-such-model” (404)", error_status=404
    ),  # fmt: skip
    "429 Retry-After, retries run out": Fault(
        Script(status=429, retry_after=0.2),
        reason="limiting requests (429). Try again in 0.2 s",
        requests=RETRIES + 1,
        error_status=429,
    ),
    "429 Retry-After beyond the budget": Fault(
        Script(status=429, retry_after=60),
        reason="limiting requests (429). Try again in 60 s",
        requests=1,
        error_status=429,
    ),
    "500": Fault(
        Script(status=500, error_message="boom"), reason="failed (500): boom", requests=RETRIES + 1, error_status=500
    ),  # fmt: skip
    "503": Fault(
        Script(status=503, error_message="overloaded"),
        reason="failed (503): overloaded",
        requests=RETRIES + 1,
        error_status=503,
    ),
    "no first byte": Fault(Script(hang=True), reason=f"did not answer within {READ_TIMEOUT:g} s"),
    "no first text": Fault(Script(first_token_delay=5), reason=f"sent no text within {READ_TIMEOUT:g} s"),
    "stall mid-answer": Fault(
        Script(tokens=TOKENS, stall_after=4), kept=4, reason=f"sent nothing for {IDLE_TIMEOUT:g} s in the middle"
    ),
    "connection dropped mid-answer": Fault(
        Script(tokens=TOKENS, drop_after=4), kept=4, reason="broke in the middle of the answer"
    ),
    "malformed chunk": Fault(Script(tokens=TOKENS, malformed_after=4), kept=4, reason="malformed chunk"),
    "ends without [DONE] or finish_reason": Fault(
        Script(tokens=TOKENS, truncate_after=4), kept=4, reason="ended the answer without finishing it"
    ),
    "ends without [DONE] after finish_reason": Fault(
        Script(tokens=TOKENS, no_done=True), status=Status.complete, kept=TOKENS, finish_reason="stop"
    ),
    "finish_reason length": Fault(
        Script(tokens=TOKENS, finish_reason="length"),
        status=Status.complete,
        kept=TOKENS,
        finish_reason="length",
        reason="Cut off at the length limit",
    ),  # fmt: skip
    "finish_reason content_filter": Fault(
        Script(tokens=TOKENS, finish_reason="content_filter"),
        status=Status.complete,
        kept=TOKENS,
        finish_reason="content_filter",
        reason="Stopped by the model server's content filter",
    ),  # fmt: skip
}


def base_url_for(fault: Fault, upstream: FakeUpstream) -> str:
    if fault.base_url == "refused":
        return f"http://127.0.0.1:{free_port()}/v1"
    return fault.base_url or upstream.base_url


@pytest.fixture
def make_engine(make_engine):
    """``make_engine`` (conftest) with the matrix's short timeouts and retries unless overridden."""
    options = dict(connect_timeout=1, read_timeout=READ_TIMEOUT, idle_timeout=IDLE_TIMEOUT, retries=RETRIES,
                   retry_budget=RETRY_BUDGET)  # fmt: skip
    return lambda base_url=None, **overrides: make_engine(base_url, **(options | overrides))


@pytest.mark.parametrize("name", list(FAULTS))
async def test_fault_keeps_the_partial_answer_stores_the_reason_and_logs_details(
    name: str, make_engine, store: Store, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    fault = FAULTS[name]
    upstream.script = fault.script
    engine = make_engine(base_url_for(fault, upstream))
    conversation_id = await engine.create_conversation(model=fault.model)
    caplog.set_level(logging.INFO)
    user, assistant = await engine.send(conversation_id, "Tell me a story.")
    message = await engine.live(assistant.id).wait()

    stored = store.get_message(assistant.id)
    assert stored.status == fault.status
    assert stored.content == upstream.expected_text(fault.kept)  # every delta received, nothing more
    assert store.get_message(user.id).content == "Tell me a story."
    assert len(upstream.requests) == fault.requests
    if fault.status == Status.error:
        assert fault.reason in (stored.error or ""), stored.error
        assert stored.error_status == fault.error_status and stored.error_code is None
        assert len(stored.error or "") < 200 and "Traceback" not in (stored.error or "")
        failures = [r for r in caplog.records if r.name == "chat.engine.engine" and r.levelno == logging.WARNING]
        assert failures and stored.error in failures[-1].getMessage()
        assert failures[-1].exc_info is not None  # the details (the SDK's exception, with its traceback) are logged
    else:
        assert stored.finish_reason == fault.finish_reason and stored.error is None
    assert not engine.busy(conversation_id) and message.status == stored.status

    # the app keeps serving: the next conversation, on a working upstream, is answered in full
    upstream.script = Script(tokens=3)
    healthy = make_engine(upstream.base_url)
    _, other = await healthy.send(None, "Still there?")
    assert (await healthy.live(other.id).wait()).status == Status.complete
    assert store.get_message(other.id).content == upstream.expected_text()


async def test_429_then_success_waits_retry_after_and_shows_retrying(make_engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(status=429, retry_after=1, status_times=1, tokens=5)
    engine = make_engine(upstream.base_url)
    started = time.monotonic()
    _, assistant = await engine.send(None, "hi")
    phases = [event.phase async for event in engine.follow(assistant.id) if isinstance(event, PhaseChanged)]
    message = engine.store.get_message(assistant.id)
    assert message.status == Status.complete and message.content == upstream.expected_text()
    assert len(upstream.requests) == 2
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert Phase.retrying in phases


async def test_503_twice_then_success_backs_off_and_completes(make_engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(status=503, status_times=2, tokens=5)
    engine = make_engine(upstream.base_url, retry_budget=10)
    _, assistant = await engine.send(None, "hi")
    message = await engine.live(assistant.id).wait()
    assert message.status == Status.complete and message.content == upstream.expected_text()
    assert len(upstream.requests) == 3


async def test_a_failure_after_text_has_streamed_is_never_retried(make_engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=10, drop_after=3)
    engine = make_engine(upstream.base_url, retries=5)
    _, assistant = await engine.send(None, "hi")
    message = await engine.live(assistant.id).wait()
    assert message.status == Status.error and message.content == upstream.expected_text(3)
    assert len(upstream.requests) == 1  # a retry would send the answer's start twice


async def test_server_rejecting_stream_options_is_asked_again_without_them(make_engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=4, reject_stream_options=True)
    engine = make_engine(upstream.base_url)
    _, assistant = await engine.send(None, "hi")
    message = await engine.live(assistant.id).wait()
    assert message.status == Status.complete and message.content == upstream.expected_text()
    assert message.completion_tokens == 4  # counted from the chunks when the server sends no usage
    assert ["stream_options" in body for body in upstream.requests] == [True, False]
    _, again = await engine.send(message.conversation_id, "and again")
    await engine.live(again.id).wait()
    assert "stream_options" not in upstream.requests[-1]  # remembered: one failed request per server, not per answer


# -- what the page shows ---------------------------------------------------------------------------------------------


@pytest.fixture
def fault_env(request: pytest.FixtureRequest, app_env: Path, upstream: FakeUpstream, monkeypatch) -> Iterator[Fault]:
    """The app's environment for one fault (set before the ``user`` fixture starts the app)."""
    fault = FAULTS[request.param]
    monkeypatch.setenv("OPENAI_BASE_URL", base_url_for(fault, upstream))
    monkeypatch.setenv("PARLEY_MODEL", fault.model)
    monkeypatch.setenv("PARLEY_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("PARLEY_READ_TIMEOUT", str(READ_TIMEOUT))
    monkeypatch.setenv("PARLEY_IDLE_TIMEOUT", str(IDLE_TIMEOUT))
    monkeypatch.setenv("PARLEY_RETRIES", str(RETRIES))
    monkeypatch.setenv("PARLEY_RETRY_BUDGET", str(RETRY_BUDGET))
    upstream.script = fault.script
    yield fault


@pytest.mark.parametrize("fault_env", [name for name, fault in FAULTS.items() if fault.reason], indirect=True)
async def test_fault_shows_a_short_reason_and_retry_on_the_page(
    fault_env: Fault, user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    fault = fault_env
    await user.open("/")
    await send(user, "Tell me a story.")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].status == fault.status, 10)
    await user.open("/c/1")
    await user.should_see("Tell me a story.")
    await user.should_see(fault.reason)
    if fault.kept:
        await user.should_see(upstream.expected_text(fault.kept).strip())
    user.find(marker="retry")  # raises unless exactly one Retry is shown
    if fault.base_url is None and fault.model == "fake-model":
        upstream.script = Script(pieces=["recovered"])
        user.find(marker="retry").click()
        await wait_for(lambda: stored_path(app_env)[-1].content == "recovered", 10)
        await user.should_see("2/2", retries=30)
