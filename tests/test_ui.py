"""The pages with NiceGUI's simulated user, on the real app.py, the fake upstream and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from nicegui.testing import User

from chat.store import Role, Status

from .fake_upstream import FakeUpstream, Script
from .helpers import handlers_done, not_found, opened_store, send, stored_path, wait_for


async def start_conversation(user: User, data_dir: Path, text: str, status: Status = Status.complete) -> None:
    """From the start page, send ``text``, wait for the answer to end with ``status``, open the conversation."""
    await user.open("/")
    await send(user, text)
    await wait_for(lambda: len(stored_path(data_dir)) == 2 and stored_path(data_dir)[1].status == status)
    await user.open("/c/1")


async def test_send_streams_answer_and_stores_it(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    await user.open("/")
    await user.should_see("fake-model")  # the start page says which model answers
    await send(user, "Hello Parley")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].status == Status.complete)
    await user.open("/c/1")
    await user.should_see("Hello Parley")
    await user.should_see(upstream.expected_text().strip())
    path = stored_path(app_env)
    assert [m.role for m in path] == [Role.user, Role.assistant]
    assert path[1].content == upstream.expected_text()
    await user.should_see(marker="conversation-1")


async def test_answer_grows_live_on_the_open_page_and_stop(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    upstream.script = Script(pieces=["short ", "one"])
    await start_conversation(user, app_env, "first")
    upstream.script = Script(tokens=400, rate=40)
    await send(user, "tell me a long story")
    await wait_for(lambda: len(stored_path(app_env)) == 4)
    await user.should_see(FakeUpstream.token(5).strip(), retries=50)
    # while it streams, Send has become Stop
    await user.should_see(marker="stop")
    await user.should_not_see(marker="send")
    user.find(marker="stop").click()
    await wait_for(lambda: stored_path(app_env)[-1].status == Status.cancelled)
    await user.should_see("Stopped", retries=30)
    await user.should_see(marker="retry")
    partial = stored_path(app_env)[-1].content
    assert partial and upstream.expected_text().startswith(partial) and len(partial) < len(upstream.expected_text())
    await user.should_see(marker="send")
    await user.should_not_see(marker="stop")
    assert await upstream.streams[-1].wait_ended(2.0) and upstream.streams[-1].client_disconnected


async def test_composer_keeps_text_when_refused_and_ignores_blank(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await user.open("/")
    await send(user, "   ")
    await user.should_see("Type a message first.")
    with opened_store(app_env) as store:
        assert store.list_conversations() == []
    upstream.script = Script(pieces=["fine"])
    await send(user, "start")
    await wait_for(lambda: stored_path(app_env) and stored_path(app_env)[-1].status == Status.complete)
    await user.open("/c/1")
    upstream.script = Script(tokens=300, rate=30)
    await send(user, "one")
    await wait_for(lambda: len(stored_path(app_env)) == 4)
    await user.should_see(FakeUpstream.token(2).strip(), retries=50)
    user.find(marker="composer").type("two, typed while it streams")
    user.find(marker="composer").trigger("keydown.enter.exact.prevent")
    await user.should_see("Wait for the current answer to finish")
    assert user.find(marker="composer").elements.pop().value == "two, typed while it streams"
    user.find(marker="stop").click()
    await wait_for(lambda: stored_path(app_env)[-1].status == Status.cancelled)


async def test_regenerate_at_another_temperature_and_navigate_variants(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["first ", "answer"])
    await start_conversation(user, app_env, "question")
    await user.should_see("first answer")
    upstream.script = Script(pieces=["second ", "answer"])
    await user.should_not_see(marker="regenerate-temperature")  # the menu is built on the first click only
    user.find(marker="regenerate-menu").click()
    slider = user.find(marker="regenerate-temperature").elements.pop()
    slider.value = 1.5
    user.find(marker="regenerate").click()
    await wait_for(lambda: stored_path(app_env)[-1].content == "second answer")
    await wait_for(lambda: stored_path(app_env)[-1].status == Status.complete)
    await user.should_see("second answer", retries=30)
    await user.should_see("2/2", retries=30)
    assert upstream.requests[-1]["temperature"] == 1.5
    with opened_store(app_env) as store:
        variants = store.variants(stored_path(app_env)[-1].id)
    assert [v.content for v in variants] == ["first answer", "second answer"]
    assert variants[1].temperature == 1.5
    user.find(marker="variant-previous").click()
    await user.should_see("1/2", retries=30)
    await user.should_see("first answer")
    await user.should_not_see("second answer")
    assert stored_path(app_env)[-1].content == "first answer"
    user.find(marker="variant-next").click()
    await user.should_see("2/2", retries=30)
    await user.should_see("second answer")


async def test_rename_and_delete_conversation(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    await start_conversation(user, app_env, "about rivers")
    with user.scope(marker="conversation-list"):
        await user.should_see("about rivers")
        user.find(marker="conversation-menu").click()  # the menu is built on the first click
        user.find(marker="rename-conversation").click()
    await user.should_see(marker="rename-input")
    user.find(marker="rename-input").clear().type("Rivers and lakes")
    user.find(marker="rename-save").click()
    with user.scope(marker="conversation-list"):
        await user.should_see("Rivers and lakes", retries=30)
    with opened_store(app_env) as store:
        assert store.get_conversation(1).title == "Rivers and lakes"
    await user.should_see(marker="conversation-heading", content="Rivers and lakes")
    with user.scope(marker="conversation-list"):
        user.find(marker="conversation-menu").click()  # the menu is built on the first click
        user.find(marker="delete-conversation").click()
    await user.should_see("This cannot be undone")
    user.find(marker="confirm-delete").click()
    await wait_for(lambda: not _conversations(app_env))
    await user.should_see(marker="welcome", retries=30)


def _conversations(data_dir: Path) -> list:
    with opened_store(data_dir) as store:
        return store.list_conversations()


async def test_refresh_shows_the_same_conversation_and_reattaches_to_live_answer(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await user.open("/")
    upstream.script = Script(tokens=60, rate=40)
    await send(user, "stream slowly")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].content != "")
    await user.open("/c/1")  # a refresh while it streams: attaches to the live answer
    await user.should_see("stream slowly")
    await user.should_see(FakeUpstream.token(59).strip(), retries=100)
    await wait_for(lambda: stored_path(app_env)[-1].status == Status.complete)
    await user.open("/c/1")
    await user.should_see(upstream.expected_text().strip())
    await user.should_see(marker="message-details")


async def test_settings_change_system_prompt_model_and_temperature(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await start_conversation(user, app_env, "hi")
    user.find(marker="settings").click()
    await user.should_see(marker="system-prompt")
    user.find(marker="system-prompt").type("Answer like a pirate.")
    user.find(marker="model").elements.pop().value = "other-model"
    user.find(marker="temperature").elements.pop().value = 0.2
    user.find(marker="settings-save").click()
    await user.should_see("Settings saved")
    with opened_store(app_env) as store:
        conversation = store.get_conversation(1)
    assert (conversation.system_prompt, conversation.model, conversation.temperature) == (
        "Answer like a pirate.",
        "other-model",
        0.2,
    )
    await send(user, "again")
    await wait_for(lambda: len(stored_path(app_env)) == 4 and stored_path(app_env)[-1].status == Status.complete)
    request = upstream.requests[-1]
    assert request["model"] == "other-model" and request["temperature"] == 0.2
    assert request["messages"][0] == {"role": "system", "content": "Answer like a pirate."}


async def test_error_state_is_shown_with_retry(user: User, app_env: Path, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=10, drop_after=3)
    await start_conversation(user, app_env, "hi", Status.error)
    await user.should_see("broke in the middle of the answer")
    await user.should_see(upstream.expected_text(3).strip())
    upstream.script = Script(pieces=["recovered"])
    user.find(marker="retry").click()
    await wait_for(lambda: stored_path(app_env)[-1].content == "recovered")
    await user.should_see("2/2", retries=30)


async def test_unknown_conversation_says_so(user: User) -> None:
    assert "This conversation does not exist" in await not_found(user, "/c/999")


async def test_reopened_page_attaches_to_live_answer_and_delete_stops_it(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["ready"])
    await start_conversation(user, app_env, "hello")
    upstream.script = Script(tokens=400, rate=40)
    await send(user, "a long one")
    await wait_for(lambda: len(stored_path(app_env)) == 4)
    await user.open("/c/1")  # a second page on the same conversation attaches to the live answer
    await user.should_see(FakeUpstream.token(8).strip(), retries=100)
    await user.should_see(marker="stop")
    with user.scope(marker="conversation-list"):
        user.find(marker="conversation-menu").click()  # the menu is built on the first click
        user.find(marker="delete-conversation").click()
    await user.should_see("This cannot be undone")
    user.find(marker="confirm-delete").click()
    await user.should_see(marker="welcome", retries=50)
    assert not _conversations(app_env)
    record = upstream.streams[-1]
    assert await record.wait_ended(2.0) and record.client_disconnected  # deleting stopped the generation


async def test_long_conversation_opens_at_the_newest_and_loads_earlier_on_demand(user: User, app_env: Path) -> None:
    with opened_store(app_env) as store:
        conversation_id = store.create_conversation(title="Long").id
        for i in range(50):  # 100 messages
            _, answer = store.add_exchange(conversation_id, f"question {i:02d}", model="fake-model", temperature=0.7)
            store.finish_message(answer.id, content=f"answer {i:02d}", status=Status.complete)
    await user.open(f"/c/{conversation_id}")
    await user.should_see("answer 49")
    await user.should_see("question 30")  # the newest 40 messages: questions and answers 30 to 49
    await user.should_not_see("answer 29")
    await user.should_see(marker="show-earlier")
    user.find(marker="show-earlier").click()
    await user.should_see("question 10")
    await user.should_not_see("answer 09")
    user.find(marker="show-earlier").click()
    await user.should_see("question 00")
    await user.should_not_see(marker="show-earlier")
    labels = [e.text for e in user.find(marker="user-message").elements]
    assert len(labels) == 50


async def test_a_double_enter_on_the_start_page_starts_one_conversation(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["once"])
    await user.open("/")
    user.find(marker="composer").type("only once")
    async with handlers_done():  # whatever the two Enters do, they have done it once their handlers end
        user.find(marker="composer").trigger("keydown.enter.exact.prevent")
        user.find(marker="composer").trigger("keydown.enter.exact.prevent")  # while the first is being stored
    await wait_for(lambda: stored_path(app_env) and stored_path(app_env)[-1].status == Status.complete)
    with opened_store(app_env) as store:
        assert len(store.list_conversations()) == 1
    assert len(upstream.requests) == 1


async def test_an_example_prompt_on_the_start_page_is_sent_as_typed(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["Lisbon ", "in three days."])
    await user.open("/")
    await user.should_see(marker="welcome-model")  # the model that answers: the upstream's, no built-in hint
    await user.should_not_see(marker="welcome-hint")
    examples = user.find(marker="example-prompt").elements
    assert len(examples) == 4
    example = next(e for e in examples if "Lisbon" in e.text)
    user.find(marker="example-prompt", content=example.text).click()
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].status == Status.complete)
    assert stored_path(app_env)[0].content == example.text
    await user.should_not_see(marker="welcome")
    await user.should_see(marker="conversation-heading", content=example.text[:20])
    await user.should_see("in three days.")


async def test_shortcut_events_stop_regenerate_and_open_the_list(
    user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    upstream.script = Script(pieces=["first answer"])
    await start_conversation(user, app_env, "hello")
    upstream.script = Script(pieces=["second answer"])
    user.find(marker="shortcuts").trigger("regenerate")  # Alt+R in the browser
    await wait_for(lambda: stored_path(app_env)[-1].content == "second answer")
    with opened_store(app_env) as store:
        assert [m.content for m in store.messages(1) if m.role == Role.assistant] == ["first answer", "second answer"]
    await user.should_see(marker="variant-position", content="2/2")

    upstream.script = Script(tokens=400, rate=40)
    await send(user, "a long one")
    await wait_for(lambda: len(stored_path(app_env)) == 4)
    await user.should_see(marker="stop")
    user.find(marker="shortcuts").trigger("stop")  # Esc in the browser, while the answer streams
    await wait_for(lambda: stored_path(app_env)[-1].status == Status.cancelled)
    await user.should_see(marker="send", retries=30)

    user.find(marker="shortcuts").trigger("help")  # ? or Ctrl+/
    await user.should_see(marker="shortcuts-dialog")
    await user.should_see("Regenerate the last answer")
    await user.should_see("Copy the last answer")


async def test_regenerate_shortcut_without_an_answer_says_so(user: User, app_env: Path) -> None:
    await user.open("/")
    user.find(marker="shortcuts").trigger("regenerate")
    await user.should_see("There is no answer to regenerate yet.")
    user.find(marker="shortcuts-button").click()  # the header's keyboard button opens the list too
    await user.should_see(marker="shortcuts-dialog")
