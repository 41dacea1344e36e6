"""Found by the chaos run: the sweeper re-rings the same backlog on every sweep.

A row the sweeper finds due (``received`` older than the grace, ``retry_wait`` due, or an
expired lease) gets a new stamp message on *every* sweep until a worker claims it, even
though the previous sweep's message is still waiting in the queue. With a backlog (more
invoices than the workers drain within the 10 s grace) each sweep adds up to 500
duplicates; in ``python -m bench.chaos`` (sweep every 2 s) the stamp queue held ~15,000
duplicate doorbells when the last invoice settled, and the one invoice whose intake
doorbell was lost in the broker restart waited behind all of them: settle_s 115 s instead
of ~30 s. Claims keep the duplicates harmless for correctness; the cost is liveness.

Fixed: the sweeper remembers when it rang a row (``rung_at``) and does not ring it again
within ``sweep_rering_after_s``; its messages expire after that long (worker/invoices/sweep.py
``ring_due``). This test now guards the fix.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from worker.celery_app import SWEEP_TASK
from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.models import Invoice, utcnow
from worker.db.session import create_db_engine, session_factory
from worker.invoices.intake import Submission, submit_many
from worker.settings import load_settings
from worker.tasks import create_worker_app


def test_two_sweeps_ring_a_waiting_backlog_once(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "var", broker_url="filesystem://",
                             database_url=f"sqlite:///{tmp_path / 'billing.db'}")
    upgrade(settings.database_url)
    engine = create_db_engine(settings.database_url)
    sessions = session_factory(engine)
    submit_many(sessions, [Submission(build_invoice(folio=f"sw{i}"), "E1", f"SW{i}")
                           for i in range(20)])
    with sessions.begin() as s:  # a backlog: waiting longer than the sweeper's grace
        # (and intake's own doorbell, rung at submit, is older than the re-ring interval)
        s.execute(update(Invoice).values(next_attempt_at=utcnow() - timedelta(minutes=2),
                                         rung_at=utcnow() - timedelta(minutes=2)))
    sweep = create_worker_app(settings).tasks[SWEEP_TASK]
    queue = settings.data_dir / "broker" / "queue"
    try:
        assert sweep() == 20
        assert len(list(queue.glob("*.msg"))) == 20
        # The next sweep, a sweep interval later: no worker took the 20 doorbells yet.
        sweep()
        assert len(list(queue.glob("*.msg"))) == 20
    finally:
        engine.dispose()
