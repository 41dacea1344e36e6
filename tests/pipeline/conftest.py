from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, bootsteps

from worker.finkok.client import FinkokClient
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings, load_settings


@pytest.fixture(scope="session")
def finkok_sandbox() -> Iterator[FinkokSandbox]:
    with FinkokSandbox() as sandbox:
        yield sandbox


def restore_defaults(sandbox: FinkokSandbox) -> None:
    """Forget every document and put every switch back to its default."""
    from dataclasses import asdict

    from worker.sandbox.finkok.config import SandboxConfig

    defaults = asdict(SandboxConfig())
    defaults.pop("username"), defaults.pop("password")
    sandbox.configure(**defaults)
    sandbox.reset()


@pytest.fixture()
def finkok(finkok_sandbox: FinkokSandbox) -> Iterator[FinkokSandbox]:
    restore_defaults(finkok_sandbox)
    yield finkok_sandbox
    restore_defaults(finkok_sandbox)


@pytest.fixture()
def settings(finkok: FinkokSandbox, db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        finkok_environment=finkok.url,
        finkok_read_timeout_s=1.0,
        stamp_backoff_base_s=0.01,
        stamp_backoff_max_s=0.05,
        stamp_max_attempts=4,
        stamped_lookup_max_attempts=3,
        pending_poll_interval_s=0.01,
    )


@pytest.fixture()
def client(settings: Settings) -> Iterator[FinkokClient]:
    with FinkokClient.from_settings(settings) as c:
        yield c


class _HubTick(bootsteps.StartStopStep):
    """A 20 ms timer in an embedded worker's event loop (``start_worker``), so the loop
    never sleeps on work it already has.

    kombu's hub polls until its next timer, at most 10 s, and two things of an embedded
    worker wait on that poll. The solo pool's late ack: the task runs inside the loop and
    its ack is queued with ``hub.call_soon``; when the delivery was read by a ready callback
    (the loop's first drain, or the AMQP transport's reader, which re-queues itself after
    each read) rather than on a poll event, the ack is queued after the loop took its ready
    list, and with prefetch 1 RabbitMQ sends nothing until it goes. And the stop:
    ``start_worker`` sets a flag the loop reads once per round. Measured on RabbitMQ: 10.0 s
    and ~4 s ack stalls (test_worker's 25 doorbells 15.5 s, now 2.5 s; its sweeper test
    11.1 s, now 1.2 s) and ~9 s to stop a worker (test_rabbitmq's declare test 14.8 s).
    Production workers are prefork (`billing worker`): the ack follows the child's result,
    a poll event; 200 doorbells through one prefork child on RabbitMQ took 3.0 s, through
    `-P solo` 100 took 11.6 s."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._entry: Any = None

    def start(self, c: Any) -> None:
        if c.hub is not None:
            self._entry = c.hub.call_repeatedly(0.02, lambda: None)

    def stop(self, c: Any) -> None:
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None


def prompt_hub(app: Celery) -> Celery:
    """``app`` with the ``_HubTick`` step, for a worker started with ``start_worker``."""
    app.steps["consumer"].add(_HubTick)
    return app
