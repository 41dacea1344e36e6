"""Structured logs: JSON and console lines, extras and task context on every line,
secrets masked whoever logs them, and the Celery tasks' names and id-only arguments."""

from __future__ import annotations

import inspect
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.celery_app import NOTIFY_TASK, POLL_PENDING_TASK, STAMP_TASK, SWEEP_TASK
from worker.cfdi.factory import build_invoice
from worker.db.models import Notification
from worker.invoices.intake import submit
from worker.logging import HANDLER_NAME, configure_logging
from worker.settings import Settings, load_settings


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[str]:
        return [ln for ln in self.stream.getvalue().splitlines() if ln.strip()]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in self.lines()]


@pytest.fixture()
def captured() -> Iterator[Captured]:
    """configure_logging's handler on a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    level = root.level
    cap = Captured()
    yield cap
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _settings(**values: Any) -> Settings:
    return load_settings(**values)


def test_json_lines_carry_extras_and_bound_context(captured: Captured) -> None:
    configure_logging(_settings(log_json=True, log_level="INFO"), stream=captured.stream)
    log = logging.getLogger("worker.invoices.stamping")
    log.info("invoice %s -> %s", "I-1", "stamped", extra={"invoice_id": "I-1", "sat_uuid": "U-1"})
    log.debug("not shown at INFO")
    structlog.contextvars.bind_contextvars(reference="REF-9", invoice_id="I-2")
    log.warning("retrying", extra={"invoice_id": "I-3"})  # an explicit extra wins
    structlog.get_logger("worker.ops").info("native structlog", count=2)
    first, second, third = captured.records()
    assert first["event"] == "invoice I-1 -> stamped"
    assert (first["invoice_id"], first["sat_uuid"], first["level"], first["logger"]) == (
        "I-1", "U-1", "info", "worker.invoices.stamping")
    assert first["timestamp"].endswith("Z")
    assert (second["invoice_id"], second["reference"], second["level"]) == ("I-3", "REF-9", "warning")
    assert (third["event"], third["count"], third["reference"]) == ("native structlog", 2, "REF-9")


def test_console_lines_for_people(captured: Captured) -> None:
    configure_logging(_settings(log_json=False), stream=captured.stream)
    logging.getLogger("worker.x").info("stamped", extra={"invoice_id": "I-7"})
    (line,) = captured.lines()
    assert "stamped" in line and "invoice_id=I-7" in line and "[worker.x]" in line


def test_configure_twice_keeps_one_handler_and_leaves_others(captured: Captured) -> None:
    other = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(other)
    try:
        configure_logging(_settings(log_json=True), stream=captured.stream)
        configure_logging(_settings(log_json=True), stream=captured.stream)
        ours = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
        assert len(ours) == 1 and other in root.handlers
        logging.getLogger("worker.y").warning("once")
        assert len(captured.lines()) == 1
    finally:
        root.removeHandler(other)


def test_secrets_never_reach_the_output(captured: Captured) -> None:
    from worker.redaction import register_secret

    register_secret("Fk-pa55-log-test", min_length=6)  # as the Finkok client does
    register_secret("sif-s3cret-log-test")  # as the SIF client does
    configure_logging(_settings(log_json=True, log_level="DEBUG"), stream=captured.stream)
    logging.getLogger("zeep.transports").debug(
        "HTTP Post: <soap:Body><ns0:username>u</ns0:username><ns0:password>short</ns0:password>"
        "</soap:Body>")
    log = logging.getLogger("worker.anything")  # a logger no client attached a filter to
    log.warning("login with %s and %s", "Fk-pa55-log-test", "sif-s3cret-log-test")
    log.info("detail", extra={"detail": "header X-Secret: sif-s3cret-log-test"})
    try:
        raise RuntimeError("refused password Fk-pa55-log-test")
    except RuntimeError:
        log.exception("call failed")
    out = captured.stream.getvalue()
    assert "Fk-pa55-log-test" not in out and "sif-s3cret-log-test" not in out
    assert ">short<" not in out
    envelope, login, detail, failure = captured.records()
    assert "<ns0:password>********</ns0:password>" in envelope["event"]
    assert login["event"] == "login with ******** and ********"
    assert detail["detail"] == "header X-Secret: ********"
    assert "RuntimeError: refused password ********" in failure["exception"]


def test_tasks_log_their_invoice_reference_and_uuid(
    captured: Captured, sessions: sessionmaker[Session], finkok: Any, sif: Any, tmp_path: Any,
    db_url: str,
) -> None:
    """Run the real tasks (eagerly, in this process) and read every line they logged."""
    from worker.tasks import create_worker_app

    settings = load_settings(data_dir=tmp_path / "var", database_url=db_url, log_json=True,
                             finkok_environment=finkok.url, sif_base_url=sif.url)
    app = create_worker_app(settings)  # it instruments its tasks (worker.logging.instrument_tasks)
    configure_logging(settings, stream=captured.stream)
    invoice_id = submit(sessions, build_invoice(folio="log"), empresa_ref_id="E1",
                        reference="LOG-1").invoice_id

    stamp = app.tasks[STAMP_TASK].apply(args=[invoice_id], task_id="task-stamp-1")
    result = stamp.get()  # what Flower shows: the state and the SAT UUID
    assert result.startswith("stamped ")
    with sessions() as s:
        notification_id = s.scalar(select(Notification.id).where(Notification.invoice_id == invoice_id))
    assert app.tasks[NOTIFY_TASK].apply(args=[notification_id], task_id="task-notify-1").get() \
        == "delivered 204"

    records = [r for r in captured.records() if r.get("task_id")]
    stamp_lines = [r for r in records if r["task_id"] == "task-stamp-1"]
    notify_lines = [r for r in records if r["task_id"] == "task-notify-1"]
    assert stamp_lines and notify_lines
    for r in stamp_lines:
        assert (r["task_name"], r["invoice_id"], r["reference"], r["empresa_ref_id"]) == (
            STAMP_TASK, invoice_id, "LOG-1", "E1")
    outcome = next(r for r in stamp_lines if "-> stamped" in r["event"])
    assert outcome["sat_uuid"]  # the stamping line names the new UUID
    assert result == f"stamped {outcome['sat_uuid']}"
    for r in notify_lines:
        assert (r["notification_id"], r["invoice_id"], r["reference"], r["sat_uuid"]) == (
            notification_id, invoice_id, "LOG-1", outcome["sat_uuid"])
    # after the task, nothing stays bound
    logging.getLogger("worker.z").warning("between tasks")
    assert "task_id" not in captured.records()[-1]


def test_tasks_have_clear_names_and_take_ids_only(tmp_path: Any) -> None:
    from worker.tasks import create_worker_app

    app = create_worker_app(load_settings(data_dir=tmp_path / "var"))
    params = {name: list(inspect.signature(app.tasks[name].run).parameters)
              for name in (STAMP_TASK, NOTIFY_TASK, POLL_PENDING_TASK, SWEEP_TASK)}
    assert params == {STAMP_TASK: ["invoice_id"], NOTIFY_TASK: ["notification_id"],
                      POLL_PENDING_TASK: [], SWEEP_TASK: []}


def test_default_stream_is_the_current_stderr(captured: Captured,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(_settings(log_json=True))  # no stream: whatever sys.stderr is then
    logging.getLogger("worker.q").warning("to stderr", extra={"invoice_id": "I-9"})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["event"], line["invoice_id"]) == ("to stderr", "I-9")
