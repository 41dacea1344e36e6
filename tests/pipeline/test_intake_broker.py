"""A producer that is not us: raw Celery protocol-2 messages, built by hand and published
with kombu alone to the `intake` queue of a real Redis, taken by a real Celery worker,
stamped at the Finkok sandbox and reported to the SIF sandbox over HTTP.

The message is built from Celery's documented message protocol v2 (headers + body
``[args, kwargs, embed]``), not with ``send_task``: this is what an ERP's Celery client in
another language puts on the wire.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from kombu import Connection, Exchange, Producer, Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.models import Invoice
from worker.db.session import create_db_engine
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings, load_settings
from worker.tasks import create_worker_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sif_sandbox() -> Iterator[SifSandbox]:
    with SifSandbox() as sandbox:
        yield sandbox


@pytest.fixture()
def stack(tmp_path: Path, redis_url: str, finkok: FinkokSandbox, sif_sandbox: SifSandbox) -> Settings:
    sif_sandbox.reset()
    db_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(db_url)
    return load_settings(
        data_dir=tmp_path / "var", database_url=db_url, broker_url=redis_url,
        broker_key_prefix=f"intake-{uuid.uuid4().hex[:8]}:",
        finkok_environment=finkok.url, finkok_read_timeout_s=2.0, sif_base_url=sif_sandbox.url,
        notify_backoff_base_s=0.05,
    )


def protocol2(task: str, kwargs: dict[str, Any], *,
              kwargsrepr: str) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """(body, headers, properties) of a Celery protocol-2 task message, by hand."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
        "group": None, "shadow": None, "eta": None, "expires": None, "retries": 0,
        "timelimit": [None, None], "argsrepr": "()", "kwargsrepr": kwargsrepr,
        "origin": "erp@elsewhere", "ignore_result": True,
    }
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([[], kwargs, embed]).encode("utf-8")
    properties = {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, "priority": 0}
    return body, headers, properties


def publish_raw(settings: Settings, body: bytes, headers: dict[str, Any], properties: dict[str, Any],
                *, content_type: str = "application/json") -> None:
    """kombu only: the default exchange, routing key = the queue's name (`intake`)."""
    options = {"global_keyprefix": settings.broker_key_prefix}
    with Connection(settings.broker_url, transport_options=options) as conn:
        queue = Queue("intake", Exchange(""), routing_key="intake")
        producer = Producer(conn.channel())
        producer.publish(body, exchange="", routing_key="intake", declare=[queue],
                         content_type=content_type, content_encoding="utf-8",
                         headers=headers, **properties)


def send(settings: Settings, **kwargs: Any) -> None:
    ids = f"{kwargs.get('empresaRefId')}/{kwargs.get('reference')}"
    publish_raw(settings, *protocol2("billing.submit_invoice", kwargs, kwargsrepr=ids))


def _wait(predicate: Callable[[], bool], timeout_s: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _invoices(settings: Settings) -> dict[str, tuple[str, int]]:
    engine = create_db_engine(settings.database_url)
    try:
        with Session(engine) as s:
            return {i.reference: (i.state, len(i.notifications))
                    for i in s.scalars(select(Invoice))}
    finally:
        engine.dispose()


def test_raw_protocol2_messages_are_stamped_or_refused_with_one_nok(
    stack: Settings, finkok: FinkokSandbox, sif_sandbox: SifSandbox
) -> None:
    app = create_worker_app(stack)
    good = base64.b64encode(build_invoice(folio="broker-1")).decode()
    junk = base64.b64encode(b"\xef\xbb\xbfthis is not a CFDI").decode()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20,
                      queues=["intake", "stamp", "notify", "maintenance"]):
        # not JSON at all: Celery refuses to decode it, logs it and acks it
        _, headers, properties = protocol2("billing.submit_invoice", {}, kwargsrepr="?")
        publish_raw(stack, b"\x80\x04garbage", headers, properties,
                    content_type="application/x-python-serialize")
        # a malformed envelope (empresaRefId that is not a path segment): dropped
        send(stack, empresaRefId="../x", reference="R-bad", xml=good)
        send(stack, empresaRefId="E1", reference="R-good", pedidoga="P1", xml=good)
        send(stack, empresaRefId="E1", reference="R-good", pedidoga="P1", xml=good)  # again
        for _ in range(2):  # the same refused message twice: one invoice, one NOK
            send(stack, empresaRefId="E1", reference="R-junk", pedidoga="P2", xml=junk)
        assert _wait(lambda: _invoices(stack) == {"R-good": ("stamped", 1), "R-junk": ("rejected", 1)}
                     and len(sif_sandbox.received()) == 2), (_invoices(stack), sif_sandbox.received())
        time.sleep(0.5)  # nothing more arrives
        import redis

        left = redis.Redis.from_url(stack.broker_url).llen(f"{stack.broker_key_prefix}intake")
        assert left == 0  # the undecodable and the malformed messages were taken, not stuck
    assert finkok.stats()["calls"]["stamp.stamp"] == 1  # the refused one never went out
    bodies = {r["body"]["reference"]: r["body"] for r in sif_sandbox.received()}
    assert len(sif_sandbox.received()) == 2
    assert bodies["R-good"]["status"] == "OK" and bodies["R-good"]["pedidoga"] == "P1"
    nok = bodies["R-junk"]
    assert nok["status"] == "NOK" and nok["pedidoga"] == "P2" and nok["errorDatosFiscales"] == 0
    assert nok["error"][0].startswith("not_well_formed – "), nok
    assert "R-bad" not in _invoices(stack)


def test_the_python_producer_on_the_embedded_broker(
    tmp_path: Path, finkok: FinkokSandbox, sif_sandbox: SifSandbox
) -> None:
    """The README's Python producer (`send_task` with kwargs and `kwargsrepr`) on the
    embedded default (SQLite + the filesystem broker): created -> stamped -> OK at SIF;
    refused -> rejected -> one NOK."""
    from worker.celery_app import SUBMIT_TASK, create_app

    sif_sandbox.reset()
    db_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(db_url)
    settings = load_settings(
        data_dir=tmp_path / "var", database_url=db_url, broker_url="filesystem://",
        finkok_environment=finkok.url, finkok_read_timeout_s=2.0, sif_base_url=sif_sandbox.url,
        notify_backoff_base_s=0.05,
    )
    producer = create_app(settings)  # what an ERP-side Python producer holds
    good = base64.b64encode(build_invoice(folio="embedded-1")).decode()
    junk = base64.b64encode(b"not a CFDI").decode()
    for ref, xml in (("E-good", good), ("E-junk", junk), ("E-junk", junk)):
        producer.send_task(SUBMIT_TASK, kwargs={"empresaRefId": "E1", "reference": ref, "xml": xml},
                           kwargsrepr=f"E1/{ref}")
    with start_worker(create_worker_app(settings), pool="solo", perform_ping_check=False,
                      shutdown_timeout=20, queues=["intake", "stamp", "notify", "maintenance"]):
        assert _wait(lambda: _invoices(settings) == {"E-good": ("stamped", 1),
                                                     "E-junk": ("rejected", 1)}
                     and len(sif_sandbox.received()) == 2), _invoices(settings)
    statuses = sorted(r["body"]["status"] for r in sif_sandbox.received())
    assert statuses == ["NOK", "OK"]
