"""Database engine and schema (SQLite with WAL by default, PostgreSQL by URL); the schema changes by Alembic migrations."""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, create_engine

from app.settings import Settings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x4C6F7262  # PostgreSQL advisory lock held while migrating, so concurrent starts migrate once
WORKER_POOL_SIZE = 5  # a worker's threads (trainer, heartbeat) need few connections
POOL_HEADROOM = 10  # beyond the web threads: streams' shared polls and the event loop's own short reads


def _use_wal(cursor, attempts: int = 100) -> None:
    """Switch a SQLite database to WAL; a new file switched by several processes at once answers "locked" at once
    (the switch does not wait on the busy timeout), so it is retried briefly."""
    for attempt in range(attempts):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def make_engine(settings: Settings, pool_size: int | None = None) -> Engine:
    """An engine for the configured database; SQLite gets WAL and a busy timeout.

    The pool holds a connection for every thread that may run a request's queries at once (web_threads,
    which also sizes the web process's thread pool) plus headroom, so concurrent readers wait for a thread,
    never time out waiting for a connection.
    """
    url = settings.sqlalchemy_url
    size = pool_size or settings.web_threads + POOL_HEADROOM
    pool = {"pool_size": size, "max_overflow": POOL_HEADROOM, "pool_timeout": 60}
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def schema_metadata() -> MetaData:
    """Every table the app declares (jobs and accounts), as the migrations must build them."""
    import app.accounts.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
    import app.jobs.tables  # noqa: F401

    return SQLModel.metadata


def init_db(engine: Engine) -> None:
    """Upgrade the database to the newest schema (creating it when empty); safe when several processes start at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with _migration_lock(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that only one process at a time holds: the migrations run inside it.

    PostgreSQL: a transaction advisory lock (DDL is transactional there). SQLite: a lock file beside the
    database, since SQLite's own write lock cannot be held across the reads Alembic makes first.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            with connection.begin():
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield connection
            return
        database = engine.url.database
        lock_path = Path(f"{database}.migrate.lock") if database and database != ":memory:" else None
        with open(lock_path, "a+") if lock_path else _nothing() as handle:
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            with connection.begin():
                yield connection


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
