"""`billing flower`: Flower for our app behind basic auth, password out of the command line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.ops.flower import FlowerConfigError, flower_argv, flower_env
from worker.settings import load_settings

PASSWORD = "fl0wer-T3st-pass"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _billing() -> list[str]:
    script = shutil.which("billing", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from worker.cli import app; app()"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL. Flower joins its in-flight inspect threads (a broker round
    trip each) before it exits: usually ~1 s; on a loaded CI box once more than 10 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_flower_runs_our_app_behind_basic_auth(tmp_path: Path) -> None:
    secret = tmp_path / "flower_password"
    secret.write_text(PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "FLOWER_"))}
    env.update({"BILLING_DATA_DIR": str(tmp_path / "var"), "BILLING_FLOWER_USER": "ops",
                "BILLING_FLOWER_PASSWORD_FILE": str(secret),
                "FLOWER_UNAUTHENTICATED_API": "true"})  # must not open the API
    port = _free_port()
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*_billing(), "flower", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"Flower did not answer: {log.read_text()[-2000:]}")
        assert httpx.get(f"{base}/api/workers", timeout=5).status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=("ops", PASSWORD), timeout=5).status_code == 200
        tasks = httpx.get(f"{base}/api/task/types", auth=("ops", PASSWORD), timeout=5)
        assert tasks.status_code == 200
        # Flower's /metrics stays open even with basic auth: why it binds to loopback.
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200

        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"flower" in cmdline and b"--address=127.0.0.1" in cmdline
        assert PASSWORD.encode() not in b" ".join(cmdline)  # `ps` never shows it
    finally:
        _stop(proc)
    assert PASSWORD not in log.read_text()
    assert "Registered tasks" in log.read_text() and "billing.stamp_invoice" in log.read_text()


def test_flower_settings_checks(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, flower_user="ops", flower_password=PASSWORD)
    env = flower_env(settings, {"PATH": "/bin", "FLOWER_UNAUTHENTICATED_API": "true",
                                "FLOWER_PERSISTENT": "true"}, address="127.0.0.1")
    assert env == {"PATH": "/bin", "FLOWER_PERSISTENT": "true",
                   "FLOWER_BASIC_AUTH": f"ops:{PASSWORD}"}
    argv = flower_argv(address="127.0.0.1", port=5555)
    assert argv[1:6] == ["-m", "celery", "-A", "worker.tasks", "flower"]
    assert not any(PASSWORD in a for a in argv)

    default = load_settings(data_dir=tmp_path)  # the shipped "change-me"
    assert flower_env(default, {}, address="::1")["FLOWER_BASIC_AUTH"] == "admin:change-me"
    with pytest.raises(FlowerConfigError, match="default password") as exc:
        flower_env(default, {}, address="0.0.0.0")
    assert "change-me" not in str(exc.value)
    with pytest.raises(FlowerConfigError, match="may not contain") as exc:
        flower_env(load_settings(flower_password="a,b-secret"), {}, address="127.0.0.1")
    assert "a,b-secret" not in str(exc.value)
    with pytest.raises(FlowerConfigError, match="needs BILLING_FLOWER_USER"):
        flower_env(load_settings(flower_password=""), {}, address="127.0.0.1")


def test_flower_cli_refuses_an_open_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from worker.settings import get_settings

    for key in list(os.environ):
        if key.startswith("BILLING_FLOWER"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        res = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["flower", "--address", "0.0.0.0"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 2
    assert "refusing to serve Flower on 0.0.0.0 with the default password" in res.stderr
