"""The Celery app, configured from settings.

The broker is a doorbell, not the record: a message only says "look at invoice X". Every
task reloads its row and claims it with a compare-and-set before acting, and the beat's
sweeper re-rings rows that are due, so a lost, duplicated or late message is harmless.
The settings below are chosen for that model (measured facts: shared/design/CELERY-NOTES.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Queue

from worker.settings import Settings, get_settings

STAMP_QUEUE = "stamp"
NOTIFY_QUEUE = "notify"
MAINTENANCE_QUEUE = "maintenance"
INTAKE_QUEUE = "intake"  # producers (ERPs) send billing.submit_invoice here

STAMP_TASK = "billing.stamp_invoice"
NOTIFY_TASK = "billing.notify_sif"
SWEEP_TASK = "billing.sweep"
POLL_PENDING_TASK = "billing.poll_pending"
POLL_CREDITS_TASK = "billing.poll_credits"
RECONCILE_TASK = "billing.reconcile"
SUBMIT_TASK = "billing.submit_invoice"  # the producers' contract (README, Intake over the broker)

# The longest a task may run: a Finkok call is bounded by its read timeout (60 s default),
# a few calls per task at most. The hard limit kills a stuck child; the DB lease (longer)
# then lets the sweeper hand the invoice to another worker, treated as ambiguous.
TASK_SOFT_TIME_LIMIT_S = 240
TASK_TIME_LIMIT_S = 300


def filesystem_broker_options(data_dir: Path) -> dict[str, Any]:
    """One folder per role under the data dir; producers and consumers share them."""
    root = data_dir / "broker"
    folders = {"queue": root / "queue", "control": root / "control", "processed": root / "processed"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "control_folder": str(folders["control"]),
        "processed_folder": str(folders["processed"]),
        "store_processed": False,
        # kombu polls virtual transports once a second by default: a doorbell waited up
        # to 1 s per hop (measured ~1.5 stamps/s per worker). A listdir every 0.1 s is cheap.
        "polling_interval": 0.1,
    }


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith("filesystem://"):
        return filesystem_broker_options(settings.data_dir)
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return {
            # Any message unacked this long is redelivered: keep it far above the longest
            # task (TASK_TIME_LIMIT_S). We never use long countdowns: waits live in the DB.
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            "socket_keepalive": True,
            "health_check_interval": 25,
            "retry_on_timeout": True,
            **({"global_keyprefix": settings.broker_key_prefix}
               if settings.broker_key_prefix else {}),
        }
    return {}


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    broker_url = settings.broker_url
    if broker_url.startswith("filesystem://"):
        # kombu's filesystem transport with its multi-process races fixed (worker/broker_fs.py)
        from worker import broker_fs

        broker_fs.register()
        # (a host name only to quiet kombu; this transport ignores it)
        broker_url = f"{broker_fs.ALIAS}://localhost/"
    app = Celery("billing", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        visibility_timeout=settings.broker_visibility_timeout_s,
        # Results live in the invoices table, not in Celery.
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        # Ack after the task ran, and give the message back if the child died: the claim in
        # the database makes a second run harmless, and the attempts counter bounds loops.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Stamping calls are long and slow: hold one message per process, no hoarding.
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=30.0,
        worker_enable_soft_shutdown_on_idle=True,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_TIME_LIMIT_S,
        # Flower: task events from the workers (received, started, succeeded, failed...).
        # No "sent" events from producers: each one is a second Redis round trip per
        # publish (measured: 40 % of an intake's CPU went to publishing, half of it the
        # sent event). Flower's Broker page shows what waits in each queue instead.
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_max_tasks_per_child=1000,
        task_default_queue=STAMP_QUEUE,
        task_queues=[Queue(STAMP_QUEUE), Queue(NOTIFY_QUEUE), Queue(MAINTENANCE_QUEUE),
                     Queue(INTAKE_QUEUE)],
        task_routes={
            STAMP_TASK: {"queue": STAMP_QUEUE},
            NOTIFY_TASK: {"queue": NOTIFY_QUEUE},
            SWEEP_TASK: {"queue": MAINTENANCE_QUEUE},
            POLL_PENDING_TASK: {"queue": MAINTENANCE_QUEUE},
            POLL_CREDITS_TASK: {"queue": MAINTENANCE_QUEUE},
            RECONCILE_TASK: {"queue": MAINTENANCE_QUEUE},
            SUBMIT_TASK: {"queue": INTAKE_QUEUE},
        },
    )
    return app
