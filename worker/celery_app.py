"""The Celery app, configured from settings.

The broker is a doorbell, not the record: a message only says "look at invoice X". Every
task reloads its row and claims it with a compare-and-set before acting, and the beat's
sweeper re-rings rows that are due, so a lost, duplicated or late message is harmless.
The settings below are chosen for that model (measured facts: shared/design/CELERY-NOTES.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

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

# --- RabbitMQ (amqp://) --------------------------------------------------------------------
# Every billing queue is a quorum queue: replicated and durable (a doorbell survives a broker
# restart), with a delivery limit. A message handed back this many times (a worker that
# died holding it: SIGKILL, OOM, a dropped connection) is dropped by the broker instead of
# looping forever. Dropping is safe because the message is only a doorbell: the row is
# still due in the database and the sweeper rings it again; the row's attempts counter is
# what ends a poison invoice. 10 is far above what worker restarts do to a healthy message.
QUORUM_DELIVERY_LIMIT = 10
# How long a publish waits for the broker's confirm before it counts as not published (the
# doorbell logs it and the sweeper rings the row). Without a bound, a broker that blocks
# publishers (a memory or disk alarm) would hang the API's and the workers' publishes.
PUBLISH_CONFIRM_TIMEOUT_S = 10.0
# AMQP heartbeat of the workers' connection (the broker's default is 60 s). With 30 s, a
# dead worker's connection is closed by the broker after ~60 s, and its unacked messages
# (acks_late) go back to the queue at once, not after a visibility timeout as on Redis; a
# worker notices a dead broker as soon and reconnects. Producers (API, CLI) send no
# heartbeats: their connections are short-lived publishes, retried on a broken socket.
# On a lost connection RabbitMQ requeues the worker's unacked messages at once, and the
# tasks then running could never ack them: worker_cancel_long_running_tasks_on_connection_loss
# (below) cancels them, and the claim in the database makes the redelivery harmless.
AMQP_HEARTBEAT_S = 30


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


def is_amqp(broker_url: str) -> bool:
    """RabbitMQ (py-amqp): amqp://, amqps:// or pyamqp://."""
    return broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def billing_queues(broker_url: str) -> list[Queue]:
    """The four queues, as this broker wants them declared.

    On RabbitMQ each is a durable quorum queue with a delivery limit, bound to a **topic**
    exchange of its own name (Celery's native delayed delivery forwards a countdown message
    through an exchange, and cannot through a direct one). Producers that declare the queue
    themselves must declare it exactly so (or publish to the default exchange without
    declaring): RabbitMQ refuses a redeclaration with other arguments.
    Elsewhere, Celery's defaults (a direct exchange per queue).
    """
    names = (STAMP_QUEUE, NOTIFY_QUEUE, MAINTENANCE_QUEUE, INTAKE_QUEUE)
    if not is_amqp(broker_url):
        return [Queue(name) for name in names]
    arguments = {"x-queue-type": "quorum", "x-delivery-limit": QUORUM_DELIVERY_LIMIT}
    return [Queue(name, Exchange(name, type="topic", durable=True), routing_key=name,
                  durable=True, queue_arguments=dict(arguments)) for name in names]


def amqp_options() -> dict[str, Any]:
    """Celery settings only RabbitMQ gets (the why of each is beside it)."""
    return {
        # Publisher confirms: a publish returns once the broker has the message (for a
        # quorum queue: written on a majority of nodes), or raises; never "sent" into a
        # socket that was already dying. py-amqp reads this from the transport options.
        "broker_transport_options": {"confirm_publish": True, "connect_timeout": 10},
        "broker_heartbeat": AMQP_HEARTBEAT_S,
        "broker_heartbeat_checkrate": 2.0,
        # Quorum queues for every queue Celery declares (ours above, and any other it
        # creates); quorum queues do not support global QoS: Celery detects them and
        # applies the prefetch per consumer.
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        # Countdowns (the doorbell's fast path, <= 60 s, and intake's retries) use Celery's
        # native delayed delivery: the message waits in the broker's delay queues
        # (celery_delayed_0..27, quorum), not unacked in a worker's memory. So no worker
        # holds an unacked message longer than one task run, which is what RabbitMQ's
        # consumer_timeout (30 min by default) polices: past it the broker closes the
        # worker's channel, and every message on it is redelivered. See also
        # task_annotations below and BillingCelery.send_task (whole seconds).
        "broker_native_delayed_delivery_queue_type": "quorum",
        # consumer_timeout again: the reconcile may run up to an hour (its time limit,
        # worker.tasks), longer than the broker's 30 min. It is acked when it starts
        # instead: a reconcile lost to a crash runs again at the next beat (or by hand),
        # while a late ack would get the whole channel closed mid-run.
        "task_annotations": {RECONCILE_TASK: {"acks_late": False}},
    }


class BillingCelery(Celery):
    """Celery, with one RabbitMQ adjustment on every publish (``send_task``, which
    ``apply_async`` and ``retry`` call too).

    Native delayed delivery counts whole seconds: it truncates a countdown (2.9 s would
    arrive after 2 s, before the row is due) and refuses one below 1 s (a ValueError at
    publish). On RabbitMQ a countdown is rounded **up** to whole seconds: a ring is never
    early, at most a second late. Each publish also waits at most PUBLISH_CONFIRM_TIMEOUT_S
    for its confirm.
    """

    def send_task(self, name: str, args: Any = None, kwargs: Any = None,  # type: ignore[override]
                  countdown: float | None = None, eta: Any = None, **options: Any) -> Any:
        if is_amqp(str(self.conf.broker_url or "")):
            if countdown is not None and countdown > 0:
                countdown = float(math.ceil(countdown))
            options.setdefault("confirm_timeout", PUBLISH_CONFIRM_TIMEOUT_S)
        return super().send_task(name, args, kwargs, countdown=countdown, eta=eta, **options)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if is_amqp(settings.broker_url):
        return dict(amqp_options()["broker_transport_options"])
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


def connect_once(app: Celery, timeout_s: float) -> None:
    """Open one broker connection with short timeouts and no retries; raise if it fails
    (readiness checks: `billing health`, the API's /readyz)."""
    short = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    options = {**(app.conf.broker_transport_options or {}), **short}
    with app.connection_for_write(connect_timeout=timeout_s, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                               timeout=timeout_s)  # type: ignore[arg-type]  # float seconds


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    broker_url = settings.broker_url
    if broker_url.startswith("filesystem://"):
        # kombu's filesystem transport with its multi-process races fixed (worker/broker_fs.py)
        from worker import broker_fs

        broker_fs.register()
        # (a host name only to quiet kombu; this transport ignores it)
        broker_url = f"{broker_fs.ALIAS}://localhost/"
    app = BillingCelery("billing", set_as_current=False)
    if broker_url.startswith(("redis://", "rediss://")):
        # kombu's Redis transport with one publishing client per channel (worker/broker_redis.py)
        from worker.broker_redis import TRANSPORT

        app.conf.broker_transport = TRANSPORT
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
        task_queues=billing_queues(broker_url),
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
    # Flower's task events published in batches, at most every 0.5 s (worker.consumer)
    app.conf.worker_consumer = "worker.consumer:EventBatchingConsumer"
    if is_amqp(broker_url):
        app.conf.update({k: v for k, v in amqp_options().items()
                         if k != "broker_transport_options"})
        # the billing queues declared before native delayed delivery binds them (worker.broker_amqp)
        app.conf.worker_consumer = "worker.broker_amqp:BillingConsumer"
    return app
