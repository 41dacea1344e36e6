"""cancellation holds: a cancellation waits on a Finkok breaker (hold_key, state "held")
instead of ending cancel_failed during an outage (the state column is a plain string: no
constraint to change)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cancellations") as batch:
        batch.add_column(sa.Column("hold_key", sa.String(length=200), nullable=True))
        batch.create_index("ix_cancellations_hold_key", ["hold_key"])


def downgrade() -> None:
    # A held row would be stranded without its key: it goes back to requested (the poller
    # sends it; the outage rules of the older code then apply).
    op.execute("UPDATE cancellations SET state = 'requested' WHERE state = 'held'")
    with op.batch_alter_table("cancellations") as batch:
        batch.drop_index("ix_cancellations_hold_key")
        batch.drop_column("hold_key")
