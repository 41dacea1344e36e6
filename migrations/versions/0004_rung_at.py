"""remember when the sweeper last re-published a row (no duplicate doorbells)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("invoices", "notifications"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("rung_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ("invoices", "notifications"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("rung_at")
