"""Full-text search: SQLite FTS5 (trigram) tables kept by triggers; PostgreSQL pg_trgm GIN indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00

SQLite: two FTS5 external-content tables with the ``trigram`` tokenizer (SQLite 3.34+; it finds any substring of three
characters or more, CJK text included), ``message_fts`` over ``message.content`` and ``conversation_fts`` over
``conversation.title``, kept up to date by triggers on insert, update and delete (the recipe of
https://sqlite.org/fts5.html, section 4.4.3, "External Content Tables"), and filled for the rows already there
(``'rebuild'``).

PostgreSQL: the ``pg_trgm`` extension and GIN trigram indexes on ``message.content`` and ``conversation.title``, which
``ILIKE '%term%'`` uses (https://www.postgresql.org/docs/current/pgtrgm.html, "Index Support"). Where the extension
cannot be created (a role without the right), the indexes are left out and search scans instead.

Both are left out of alembic's schema comparison by ``chat.store.search.include_name``.

Note for later migrations on SQLite: a batch migration of ``message`` or ``conversation`` (copy, drop, rename) drops
these triggers with the old table: such a migration must call ``drop_sqlite`` before and ``create_sqlite`` after.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (FTS table, content table, indexed column)
SOURCES = (("message_fts", "message", "content"), ("conversation_fts", "conversation", "title"))
#: PostgreSQL: (index, table, column)
PG_INDEXES = (
    ("ix_message_content_trgm", "message", "content"),
    ("ix_conversation_title_trgm", "conversation", "title"),
)


def create_sqlite() -> None:
    """Create the FTS5 tables and their triggers, and index the rows already there."""
    for fts, table, column in SOURCES:
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', content_rowid='id', "
            "tokenize='trigram')"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
            f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END"
        )
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def drop_sqlite() -> None:
    """Drop the triggers and the FTS5 tables (their shadow tables go with them)."""
    for fts, _table, _column in SOURCES:
        for suffix in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {fts}")


def upgrade() -> None:
    """Create the search index of this database's kind."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 34, 0):
            raise RuntimeError(
                f"Parley's search needs SQLite 3.34 or newer (trigram); this is {sqlite3.sqlite_version}"
            )
        create_sqlite()
    elif bind.dialect.name == "postgresql":
        savepoint = bind.begin_nested()
        try:
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            savepoint.commit()
        except Exception:  # no right to create it: search works without the index, by scanning
            savepoint.rollback()
        schema = bind.exec_driver_sql(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        ).scalar()
        if schema is not None:  # the extension may live in another schema than the tables (quoted: any name)
            quoted = '"' + schema.replace('"', '""') + '"'
            for index, table, column in PG_INDEXES:
                op.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin ({column} {quoted}.gin_trgm_ops)")


def downgrade() -> None:
    """Drop the search index (on PostgreSQL the pg_trgm extension stays: other schemas may use it)."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        drop_sqlite()
    elif bind.dialect.name == "postgresql":
        for index, _table, _column in PG_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {index}")
