"""Alembic migrations of the database schema; `lorapedia init-db` (and every start) upgrades to head."""
