"""Celery tasks: thin shells around the plain functions in worker.invoices.

Each task takes an id, builds nothing per call (clients and the engine live per process),
calls one service function, and publishes the follow-up doorbells the function returned,
after its commit. Arguments are ids only: never XML, never secrets (Flower shows them).

`celery -A worker.tasks worker` (what `billing worker` runs) uses `app` below, built
from the environment's settings.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from functools import cached_property

from celery import Celery, Task
from celery.signals import worker_init, worker_process_init
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker.celery_app import (
    MAINTENANCE_QUEUE,
    NOTIFY_TASK,
    POLL_CREDITS_TASK,
    POLL_PENDING_TASK,
    STAMP_TASK,
    SWEEP_TASK,
    create_app,
    publish_notify,
)
from worker.db.session import pinned_sessions
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

# A retry due sooner than this is also scheduled as a countdown message (fast path); later
# ones wait for the sweeper. Far below the Redis visibility timeout, so never redelivered.
COUNTDOWN_MAX_S = 60.0
SWEEP_GRACE_S = 10.0


@dataclass
class Resources:
    """Per-process clients and database handles (rebuilt after fork)."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        from worker.db.session import get_engine

        return get_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from worker.db.session import session_factory

        return session_factory(self.engine)

    @cached_property
    def finkok(self):  # type: ignore[no-untyped-def]
        from worker.finkok.client import FinkokClient

        return FinkokClient.from_settings(self.settings)

    @cached_property
    def sif(self):  # type: ignore[no-untyped-def]
        from worker.sif.client import SifClient

        return SifClient(self.settings)

    def warm(self) -> None:
        """Connect before the first task instead of in it. Measured with 24 processes
        starting at once on 2 cores: each one's first task took ~3 s cold and ~1 s warmed
        (a steady task, Finkok at 300 ms, takes ~0.4 s)."""
        try:
            with self.engine.connect():
                pass
            self.finkok.zeep_client("stamp")
            self.sif  # noqa: B018 - builds the HTTP client
        except Exception as exc:  # the first task meets the same problem and reports it
            log.warning("worker process warm-up failed: %s", type(exc).__name__)


def owner_name(task_id: str | None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{(task_id or '-')[:8]}"


def create_worker_app(settings: Settings | None = None) -> Celery:
    """The Celery app with the billing tasks registered, bound to these settings."""
    settings = settings or get_settings()
    app = create_app(settings)
    state = {"resources": Resources(settings)}

    def resources() -> Resources:
        return state["resources"]

    from worker.logging import instrument_tasks  # task name and id on each log line
    instrument_tasks(app)

    @worker_init.connect(weak=False)
    def _warm_up(**_: object) -> None:
        warm_up()

    @worker_process_init.connect(weak=False)
    def _after_fork(**_: object) -> None:
        # No pooled connection or HTTP session may cross a fork.
        from worker.db.session import dispose_engines

        dispose_engines()
        state["resources"] = Resources(settings)
        state["resources"].warm()

    @app.task(name=STAMP_TASK, bind=True, shared=False)
    def stamp_invoice(self: Task, invoice_id: str) -> str:
        from worker.invoices.stamping import stamp_invoice as run

        r = resources()
        with pinned_sessions(r.engine) as sessions:
            outcome = run(sessions, r.finkok, settings, invoice_id, owner=owner_name(self.request.id))
        for notification_id in outcome.notification_ids:
            _publish(lambda: publish_notify(app, notification_id))
        if outcome.retry_in_s is not None and outcome.retry_in_s <= COUNTDOWN_MAX_S:
            _publish(lambda: app.send_task(STAMP_TASK, args=[invoice_id],
                                           countdown=outcome.retry_in_s))
        return outcome.state

    @app.task(name=NOTIFY_TASK, bind=True, shared=False)
    def notify_sif(self: Task, notification_id: str) -> str:
        from worker.db.models import utcnow
        from worker.invoices.notify import deliver

        r = resources()
        with pinned_sessions(r.engine) as sessions:
            outcome = deliver(sessions, notification_id, client=r.sif, settings=settings,
                              owner=owner_name(self.request.id))
        if outcome.next_attempt_at is not None:
            delay = (outcome.next_attempt_at - utcnow()).total_seconds()
            if delay <= COUNTDOWN_MAX_S:  # fast path; later retries wait for the sweeper
                _publish(lambda: app.send_task(NOTIFY_TASK, args=[notification_id],
                                               countdown=max(0.0, delay)))
        return outcome.result

    @app.task(name=POLL_PENDING_TASK, bind=True, shared=False)
    def poll_pending(self: Task) -> int:
        from worker.db.models import utcnow
        from worker.invoices.pending import due_pending, poll_one

        r = resources()
        with r.sessions() as session:
            ids = due_pending(session, utcnow())
        for invoice_id in ids:
            outcome = poll_one(r.sessions, r.finkok, settings, invoice_id,
                               owner=owner_name(self.request.id))
            for notification_id in outcome.notification_ids:
                _publish(lambda: publish_notify(app, notification_id))
        return len(ids)

    @app.task(name=SWEEP_TASK, shared=False)
    def sweep() -> int:
        from worker.db.models import utcnow
        from worker.invoices.sweep import ring_due

        r = resources()
        with r.sessions.begin() as session:
            due = ring_due(session, utcnow(), grace_s=SWEEP_GRACE_S,
                           rering_after_s=settings.sweep_rering_after_s)
        _heartbeat(r, "sweep", settings.sweep_interval_s)  # metrics/health: the beat is alive
        # A swept doorbell that waits in the queue past the next re-ring is dropped unrun.
        expires = settings.sweep_rering_after_s
        for invoice_id in due.invoices:
            _publish(lambda: app.send_task(STAMP_TASK, args=[invoice_id], expires=expires))
        for notification_id in due.notifications:
            _publish(lambda: app.send_task(NOTIFY_TASK, args=[notification_id], expires=expires))
        if due.invoices or due.notifications:
            log.info("sweep: rang %d invoices, %d notifications",
                     len(due.invoices), len(due.notifications))
        return len(due.invoices) + len(due.notifications)

    @app.task(name=POLL_CREDITS_TASK, shared=False)
    def poll_credits() -> int:
        """Finkok's report_credit for each RFC, stored for metrics and health (worker.ops.credits)."""
        from worker.ops.credits import poll_credits as run

        r = resources()
        return len(run(r.sessions, r.finkok, settings))

    app.conf.beat_schedule = {
        "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s,
                  "options": {"queue": MAINTENANCE_QUEUE, "expires": settings.sweep_interval_s}},
        "poll-pending": {"task": POLL_PENDING_TASK,
                         "schedule": min(settings.pending_poll_interval_s, 60.0),
                         "options": {"queue": MAINTENANCE_QUEUE,
                                     "expires": settings.pending_poll_interval_s}},
        "poll-credits": {"task": POLL_CREDITS_TASK, "schedule": settings.credits_poll_interval_s,
                         "options": {"queue": MAINTENANCE_QUEUE,
                                     "expires": settings.credits_poll_interval_s}},
    }
    return app


def warm_up() -> None:
    """Import and parse, in the main process, what every task needs, so the pool's forked
    children start hot (measured: cold children spent ~7 s in their first stamp on 2 cores
    parsing WSDLs and importing zeep, lxml and fpdf2 all at once)."""
    import worker.invoices.notify  # noqa: F401
    import worker.invoices.pending  # noqa: F401
    import worker.invoices.stamping  # noqa: F401
    from worker.cfdi import extract, pdf  # noqa: F401
    from worker.finkok import services
    from worker.sif.client import tls_context

    services.document("stamp")
    tls_context()  # the SIF client's CA bundle, loaded once for all children


def _heartbeat(r: Resources, name: str, interval_s: float) -> None:
    """Record that a periodic job ran (worker.ops.heartbeats); a failure only logs."""
    from worker.ops.heartbeats import record

    try:
        record(r.sessions, name, interval_s=interval_s)
    except Exception as exc:
        log.warning("heartbeat %s not recorded: %s", name, type(exc).__name__)


def _publish(send: object) -> None:
    """Publish a follow-up; if the broker is down, the sweeper will ring it later."""
    try:
        send()  # type: ignore[operator]
    except Exception as exc:
        log.warning("follow-up publish failed, the sweeper will retry: %s", type(exc).__name__)


app = create_worker_app()
