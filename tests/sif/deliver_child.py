"""Run one ``deliver`` in a separate process, so a test can SIGKILL it between the PUT
and the commit. Settings come from BILLING_* variables (the secret never goes in argv).

    python -m tests.sif.deliver_child <database_url> <notification_id> <owner> <now ISO>
"""

from __future__ import annotations

import sys
from datetime import datetime

from worker.db.session import create_db_engine
from worker.invoices.notify import deliver
from worker.settings import load_settings
from worker.sif.client import SifClient


def main(argv: list[str]) -> int:
    database_url, notification_id, owner, now = argv
    settings = load_settings()
    engine = create_db_engine(database_url)
    with SifClient(settings) as client:
        outcome = deliver(
            engine, notification_id, client=client, settings=settings, owner=owner,
            now=datetime.fromisoformat(now),
        )
    print(outcome.result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
