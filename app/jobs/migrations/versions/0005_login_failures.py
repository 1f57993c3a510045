"""Failed sign-ins in the database, so every web process counts the same failures and a restart forgets none.

Revision ID: 0005
Revises: 0004_hosting
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_hosting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_login_failure_key_hash", "login_failure", ["key_hash"])
    op.create_index("ix_login_failure_failed_at", "login_failure", ["failed_at"])


def downgrade() -> None:
    op.drop_table("login_failure")
