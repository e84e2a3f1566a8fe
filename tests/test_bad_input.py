"""Bad input: nothing a user typed is lost, and what cannot be stored as typed is said, not dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from nicegui.testing import User

from chat.engine import Engine, MessageTooLong, clean_text
from chat.store import Status, Store

from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, send, stored_path, wait_for


@pytest.fixture
def short_limit(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """The app started with a 50-character message limit."""
    monkeypatch.setenv("PARLEY_MAX_MESSAGE_LENGTH", "50")
    return 50


async def test_a_message_over_the_limit_is_refused_and_stays_in_the_composer(
    short_limit: int, user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    too_long = "x" * (short_limit + 1)
    await user.open("/")
    await send(user, too_long)
    await user.should_see("This message is 51 characters long; the limit is 50.")
    assert user.find(marker="composer").elements.pop().value == too_long
    with opened_store(app_env) as store:
        assert store.list_conversations() == []
    assert upstream.requests == []
    upstream.script = Script(pieces=["ok"])
    user.find(marker="composer").clear()
    await send(user, "x" * short_limit)  # exactly the limit is fine
    await wait_for(lambda: stored_path(app_env) and stored_path(app_env)[-1].status == Status.complete)


async def test_engine_refuses_over_the_limit_before_storing(store: Store, upstream: FakeUpstream) -> None:
    from chat.provider import Provider

    provider = Provider(upstream.base_url, "k")
    engine = Engine(store, provider, default_model="fake-model", max_message_length=10)
    with pytest.raises(MessageTooLong, match="11 characters long; the limit is 10"):
        await engine.send(None, "01234567890")
    assert store.list_conversations() == [] and upstream.requests == []
    await provider.close()


CONTROL = "bell\a esc\x1b[31m tab\t cr\r lf\n del\x7f c1\x85 bom\ufeff zwj\u200d rlo\u202e end"


async def test_control_characters_are_kept_and_unstorable_ones_become_replacement_characters(
    engine: Engine, store: Store, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["nul\x00 here, ", "lone \ud83d surrogate, ", CONTROL])
    user, assistant = await engine.send(None, f"{CONTROL} nul\x00 lone\udc00")
    await engine.live(assistant.id).wait()
    assert store.get_message(user.id).content == f"{CONTROL} nul\ufffd lone\ufffd"
    assert store.get_message(assistant.id).content == f"nul\ufffd here, lone \ufffd surrogate, {CONTROL}"
    assert upstream.requests[0]["messages"][-1]["content"] == f"{CONTROL} nul\ufffd lone\ufffd"


def test_clean_text_replaces_only_nul_and_lone_surrogates() -> None:
    assert clean_text("a\x00b\ud800c\udfffd") == "a\ufffdb\ufffdc\ufffdd"
    text = "👍🏽 👨‍👩‍👧 漢字 العربية עברית e\u0301 \t\r\n\x1b"
    assert clean_text(text) is text  # nothing to replace: the very same string
