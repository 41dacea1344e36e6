"""Prometheus metrics read from the database at scrape time.

``BillingCollector`` is a custom ``prometheus_client`` collector: every scrape runs a few
aggregate queries on the record (invoices, notifications, stamp_attempts,
delivery_attempts, finkok_credits, heartbeats) and reports what they say. Nothing is
counted in process memory, so the figures are the same whichever process serves them and
however many workers run on however many machines.

Names follow Prometheus conventions (``billing_`` prefix, base units, ``_total`` for
counters); README "Metrics" has the table. The counters are counts of rows that are never
deleted (Finkok calls, SIF deliveries), so they only grow. When the database does not
answer, a scrape still succeeds with ``billing_database_up 0`` and nothing else, and a
warning is logged.

The reconciliation gauges (``billing_reconcile_*``) come from the latest stored run of each
emisor RFC (``reconcile_runs``): orphans and phantoms from the latest run that could ask
Finkok, ``failed`` from the latest run at all, so a failing run neither hides nor clears
what the previous one found.

Cost: one connection and nine small queries per scrape; the Finkok call counter and
latency histogram scan ``stamp_attempts`` and the SIF counter ``delivery_attempts``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import Connection, Engine, case, func, select

from worker.db.breakers import scope_of_key
from worker.db.models import (
    Breaker,
    Cancellation,
    DeliveryAttempt,
    FinkokCredit,
    Heartbeat,
    Invoice,
    Notification,
    ReconcileRun,
    StampAttempt,
    utcnow,
)
from worker.db.states import CancellationState, InvoiceState, NotificationState
from worker.ops.stats import (
    MOVING_CANCELLATION_STATES,
    MOVING_INVOICE_STATES,
    MOVING_NOTIFICATION_STATES,
)

log = logging.getLogger(__name__)

# Finkok call latency buckets, in seconds (upper bounds; +Inf is added).
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NO_ANSWER = "none"  # the status label of a SIF delivery that got no HTTP answer


class BillingCollector:
    """Reads the database on each ``collect()``; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        try:
            with self.engine.connect() as conn:
                metrics = list(_collect(conn, utcnow()))
        except Exception as exc:  # a scrape answers even when the database does not
            log.warning("metrics: database not readable: %s: %s", type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "")
            metrics = []
        up = GaugeMetricFamily("billing_database_up",
                               "1 when the metrics query of the database succeeded")
        up.add_metric([], 1.0 if metrics else 0.0)
        yield up
        yield from metrics
        took = GaugeMetricFamily("billing_metrics_collect_duration_seconds",
                                 "How long reading the database for this scrape took")
        took.add_metric([], time.monotonic() - started)
        yield took


def create_registry(engine: Engine) -> CollectorRegistry:
    """A registry holding only the billing collector (no process metrics of the scraper)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BillingCollector(engine))
    return registry


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def _states(conn: Connection, model: Any, all_states: Iterable[str], moving: Iterable[str],
            now: datetime, name: str, noun: str) -> Iterator[Metric]:
    counts = GaugeMetricFamily(f"billing_{name}s", f"{noun}s by state", labels=["state"])
    found = {str(s): int(n) for s, n in conn.execute(
        select(model.state, func.count()).group_by(model.state))}
    for state in [*all_states, *sorted(set(found) - set(all_states))]:
        counts.add_metric([state], float(found.get(state, 0)))
    yield counts
    oldest = GaugeMetricFamily(
        f"billing_{name}_oldest_age_seconds",
        f"Age of the oldest {noun.lower()} in each state it leaves by itself "
        "(since it entered that state; 0 when there is none)", labels=["state"])
    moving = [str(s) for s in moving]
    since: dict[str, datetime] = dict(conn.execute(select(model.state, func.min(model.state_changed_at))
                              .where(model.state.in_(moving)).group_by(model.state)).all())
    for state in moving:
        oldest.add_metric([state], _age(now, since.get(state)))
    yield oldest


def _finkok(conn: Connection) -> Iterator[Metric]:
    calls = CounterMetricFamily("billing_finkok_calls", "Finkok calls by operation and outcome",
                                labels=["operation", "outcome"])
    for op, outcome, n in conn.execute(
        select(StampAttempt.operation, StampAttempt.outcome, func.count())
        .group_by(StampAttempt.operation, StampAttempt.outcome)
        .order_by(StampAttempt.operation, StampAttempt.outcome)
    ):
        calls.add_metric([str(op), str(outcome)], float(n))
    yield calls

    ms = StampAttempt.duration_ms
    bucket_cols = [func.sum(case((ms <= int(b * 1000), 1), else_=0)) for b in LATENCY_BUCKETS_S]
    hist = HistogramMetricFamily("billing_finkok_call_duration_seconds",
                                 "Finkok call latency by operation (stamp_attempts.duration_ms)",
                                 labels=["operation"])
    for row in conn.execute(
        select(StampAttempt.operation, func.count(), func.coalesce(func.sum(ms), 0), *bucket_cols)
        .group_by(StampAttempt.operation).order_by(StampAttempt.operation)
    ):
        op, count, total_ms, *cumulative = row
        buckets = [(_le(b), float(c or 0)) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
        buckets.append(("+Inf", float(count)))
        hist.add_metric([str(op)], buckets, sum_value=float(total_ms) / 1000.0)
    yield hist


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def _sif(conn: Connection) -> Iterator[Metric]:
    deliveries = CounterMetricFamily("billing_sif_deliveries",
                                     "SIF PUTs by HTTP status (\"none\": no answer)",
                                     labels=["status"])
    rows = conn.execute(select(DeliveryAttempt.status_code, func.count())
                        .group_by(DeliveryAttempt.status_code)).all()
    for code, n in sorted(rows, key=lambda r: (r[0] is None, r[0] or 0)):
        deliveries.add_metric([NO_ANSWER if code is None else str(code)], float(n))
    yield deliveries


def _credits(conn: Connection) -> Iterator[Metric]:
    gauge = GaugeMetricFamily("billing_finkok_credits",
                              "Stamps left at Finkok for each RFC (last report_credit reading; "
                              "absent for on-demand accounts)", labels=["taxpayer_id"])
    polled = GaugeMetricFamily("billing_finkok_credits_polled_timestamp_seconds",
                               "When report_credit was last asked for each RFC (Unix time)",
                               labels=["taxpayer_id"])
    failing = GaugeMetricFamily("billing_finkok_credits_poll_failed",
                                "1 when the last report_credit call for the RFC failed",
                                labels=["taxpayer_id"])
    for row in conn.execute(select(FinkokCredit).order_by(FinkokCredit.taxpayer_id)).mappings():
        rfc = str(row["taxpayer_id"])
        if row["credits"] is not None:
            gauge.add_metric([rfc], float(row["credits"]))
        polled.add_metric([rfc], row["polled_at"].timestamp())
        failing.add_metric([rfc], 1.0 if row["error"] else 0.0)
    yield from (gauge, polled, failing)


def _heartbeats(conn: Connection) -> Iterator[Metric]:
    at = GaugeMetricFamily("billing_heartbeat_timestamp_seconds",
                           "When a periodic job last ran (Unix time): sweep, poll_credits",
                           labels=["name"])
    every = GaugeMetricFamily("billing_heartbeat_interval_seconds",
                              "How often the job is scheduled to run", labels=["name"])
    for row in conn.execute(select(Heartbeat).order_by(Heartbeat.name)).mappings():
        at.add_metric([str(row["name"])], row["at"].timestamp())
        if row["interval_s"] is not None:
            every.add_metric([str(row["name"])], float(row["interval_s"]))
    yield from (at, every)


def _reconcile(conn: Connection) -> Iterator[Metric]:
    orphans = GaugeMetricFamily(
        "billing_reconcile_orphans",
        "Stamps Finkok lists for the RFC that no invoice holds, not adopted (last reconciliation)",
        labels=["taxpayer_id"])
    phantoms = GaugeMetricFamily(
        "billing_reconcile_phantoms",
        "Stamps of ours Finkok neither lists nor returns through `stamped` (last reconciliation)",
        labels=["taxpayer_id"])
    last = GaugeMetricFamily("billing_reconcile_last_run_timestamp_seconds",
                             "When the RFC was last reconciled against Finkok (Unix time)",
                             labels=["taxpayer_id"])
    failed = GaugeMetricFamily("billing_reconcile_failed",
                               "1 when the RFC's last reconciliation could not ask Finkok",
                               labels=["taxpayer_id"])
    r = ReconcileRun
    latest = select(func.max(r.id)).group_by(r.emisor_rfc)
    for row in conn.execute(select(r.emisor_rfc, r.started_at, r.finished_at, r.error)
                            .where(r.id.in_(latest)).order_by(r.emisor_rfc)).mappings():
        rfc = str(row["emisor_rfc"])
        last.add_metric([rfc], (row["finished_at"] or row["started_at"]).timestamp())
        failed.add_metric([rfc], 1.0 if row["error"] else 0.0)
    answered = select(func.max(r.id)).where(r.error.is_(None)).group_by(r.emisor_rfc)
    for row in conn.execute(select(r.emisor_rfc, r.orphans, r.adopted, r.phantoms)
                            .where(r.id.in_(answered)).order_by(r.emisor_rfc)).mappings():
        rfc = str(row["emisor_rfc"])
        orphans.add_metric([rfc], float(max(0, row["orphans"] - row["adopted"])))
        phantoms.add_metric([rfc], float(row["phantoms"]))
    yield from (orphans, phantoms, last, failed)


def _breakers(conn: Connection) -> Iterator[Metric]:
    """One series per breaker: 1 while it is not closed (open or probing), and what it holds.
    ``cause`` is the code that opened it (718, 702, 401, 708...): few values, one alarm each."""
    opened = GaugeMetricFamily("billing_breaker_open",
                               "1 while the breaker is open or half-open (calls for its scope "
                               "are paused), else 0", labels=["scope", "breaker", "cause"])
    held = GaugeMetricFamily("billing_held", "Rows waiting on each breaker (kind: invoice, "
                             "notification, cancellation)", labels=["kind", "breaker"])
    for row in conn.execute(select(Breaker.key, Breaker.state, Breaker.code)
                            .order_by(Breaker.key)).mappings():
        opened.add_metric([scope_of_key(row["key"]), row["key"], str(row["code"] or "")],
                          0.0 if row["state"] == "closed" else 1.0)
    for kind, model, state in (("invoice", Invoice, InvoiceState.HELD),
                               ("notification", Notification, NotificationState.HELD),
                               ("cancellation", Cancellation, CancellationState.HELD)):
        for key, n in conn.execute(select(model.hold_key, func.count())
                                   .where(model.state == state).group_by(model.hold_key)):
            held.add_metric([kind, str(key or "")], float(n))
    yield from (opened, held)


def _collect(conn: Connection, now: datetime) -> Iterator[Metric]:
    yield from _states(conn, Invoice, [str(s) for s in InvoiceState], MOVING_INVOICE_STATES, now,
                       "invoice", "Invoice")
    yield from _states(conn, Notification, [str(s) for s in NotificationState],
                       MOVING_NOTIFICATION_STATES, now, "notification", "SIF notification")
    yield from _finkok(conn)
    yield from _sif(conn)
    yield from _credits(conn)
    yield from _heartbeats(conn)
    yield from _reconcile(conn)
    yield from _breakers(conn)
    yield from _states(conn, Cancellation, [str(s) for s in CancellationState],
                       MOVING_CANCELLATION_STATES, now, "cancellation", "SAT cancellation")
