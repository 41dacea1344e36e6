"""reconcile_runs: each reconciliation of an emisor RFC against Finkok's report_uuid
(orphan stamps, phantoms, credits used), read by `billing reconcile --last` and the metrics

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("emisor_rfc", sa.String(length=13), nullable=False),
        sa.Column("window_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finkok_uuids", sa.Integer(), nullable=False),
        sa.Column("credits_used", sa.Integer(), nullable=True),
        sa.Column("our_stamps", sa.Integer(), nullable=False),
        sa.Column("orphans", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("adopted", sa.Integer(), nullable=False),
        sa.Column("phantoms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )
    op.create_index("ix_reconcile_runs_emisor_started", "reconcile_runs",
                    ["emisor_rfc", "started_at"])
    op.create_index("ix_reconcile_runs_run_id", "reconcile_runs", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_runs_run_id", table_name="reconcile_runs")
    op.drop_index("ix_reconcile_runs_emisor_started", table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
