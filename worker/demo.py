"""`billing demo`: the whole mission, end to end, on the embedded defaults.

It starts the Finkok and SIF sandboxes, a worker and the beat as real processes (SQLite and
the filesystem broker under the data folder), makes N freshly sealed invoices, enqueues
them, waits until every one settled and SIF heard about it, and checks each outcome
against what its scenario must produce. Scenarios are chosen by receptor RFC, which the
Finkok sandbox's rules key on.
"""

from __future__ import annotations

import base64
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from worker.stack import LocalStack, wait_until

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class Scenario:
    name: str
    receptor_rfc: str
    rules: tuple[str, ...]
    state: str  # the invoice's expected final state
    sif: str  # the status SIF must end up holding: OK / NOK


NORMAL = Scenario("normal", "URE180429TM6", (), "stamped", "OK")
SCENARIOS = (
    Scenario("fiscal data (CFDI40143)", "RJE010101AB1", ("reject:CFDI40143",),
             "rejected", "NOK"),
    Scenario("lost answer, 307", "TRE010101AB3",
             ("drop_once", "603_once", "307_no_xml"), "stamped", "OK"),
    Scenario("pending at SAT", "PEN010101AB2", ("drop_once", "pending"), "stamped", "OK"),
    Scenario("SOAP fault", "FLT010101AB4", ("fault_once",), "stamped", "OK"),
    Scenario("hang > timeout", "HNG010101AB5", ("hang_once",),
             "stamped", "OK"),
)


def plan(count: int) -> list[Scenario]:
    """Every special scenario once (when count allows), the rest normal invoices."""
    special = list(SCENARIOS[: max(0, count - 1)]) if count < len(SCENARIOS) + 1 else list(SCENARIOS)
    return special + [NORMAL] * (count - len(special))


@dataclass
class DemoResult:
    ok: bool
    rows: list[dict[str, Any]]
    seconds: float
    new_stamps: int
    double_stamped: int
    pdf_dir: Path
    problems: list[str]
    cancellation: dict[str, Any] | None = None  # the one cancellation the demo makes at SAT


def run_demo(count: int, data_dir: Path, *, timeout_s: float, progress: Any = None) -> DemoResult:
    """Run the demo and stop the stack: the result once every invoice settled (or timed out)."""
    with running_demo(count, data_dir, timeout_s=timeout_s, progress=progress) as (result, _):
        return result


@contextmanager
def running_demo(
    count: int, data_dir: Path, *, timeout_s: float, progress: Any = None,
) -> Iterator[tuple[DemoResult, LocalStack]]:
    """Start the stack, enqueue ``count`` invoices, wait until they settled; yield the result
    with the stack still running; stop every process of the stack on exit (normal, error,
    KeyboardInterrupt alike)."""
    from worker.celery_app import STAMP_TASK, create_app
    from worker.cfdi.factory import build_invoice
    from worker.db.session import create_db_engine, session_factory
    from worker.doorbell import bell_for
    from worker.invoices.intake import submit

    if data_dir.exists():
        shutil.rmtree(data_dir)
    scenarios = plan(count)
    stack = LocalStack(
        data_dir,
        workers=1,
        concurrency=4,
        finkok_config={"rules": {s.receptor_rfc: list(s.rules) for s in SCENARIOS},
                       "pending_polls": 2, "hang_s": 4},
        settings_env={
            "BILLING_FINKOK_READ_TIMEOUT_S": "2",
            "BILLING_STAMP_BACKOFF_BASE_S": "0.5",
            "BILLING_STAMP_BACKOFF_MAX_S": "4",
            "BILLING_SWEEP_INTERVAL_S": "2",
            "BILLING_PENDING_POLL_INTERVAL_S": "1",
            "BILLING_CLAIM_LEASE_S": "30",
            "BILLING_CANCEL_POLL_BASE_S": "0.5",
        },
    )
    started = time.monotonic()
    try:
        stack.start()
        settings = stack.settings()
        app = create_app(settings)
        engine = create_db_engine(settings.database_url)
        sessions = session_factory(engine)
        task = progress.add_task("enqueue", total=count) if progress else None
        references: dict[str, Scenario] = {}
        for i, scenario in enumerate(scenarios):
            reference = f"DEMO-{i:05d}"
            xml = build_invoice(folio=str(i), receptor_rfc=scenario.receptor_rfc,
                                receptor_nombre=f"CLIENTE DEMO {i}")
            submit(sessions, xml, empresa_ref_id="00000000-0000-1000-0000-000000000001",
                   reference=reference, pedidoga=f"P{i}",
                   publish=bell_for(app, STAMP_TASK))
            references[reference] = scenario
            if progress:
                progress.advance(task)

        wait_until(lambda: _settled(sessions, count), timeout_s, interval_s=0.5)
        seconds = time.monotonic() - started
        cancellation = _cancel_one(sessions, settings, app, references, timeout_s=60)
        rows = _rows(sessions)
        for row in rows:
            row["scenario"] = references[row["reference"]]
        finkok = stack.finkok_stats()["totals"]
        received = stack.sif_received()
        pdf_dir = data_dir / "pdfs"
        _write_pdfs(received, pdf_dir)
        problems = _check(rows, references, received)
        if finkok.get("double_stamped_documents"):
            problems.append(f"{finkok['double_stamped_documents']} documents stamped twice")
        if cancellation is not None and cancellation["state"] != "cancelled":
            problems.append(f"the cancellation of {cancellation['reference']} ended "
                            f"{cancellation['state']}, expected cancelled")
        engine.dispose()
        yield DemoResult(not problems, rows, seconds, int(finkok.get("new_stamps", 0)),
                         int(finkok.get("double_stamped_documents", 0)), pdf_dir, problems,
                         cancellation), stack
    finally:
        stack.stop()


def _cancel_one(sessions: sessionmaker[Session], settings: Any, app: Any,
                references: dict[str, Scenario], *, timeout_s: float) -> dict[str, Any] | None:
    """Cancel the first normal stamped invoice at SAT (motivo 02) through the same door as
    `billing cancel`, and wait until SAT's answer is final."""
    from worker.cancellations.door import request_cancellation
    from worker.cancellations.tasks import ring_send
    from worker.db.models import Cancellation, Invoice

    normal = [ref for ref, s in references.items() if s is NORMAL]
    if not normal:
        return None
    reference = normal[0]
    with sessions() as s:
        invoice = s.scalars(select(Invoice).where(Invoice.reference == reference)).one()
        if invoice.state != "stamped":
            return None
    out = request_cancellation(sessions, settings.cancel_csds, reference, motivo="02",
                               substitute=None, reason="demo: an amount was wrong",
                               actor="billing demo")
    cid = out.cancellation_id
    if cid is None:
        return None
    ring_send(app, cid)

    def state_and_acuse() -> tuple[str, int]:
        with sessions() as s:
            row = s.get(Cancellation, cid)
            return (row.state, len(row.acuse or b"")) if row is not None else ("missing", 0)

    wait_until(lambda: state_and_acuse()[0] in ("cancelled", "cancel_rejected", "cancel_failed"),
               timeout_s, interval_s=0.5)
    state, acuse_bytes = state_and_acuse()
    return {"reference": reference, "uuid": invoice.sat_uuid, "motivo": "02", "state": state,
            "acuse_bytes": acuse_bytes}


def _settled(sessions: sessionmaker[Session], count: int) -> bool:
    from sqlalchemy import func

    from worker.db.models import Invoice, Notification

    with sessions() as s:
        settled = s.scalar(select(func.count()).select_from(Invoice)
                           .where(Invoice.state.in_(("stamped", "rejected", "failed"))))
        delivered = s.scalar(select(func.count()).select_from(Notification)
                             .where(Notification.state.in_(("delivered", "failed"))))
        waiting = s.scalar(select(func.count()).select_from(Notification)
                           .where(Notification.state.not_in(("delivered", "failed"))))
    return settled == count and (delivered or 0) >= count and waiting == 0


def _rows(sessions: Any) -> list[dict[str, Any]]:
    from worker.db.models import Invoice

    with sessions() as s:
        out = []
        for inv in s.scalars(select(Invoice).order_by(Invoice.reference)):
            out.append({
                "reference": inv.reference, "state": inv.state, "sat_uuid": inv.sat_uuid,
                "codes": [e["code"] for e in inv.errors or []],
                "operations": [a.operation for a in inv.stamp_attempts],
                "sif": [(n.status, n.state, n.result) for n in inv.notifications],
            })
        return out


def _check(rows: list[dict[str, Any]], references: dict[str, Any],
           received: dict[str, Any]) -> list[str]:
    """Each invoice in its scenario's state, and SIF holding the scenario's status."""
    problems = []
    statuses = received.get("statuses", {})
    for row in rows:
        scenario = references[row["reference"]]
        if row["state"] != scenario.state:
            problems.append(f"{row['reference']} ({scenario.name}): {row['state']}, "
                            f"expected {scenario.state} {row['codes']}")
        held: list[str] = next(
            (v for k, v in statuses.items() if k.endswith("/" + row["reference"])), []
        )
        if held[-1:] != [scenario.sif]:
            problems.append(f"{row['reference']} ({scenario.name}): SIF holds {held}, "
                            f"expected {scenario.sif}")
    return problems


def _write_pdfs(received: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for req in received.get("requests", []):
        body = req.get("body") or {}
        if body.get("status") == "OK" and body.get("pdf") and req.get("code") in (204, 409):
            (folder / f"{body['reference']}.pdf").write_bytes(base64.b64decode(body["pdf"]))


def summary(result: DemoResult) -> list[tuple[str, str, str, str, str, str]]:
    """One row per scenario: invoices, expected, got, what SIF holds, a Finkok call path."""
    out = []
    for scenario in (*SCENARIOS, NORMAL):
        rows = [r for r in result.rows if r["scenario"] == scenario]
        if not rows:
            continue
        got = Counter(r["state"] for r in rows)
        sif = Counter(f"{n[0]} {n[2] or n[1]}" for r in rows for n in r["sif"])
        path = " ".join(_runs(rows[0]["operations"]))
        out.append((scenario.name, str(len(rows)), f"{scenario.state}, {scenario.sif}",
                    ", ".join(f"{k} ×{v}" for k, v in got.items()),
                    ", ".join(f"{k} ×{v}" for k, v in sif.items()), path))
    return out


def _runs(operations: list[str]) -> list[str]:
    """['stamp', 'query_pending', 'query_pending'] -> ['stamp', 'query_pending×2']"""
    out: list[str] = []
    for op in operations:
        if out and out[-1].split("×")[0] == op:
            n = int(out[-1].split("×")[1]) + 1 if "×" in out[-1] else 2
            out[-1] = f"{op}×{n}"
        else:
            out.append(op)
    return out


def export_lines(stack: LocalStack) -> list[str]:
    """``export BILLING_…=…`` lines (shell-quoted) that point other `billing` commands at
    this stack: its database, broker, data folder, the sandboxes and the demo's tuning."""
    env = stack.env()
    return [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())
            if name.startswith("BILLING_") and not name.startswith("BILLING_TEST_")]
