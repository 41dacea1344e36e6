"""cancellations: one row per invoice cancelled at SAT (worker.cancellations): its own
states, lease and poll schedule, the acuse's exact bytes

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "cancellations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("sat_uuid", sa.String(length=36), nullable=False),
        sa.Column("emisor_rfc", sa.String(length=13), nullable=False),
        sa.Column("receptor_rfc", sa.String(length=13), nullable=False),
        sa.Column("total", sa.String(length=32), nullable=False),
        sa.Column("motivo", sa.String(length=2), nullable=False),
        sa.Column("folio_sustitucion", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_changed_at", ts, nullable=False),
        sa.Column("next_attempt_at", ts, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("must_check", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", ts, nullable=True),
        sa.Column("rung_at", ts, nullable=True),
        sa.Column("estatus_uuid", sa.String(length=16), nullable=True),
        sa.Column("sat_estado", sa.String(length=32), nullable=True),
        sa.Column("sat_estatus_cancelacion", sa.String(length=64), nullable=True),
        sa.Column("es_cancelable", sa.String(length=64), nullable=True),
        sa.Column("acuse", sa.LargeBinary(), nullable=True),
        sa.Column("acuse_fecha", sa.String(length=40), nullable=True),
        sa.Column("request_xml", sa.LargeBinary(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("cancelled_at", ts, nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"],
                                name="fk_cancellations_invoice_id_invoices"),
        sa.PrimaryKeyConstraint("id", name="pk_cancellations"),
        sa.UniqueConstraint("invoice_id", name="uq_cancellations_invoice_id"),
    )
    op.create_index("ix_cancellations_state_next_attempt", "cancellations",
                    ["state", "next_attempt_at"])
    op.create_index("ix_cancellations_sat_uuid", "cancellations", ["sat_uuid"])


def downgrade() -> None:
    op.drop_index("ix_cancellations_sat_uuid", table_name="cancellations")
    op.drop_index("ix_cancellations_state_next_attempt", table_name="cancellations")
    op.drop_table("cancellations")
