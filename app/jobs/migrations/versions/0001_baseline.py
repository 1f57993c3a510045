"""Baseline: the job, metric_point and adapter_archive tables as the last version before migrations made them.

Databases from that version have no alembic_version table; they may also lack nullable columns an even
older version did not declare. This revision creates what is missing and adds missing nullable columns,
keeping every row, so such a database reaches the baseline exactly as a fresh one does.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def baseline_tables() -> list[tuple[str, list[sa.Column], list]]:
    """(table, columns, constraints) of the baseline schema."""
    figures = [
        sa.Column("device", sa.String(), nullable=True),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in (
            "trainable_params", "total_params", "peak_memory_bytes", "predicted_trainable_params", "predicted_memory_bytes")),
        *(sa.Column(name, sa.Float(), nullable=True) for name in ("final_train_loss", "final_eval_loss", "final_exact_match")),
        sa.Column("samples_before", sa.JSON(), nullable=True),
        sa.Column("samples_after", sa.JSON(), nullable=True),
    ]
    job = [
        *figures,
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("dataset", sa.String(), nullable=False),
        sa.Column("prediction_basis", sa.JSON(), nullable=True),
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("status", sa.Enum(*STATUSES, name="jobstatus"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.DateTime(timezone=True), nullable=True) for name in ("started_at", "finished_at")),
        sa.Column("worker_id", sa.String(), nullable=True),
        *(sa.Column(name, sa.DateTime(timezone=True), nullable=True) for name in ("heartbeat_at", "lease_expires_at")),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("adapter_path", sa.String(), nullable=True),
        sa.Column("dataset_rows", sa.JSON(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
    ]
    metric = [
        sa.Column("step", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=True) for name in (
            "train_loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_seconds", "eval_loss", "exact_match")),
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("job.id"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    ]
    archive = [
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("job.id"), primary_key=True, nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]
    return [("job", job, []), ("metric_point", metric, [sa.UniqueConstraint("job_id", "step")]),
            ("adapter_archive", archive, [])]


INDEXES = [("ix_job_status", "job", ["status"]), ("ix_job_lease_expires_at", "job", ["lease_expires_at"]),
           ("ix_metric_point_job_id", "metric_point", ["job_id"])]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, columns, constraints in baseline_tables():
        if name not in existing:
            op.create_table(name, *columns, *constraints)
            continue
        present = {column["name"] for column in inspector.get_columns(name)}
        for column in columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"table {name} lacks the required column {column.name}: this database is not a Lorapedia one")
            with op.batch_alter_table(name) as batch:
                batch.add_column(column)
            logger.info("added column %s.%s to a database from an older version", name, column.name)
    for index, table, columns in INDEXES:
        if index not in {item["name"] for item in sa.inspect(op.get_bind()).get_indexes(table)}:
            op.create_index(index, table, columns)
