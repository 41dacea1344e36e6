"""What one SIF answer means for the outbox row: a pure decision, no I/O.

| answer                         | row         | result                               |
|--------------------------------|-------------|--------------------------------------|
| 2xx (SIF documents 204)        | delivered   | delivered                            |
| 409 (an OK is already held)    | delivered   | already_held                         |
| 401 (secret refused)           | held        | unauthorized: the target's breaker   |
|                                |             | opens; every notification for it     |
|                                |             | waits until its settings change or   |
|                                |             | an operator resets it                |
| 400 (our body refused)         | failed      | bad_request (a bug on our side)      |
| 404 (document unknown yet)     | retry_wait  | retry_404, until notify_404_window_s |
|                                | failed      | not_found, after the window          |
| 5xx, timeout, connection error | retry_wait  | retry_http_5xx / retry_timeout / ... |
|                                |             | (a sustained run opens the target's  |
|                                |             | breaker: notifications are held)     |
|                                | failed      | exhausted, after notify_max_attempts |
|                                |             | and notify_retry_budget_s (days)     |
| any other code (3xx, 403, ...) | failed      | http_<code>                          |
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.db.states import NotificationState
from worker.settings import Settings

TIMEOUT = "timeout"
CONNECTION = "connection"


@dataclass(frozen=True)
class Decision:
    state: NotificationState
    result: str
    next_attempt_at: datetime | None = None
    first_404_at: datetime | None = None
    log_level: int = logging.INFO


def backoff_delay_s(failures: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform(0, min(max, base * 2**(failures-1)))."""
    cap = min(max_s, base_s * (2 ** max(0, failures - 1)))
    return rng.uniform(0.0, cap)


def is_transient(status_code: int | None) -> bool:
    """No answer or a 5xx: SIF unavailable, counts against notify_max_attempts."""
    return status_code is None or status_code >= 500


def decide(
    *,
    status_code: int | None,
    transport_error: str | None,
    attempts: int,
    transient_failures: int,
    first_404_at: datetime | None,
    now: datetime,
    settings: Settings,
    rng: random.Random,
    transient_since: datetime | None = None,
) -> Decision:
    """The row's next state for one answer.

    ``status_code`` None means no answer (``transport_error`` is TIMEOUT or CONNECTION).
    ``attempts`` (claims so far) paces 404 retries; ``transient_failures`` (5xx or no
    answer since the last resend, this one included) paces and bounds the others, together
    with ``transient_since`` (when the first of them happened) and the retry budget.
    """
    N = NotificationState
    if status_code is not None and 200 <= status_code < 300:
        return Decision(N.DELIVERED, "delivered")
    if status_code == 409:
        return Decision(N.DELIVERED, "already_held")
    if status_code == 401:
        return Decision(N.HELD, "unauthorized", log_level=logging.ERROR)
    if status_code == 400:
        return Decision(N.FAILED, "bad_request", log_level=logging.ERROR)
    if status_code == 404:
        first = first_404_at or now
        window_end = first + timedelta(seconds=settings.notify_404_window_s)
        if now >= window_end:
            return Decision(N.FAILED, "not_found", first_404_at=first, log_level=logging.ERROR)
        delay = backoff_delay_s(
            max(1, attempts), base_s=settings.notify_backoff_base_s,
            max_s=settings.notify_backoff_max_s, rng=rng,
        )
        # The last try lands on the window's edge, not after it.
        next_at = min(now + timedelta(seconds=delay), window_end)
        return Decision(N.RETRY_WAIT, "retry_404", next_at, first, logging.WARNING)
    if is_transient(status_code):
        result = f"retry_http_{status_code}" if status_code else f"retry_{transport_error}"
        budget_spent = transient_since is None or (
            now - transient_since).total_seconds() >= settings.notify_retry_budget_s
        if transient_failures >= settings.notify_max_attempts and budget_spent:
            return Decision(N.FAILED, "exhausted", first_404_at=first_404_at, log_level=logging.ERROR)
        delay = backoff_delay_s(
            transient_failures, base_s=settings.notify_backoff_base_s,
            max_s=settings.notify_backoff_max_s, rng=rng,
        )
        return Decision(
            N.RETRY_WAIT, result, now + timedelta(seconds=delay), first_404_at, logging.WARNING
        )
    return Decision(N.FAILED, f"http_{status_code}", log_level=logging.ERROR)
