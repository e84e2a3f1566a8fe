"""Shared fixtures: the fake OpenAI-compatible upstream (a real HTTP server), a real database (an SQLite file, or a
database on a real PostgreSQL server: ``store`` runs each test on both), the engine wired to them, and NiceGUI's
simulated ``user`` running the real ``app.py``."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from chat.engine import Engine
from chat.provider import Provider
from chat.store import Store

from .browser import ROOT
from .fake_upstream import FakeUpstream
from .postgres import PostgresServer, find_binaries
from .redis_server import RedisServer

PATIENT_RETRIES = 50
"""Looks of the ``user`` fixture's ``should_see`` (0.1 s apart: 5 s) and ``should_not_see`` (0.05 s apart: 2.5 s)
before they fail."""


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    """One fake upstream for the whole session."""
    with FakeUpstream(models=["fake-model", "other-model"]) as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` for the session (started on first use); tests may ``restart()`` it (empty again)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    """The fake upstream, reset to its default script (20 tokens, as fast as possible)."""
    fake_upstream_server.reset()
    return fake_upstream_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (started on first use), from the machine's binaries."""
    binaries = find_binaries()
    if binaries is None:
        pytest.fail("PostgreSQL is not installed (make test installs Debian's postgresql package)", pytrace=False)
    server = PostgresServer(binaries)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database: an SQLite file, or a new schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'parley.db'}"
    return request.getfixturevalue("postgres_server").create_schema()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on a fresh database: each test using it runs on SQLite and on PostgreSQL."""
    store = Store(database_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated store on a fresh SQLite file, for what only SQLite has (its pragmas)."""
    store = Store(f"sqlite:///{tmp_path / 'parley.db'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
async def engine(store: Store, upstream: FakeUpstream) -> AsyncIterator[Engine]:
    """An engine streaming from the fake upstream into the store."""
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model", checkpoint_interval=0.2)
    engine.recover()
    yield engine
    await engine.shutdown()
    await provider.close()


@pytest.fixture
async def make_engine(store: Store, upstream: FakeUpstream) -> AsyncIterator:
    """Builds engines on the test's store: ``make_engine(base_url=None, **provider_options)`` streams from
    ``base_url`` (default: the fake upstream) through a ``Provider(**provider_options)``; all are shut down after."""
    made: list[tuple[Engine, Provider]] = []

    def make(base_url: str | None = None, **options: object) -> Engine:
        provider = Provider(base_url or upstream.base_url, "test-key", **options)  # type: ignore[arg-type]
        engine = Engine(store, provider, default_model="fake-model", checkpoint_interval=0.2)
        made.append((engine, provider))
        return engine

    yield make
    for engine, provider in made:
        await engine.shutdown()
        await provider.close()


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, upstream: FakeUpstream) -> Path:
    """Environment for ``app.py`` under test: the fake upstream and a fresh data folder. Returns the data folder."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PARLEY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("PARLEY_MODEL", "fake-model")
    monkeypatch.setenv("PARLEY_CHECKPOINT_INTERVAL", "0.2")
    monkeypatch.setenv("PARLEY_READ_TIMEOUT", "5")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return data_dir


@pytest.fixture
async def user(app_env: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """NiceGUI's simulated user on the real ``app.py`` (fails the test on any ERROR log, like NiceGUI's own)."""
    async with user_simulation(main_file=ROOT / "app.py") as simulated:
        # NiceGUI looks three times, 0.1 s apart: shorter than a page's store round trip can take on a loaded
        # machine. Look for up to 5 s, 2.5 s for what should go (a call's own retries=... still wins); a found
        # element returns at once.
        simulated.should_see = functools.partial(User.should_see, simulated, retries=PATIENT_RETRIES)  # type: ignore[method-assign]
        simulated.should_not_see = functools.partial(User.should_not_see, simulated, retries=PATIENT_RETRIES)  # type: ignore[method-assign]
        yield simulated
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(f"unexpected ERROR logs: {[r.getMessage() for r in errors]}", pytrace=False)
