"""Fixtures for feeding the bad-input corpus through intake's doors (CLI and HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import AuditLog, Invoice, Notification, StampAttempt

Counts = Callable[[], dict[str, int]]


@pytest.fixture()
def written(sessions: sessionmaker[Session]) -> Counts:
    """Rows in every table intake (or anything after it) could write."""

    def counts() -> dict[str, int]:
        with sessions() as s:
            return {
                model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
                for model in (Invoice, AuditLog, StampAttempt, Notification)
            }

    return counts


NOTHING = {"invoices": 0, "audit_log": 0, "stamp_attempts": 0, "notifications": 0}


def queued_messages(data_dir: Path) -> int:
    """Stamp doorbells waiting in a filesystem broker under ``data_dir``."""
    return len(list((data_dir / "broker" / "queue").glob("*.msg")))
