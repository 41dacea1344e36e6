"""The Celery consumer for a RabbitMQ broker: the billing queues are declared before native
delayed delivery sets itself up.

A worker declares all four queues and their exchanges when it starts, also those it does
not consume (``-Q stamp``): native delayed delivery binds every queue of the app to its
delay exchanges, and a missing exchange made that setup fail for all ("Failed to bind queue
'notify' ... no exchange", then "Native delayed delivery will not be available": countdown
doorbells unrouted until the sweeper rang their rows again).

The order has to be a dependency: a consumer's steps are ordered by what they require, and
two steps that do not require each other come in an order that changes with the
interpreter's hash seed (Celery collects them in a set; ``PYTHONHASHSEED=1`` put delayed
delivery first every time). ``DelayedDeliveryAfterQueues`` is Celery's step requiring
``DeclareBillingQueues``; ``BillingConsumer`` has both in place of the stock one
(``worker_consumer``, set by ``worker.celery_app.create_app`` for amqp:// URLs; it batches
Flower's task events as every worker's consumer does: ``worker.consumer``). A real
`billing worker -Q stamp` with PYTHONHASHSEED=1 proves it (tests/pipeline/test_rabbitmq.py;
the stock order fails it).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery

from worker.celery_app import billing_queues
from worker.consumer import EventBatchingConsumer

log = logging.getLogger(__name__)

_STOCK_DELAYED_DELIVERY = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


class DeclareBillingQueues(bootsteps.StartStopStep):
    """Declare the four billing queues and their exchanges. A broker that does not answer
    yet is left to the worker's own connection retries."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        try:
            channel = c.connection.default_channel
            for queue in billing_queues(str(c.app.conf.broker_url)):
                queue(channel).declare()
        except Exception as exc:  # logged; the consumer's own setup reports the rest
            log.warning("could not declare the billing queues: %s", exc)


class DelayedDeliveryAfterQueues(DelayedDelivery):
    """Celery's native delayed delivery, once the billing queues exist."""

    # Celery's own requirement (tests/pipeline/test_rabbitmq.py checks it is still the only
    # one), then ours.
    requires = ("celery.worker.consumer.tasks:Tasks", DeclareBillingQueues)


class BillingConsumer(EventBatchingConsumer):
    """The events batched as every worker's (``worker.consumer``), and the steps above."""

    # celery-types declares Consumer.Blueprint as an attribute, not as the class it is
    class Blueprint(Consumer.Blueprint):  # type: ignore[misc,valid-type]
        default_steps = [
            new
            for step in Consumer.Blueprint.default_steps
            for new in ((f"{__name__}:DeclareBillingQueues",
                         f"{__name__}:DelayedDeliveryAfterQueues")
                        if step == _STOCK_DELAYED_DELIVERY else (step,))
        ]
