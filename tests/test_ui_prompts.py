"""The ``/`` prompt library and the start page's presets, with NiceGUI's simulated user on the real app.py, the fake
upstream and a real SQLite file (personal mode)."""

from __future__ import annotations

from pathlib import Path

from nicegui.testing import User

from chat.engine import LOCAL
from chat.store import prompts as library

from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store, send, stored_path, wait_for


async def test_slash_inserts_a_saved_prompt_with_its_placeholders_filled(user: User, app_env: Path) -> None:
    with opened_store(app_env) as store:
        library.create_prompt(store, LOCAL, name="Translate", text="Translate {{text}} into {{language}}.")
        library.create_prompt(store, LOCAL, name="Summarize", text="Summarize this briefly.")
    await user.open("/")
    composer = user.find(marker="composer")
    composer.type("/")
    await user.should_see(marker="slash-menu")
    await user.should_see("Summarize")
    composer.type("tra")  # filtered as typed
    await user.should_see("Translate")
    await user.should_not_see("Summarize")
    composer.trigger("keydown.enter.exact.prevent", "/tra")  # Enter chooses, does not send
    await user.should_see(marker="placeholder-form")
    user.find(marker="placeholder-text").type("good morning")
    user.find(marker="placeholder-language").type("Portuguese")
    user.find(marker="placeholder-insert").click()
    assert composer.elements.pop().value == "Translate good morning into Portuguese."
    with opened_store(app_env) as store:
        assert store.list_conversations() == []  # inserted, not sent

    # after a space, with arrow keys: Down twice wraps back to the first match; without placeholders it goes in at once
    box = user.find(marker="composer").elements.pop()
    box.value = "Please: "
    user.find(marker="composer").type("/")
    await user.should_see("Summarize")
    user.find(marker="composer").trigger("keydown.down").trigger("keydown.down")
    user.find(marker="composer").trigger("keydown.enter.exact.prevent", "Please: /")
    await wait_for(lambda: box.value == "Please: Summarize this briefly.", what="the prompt inserted")
    user.find(marker="composer").type(" /zzz")
    await user.should_see("No saved prompt matches")
    user.find(marker="composer").trigger("keydown.esc")
    await user.should_not_see(marker="slash-menu")


async def test_a_preset_starts_the_conversation_with_its_settings(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    with opened_store(app_env) as store:
        library.create_preset(store, LOCAL, name="Code reviewer", system_prompt="Review code strictly.",
                              model="fake-model", temperature=0.25)  # fmt: skip
    upstream.script = Script(pieces=["Looks ", "fine."])
    await user.open("/")
    await user.should_see("Code reviewer")  # read in a thread once the page is built
    user.find("Code reviewer").click()
    await send(user, "def f(): pass")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].content == "Looks fine.")
    with opened_store(app_env) as store:
        (conversation,) = store.list_conversations()
    assert (conversation.system_prompt, conversation.model, conversation.temperature) == (
        "Review code strictly.", "fake-model", 0.25)  # fmt: skip
    request = upstream.requests[-1]
    assert request["messages"][0] == {"role": "system", "content": "Review code strictly."}
    assert request["model"] == "fake-model" and request["temperature"] == 0.25


async def test_the_default_preset_is_chosen_and_default_means_none(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    with opened_store(app_env) as store:
        library.create_preset(store, LOCAL, name="Poet", system_prompt="Rhyme.", temperature=1.5, is_default=True)
    upstream.script = Script(pieces=["ok"])
    await user.open("/")
    await user.should_see("Poet")
    await send(user, "a poem")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].content == "ok")
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Rhyme."}
    assert upstream.requests[-1]["temperature"] == 1.5

    await user.open("/")
    await user.should_see("Poet")
    user.find("Default").click()
    await send(user, "plain")
    await wait_for(lambda: len(upstream.requests) == 2)
    assert upstream.requests[-1]["messages"][0]["role"] == "user"  # no system prompt


async def test_prompts_and_presets_are_managed_in_their_dialogs(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await user.open("/")
    user.find(marker="composer").type("/")
    await user.should_see("No saved prompt matches")
    user.find(marker="manage-prompts").click()
    await user.should_see(marker="prompts-dialog")
    user.find(marker="prompt-name").type("Greet")
    user.find(marker="prompt-text").type("Hello {{who}}")
    user.find(marker="prompt-save").click()
    await user.should_see(marker="prompt-row")
    with opened_store(app_env) as store:
        assert [(p.name, p.text) for p in library.list_prompts(store, LOCAL)] == [("Greet", "Hello {{who}}")]
    user.find(marker="prompt-delete").click()
    await user.should_not_see(marker="prompt-row")
    with opened_store(app_env) as store:
        assert library.list_prompts(store, LOCAL) == []

    user.find(marker="manage-presets").click()
    await user.should_see(marker="presets-dialog")
    user.find(marker="preset-name").type("Tools off")
    user.find(marker="preset-system").type("No tools here.")
    user.find(marker="preset-default").click()
    user.find(marker="preset-save").click()
    await user.should_see(marker="preset-row")
    with opened_store(app_env) as store:
        (preset,) = library.list_presets(store, LOCAL)
        assert (preset.name, preset.system_prompt, preset.is_default) == ("Tools off", "No tools here.", True)
        library.update_preset(store, LOCAL, preset.id, tools=[])  # tools come from the API (no tool picker here)

    upstream.script = Script(pieces=["done"])
    await user.open("/")  # the default preset is chosen; its tools apply to the first answer
    await user.should_see("Tools off")  # the presets are read in a thread once the page is built
    await send(user, "hello")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].content == "done")
    with opened_store(app_env) as store:
        (conversation,) = store.list_conversations()
    assert (conversation.system_prompt, conversation.tools) == ("No tools here.", [])
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "No tools here."}
    assert "tools" not in upstream.requests[-1]


async def test_a_preset_keeps_the_tools_chosen_in_its_dialog(user: User, app_env: Path) -> None:
    await user.open("/")
    user.find(marker="manage-presets").click()
    await user.should_see(marker="presets-dialog")
    user.find(marker="preset-name").type("Maths")
    picker = user.find(marker="preset-tools").elements.pop()
    assert "calculator" in picker.options  # the built-in tools this account may turn on
    picker.value = ["calculator"]
    user.find(marker="preset-save").click()
    await user.should_see("Maths")

    def saved() -> list | None:
        with opened_store(app_env) as store:
            presets = library.list_presets(store, LOCAL)
        return presets[0].tools if presets else None

    await wait_for(lambda: saved() == ["calculator"], what="the preset's tools stored")
