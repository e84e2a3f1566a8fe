"""Full-text search on a real SQLite file and a real PostgreSQL database (the ``store`` fixture runs each test on
both): the store's ``search`` and ``GET /api/search`` served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from alembic import command
from fastapi import FastAPI
from sqlalchemy import text

from chat.api import search as search_api
from chat.api.dependencies import ApiServices, install
from chat.auth import Accounts
from chat.engine import Engine
from chat.store import Status, Store
from chat.store.search import SearchPage, search, snippet
from chat.store.store import alembic_config

from .browser import free_port
from .helpers import wait_until


def said(store: Store, conversation_id: int, question: str, answer: str = "ok") -> tuple[int, int]:
    """Store one exchange; returns the ids of the question and the answer."""
    user, assistant = store.add_exchange(conversation_id, question, model="m", temperature=0.5)
    store.finish_message(assistant.id, content=answer, status=Status.complete)
    return user.id, assistant.id


def found(page: SearchPage) -> list[tuple[int, int | None]]:
    return [(hit.conversation_id, hit.message_id) for hit in page.hits]


def marked(page: SearchPage) -> list[str]:
    return [hit.marked("[", "]") for hit in page.hits]


def test_english_words_are_found_case_insensitively_with_their_matches_marked(store: Store) -> None:
    conversation = store.create_conversation(title="Cooking")
    question, answer = said(store, conversation.id, "How long do I boil an egg?", "Boil it for nine minutes. BOILING!")
    said(store, store.create_conversation(title="Other").id, "Nothing here about eggs", "none")
    page = search(store, "boil", owner=None)
    assert sorted(found(page)) == sorted([(conversation.id, question), (conversation.id, answer)])
    assert set(marked(page)) == {"How long do I [boil] an egg?", "[Boil] it for nine minutes. [BOIL]ING!"}
    assert {hit.role for hit in page.hits} == {"user", "assistant"}
    assert page.hits[0].title == "Cooking" and page.next_offset is None
    assert found(search(store, "boil nine", owner=None)) == [(conversation.id, answer)]  # every term must occur
    assert found(search(store, "boil zebra", owner=None)) == []
    assert found(search(store, "zebra", owner=None)) == []


def test_titles_are_found_and_come_first(store: Store) -> None:
    titled = store.create_conversation(title="Trip to Lisbon")
    said(store, titled.id, "What to pack?")
    other = store.create_conversation(title="Misc")
    message, _ = said(store, other.id, "Is Lisbon hilly?")
    page = search(store, "lisbon", owner=None)
    assert found(page) == [(titled.id, None), (other.id, message)]
    assert page.hits[0].role is None and marked(page)[0] == "Trip to [Lisbon]"
    store.update_conversation(titled.id, title="Trip to Porto")  # a renamed title is found by its new words only
    assert found(search(store, "lisbon", owner=None)) == [(other.id, message)]
    assert found(search(store, "porto", owner=None)) == [(titled.id, None)]


def test_cjk_text_is_found_by_long_and_short_terms(store: Store) -> None:
    conversation = store.create_conversation(title="旅行")
    japanese, chinese = said(store, conversation.id, "東京タワーは何メートルですか", "北京烤鸭很好吃")
    korean, _ = said(store, conversation.id, "서울에서 부산까지 얼마나 걸려요?")
    assert found(search(store, "タワー", owner=None)) == [(conversation.id, japanese)]
    assert marked(search(store, "タワー", owner=None)) == ["東京[タワー]は何メートルですか"]
    assert found(search(store, "烤鸭", owner=None)) == [(conversation.id, chinese)]  # two characters: no trigram
    assert found(search(store, "東", owner=None)) == [(conversation.id, japanese)]  # one
    assert found(search(store, "부산까지", owner=None)) == [(conversation.id, korean)]
    assert found(search(store, "旅行", owner=None)) == [(conversation.id, None)]
    assert found(search(store, "東京 メートル", owner=None)) == [(conversation.id, japanese)]


def test_punctuation_is_literal_and_like_wildcards_match_only_themselves(store: Store) -> None:
    conversation = store.create_conversation(title="Code")
    cpp, _ = said(store, conversation.id, "Is C++ faster than C?")
    call, _ = said(store, conversation.id, "Call foo.bar() then s[::-1]")
    percent, _ = said(store, conversation.id, "I am 100% sure; it's a_b here")
    said(store, conversation.id, '1000 sure, it is axb and "quoted"')
    assert found(search(store, "c++", owner=None)) == [(conversation.id, cpp)]
    assert found(search(store, "foo.bar()", owner=None)) == [(conversation.id, call)]
    assert found(search(store, "[::-1]", owner=None)) == [(conversation.id, call)]
    assert found(search(store, "0%", owner=None)) == [(conversation.id, percent)]  # short: LIKE, % escaped
    assert found(search(store, "100%", owner=None)) == [(conversation.id, percent)]
    assert found(search(store, "a_b", owner=None)) == [(conversation.id, percent)]  # not "axb"
    assert found(search(store, "it's", owner=None)) == [(conversation.id, percent)]
    assert len(search(store, '"quoted"', owner=None).hits) == 1
    assert found(search(store, '" OR "', owner=None)) == []  # FTS5 syntax in the query is only text
    assert found(search(store, "NEAR(x", owner=None)) == []


def test_a_user_finds_only_their_own_conversations(store: Store) -> None:
    alice = store.create_user("alice", "x").id
    bob = store.create_user("bob", "x").id
    hers = store.create_conversation(title="Secret plans", user_id=alice)
    message, _ = said(store, hers.id, "the password is swordfish")
    his = store.create_conversation(title="Bob's", user_id=bob)
    said(store, his.id, "hello there")
    assert found(search(store, "swordfish", owner=alice)) == [(hers.id, message)]
    assert found(search(store, "swordfish", owner=bob)) == []
    assert found(search(store, "secret", owner=bob)) == []
    assert found(search(store, "sw", owner=bob)) == []  # the LIKE path filters by owner too
    assert found(search(store, "hello", owner=bob)) == [(his.id, search(store, "hello", owner=None).hits[0].message_id)]
    assert len(search(store, "swordfish", owner=None).hits) == 1  # personal mode: everything


def test_a_message_on_a_branch_that_is_not_shown_is_found(store: Store) -> None:
    conversation = store.create_conversation(title="Branches")
    _, first = said(store, conversation.id, "Name a colour", "Vermilion")
    variant = store.add_variant(first, model="m", temperature=1.0)
    store.finish_message(variant.id, content="Turquoise", status=Status.complete)
    assert [m.content for m in store.path(conversation.id)][-1] == "Turquoise"  # "Vermilion" is not shown
    assert found(search(store, "vermilion", owner=None)) == [(conversation.id, first)]
    assert found(search(store, "turquoise", owner=None)) == [(conversation.id, variant.id)]


def test_the_index_follows_changes_and_deletions(store: Store) -> None:
    conversation = store.create_conversation(title="Live")
    answer = store.add_exchange(conversation.id, "question", model="m", temperature=0.5)[1].id
    store.checkpoint(answer, "partial answ")  # a streaming answer's checkpoint is searchable
    assert found(search(store, "partial", owner=None)) == [(conversation.id, answer)]
    store.finish_message(answer, content="final words", status=Status.complete)
    assert found(search(store, "partial", owner=None)) == []
    assert found(search(store, "final words", owner=None)) == [(conversation.id, answer)]
    store.delete_conversation(conversation.id)  # its messages go by ON DELETE CASCADE
    assert found(search(store, "final", owner=None)) == []
    assert found(search(store, "live", owner=None)) == []
    user = store.create_user("carol", "x").id
    said(store, store.create_conversation(user_id=user, title="t").id, "carol's notebook")
    store.delete_user(user)
    assert found(search(store, "notebook", owner=None)) == []


def test_short_and_blank_queries(store: Store) -> None:
    conversation = store.create_conversation(title="Short")
    message, _ = said(store, conversation.id, "go to Xi'an by train")
    assert found(search(store, "xi", owner=None)) == [(conversation.id, message)]
    assert found(search(store, "X", owner=None)) == [(conversation.id, message)]
    assert found(search(store, "xi train", owner=None)) == [(conversation.id, message)]  # short and long mixed
    assert found(search(store, "xi zz", owner=None)) == []
    assert search(store, "   ", owner=None).hits == [] and search(store, "", owner=None).next_offset is None
    with pytest.raises(ValueError):
        search(store, "go", owner=None, limit=0)
    with pytest.raises(ValueError):
        search(store, "go", owner=None, offset=-1)


def test_pages_cover_every_hit_once(store: Store) -> None:
    titled = [store.create_conversation(title=f"Paging {i}").id for i in range(3)]
    conversation = store.create_conversation(title="many")
    ids = {said(store, conversation.id, f"paging message number {i}")[0] for i in range(22)}
    seen: list[tuple[int, int | None]] = []
    offsets = []
    offset: int | None = 0
    while offset is not None:
        page = search(store, "paging", owner=None, limit=10, offset=offset)
        offsets.append(offset)
        seen += found(page)
        offset = page.next_offset
    assert offsets == [0, 10, 20]
    assert len(seen) == len(set(seen)) == 25
    assert seen[:3] == [(t, None) for t in sorted(titled, reverse=True)]  # title hits first (same rank: newest)
    assert {m for _, m in seen[3:]} == ids
    assert search(store, "paging", owner=None, limit=3, offset=2).hits[1].message_id is not None  # titles, then
    assert search(store, "paging", owner=None, limit=25).next_offset is None


def test_denser_and_shorter_matches_rank_higher(store: Store) -> None:
    conversation = store.create_conversation(title="Ranking")
    filler = " ".join(f"word{i}" for i in range(120))
    long_one, _ = said(store, conversation.id, f"{filler} kumquat {filler}")
    short_one, _ = said(store, conversation.id, "kumquat kumquat jam")
    page = search(store, "kumquat", owner=None)
    assert found(page) == [(conversation.id, short_one), (conversation.id, long_one)]
    far = page.hits[1]
    assert far.snippet.startswith("…") and far.snippet.endswith("…") and len(far.snippet) <= 170
    assert [far.snippet[a:b] for a, b in far.spans] == ["kumquat"]


def test_the_migration_indexes_rows_that_existed_before_it(database_url: str) -> None:
    store = Store(database_url)
    try:
        command.upgrade(alembic_config(store.engine), "0006")
        with store.engine.begin() as connection:  # rows as a 0006 database holds them (SQL: the models are newer)
            conversation_id = connection.execute(text(
                "INSERT INTO conversation (title, system_prompt, temperature, pinned, archived, created_at, updated_at)"
                " VALUES ('Before search', '', 0.7, false, false, :now, :now) RETURNING id"
            ), {"now": "2026-12-01 00:00:00"}).scalar_one()  # fmt: skip
            message = connection.execute(text(
                "INSERT INTO message (conversation_id, selected, role, content, status, created_at)"
                " VALUES (:conversation, true, 'user', 'an old walrus message', 'complete', :now) RETURNING id"
            ), {"conversation": conversation_id, "now": "2026-12-01 00:00:00"}).scalar_one()  # fmt: skip
        store.migrate()
        assert found(search(store, "walrus", owner=None)) == [(conversation_id, message)]
        assert found(search(store, "before", owner=None)) == [(conversation_id, None)]
        with store.engine.connect() as connection:
            assert _index_objects(connection) == 2
        command.downgrade(alembic_config(store.engine), "0006")  # drops them
        with store.engine.connect() as connection:
            assert _index_objects(connection) == 0
        store.migrate()  # and up again: everything indexed anew
        assert found(search(store, "walrus", owner=None)) == [(conversation_id, message)]
    finally:
        store.close()


def _index_objects(connection) -> int:
    """How many of the search index's FTS tables (SQLite) or trigram indexes (PostgreSQL) exist."""
    if connection.dialect.name == "sqlite":
        sql = "SELECT count(*) FROM sqlite_master WHERE name IN ('message_fts', 'conversation_fts')"
    else:
        sql = ("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
               "AND indexname IN ('ix_message_content_trgm', 'ix_conversation_title_trgm')")  # fmt: skip
    return connection.execute(text(sql)).scalar()


def test_a_snippet_is_plain_text_around_the_first_match() -> None:
    content = "<b>x</b>\n\n" + "a " * 100 + "Needle   in\tthe haystack " + "z " * 200
    text_, spans = snippet(content, ("needle", "the"))
    assert text_.startswith("…") and text_.endswith("…") and "\n" not in text_ and "  " not in text_
    assert [text_[a:b] for a, b in spans] == ["Needle", "the"]
    start, spans = snippet("<b>tag</b> here", ("tag",))
    assert start == "<b>tag</b> here" and spans == ((3, 6),)  # kept as text: the page escapes it


# -- the API -------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def team_api(store: Store, engine: Engine) -> Iterator[tuple[str, dict[str, str], dict[str, int]]]:
    """``/api/search`` in team mode on the test's store: (URL, API token by user name, user id by name)."""
    accounts = Accounts(store, enabled=True)
    users = {name: accounts.add_user(name, "correct horse battery staple") for name in ("alice", "bob")}
    tokens = {}
    for name, user in users.items():
        from chat.engine import Account

        tokens[name] = accounts.create_token(Account(user_id=user.id, name=name), "t").secret
    app = FastAPI()
    install(app, ApiServices(engine, store, accounts))
    app.include_router(search_api.router)
    with serving(app) as url:
        yield url, tokens, {name: user.id for name, user in users.items()}


def test_api_search_pages_and_finds_only_the_callers_messages(store: Store, team_api) -> None:
    url, tokens, ids = team_api
    hers = store.create_conversation(title="Alice's garden", user_id=ids["alice"])
    found_ids = [said(store, hers.id, f"tomatoes and basil {i}")[0] for i in range(3)]
    his = store.create_conversation(title="Bob", user_id=ids["bob"])
    said(store, his.id, "a note")
    with httpx.Client(base_url=url, timeout=15) as client:
        assert client.get("/api/search", params={"q": "tomatoes"}).status_code == 401
        alice = {"Authorization": f"Bearer {tokens['alice']}"}
        bob = {"Authorization": f"Bearer {tokens['bob']}"}
        first = client.get("/api/search", params={"q": "Tomatoes", "limit": 2}, headers=alice)
        assert first.status_code == 200
        body = first.json()
        assert body["next_offset"] == 2 and len(body["hits"]) == 2
        hit = body["hits"][0]
        assert hit["conversation_id"] == hers.id and hit["role"] == "user" and hit["title"] == "Alice's garden"
        assert hit["url"] == f"/c/{hers.id}?message={hit['message_id']}"
        assert [hit["snippet"][a:b] for a, b in hit["spans"]] == ["tomatoes"]
        rest = client.get("/api/search", params={"q": "tomatoes", "limit": 2, "offset": 2}, headers=alice).json()
        assert rest["next_offset"] is None
        assert sorted(h["message_id"] for h in body["hits"] + rest["hits"]) == sorted(found_ids)
        title = client.get("/api/search", params={"q": "garden"}, headers=alice).json()["hits"]
        assert [(h["message_id"], h["url"]) for h in title] == [(None, f"/c/{hers.id}")]
        for query in ("tomatoes", "garden", "to", "basil 1"):  # another user's text: nothing, whatever the path
            assert client.get("/api/search", params={"q": query}, headers=bob).json() == {
                "hits": [],
                "next_offset": None,
            }
        assert client.get("/api/search", params={"q": "x", "limit": 0}, headers=alice).status_code == 422
        assert client.get("/api/search", params={"q": "x", "offset": -1}, headers=alice).status_code == 422
        assert client.get("/api/search", headers=alice).status_code == 422  # q is required
