"""worker/consumer.py on a real worker and a real Redis: every task event reaches Flower's
channel, in a few batches. The negative control runs the same worker with Celery's stock
consumer, which publishes the events about once per task: what the batching exists to cut.

The tasks are stamp tasks for ids no invoice has (each claims nothing and ends
``skipped``): what is measured is the worker's event traffic, not stamping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import redis

from tests.pipeline.test_broker_redis import _event_messages
from worker.celery_app import STAMP_TASK, create_app
from worker.db.migrate import upgrade
from worker.doorbell import bell_for
from worker.settings import Settings

pytestmark = pytest.mark.slow

N = 24
TYPES = {"task-received", "task-started", "task-succeeded"}
STOCK = "celery.worker.consumer:Consumer"


def _worker(tmp_path: Path, redis_url: str, node: str, consumer: str | None) -> subprocess.Popen[bytes]:
    db_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({"BILLING_DATA_DIR": str(tmp_path / "var"), "BILLING_DATABASE_URL": db_url,
                "BILLING_BROKER_URL": redis_url})
    override = f"app.conf.worker_consumer = {consumer!r}; " if consumer else ""
    code = (f"from worker.tasks import app; {override}app.worker_main(['worker', '-P', 'prefork',"
            f" '-c', '1', '-Q', 'stamp', '-n', {node!r}, '--without-mingle', '--without-gossip',"
            " '--loglevel', 'INFO'])")
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _events_of(tmp_path: Path, redis_url: str, consumer: str | None) -> tuple[dict[str, set[str]], int]:
    """Run N tasks through a fresh worker; its events by task id, and how many messages
    (PUBLISHes) carried them."""
    server = redis.Redis.from_url(redis_url)
    db = server.connection_pool.connection_kwargs.get("db", 0)
    channel = server.pubsub()
    channel.psubscribe(f"/{db}.celeryev/*")
    host = f"events-{uuid.uuid4().hex[:8]}@test"
    proc = _worker(tmp_path, redis_url, host, consumer)
    events: dict[str, set[str]] = defaultdict(set)
    messages = 0
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:  # the worker's first heartbeat
            message = channel.get_message(timeout=0.2)
            ready = any(e.get("hostname") == host for e in _event_messages(message))
        assert ready, (tmp_path / "worker.log").read_text()[-3000:]
        app = create_app(Settings(broker_url=redis_url, data_dir=tmp_path / "producer"))
        bell = bell_for(app, STAMP_TASK)
        for _ in range(N):
            bell(str(uuid.uuid4()))
        while time.monotonic() < deadline and not (
                len(events) == N and all(v == TYPES for v in events.values())):
            message = channel.get_message(timeout=0.2)
            ours = [e for e in _event_messages(message)
                    if e.get("hostname") == host and e.get("type") in TYPES]
            messages += bool(ours)
            for event in ours:
                events[event["uuid"]].add(event["type"])
    finally:
        proc.terminate()
        proc.wait(30)
        channel.close()
    return events, messages


def test_every_task_event_arrives_in_a_few_batches(tmp_path: Path, redis_url: str) -> None:
    events, messages = _events_of(tmp_path / "ours", redis_url, None)
    assert len(events) == N and all(types == TYPES for types in events.values()), events
    stock_events, stock_messages = _events_of(tmp_path / "stock", redis_url, STOCK)
    assert len(stock_events) == N and all(t == TYPES for t in stock_events.values())
    assert messages <= N // 4, (messages, stock_messages)  # 3N events in a few messages
    assert stock_messages >= N // 2, stock_messages  # the control: ~one per task
