"""``billing.submit_invoice``: producers enqueue sealed CFDIs over the broker itself.

Sent by any Celery client (protocol 2, JSON serializer) to the ``intake`` queue with the
HTTP API's JSON fields as keyword arguments (``worker.invoices.intake_message``). It runs
the same ``submit()`` as the CLI and the API, and returns one line for Flower:
``created <id>``, ``existing <id>``, ``replaced <id>``, ``refused <reason>: ...`` or
``dropped: <why>``.

The message is the only copy of the document until intake commits it, so a database
that does not answer is **retried** (the message is sent again after a growing pause, up
to RETRY_MAX_S, for as long as it takes); everything else is decided and acked once. A
worker killed mid-task gives the message back (``task_reject_on_worker_lost``); running it
again is harmless (idempotent on empresaRefId/reference).
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from sqlalchemy.exc import InterfaceError, OperationalError

from worker import doorbell
from worker.celery_app import STAMP_TASK, SUBMIT_TASK

RETRY_MAX_S = 60.0


@shared_task(name=SUBMIT_TASK, bind=True, max_retries=None)
def submit_invoice(self: Task[Any, Any], *args: Any, **kwargs: Any) -> str:
    from worker.invoices.intake_message import receive
    from worker.tasks import resources

    r = resources(self.app)
    try:
        received = receive(r.sessions, args, kwargs, max_xml_bytes=r.settings.max_xml_bytes,
                           publish=doorbell.bell_for(self.app, STAMP_TASK),
                           checks=r.settings.intake_checks)
    except (OperationalError, InterfaceError) as exc:  # nothing committed: keep the message
        countdown = min(RETRY_MAX_S, 2.0 ** min(self.request.retries, 6))
        raise self.retry(exc=exc, countdown=countdown) from None
    doorbell.ring_all(self.app, received.follow_ups)
    return received.summary
