"""SAT's stamping window: a CFDI must be stamped within 72 hours of its ``Fecha``.

``Fecha`` is the local time of the place of issue (``LugarExpedicion``), written without
an offset. Mexico's zones run from UTC-8 to UTC-5; reading it as UTC-5 gives the earliest
moment the window can close anywhere, so a deadline computed here is never late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

WINDOW = timedelta(hours=72)
EARLIEST_ZONE = timezone(timedelta(hours=-5))  # Quintana Roo: the window closes first there


def stamp_deadline(fecha: str | None) -> datetime | None:
    """When SAT stops accepting a stamp for a CFDI with this ``Fecha`` (UTC), or None when
    the value cannot be read (intake's own checks decide about such documents)."""
    if not fecha:
        return None
    try:
        local = datetime.fromisoformat(fecha.strip()[:19])
    except ValueError:
        return None
    if local.tzinfo is None:
        local = local.replace(tzinfo=EARLIEST_ZONE)
    return (local + WINDOW).astimezone(UTC)
