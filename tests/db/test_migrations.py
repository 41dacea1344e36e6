"""The Alembic head and the SQLAlchemy models describe the same schema, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from worker.db.migrate import current_head
from worker.db.models import Base


def test_migration_head_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert ctx.get_current_revision() == current_head()
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_indexes_for_sweeper_and_cli_exist(engine: Engine) -> None:
    insp = inspect(engine)
    invoice_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("invoices")}
    assert ("state", "next_attempt_at") in invoice_indexes
    assert ("reference",) in invoice_indexes
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("invoices")}
    assert ("sat_uuid",) in uniques
    assert ("empresa_ref_id", "reference") in uniques
    notif_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("notifications")}
    assert ("state", "next_attempt_at") in notif_indexes
