"""billing.poll_credits is registered like the other tasks: its stable name, the
maintenance queue, and a beat entry every credits_poll_interval_s. Run eagerly against the
Finkok sandbox it stores the reading and the heartbeat."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from tests.ops.conftest import EMISOR
from worker.celery_app import MAINTENANCE_QUEUE, POLL_CREDITS_TASK
from worker.finkok.client import FinkokClient
from worker.ops.credits import last_readings
from worker.ops.heartbeats import last_beats
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import load_settings
from worker.tasks import create_worker_app


def test_registered_routed_and_scheduled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path, credits_poll_interval_s=123.0)
    app = create_worker_app(settings)
    assert POLL_CREDITS_TASK == "billing.poll_credits"
    assert POLL_CREDITS_TASK in app.tasks
    assert app.conf.task_routes[POLL_CREDITS_TASK] == {"queue": MAINTENANCE_QUEUE}
    entry = app.conf.beat_schedule["poll-credits"]
    assert entry["task"] == POLL_CREDITS_TASK and entry["schedule"] == 123.0
    assert entry["options"]["queue"] == MAINTENANCE_QUEUE


def test_task_body_stores_reading_and_heartbeat(
    db_url: str, sessions: sessionmaker[Session], finkok: FinkokSandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path, database_url=db_url,
                             finkok_environment=finkok.url, credits_rfcs=EMISOR.lower())
    with FinkokClient.from_settings(settings) as client:
        client.registration_add(EMISOR, type_user="P")
        client.registration_assign(EMISOR, 777)
    app = create_worker_app(settings)
    assert app.tasks[POLL_CREDITS_TASK].apply().get() == 1
    with sessions() as db:
        [reading] = last_readings(db)
        beats = last_beats(db)
    assert (reading.taxpayer_id, reading.credits, reading.error) == (EMISOR, 777, None)
    assert beats["poll_credits"].interval_s == settings.credits_poll_interval_s
