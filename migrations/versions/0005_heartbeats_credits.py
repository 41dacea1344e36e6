"""heartbeats (when the sweeper and the credit poller last ran) and finkok_credits (the
last credit reading per RFC): what metrics, alerts and `billing health` read

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_heartbeats")),
    )
    op.create_table(
        "finkok_credits",
        sa.Column("taxpayer_id", sa.String(length=13), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=True),
        sa.Column("reported_at", sa.String(length=32), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("taxpayer_id", name=op.f("pk_finkok_credits")),
    )


def downgrade() -> None:
    op.drop_table("finkok_credits")
    op.drop_table("heartbeats")
