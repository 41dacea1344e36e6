"""The decision table for one SIF answer (pure: no HTTP, no database)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from worker.db.states import NotificationState as N
from worker.sif.policy import CONNECTION, TIMEOUT, Decision, decide

from .conftest import T0, make_settings

SETTINGS = make_settings("http://127.0.0.1:9/mcs/sif", notify_max_attempts=3, notify_backoff_base_s=1,
                         notify_backoff_max_s=4, notify_404_window_s=60)


def _decide(code: int | None, *, error: str | None = None, attempts: int = 1, transient: int = 1,
            first_404_at: object = None, seconds: float = 0) -> Decision:
    return decide(status_code=code, transport_error=error, attempts=attempts, transient_failures=transient,
                  first_404_at=first_404_at, now=T0 + timedelta(seconds=seconds),  # type: ignore[arg-type]
                  settings=SETTINGS, rng=random.Random(0))


@pytest.mark.parametrize(
    ("code", "state", "result"),
    [
        (204, N.DELIVERED, "delivered"),
        (200, N.DELIVERED, "delivered"),
        (409, N.DELIVERED, "already_held"),
        (401, N.HELD, "unauthorized"),  # the target's breaker opens (issue 11)
        (400, N.FAILED, "bad_request"),
        (403, N.FAILED, "http_403"),
        (302, N.FAILED, "http_302"),
        (413, N.FAILED, "http_413"),
        (404, N.RETRY_WAIT, "retry_404"),
        (500, N.RETRY_WAIT, "retry_http_500"),
        (503, N.RETRY_WAIT, "retry_http_503"),
    ],
)
def test_table(code: int, state: N, result: str) -> None:
    decision = _decide(code)
    assert (decision.state, decision.result) == (state, result)
    assert (decision.next_attempt_at is not None) == (state == N.RETRY_WAIT)


def test_no_answer() -> None:
    assert _decide(None, error=TIMEOUT).result == "retry_timeout"
    assert _decide(None, error=CONNECTION).result == "retry_connection"
    assert _decide(None, error=TIMEOUT, transient=3).result == "exhausted"
    assert _decide(503, transient=2).state == N.RETRY_WAIT
    assert _decide(503, transient=3).state == N.FAILED


def test_404_window_and_its_edge() -> None:
    first = _decide(404, attempts=1)
    assert first.first_404_at == T0
    late = _decide(404, attempts=30, first_404_at=T0, seconds=59)
    assert late.state == N.RETRY_WAIT and late.next_attempt_at == T0 + timedelta(seconds=60)  # clamped
    assert _decide(404, attempts=31, first_404_at=T0, seconds=60).result == "not_found"
    assert _decide(404, transient=99).state == N.RETRY_WAIT  # 5xx budget does not end a 404 window
