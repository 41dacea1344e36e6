"""The metrics and alerts against the real Prometheus tools (Debian's `prometheus`
package: `prometheus` and `promtool`).

* `promtool check rules` / `promtool test rules`: config/prometheus/alerts.yml parses and
  each alert fires on its condition and stays quiet without it (alerts.test.yml).
* A real `billing metrics` process on the test database (SQLite and PostgreSQL) scraped by
  a real Prometheus server: the series Prometheus stored carry the database's figures.

Where the tools are absent the tests skip with the reason; in CI
(BILLING_TEST_REQUIRE_SERVERS=1) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import REQUIRE_SERVERS
from tests.ops.conftest import build_fleet

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "config" / "prometheus"
INSTALL = "apt-get install prometheus"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed ({INSTALL})"
        if REQUIRE_SERVERS:
            pytest.fail(f"{message}, and BILLING_TEST_REQUIRE_SERVERS=1", pytrace=False)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_check_rules_and_config() -> None:
    promtool = _tool("promtool")
    res = _run([promtool, "check", "rules", "alerts.yml"], RULES_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 25 rules found" in res.stdout
    res = _run([promtool, "check", "config", "prometheus.yml"], RULES_DIR)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_test_rules() -> None:
    res = _run([_tool("promtool"), "test", "rules", "alerts.test.yml"], RULES_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """Negative control: the rule tests can fail (a changed threshold is noticed)."""
    promtool = _tool("promtool")
    shutil.copy(RULES_DIR / "alerts.yml", tmp_path / "alerts.yml")
    text = (RULES_DIR / "alerts.test.yml").read_text()
    assert "> 15 * 60" in (tmp_path / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(
        (tmp_path / "alerts.yml").read_text().replace("> 15 * 60", "> 60 * 60"))
    (tmp_path / "alerts.test.yml").write_text(text)
    res = _run([promtool, "test", "rules", "alerts.test.yml"], tmp_path)
    assert res.returncode != 0
    assert "BillingInvoicesWaiting" in res.stdout + res.stderr


@pytest.fixture()
def metrics_process(db_url: str, tmp_path: Path) -> Iterator[str]:
    """`billing metrics` on a free port, on the test database; yields host:port."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BILLING_") or k.startswith("BILLING_TEST_")}
    env |= {"BILLING_DATABASE_URL": db_url, "BILLING_DATA_DIR": str(tmp_path / "var")}
    script = shutil.which("billing", path=str(Path(sys.executable).parent)) or "billing"
    proc = subprocess.Popen(
        [script, "metrics", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"http://{target}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("billing metrics did not answer within 30 s")
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def prometheus(metrics_process: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping the metrics process every second; yields its base URL."""
    binary = _tool("prometheus")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: billing\n"
        f"    static_configs:\n      - targets: ['{metrics_process}']\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _query(base: str, promql: str, timeout_s: float = 60.0) -> float:
    """Poll Prometheus's HTTP API until the instant query has one sample; its value."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
            last = body
            result = body["data"]["result"]
            if len(result) == 1:
                return float(result[0]["value"][1])
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus had no single sample for {promql!r}: {last}")


def test_real_prometheus_scrapes_billing_metrics(
    sessions: sessionmaker[Session], metrics_process: str, prometheus: str
) -> None:
    build_fleet(sessions)
    started = time.monotonic()
    assert _query(prometheus, 'billing_invoices{job="billing", state="stamped"}') == 3.0
    scraped_s = time.monotonic() - started
    assert _query(prometheus, 'up{job="billing"}') == 1.0
    assert _query(prometheus, 'billing_sif_deliveries_total{status="401"}') == 1.0
    assert _query(prometheus, 'billing_finkok_call_duration_seconds_count{operation="stamp"}') == 5.0
    assert _query(prometheus, 'billing_database_up') == 1.0
    print(f"first stored sample after {scraped_s:.1f} s")
