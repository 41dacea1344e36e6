"""holds and breakers: invoices and notifications wait on a breaker (hold_key) instead of
failing; invoices carry SAT's stamping deadline (stamp_deadline_at); breakers keep the
state of each fault scope shared by every worker

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("hold_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("stamp_deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_invoices_hold_key", ["hold_key"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("hold_key", sa.String(length=200), nullable=True))
        batch.create_index("ix_notifications_hold_key", ["hold_key"])
    op.create_table(
        "breakers",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_interval_s", sa.Float(), nullable=False),
        sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_id", sa.String(length=36), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_breakers")),
    )


def downgrade() -> None:
    op.drop_table("breakers")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_hold_key")
        batch.drop_column("hold_key")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_index("ix_invoices_hold_key")
        batch.drop_column("stamp_deadline_at")
        batch.drop_column("hold_key")
