"""SAT's 72-hour window, read conservatively from a CFDI's Fecha."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.cfdi.window import stamp_deadline


@pytest.mark.parametrize(("fecha", "deadline"), [
    # local time read as UTC-5 (the earliest-closing zone): +5 h to UTC, +72 h
    ("2026-11-30T10:15:00", datetime(2026, 12, 3, 15, 15, tzinfo=UTC)),
    ("2026-12-31T23:59:59", datetime(2027, 1, 4, 4, 59, 59, tzinfo=UTC)),
    ("2026-11-30T10:15:00.123", datetime(2026, 12, 3, 15, 15, tzinfo=UTC)),
    (None, None),
    ("", None),
    ("30/11/2026", None),
])
def test_deadline(fecha: str | None, deadline: datetime | None) -> None:
    assert stamp_deadline(fecha) == deadline
