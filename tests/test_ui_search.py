"""The search palette (Ctrl+K or the drawer's Search button) and the drawer's filter, pin and archive, with NiceGUI's
simulated user on the real app.py and its SQLite database."""

from __future__ import annotations

from pathlib import Path

from nicegui import ui
from nicegui.testing import User

from chat.store import Status
from chat.ui.shortcuts import SHORTCUTS

from .helpers import opened_store, wait_for


def seed(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Three conversations (oldest first): title -> (conversation id, id of its first question)."""
    made = {}
    with opened_store(data_dir) as store:
        store.migrate()
        for title, question, answer in (
            ("Rivers of Europe", "Which river is the longest?", "The Volga, a walrus-free river."),
            ("Cooking eggs", "How long to boil a walrus egg?", "Walruses lay no eggs."),
            ("Tokyo trip", "東京タワーの高さは?", "333 m"),
        ):
            conversation = store.create_conversation(title=title)
            user, assistant = store.add_exchange(conversation.id, question, model="fake-model", temperature=0.5)
            store.finish_message(assistant.id, content=answer, status=Status.complete)
            made[title] = (conversation.id, user.id)
    return made


def hits(user: User) -> list[ui.link]:
    """The palette's results, in order."""
    [column] = user.find(marker="search-results").elements
    return [child for child in column.default_slot.children if isinstance(child, ui.link)]


def order(user: User) -> list[str]:
    """The markers of the drawer's main list, top to bottom."""
    [column] = user.find(marker="conversation-list").elements
    return [next(iter(child._markers)) for child in column.default_slot.children]


async def test_the_palette_finds_messages_and_links_to_them(user: User, app_env: Path) -> None:
    made = seed(app_env)
    await user.open("/")
    user.find(marker="search-button").click()
    await user.should_see(marker="search-dialog")
    user.find(marker="search-input").type("walrus")
    await user.should_see(marker="search-hit", retries=50)
    await user.should_see("3 results.", retries=50)
    links = hits(user)
    targets = [link.props["href"] for link in links]
    with opened_store(app_env) as store:  # the messages that hold "walrus"
        wanted = {f"/c/{m.conversation_id}?message={m.id}" for c in store.list_conversations()
                  for m in store.messages(c.id) if "walrus" in m.content.casefold()}  # fmt: skip
    assert len(wanted) == 3 and set(targets) == wanted
    assert f"/c/{made['Cooking eggs'][0]}?message={made['Cooking eggs'][1]}" in targets
    marks = [e.text for e in user.find(marker="search-results").elements.pop().descendants() if e.tag == "mark"]
    assert marks and {m.casefold() for m in marks} == {"walrus"}  # the matches, in <mark> elements, as text
    assert links[0].props["aria-selected"] == "true"
    user.find(marker="search-input").trigger("keydown.down.prevent")  # ↓ then Enter opens the second result
    await wait_for(lambda: links[1].props.get("aria-selected") == "true", what="the second result to be selected")
    assert links[0].props["aria-selected"] == "false"
    second = targets[1]
    user.find(marker="search-input").trigger("keydown.enter.prevent")
    conversation_id = int(second.split("/c/")[1].split("?")[0])
    title = next(t for t, (cid, _) in made.items() if cid == conversation_id)
    await user.should_see(marker="conversation-heading", content=title, retries=50)


async def test_the_palette_shows_cjk_hits_and_says_when_nothing_is_found(user: User, app_env: Path) -> None:
    made = seed(app_env)
    await user.open("/")
    user.find(marker="search-button").click()
    user.find(marker="search-input").type("タワー")
    await user.should_see("1 result.", retries=50)
    [link] = hits(user)
    assert link.props["href"] == f"/c/{made['Tokyo trip'][0]}?message={made['Tokyo trip'][1]}"
    user.find(marker="search-input").clear().type("<b>nowhere</b>")
    await user.should_see("No results.", retries=50)
    user.find(marker="search-input").clear().type("cooking")  # a title: the conversation itself
    await user.should_see("1 result.", retries=50)
    [link] = hits(user)
    assert link.props["href"] == f"/c/{made['Cooking eggs'][0]}"


async def test_ctrl_k_is_a_shortcut_and_listed(user: User, app_env: Path) -> None:
    assert any(s.action == "search" and s.keys == ("Ctrl+K",) for s in SHORTCUTS)
    seed(app_env)
    await user.open("/c/1")
    user.find(marker="shortcuts").trigger("help")  # ? or Ctrl+/
    await user.should_see(marker="shortcuts-dialog")
    await user.should_see("Search conversations")
    [shortcuts] = user.find(marker="shortcuts").elements
    assert {"action": "search", "keys": ["Ctrl+K"]} in shortcuts.props["shortcuts"]  # what shortcuts.js binds


async def test_the_drawer_filters_by_title(user: User, app_env: Path) -> None:
    made = seed(app_env)
    await user.open("/")
    with user.scope(marker="conversation-list"):
        await user.should_see("Cooking eggs")
    user.find(marker="conversation-filter").type("RIV")
    with user.scope(marker="conversation-list"):
        await user.should_see("Rivers of Europe")
        await user.should_not_see("Cooking eggs")
        await user.should_not_see("Tokyo trip")
    user.find(marker="conversation-filter").clear()
    with user.scope(marker="conversation-list"):
        await user.should_see("Tokyo trip")
    assert order(user) == [f"conversation-{made[t][0]}" for t in ("Tokyo trip", "Cooking eggs", "Rivers of Europe")]


async def test_pin_and_archive_move_rows(user: User, app_env: Path) -> None:
    made = seed(app_env)
    rivers, cooking, tokyo = (made[t][0] for t in ("Rivers of Europe", "Cooking eggs", "Tokyo trip"))
    await user.open("/")
    with user.scope(marker=f"conversation-{rivers}"):
        user.find(marker="conversation-menu").click()
        user.find(marker="pin-conversation").click()
    await wait_for(lambda: order(user)[0] == f"conversation-{rivers}", what="the pinned row on top")
    with opened_store(app_env) as store:
        assert store.get_conversation(rivers).pinned
    assert _pin_visible(user, rivers) and not _pin_visible(user, cooking)
    with user.scope(marker=f"conversation-{tokyo}"):
        user.find(marker="conversation-menu").click()
        user.find(marker="archive-conversation").click()
    await wait_for(lambda: f"conversation-{tokyo}" not in order(user), what="the archived row to leave the list")
    assert order(user) == [f"conversation-{rivers}", f"conversation-{cooking}"]
    with opened_store(app_env) as store:
        assert store.get_conversation(tokyo).archived
        assert [c.id for c in store.list_conversations(archived=False)] == [rivers, cooking]
    [section] = user.find(marker="show-archived").elements
    section.open()  # "Archived": read when opened
    with user.scope(marker="archived-list"):
        await user.should_see("Tokyo trip", retries=50)
    with user.scope(marker=f"conversation-{tokyo}"):
        user.find(marker="conversation-menu").click()
        user.find(marker="archive-conversation").click()  # now "Unarchive"
    await wait_for(lambda: f"conversation-{tokyo}" in order(user), what="the unarchived row back in the list")
    assert order(user) == [f"conversation-{rivers}", f"conversation-{tokyo}", f"conversation-{cooking}"]
    with user.scope(marker=f"conversation-{rivers}"):
        user.find(marker="conversation-menu").click()
        user.find(marker="pin-conversation").click()  # now "Unpin": the newest of the others, updated just now
    await wait_for(lambda: _unpinned(app_env, rivers), what="the conversation unpinned")
    await wait_for(lambda: not _pin_visible(user, rivers), what="the pin to go")
    assert order(user)[0] == f"conversation-{rivers}"


def _unpinned(data_dir: Path, conversation_id: int) -> bool:
    with opened_store(data_dir) as store:
        return not store.get_conversation(conversation_id).pinned


def _pin_visible(user: User, conversation_id: int) -> bool:
    [row] = user.find(marker=f"conversation-{conversation_id}").elements
    return any(child.visible for child in row.default_slot.children if "pinned" in child._markers)
