"""healthz and readyz: readiness names what is down (real dead endpoints, no stubs)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from worker.api import create_api
from worker.api.server import BackgroundServer
from worker.api.services import READY_TIMEOUT_S
from worker.settings import Settings, load_settings

DEAD_REDIS = "redis://127.0.0.1:1/0"  # port 1: connection refused at once
DEAD_POSTGRES = "postgresql://nobody@127.0.0.1:1/none"


def test_healthz_and_readyz_when_all_is_up(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    res = client.get("/readyz")
    assert res.status_code == 200
    assert res.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_with_redis_as_broker(api_settings: Settings, redis_url: str) -> None:
    settings = api_settings.model_copy(update={"broker_url": redis_url})
    with BackgroundServer(create_api(settings)) as base, httpx.Client(base_url=base) as c:
        assert c.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.parametrize(
    ("overrides", "down"),
    [
        ({"broker_url": DEAD_REDIS}, {"broker"}),
        ({"database_url": DEAD_POSTGRES}, {"database"}),
        ({"broker_url": DEAD_REDIS, "database_url": DEAD_POSTGRES}, {"database", "broker"}),
    ],
)
def test_readyz_is_503_naming_what_is_down(
    tmp_path: Path, overrides: dict[str, str], down: set[str]
) -> None:
    given = {"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/b.db", **overrides}
    settings = load_settings(**given)
    with BackgroundServer(create_api(settings)) as base, httpx.Client(base_url=base, timeout=10) as c:
        assert c.get("/healthz").status_code == 200  # the process is up all the same
        started = time.monotonic()
        res = c.get("/readyz")
        elapsed = time.monotonic() - started
    assert res.status_code == 503
    body = res.json()
    assert body["status"] == "unavailable"
    assert {name for name, state in body["checks"].items() if state != "ok"} == down
    assert all(body["checks"][name].startswith("down (") for name in down)
    assert "nobody" not in res.text and "127.0.0.1" not in res.text  # no URLs in the answer
    assert elapsed < READY_TIMEOUT_S + 3  # each probe is bounded
