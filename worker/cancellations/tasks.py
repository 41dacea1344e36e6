"""Celery shells for cancellations (registered by ``worker.tasks``); ids and ids only.

* ``billing.cancel_invoice`` (queue ``intake``): the producers' entry point. Keyword
  arguments only, JSON: ``invoice`` (our id, the SAT UUID or the reference), ``motivo``
  (01-04), ``substitute`` (the replacing UUID, motivo 01 only), ``reason``, optionally
  ``empresaRefId`` (to resolve a reference). It runs the same ``request_cancellation`` as
  the CLI and the API (idempotent: the same request twice is one cancellation) and returns
  ``created <id>``, ``existing <id>``, ``rerequested <id>`` or ``refused <reason>: ...``.
* ``billing.send_cancellation(cancellation_id)`` (queue ``stamp``): claim, sign, send, settle.
* ``billing.poll_cancellations()`` (queue ``maintenance``, from the beat): SAT's status for
  due ``in_process`` rows; sends due ``requested`` rows and expired ``sending`` ones.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from worker import doorbell
from worker.celery_app import INTAKE_QUEUE, MAINTENANCE_QUEUE, STAMP_QUEUE

CANCEL_TASK = "billing.cancel_invoice"
SEND_CANCEL_TASK = "billing.send_cancellation"
POLL_CANCELLATIONS_TASK = "billing.poll_cancellations"
QUEUES = {CANCEL_TASK: INTAKE_QUEUE, SEND_CANCEL_TASK: STAMP_QUEUE,
          POLL_CANCELLATIONS_TASK: MAINTENANCE_QUEUE}
FIELDS = {"invoice", "motivo", "substitute", "reason", "empresaRefId"}


def ring_send(app: Any, cancellation_id: str) -> bool:
    """Publish billing.send_cancellation after a commit; never raises (the poller sends a
    due row anyway)."""
    return doorbell.ring(app, doorbell.Ring(SEND_CANCEL_TASK, cancellation_id))


@shared_task(name=CANCEL_TASK, bind=True)
def cancel_invoice(self: Task[Any, Any], *args: Any, **kwargs: Any) -> str:
    from worker.cancellations.door import CancelRefused, request_cancellation
    from worker.tasks import resources

    if args or set(kwargs) - FIELDS or not all(isinstance(kwargs.get(k), str)
                                               for k in ("invoice", "motivo", "reason")):
        return "dropped: keyword arguments invoice, motivo, reason (strings), substitute, empresaRefId"
    r = resources(self.app)
    try:
        out = request_cancellation(
            r.sessions, r.settings.cancel_csds, kwargs["invoice"], motivo=kwargs["motivo"],
            substitute=kwargs.get("substitute"), reason=kwargs["reason"],
            actor=f"broker:{self.request.id or '-'}", empresa=kwargs.get("empresaRefId"))
    except CancelRefused as exc:
        return f"refused {exc.reason}: {exc}"
    if out.ring and out.cancellation_id:
        ring_send(self.app, out.cancellation_id)
    return out.summary


@shared_task(name=SEND_CANCEL_TASK, bind=True)
def send_cancellation(self: Task[Any, Any], cancellation_id: str) -> str:
    from worker.cancellations.sending import send_cancellation as run
    from worker.db.session import pinned_sessions
    from worker.tasks import owner_name, resources

    r = resources(self.app)
    with pinned_sessions(r.engine) as sessions:
        out = run(sessions, r.finkok, r.settings, cancellation_id, owner=owner_name(self.request.id))
    if out.retry_in_s is not None and out.retry_in_s <= doorbell.COUNTDOWN_MAX_S:
        doorbell.ring(self.app, doorbell.Ring(SEND_CANCEL_TASK, cancellation_id,
                                              countdown=out.retry_in_s))
    return out.summary


@shared_task(name=POLL_CANCELLATIONS_TASK, bind=True)
def poll_cancellations(self: Task[Any, Any]) -> int:
    from worker.cancellations.polling import due, poll_one
    from worker.cancellations.sending import send_cancellation as send
    from worker.db.models import utcnow
    from worker.tasks import owner_name, resources

    r = resources(self.app)
    with r.sessions() as session:
        found = due(session, utcnow())
    for cid in found.to_send:
        send(r.sessions, r.finkok, r.settings, cid, owner=owner_name(self.request.id))
    for cid in found.to_poll:
        poll_one(r.sessions, r.finkok, r.settings, cid, worker=owner_name(self.request.id))
    return len(found.to_send) + len(found.to_poll)


def beat_entry(settings: Any) -> dict[str, Any]:
    every = min(settings.cancel_poll_base_s, 60.0)
    return {"task": POLL_CANCELLATIONS_TASK, "schedule": every,
            "options": {"queue": MAINTENANCE_QUEUE, "expires": every}}
