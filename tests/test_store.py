"""Storage on a real SQLite file and a real PostgreSQL database: migrations, pragmas, variants, recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from chat.store import NotFound, Role, Status, Store
from chat.store.search import include_name
from chat.store.store import normalize_url


def test_migration_from_empty_database_to_head_matches_the_models(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'new' / 'parley.db'}")
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        assert context.get_current_revision() == "0010"
        assert compare_metadata(context, SQLModel.metadata) == []
    store.close()
    tables = {
        row[0] for row in sqlite3.connect(tmp_path / "new" / "parley.db").execute("select name from sqlite_master")
    }
    assert {"conversation", "message", "alembic_version"} <= tables


def test_migration_on_a_new_postgresql_database_matches_the_models(postgres_server) -> None:
    store = Store(postgres_server.create_database())  # its own database: the public schema, as a real deployment
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        assert context.get_current_revision() == "0010"
        assert compare_metadata(context, SQLModel.metadata) == []
        assert {"conversation", "message", "alembic_version"} <= set(inspect(connection).get_table_names())
    store.close()


def test_a_postgresql_url_without_a_driver_uses_psycopg() -> None:
    assert normalize_url("postgresql://u:p@db/parley") == "postgresql+psycopg://u:p@db/parley"
    assert normalize_url("postgres://db/parley") == "postgresql+psycopg://db/parley"
    assert normalize_url("postgresql+psycopg://db/p") == "postgresql+psycopg://db/p"
    assert normalize_url("sqlite:///data/parley.db") == "sqlite:///data/parley.db"


def test_upgrading_a_0001_database_keeps_its_conversations(tmp_path: Path) -> None:
    from alembic import command

    from chat.store.store import alembic_config

    store = Store(f"sqlite:///{tmp_path / 'parley.db'}")
    command.upgrade(alembic_config(store.engine), "0001")  # a database from before the context-window column
    with sqlite3.connect(tmp_path / "parley.db") as raw:
        raw.execute("insert into conversation (title, system_prompt, temperature, created_at, updated_at) "
                    "values ('old', '', 0.7, '2026-01-01', '2026-01-01')")  # fmt: skip
        raw.execute("insert into message (conversation_id, selected, role, content, status, created_at) "
                    "values (1, 1, 'user', 'héllo 👋', 'complete', '2026-01-01')")  # fmt: skip
    store.migrate()
    [message] = store.messages(1)
    assert (message.content, message.omitted_messages) == ("héllo 👋", None)
    assert store.get_conversation(1).title == "old"
    store.close()


def test_sqlite_is_opened_with_wal_foreign_keys_and_busy_timeout(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert raw.execute("pragma foreign_keys").fetchone()[0] == 1
        assert raw.execute("pragma busy_timeout").fetchone()[0] == 5000


def test_delete_conversation_deletes_its_messages(store: Store) -> None:
    conversation = store.create_conversation(title="t")
    store.add_exchange(conversation.id, "hi", model="m", temperature=0.5)
    other = store.create_conversation(title="keep")
    store.add_exchange(other.id, "keep me", model="m", temperature=0.5)
    store.delete_conversation(conversation.id)
    assert store.count_messages() == 2
    with pytest.raises(NotFound):
        store.get_conversation(conversation.id)
    assert [m.content for m in store.path(other.id)][0] == "keep me"


def test_exchanges_and_variants_form_the_shown_path(store: Store) -> None:
    conversation = store.create_conversation()
    user1, answer1 = store.add_exchange(conversation.id, "one", model="m", temperature=0.1)
    store.finish_message(answer1.id, content="A1", status=Status.complete)
    variant = store.add_variant(answer1.id, model="m", temperature=1.5)
    store.finish_message(variant.id, content="A1 again", status=Status.complete)
    user2, answer2 = store.add_exchange(conversation.id, "two", model="m", temperature=0.1)
    assert [m.content for m in store.path(conversation.id)] == ["one", "A1 again", "two", ""]
    assert user2.parent_id == variant.id and answer2.status == Status.streaming
    store.select_variant(answer1.id)  # the other branch: its own (empty) continuation
    assert [m.content for m in store.path(conversation.id)] == ["one", "A1"]
    assert [m.id for m in store.variants(variant.id)] == [answer1.id, variant.id]
    with pytest.raises(ValueError):
        store.add_variant(user1.id, model="m", temperature=0.5)
    assert user1.role == Role.user


def test_checkpoint_never_overwrites_a_finished_answer(store: Store) -> None:
    conversation = store.create_conversation()
    _, answer = store.add_exchange(conversation.id, "hi", model="m", temperature=0.5)
    store.checkpoint(answer.id, "par")
    assert store.get_message(answer.id).content == "par"
    store.finish_message(answer.id, content="partial and final", status=Status.complete)
    store.checkpoint(answer.id, "par")  # a late checkpoint
    assert store.get_message(answer.id).content == "partial and final"


def test_unicode_round_trips_exactly(store: Store) -> None:
    text = "emoji 👩‍👩‍👧 CJK 漢字 RTL עברית combining é (e\u0301) tab\tand\nnewline"
    conversation = store.create_conversation()
    user, _ = store.add_exchange(conversation.id, text, model="m", temperature=0.5)
    assert store.get_message(user.id).content == text


def test_interrupt_streaming_keeps_partial_text(store: Store) -> None:
    conversation = store.create_conversation()
    _, answer = store.add_exchange(conversation.id, "hi", model="m", temperature=0.5)
    store.checkpoint(answer.id, "half an ans")
    assert store.interrupt_streaming() == 1
    stored = store.get_message(answer.id)
    assert (stored.status, stored.content) == (Status.interrupted, "half an ans")
    assert stored.error
    assert store.interrupt_streaming() == 0
