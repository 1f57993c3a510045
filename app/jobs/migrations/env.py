"""Alembic environment: runs the migrations on the connection app.jobs.db.upgrade hands in (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from app.jobs.db import schema_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=schema_metadata(), render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
