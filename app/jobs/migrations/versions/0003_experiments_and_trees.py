"""Experiments (sweeps) and their jobs, metric rows' tokens seen and epoch, and the module-tree cache.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("experiment_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_job_experiment_id", "experiment", ["experiment_id"], ["id"])
    op.create_index("ix_job_experiment_id", "job", ["experiment_id"])
    with op.batch_alter_table("metric_point") as batch:
        batch.add_column(sa.Column("tokens_seen", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("epoch", sa.Float(), nullable=True))
    op.create_table(
        "module_tree",
        sa.Column("key", sa.String(), primary_key=True, nullable=False),
        sa.Column("model_type", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=True),
        sa.Column("tree", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("module_tree")
    with op.batch_alter_table("metric_point") as batch:
        batch.drop_column("epoch")
        batch.drop_column("tokens_seen")
    op.drop_index("ix_job_experiment_id", "job")
    with op.batch_alter_table("job") as batch:
        batch.drop_constraint("fk_job_experiment_id", type_="foreignkey")
        batch.drop_column("experiment_id")
    op.drop_table("experiment")
