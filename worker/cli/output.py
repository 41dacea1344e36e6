"""Small rendering helpers for the operations commands: ages, times, states, JSON."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.text import Text

STATE_STYLES = {
    "stamped": "green", "delivered": "green", "pending": "cyan", "received": "white",
    "queued": "white", "stamping": "blue", "sending": "blue", "retry_wait": "yellow",
    "rejected": "red", "failed": "bold red",
}


def age(seconds: float) -> str:
    """45 -> '45s', 3700 -> '1h 1m', 200000 -> '2d 7h'."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(value: datetime | None, now: datetime) -> str:
    """'2026-11-20 10:00:00Z (3m ago)' or '(in 20s)'; '-' for None."""
    if value is None:
        return "-"
    delta = (now - value).total_seconds()
    rel = f"{age(delta)} ago" if delta >= 0 else f"in {age(delta)}"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')}Z ({rel})"


def cell(value: Any) -> Text:
    """A table cell that never interprets rich markup in data."""
    if value is None or value == "" or value == []:
        return Text("-", style="dim")
    if isinstance(value, (list, tuple)):
        return Text(", ".join(str(v) for v in value))
    return Text(str(value))


def state_text(state: str | None) -> Text:
    return Text(state or "-", style=STATE_STYLES.get(state or "", ""))


def dumps(value: Any, *, indent: int | None = None) -> str:
    from worker.ops.queries import jsonable

    return json.dumps(value, default=jsonable, indent=indent, ensure_ascii=False)
