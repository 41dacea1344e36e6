"""indexes for the operators' filters by emisor and receptor RFC

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invoices_emisor_rfc", "invoices", ["emisor_rfc"])
    op.create_index("ix_invoices_receptor_rfc", "invoices", ["receptor_rfc"])


def downgrade() -> None:
    op.drop_index("ix_invoices_receptor_rfc", table_name="invoices")
    op.drop_index("ix_invoices_emisor_rfc", table_name="invoices")
