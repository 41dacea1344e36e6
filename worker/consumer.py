"""The worker's Celery consumer: Flower's task events published in batches, not per loop turn.

A worker sends three task events per task (``task-received``, ``task-started``,
``task-succeeded``), which Celery buffers and, stock, publishes at the next turn of the
event loop: with tasks finishing one after another that is one or two PUBLISHes per task.
Measured in a stamp worker's main process (issue 15, ``bench.pipeline``'s stack, paired
runs): the events were a third of its CPU, ~1.3 ms per task, and publishing them at most
every ``EVENTS_FLUSH_S`` instead saved 1.06 ms per task (PUBLISHes per task ~1.7 -> ~0.1).

What stays the same: every event is sent, with the time it happened (set when the event is
made, not when it is published), so Flower's timestamps and runtimes do not change; a
burst still goes out at once when the buffer holds ``buffer_limit`` (24) events; a warm
shutdown publishes what is buffered (stock Celery dropped it). What changes: Flower's live
view may lag by up to ``EVENTS_FLUSH_S``, and a worker killed outright loses the events of
that last half second (stock: of its last loop turn). Events are for people watching;
nothing in the pipeline reads them.

``EventBatchingConsumer`` is every worker's consumer (``worker_consumer``, set by
``worker.celery_app.create_app``); RabbitMQ's (``worker.broker_amqp.BillingConsumer``)
builds on it. It uses Celery's ``on_send_event_buffered`` hook, the one Celery's own
``Events`` step wires to the dispatcher; tests/pipeline/test_task_events.py proves it on a
real worker against the stock consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)

EVENTS_FLUSH_S = 0.5


class EventBatchingConsumer(Consumer):
    # Celery's own attributes, which its type stubs leave out
    hub: Any
    event_dispatcher: Any
    _flush_events: Callable[[], None]

    _events_flush_at = 0.0  # monotonic time of the flush already scheduled

    def on_send_event_buffered(self) -> None:  # type: ignore[override]  # (stubs: a Callable)
        """A task event was buffered: make sure a flush is scheduled within the window
        (one timer per window; if a timer were ever lost, the next event schedules one)."""
        if self.hub is None:  # (Celery buffers only with an event loop)
            return
        now = time.monotonic()
        if now >= self._events_flush_at:
            self._events_flush_at = now + EVENTS_FLUSH_S
            self.hub.call_later(EVENTS_FLUSH_S, self._flush_events)

    def stop(self) -> None:
        """Publish what is buffered, then stop as Celery does (a warm shutdown)."""
        if self.event_dispatcher is not None:
            try:
                self._flush_events()
            except Exception as exc:  # the broker is gone: nothing to publish them to
                log.warning("task events not published at shutdown: %s", exc)
        super().stop()
