"""Accounts: account, api_token and browser_session tables; a job's owner, share flag, the job it retries, its predicted time.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_account_name", "account", ["name"], unique=True)
    for table, secret in (("api_token", "token_hash"), ("browser_session", "secret_hash")):
        extra = ([sa.Column("label", sa.String(length=64), nullable=False),
                  sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True)] if table == "api_token"
                 else [sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False)])
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
            sa.Column("account_id", sa.Integer(), sa.ForeignKey("account.id"), nullable=False),
            sa.Column(secret, sa.String(length=64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            *extra,
        )
        op.create_index(f"ix_{table}_account_id", table, ["account_id"])
        op.create_index(f"ix_{table}_{secret}", table, [secret], unique=True)
    op.create_index("ix_browser_session_expires_at", "browser_session", ["expires_at"])
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("retry_of", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("predicted_seconds", sa.Float(), nullable=True))
    op.create_index("ix_job_owner_id", "job", ["owner_id"])
