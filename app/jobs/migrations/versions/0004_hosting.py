"""PostgreSQL triggers that NOTIFY lorapedia_jobs when a job is queued or changes state and when a metric row is written.

Revision ID: 0004_hosting
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004_hosting"
down_revision = "0003"
branch_labels = None
depends_on = None

# Payload "job:<id>" or "metric:<id>" (app.jobs.notify); lease renewals and figures change no watched column, so they stay quiet.
FUNCTIONS = """
CREATE OR REPLACE FUNCTION lorapedia_notify_job() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('lorapedia_jobs', 'job:' || NEW.id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION lorapedia_notify_metric() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('lorapedia_jobs', 'metric:' || NEW.job_id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""
TRIGGERS = """
CREATE TRIGGER job_inserted_notify AFTER INSERT ON job FOR EACH ROW EXECUTE FUNCTION lorapedia_notify_job();
CREATE TRIGGER job_changed_notify AFTER UPDATE ON job FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested
          OR OLD.device IS DISTINCT FROM NEW.device OR OLD.total_steps IS DISTINCT FROM NEW.total_steps)
    EXECUTE FUNCTION lorapedia_notify_job();
CREATE TRIGGER metric_inserted_notify AFTER INSERT ON metric_point FOR EACH ROW EXECUTE FUNCTION lorapedia_notify_metric();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTIONS)
    op.execute(TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for trigger, table in (("job_inserted_notify", "job"), ("job_changed_notify", "job"), ("metric_inserted_notify", "metric_point")):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS lorapedia_notify_job(); DROP FUNCTION IF EXISTS lorapedia_notify_metric();")
