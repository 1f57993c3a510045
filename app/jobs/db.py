"""Database engine and schema creation (SQLite with WAL by default, PostgreSQL by URL)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import event, inspect, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from app.settings import Settings

logger = logging.getLogger(__name__)


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database; SQLite gets WAL and a busy timeout."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **_pool(settings))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **_pool(settings))


def _pool(settings: Settings) -> dict[str, int]:
    """A pool as large as the server's concurrency: every worker thread of the web process may hold a session
    (SQLAlchemy's default of 5 + 10 overflow timed out under 200 concurrent page readers)."""
    return {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}


def init_db(engine: Engine, attempts: int = 5) -> None:
    """Create every table that does not exist yet; safe when several processes start at once."""
    import app.jobs.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

    for attempt in range(1, attempts + 1):
        try:
            SQLModel.metadata.create_all(engine)
            add_missing_columns(engine)
            return
        except DatabaseError:
            # Another process created a table between our existence check and our CREATE: look again.
            if attempt == attempts:
                raise
            time.sleep(0.1 * attempt)


def add_missing_columns(engine: Engine) -> None:
    """Add the nullable columns a newer version declares to tables an older one created, keeping their rows.

    create_all makes missing tables only; a database from before a new measured figure would otherwise fail
    on every read of its jobs. Anything beyond a new nullable column needs a real migration.
    """
    existing = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        present = {column["name"] for column in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"table {table.name} lacks the required column {column.name}: migrate the database")
            column_type = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {column_type}'))
            logger.info("added column %s.%s (%s) to an existing database", table.name, column.name, column_type)
