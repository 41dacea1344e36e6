"""GET /metrics on the API: Prometheus text from the database, no key, not in the contract."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from tests.ops.conftest import build_fleet


def test_metrics_served_without_key_from_the_database(
    client: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    build_fleet(sessions)
    res = client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(res.text) for s in f.samples}
    assert samples[("billing_database_up", ())] == 1.0
    assert samples[("billing_invoices", (("state", "stamped"),))] == 3.0
    assert samples[("billing_sif_deliveries_total", (("status", "204"),))] == 3.0
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
