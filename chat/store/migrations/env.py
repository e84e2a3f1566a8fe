"""Alembic environment: runs Parley's migrations on the engine the Store hands over."""

from alembic import context
from sqlmodel import SQLModel

from chat.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from chat.store.search import include_name  # the search index (0007), which the models do not declare

target_metadata = SQLModel.metadata


def run_migrations() -> None:
    """Run the migrations online, on ``config.attributes['engine']`` (or the ``sqlalchemy.url`` option)."""
    engine = context.config.attributes.get("engine")
    if engine is None:
        from sqlalchemy import create_engine

        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration copies a table, drops the old one and renames the copy: with foreign keys enforced, the
            # drop would delete every row that references it (ON DELETE CASCADE). Checked again after the migration.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True, include_name=include_name
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        if sqlite:
            problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            if problems:
                raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {problems[:5]}")


run_migrations()
