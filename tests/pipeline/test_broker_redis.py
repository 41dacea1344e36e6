"""worker/broker_redis.py on a real Redis: one publishing client per channel, every message
still delivered (tasks to their list, Flower events to their pub/sub topic), after a fork too.

The negative control runs kombu's stock transport the same way and counts one client per
message: what the project's transport exists to stop."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from worker.celery_app import create_app
from worker.settings import Settings

QUEUE = "billing-test-broker-redis"
N = 40


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many redis clients kombu's channels build (instrumentation, not a double: the
    original method runs)."""
    from kombu.transport import redis as kombu_redis

    calls: list[int] = []
    original = kombu_redis.Channel._create_client

    def counting(self: Any, asynchronous: bool = False) -> Any:
        calls.append(int(asynchronous))
        return original(self, asynchronous=asynchronous)

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counting)
    return calls


@pytest.fixture()
def server(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE)


def publish(redis_url: str, stock: bool, run: str) -> str:
    app = create_app(Settings(broker_url=redis_url))
    if stock:
        app.conf.broker_transport = None
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, enabled=True)
        producer = app.amqp.Producer(conn)
        for i in range(N):
            dispatcher.send("task-started", uuid=f"{run}-{i}")
            producer.publish({"n": i}, routing_key=QUEUE, exchange="", declare=[])
        return type(conn.transport).__module__


def _event_messages(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The Celery events one pub/sub message carries (a batch is a list); none for
    anything else."""
    if message is None or message["type"] != "pmessage":
        return []
    envelope = json.loads(message["data"])
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    events = json.loads(body)
    return events if isinstance(events, list) else [events]


def _event_uuids(message: dict[str, Any]) -> list[str]:
    return [e.get("uuid", "") for e in _event_messages(message)]


def received_events(events: redis.client.PubSub, run: str) -> int:
    """This run's event messages that reached the subscriber (one quiet second ends the
    count). Pub/sub channels are server-wide: other Celery workers on the same Redis (any
    database) publish on them too, and are not counted."""
    got, quiet_until = 0, time.monotonic() + 1.0
    while time.monotonic() < quiet_until:
        message = events.get_message(timeout=0.1)
        if (message is not None and message["type"] == "pmessage"
                and any(u.startswith(f"{run}-") for u in _event_uuids(message))):
            got += 1
            quiet_until = time.monotonic() + 1.0
    return got


@pytest.mark.parametrize("stock", [False, True], ids=["ours", "kombu-stock"])
def test_one_publishing_client_and_every_message_delivered(
    redis_url: str, server: redis.Redis, counted: list[int], stock: bool
) -> None:
    events = server.pubsub()
    db = server.connection_pool.connection_kwargs.get("db", 0)
    events.psubscribe(f"/{db}.celeryev/*")
    run = f"task-{os.getpid()}-{time.monotonic_ns()}"
    module = publish(redis_url, stock, run)

    assert module == ("kombu.transport.redis" if stock else "worker.broker_redis")
    assert server.llen(QUEUE) == N
    assert received_events(events, run) == N
    sync_clients = counted.count(0)
    if stock:
        assert sync_clients >= 2 * N  # a client per task message and per event
    else:
        assert sync_clients <= 1
    events.close()


def test_publishing_after_a_fork_uses_the_childs_own_connection(
    redis_url: str, server: redis.Redis
) -> None:
    app = create_app(Settings(broker_url=redis_url))
    with app.connection_for_write() as conn:
        producer = app.amqp.Producer(conn)
        producer.publish({"from": "parent"}, routing_key=QUEUE, exchange="", declare=[])
        pid = os.fork()
        if pid == 0:  # the child publishes through the client the parent built
            code = 0
            try:
                producer.publish({"from": "child"}, routing_key=QUEUE, exchange="", declare=[])
            except BaseException:  # noqa: BLE001 - reported through the exit code
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        producer.publish({"from": "parent again"}, routing_key=QUEUE, exchange="", declare=[])
    senders = sorted(json.loads(base64.b64decode(json.loads(m)["body"]))["from"]
                     for m in server.lrange(QUEUE, 0, -1))
    assert senders == ["child", "parent", "parent again"]
