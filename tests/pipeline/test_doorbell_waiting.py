"""doorbell.waiting(): the broker's own count of the doorbells waiting in a queue, which
the sweeper sets against the rows that are due (worker/invoices/sweep.py ring_due), on
each broker the project runs: Redis, RabbitMQ (quorum queues) and the embedded filesystem
transport. A broker that cannot answer gives None, never an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery

from worker import doorbell
from worker.celery_app import STAMP_QUEUE, create_app
from worker.settings import load_settings


def _ring(app: Celery, n: int) -> None:
    for i in range(n):
        assert doorbell.ring(app, doorbell.stamp(f"invoice-{i}"))


def _declared(app: Celery) -> None:
    """The stamp queue as a worker declares it (with its arguments on RabbitMQ)."""
    with app.connection_for_write() as conn:
        app.amqp.queues[STAMP_QUEUE](conn.default_channel).declare()


def _purged(app: Celery) -> Celery:
    _declared(app)
    with app.connection_for_write() as conn:
        app.amqp.queues[STAMP_QUEUE](conn.default_channel).purge()
    return app


def test_waiting_counts_the_redis_queue(redis_url: str, tmp_path: Path) -> None:
    app = _purged(create_app(load_settings(data_dir=tmp_path, broker_url=redis_url)))
    assert doorbell.waiting(app, STAMP_QUEUE) == 0
    _ring(app, 3)
    assert doorbell.waiting(app, STAMP_QUEUE) == 3
    _purged(app)


def test_waiting_counts_the_filesystem_queue(tmp_path: Path) -> None:
    app = _purged(create_app(load_settings(data_dir=tmp_path, broker_url="filesystem://")))
    _ring(app, 4)
    assert doorbell.waiting(app, STAMP_QUEUE) == 4


@pytest.mark.slow
def test_waiting_counts_the_rabbitmq_quorum_queue(rabbitmq_url: str, tmp_path: Path) -> None:
    app = _purged(create_app(load_settings(data_dir=tmp_path, broker_url=rabbitmq_url)))
    _ring(app, 2)
    assert doorbell.waiting(app, STAMP_QUEUE) == 2


def test_a_broker_that_cannot_answer_is_none(tmp_path: Path) -> None:
    app = create_app(load_settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0"))
    assert doorbell.waiting(app, STAMP_QUEUE) is None
