"""Celery tasks: thin shells around the plain functions in worker.invoices.

Each task takes one id (or none), calls one service function with this process's
``Resources``, rings the follow-ups that function returned (after its commit) and returns
a line for people (Flower): ``stamped 5B13C295-…``, ``rejected CFDI40143``. Arguments are
ids only: never XML, never secrets. Task names are stable (``worker.celery_app``).

`celery -A worker.tasks worker` (what `billing worker` runs) uses ``app`` below, built
from the environment's settings; ``create_worker_app(settings)`` builds one for others.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from contextlib import nullcontext
from typing import Any
from weakref import WeakKeyDictionary

from celery import Celery, Task, shared_task
from celery.signals import (
    worker_before_create_process,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from worker import doorbell
from worker.cancellations import (
    tasks as cancel_tasks,  # billing.cancel_invoice & co (issue 16)
)
from worker.celery_app import (
    MAINTENANCE_QUEUE,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    POLL_CREDITS_TASK,
    POLL_PENDING_TASK,
    RECONCILE_TASK,
    STAMP_QUEUE,
    STAMP_TASK,
    SWEEP_TASK,
    create_app,
)
from worker.db.models import utcnow
from worker.db.session import pinned_sessions, release_pinned
from worker.invoices import (
    first_delivery,
    intake_task,  # noqa: F401  (billing.submit_invoice, the producers' task)
)
from worker.invoices.first_delivery import FirstDelivery, Seat
from worker.resources import Resources
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

SWEEP_GRACE_S = 10.0

_RESOURCES: WeakKeyDictionary[Celery, Resources] = WeakKeyDictionary()
_FIRST_DELIVERY: WeakKeyDictionary[Celery, FirstDelivery] = WeakKeyDictionary()


def resources(app: Celery) -> Resources:
    """This process's resources for ``app`` (rebuilt in each pool child after the fork)."""
    return _RESOURCES[app]


def owner_name(task_id: str | None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{(task_id or '-')[:8]}"


@shared_task(name=STAMP_TASK, bind=True)
def stamp_invoice(self: Task[Any, Any], invoice_id: str) -> str:
    from worker.invoices.stamping import stamp_invoice as run

    r = resources(self.app)
    first = _FIRST_DELIVERY.get(self.app)  # SIF's first attempt in this process's thread
    with first.seat() if first else nullcontext(Seat()) as seat:
        with pinned_sessions(r.engine) as sessions:
            outcome = run(sessions, r.finkok, r.settings, invoice_id,
                          owner=owner_name(self.request.id), deliverer=seat.owner)
        rings = seat.hand(outcome.follow_ups, outcome.handed)
    doorbell.ring_all(self.app, rings)
    return outcome.summary


@shared_task(name=NOTIFY_TASK, bind=True)
def notify_sif(self: Task[Any, Any], notification_id: str) -> str:
    from worker.invoices.notify import deliver

    r = resources(self.app)
    with pinned_sessions(r.engine) as sessions:
        outcome = deliver(sessions, notification_id, client=r.sif, settings=r.settings,
                          owner=owner_name(self.request.id))
    doorbell.ring_all(self.app, outcome.follow_ups)
    return outcome.summary


@shared_task(name=POLL_PENDING_TASK, bind=True)
def poll_pending(self: Task[Any, Any]) -> int:
    from worker.invoices.pending import due_pending, poll_one

    r = resources(self.app)
    with r.sessions() as session:
        ids = due_pending(session, utcnow())
    for invoice_id in ids:
        outcome = poll_one(r.sessions, r.finkok, r.settings, invoice_id,
                           owner=owner_name(self.request.id))
        doorbell.ring_all(self.app, outcome.follow_ups)
    return len(ids)


@shared_task(name=SWEEP_TASK, bind=True)
def sweep(self: Task[Any, Any]) -> int:
    from worker.invoices.holds import maintain
    from worker.invoices.sweep import ring_due

    r = resources(self.app)
    with r.sessions.begin() as session:  # held rows: probes, releases, SAT's window
        held = maintain(session, r.settings, utcnow())
    doorbell.ring_all(self.app, held.follow_ups)
    queued = (doorbell.waiting(self.app, STAMP_QUEUE), doorbell.waiting(self.app, NOTIFY_QUEUE))
    with r.sessions.begin() as session:
        due = ring_due(session, utcnow(), grace_s=SWEEP_GRACE_S,
                       rering_after_s=r.settings.sweep_rering_after_s, queued=queued)
    _heartbeat(r, "sweep", r.settings.sweep_interval_s)  # metrics/health: the beat is alive
    doorbell.ring_all(self.app, due.follow_ups(expires=r.settings.sweep_rering_after_s))
    if due.invoices or due.notifications:
        log.info("sweep: rang %d invoices, %d notifications",
                 len(due.invoices), len(due.notifications))
    return len(due.invoices) + len(due.notifications)


@shared_task(name=POLL_CREDITS_TASK, bind=True)
def poll_credits(self: Task[Any, Any]) -> int:
    """Finkok's report_credit for each RFC, stored for metrics and health (worker.ops.credits)."""
    from worker.ops.credits import poll_credits as run

    r = resources(self.app)
    return len(run(r.sessions, r.finkok, r.settings))


@shared_task(name=RECONCILE_TASK, bind=True, soft_time_limit=3600, time_limit=3700)
def reconcile(self: Task[Any, Any]) -> int:
    """Finkok's ledger vs ours for each RFC over the last reconcile_window_s
    (worker.ops.reconcile): findings stored, never adopted (an operator adopts, audited, with
    `billing reconcile --yes`). Returns the unresolved orphans and phantoms."""
    from worker.ops.reconcile import RECONCILE, run_reconcile

    r = resources(self.app)
    _run_id, reports = run_reconcile(r.sessions, r.finkok, r.settings, trigger="beat")
    _heartbeat(r, RECONCILE, r.settings.reconcile_interval_s)
    return sum(rep.unresolved_orphans + len(rep.phantoms) for rep in reports)


def _heartbeat(r: Resources, name: str, interval_s: float) -> None:
    """Record that a periodic job ran (worker.ops.heartbeats); a failure only logs."""
    from worker.ops.heartbeats import record

    try:
        record(r.sessions, name, interval_s=interval_s)
    except Exception as exc:
        log.warning("heartbeat %s not recorded: %s", name, type(exc).__name__)


def create_worker_app(settings: Settings | None = None) -> Celery:
    """The Celery app with the billing tasks and the beat schedule, bound to these settings."""
    settings = settings or get_settings()
    app = create_app(settings)
    _RESOURCES[app] = Resources(settings)

    from worker.logging import instrument_tasks  # task name and id on each log line

    instrument_tasks(app)

    @worker_init.connect(weak=False)
    def _warm_up(**_: object) -> None:
        warm_up()

    @worker_before_create_process.connect(weak=False)
    def _before_fork(**_: object) -> None:
        freeze_for_fork()

    @worker_process_init.connect(weak=False)
    def _after_fork(**_: object) -> None:
        # No pooled connection or HTTP session may cross a fork.
        from worker.db.session import dispose_engines

        dispose_engines()
        _RESOURCES[app] = Resources(settings)
        _RESOURCES[app].warm()
        if settings.sif_first_delivery:
            _FIRST_DELIVERY[app] = first_delivery.for_worker(app, _RESOURCES[app])

    @worker_process_shutdown.connect(weak=False)
    def _before_exit(**_: object) -> None:
        first = _FIRST_DELIVERY.pop(app, None)
        if first is not None:
            first.close()
        release_pinned()  # the connections the task and delivery threads kept

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
        "reconcile": {"task": RECONCILE_TASK, "schedule": settings.reconcile_interval_s,
                      "options": {"queue": MAINTENANCE_QUEUE,
                                  "expires": settings.reconcile_interval_s}},
    }
    app.conf.beat_schedule["poll-cancellations"] = cancel_tasks.beat_entry(settings)
    app.finalize(auto=True)  # binds the shared tasks above to this app
    return app


def freeze_for_fork() -> None:
    """Before the prefork pool forks a child (Celery's ``worker_before_create_process``,
    in the worker's main process): collect, then move every object left to the
    interpreter's permanent generation (``gc.freeze``), so that no later collection, in
    the child or in this process, writes to the objects the child inherited.

    A collection writes the GC header of every object it visits, and the kernel copies
    each page it writes to that is shared with a forked process. Without this, a child's
    first full collection copied what it had inherited (the warmed-up imports, WSDLs,
    settings) in one step, once per child, and Celery's own ``gc.collect()`` before each
    next fork (its issue #2927) copied the main process's pages away from the children
    forked before. Measured with ``bench.pipeline`` (one worker of 2 processes), between
    two samples 20 s apart: a child's private dirty memory 48.9 -> 74.7 MB with its RSS
    123.5 -> 124.6 MB, and the main process's Pss 65.7 -> 78.2 MB with its RSS flat
    (125.8 -> 125.9 MB).

    Frozen objects are never collected in this process: a cycle that is alive at a fork
    and dropped later stays (a fork happens at start and when a child is replaced under
    ``worker_max_tasks_per_child``).
    """
    gc.collect()
    gc.freeze()


def warm_up() -> None:
    """Import and parse, in the main process, what every task needs, so the pool's forked
    children start hot (measured: cold children spent ~7 s in their first stamp on 2 cores
    parsing WSDLs and importing zeep, lxml and the PDF library, fpdf2 then, all at once)."""
    import worker.invoices.notify  # noqa: F401
    import worker.invoices.pending  # noqa: F401
    import worker.invoices.stamping  # noqa: F401
    from worker.cfdi import extract, pdf  # noqa: F401
    from worker.finkok import services
    from worker.sif.client import tls_context

    services.document("stamp")
    tls_context()  # the SIF client's CA bundle, loaded once for all children


app = create_worker_app()
