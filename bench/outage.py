"""Outage scenario of the chaos run: sustained faults with default settings, then proof.

    python -m bench.chaos --scenario outage [--count 200] [--seconds 60] [--embedded]

While invoices flow (through intake, as in the chaos run), in four phases of
``--seconds / 4`` each: Finkok drops every connection; Finkok answers 708 (SAT
unreachable) to every stamp; Finkok answers 718 (out of credits) to every stamp; and SIF
answers 503 to every PUT from the second phase to the end. Then every fault stops. The
attempt and notification budgets are the defaults (the chaos run raises them to 40, which
hid this: 5 minutes of 708 used to NOK a third of the invoices in flight).

Besides the chaos run's must-be-zero figures, its ``RESULT`` line adds:

* ``false_noks``: NOKs for invoices whose document was fine (every invoice here is, except
  the ones built to be rejected with CFDI40143). Must be 0.
* ``calls_while_open``: stamp calls Finkok received while a Finkok breaker was fully open
  (not probing), beyond what was already in flight when it opened. Sampled every 0.2 s.
* ``recovered_s``: from the end of the last fault until every invoice settled and SIF
  held each outcome (the chaos run's ``settle_s``).
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.chaos import (
    FINKOK_CLEAN,
    NORMAL_RFC,
    PIPELINE_ENV,
    REJECT_CODE,
    REJECT_RFC,
    SIF_CLEAN,
    Chaos,
    ChaosOptions,
    ChaosReport,
    _check,
    _enqueue,
    _mask,
    _progress,
    _wait_ready,
    open_backends,
    plan_invoices,
    wait_settled,
)
from worker.stack import LocalStack

# Default budgets (not the chaos run's 40); breakers probe every 2 s so a short run recovers.
OUTAGE_ENV = {
    **PIPELINE_ENV,
    "BILLING_STAMP_MAX_ATTEMPTS": "8",
    "BILLING_NOTIFY_MAX_ATTEMPTS": "10",
    "BILLING_STAMP_BACKOFF_BASE_S": "2",
    "BILLING_STAMP_BACKOFF_MAX_S": "10",
    "BILLING_NOTIFY_BACKOFF_MAX_S": "5",
    "BILLING_BREAKER_PROBE_S": "2",
    "BILLING_BREAKER_SERVICE_THRESHOLD": "5",
}
PHASES = (("finkok drops every connection", {"outage": "drop"}),
          ("finkok answers 708 to every stamp", {"outage": "708"}),
          ("finkok answers 718 to every stamp", {"outage": "718"}))
# Calls that may already be past their breaker check when it opens: one per process.
IN_FLIGHT_PER_PROCESS = 1


def run_outage(opts: ChaosOptions, *, say: Any = print) -> ChaosReport:
    run_id = uuid.uuid4().hex[:6]
    data_dir = (opts.data_dir or Path(tempfile.mkdtemp(prefix="billing-outage-"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    planned = plan_invoices(opts.count, run_id)
    finkok_password = f"outage-fk-{secrets.token_hex(10)}"
    sif_secret = f"outage-sif-{secrets.token_hex(10)}"
    with open_backends(opts, data_dir) as (backend, database, broker):
        stack = LocalStack(
            data_dir, database_url=database.url, broker_url=broker.url,
            workers=opts.workers, concurrency=opts.concurrency,
            finkok_config={"seed": opts.seed, "rules": {REJECT_RFC: [f"reject:{REJECT_CODE}"],
                                                        NORMAL_RFC: []}},
            settings_env={**OUTAGE_ENV, **opts.settings_env,
                          "BILLING_FINKOK_PASSWORD": finkok_password,
                          "BILLING_SIF_SECRET": sif_secret},
        )
        say(f"backend: {backend} (database {_mask(database.url)}, broker {broker.url})")
        try:
            stack.start()
            _wait_ready(stack, opts.workers)
            chaos, watch, settle_s, settled = _phases_and_settle(stack, opts, planned, say)
            for i in range(opts.workers):
                stack.kill(f"worker{i}")
            stack.kill("beat")
            time.sleep(1.0)
            report = _check(stack, planned, chaos, settle_s, settled, backend,
                            [finkok_password, sif_secret], data_dir)
            false_noks = _false_noks(stack, planned)
            allowance = watch.episodes * opts.workers * opts.concurrency * IN_FLIGHT_PER_PROCESS
            report.figures.update(false_noks=false_noks,
                                  calls_while_open=max(0, watch.open_calls - allowance),
                                  recovered_s=round(settle_s, 1))
            report.extra = [("false_noks", True), ("calls_while_open", False),
                            ("recovered_s", False)]
            report.rows.append(("NOKs for fine documents", str(false_noks), "must be 0"))
            report.rows.append(("stamp calls while a breaker was open", str(watch.open_calls),
                                f"{watch.episodes} openings; up to {allowance} were in flight"))
            report.rows.append(("breaker states seen", ", ".join(sorted(watch.seen)), ""))
        finally:
            stack.stop()
    return report


class Watch:
    """Samples the Finkok breakers and the sandbox's stamp count during the faults."""

    def __init__(self, stack: LocalStack, sessions: Any) -> None:
        self.stack, self.sessions = stack, sessions
        self.open_calls = 0
        self.episodes = 0
        self.seen: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="outage-watch", daemon=True)

    def _state(self) -> tuple[bool, int]:
        from sqlalchemy import select

        from worker.db.models import Breaker

        with self.sessions() as s:
            rows = s.execute(select(Breaker.key, Breaker.state)
                             .where(Breaker.key.like("finkok:%"))).all()
        for key, state in rows:
            self.seen.add(f"{key}={state}")
        fully_open = any(state == "open" for _, state in rows)
        calls = int(self.stack.finkok_stats()["calls"].get("stamp.stamp", 0))
        return fully_open, calls

    def _run(self) -> None:
        was_open, calls = self._state()
        while not self.stop.wait(0.2):
            now_open, now_calls = self._state()
            if was_open and now_open:
                self.open_calls += now_calls - calls
            if now_open and not was_open:
                self.episodes += 1
            was_open, calls = now_open, now_calls


def _phases_and_settle(stack: LocalStack, opts: ChaosOptions, planned: list[Any],
                       say: Any) -> tuple[Chaos, Watch, float, bool]:
    from worker.celery_app import create_app
    from worker.db.session import create_db_engine, session_factory

    settings = stack.settings()
    engine = create_db_engine(settings.database_url, pool_size=2)
    sessions = session_factory(engine)
    chaos = Chaos()
    watch = Watch(stack, sessions)
    try:
        stack.finkok_configure(latency_ms=20.0, jitter_ms=10.0)
        producer = threading.Thread(
            target=_enqueue, name="outage-producer", daemon=True,
            args=(sessions, create_app(settings), planned, opts.seconds * 0.6, chaos))
        producer.start()
        watch.thread.start()
        phase_s = opts.seconds / 4
        for i, (what, switches) in enumerate(PHASES):
            stack.finkok_configure(**switches)
            if i == 1:
                stack.sif_configure(error_rate=1.0, error_status=503)
                say("SIF answers 503 from now on")
            say(f"phase {i + 1}: {what} for {phase_s:.0f} s; {_progress(sessions)}")
            time.sleep(phase_s)
        stack.finkok_configure(outage=None)
        say(f"phase 4: Finkok back, SIF still 503 for {phase_s:.0f} s")
        time.sleep(phase_s)
        producer.join()
        stack.finkok_configure(**FINKOK_CLEAN, outage=None)
        stack.sif_configure(**SIF_CLEAN)
        watch.stop.set()
        watch.thread.join()
        stopped = time.monotonic()
        chaos.at_fault_stop = _progress(sessions)
        say(f"faults stopped; settling ({chaos.at_fault_stop})")
        settled = wait_settled(sessions, len(planned), opts.settle_timeout_s, say)
        return chaos, watch, time.monotonic() - stopped, settled
    finally:
        engine.dispose()


def _false_noks(stack: LocalStack, planned: list[Any]) -> int:
    """NOKs SIF holds for invoices that were bound to be stamped (the sandbox's own record)."""
    fine = {p.reference for p in planned if p.expect == "stamped"}
    statuses = {key.split("/", 1)[1]: held for key, held in stack.sif_received()["statuses"].items()}
    return sum(1 for ref in fine if "NOK" in statuses.get(ref, []))


__all__ = ["run_outage"]
