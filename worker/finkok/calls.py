"""One Finkok call as the pipeline records it (a ``stamp_attempts`` row): what was asked,
when, how long it took, and what came of it. Stamping and cancellation both record theirs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Call:
    operation: str
    started_at: datetime
    duration_ms: int
    outcome: str
    codes: list[str] = field(default_factory=list)
    message: str | None = None
