"""Infrastructure faults end every `billing` command as one line on stderr, naming the
setting to check, with exit code 2 and no traceback; the line never holds a secret.
`--debug` (or BILLING_DEBUG=1) brings the traceback back: the negative control that
proves the one-liner is our rendering, not a fault that never happened."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .process import clean_env, dead_port, run_billing

DB_PASSWORD = "Pg-s3cret-4711"
OVERRIDE_SECRET = "987654321"  # numeric: pydantic refuses it and used to echo it back


def _one_line(res: object, *words: str) -> str:
    """Exit 2, exactly one stderr line holding every word, and no traceback."""
    stderr = res.stderr  # type: ignore[attr-defined]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, (res.returncode, stderr)  # type: ignore[attr-defined]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Traceback" not in res.stdout  # type: ignore[attr-defined]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_database_down_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{dead_port()}/test"
    env = clean_env(tmp_path, BILLING_DATABASE_URL=url)
    for args in (["invoices", "list"], ["stats"], ["db", "upgrade"]):
        line = _one_line(run_billing(args, env, tmp_path), "BILLING_DATABASE_URL",
                         "Connection refused")
        assert DB_PASSWORD not in line

    debug = run_billing(["--debug", "invoices", "list"], env, tmp_path)
    assert debug.returncode not in (0, 2) and "Traceback" in debug.stderr
    via_env = run_billing(["stats"], {**env, "BILLING_DEBUG": "1"}, tmp_path)
    assert "Traceback" in via_env.stderr


def test_bad_database_url_is_one_line(tmp_path: Path) -> None:
    for url in ("not a url", "mongodb://127.0.0.1/billing"):
        env = clean_env(tmp_path, BILLING_DATABASE_URL=url)
        _one_line(run_billing(["invoices", "list"], env, tmp_path), "BILLING_DATABASE_URL",
                  "not a usable database URL")


def test_unreadable_secret_file_names_its_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    env = clean_env(tmp_path, BILLING_FINKOK_PASSWORD_FILE=str(missing))
    for args in (["config"], ["worker"], ["stats"]):
        _one_line(run_billing(args, env, tmp_path), "BILLING_FINKOK_PASSWORD_FILE", str(missing))


@pytest.mark.parametrize("command", ["worker", "beat", "config"])
def test_invalid_settings_never_echo_the_secret(tmp_path: Path, command: str) -> None:
    overrides = json.dumps({"E1": {"base_url": "http://sif", "secret": int(OVERRIDE_SECRET)}})
    env = clean_env(tmp_path, BILLING_SIF_OVERRIDES=overrides)
    res = run_billing([command], env, tmp_path)
    _one_line(res, "BILLING_SIF_OVERRIDES", "E1.secret")
    assert OVERRIDE_SECRET not in res.stderr + res.stdout

    # Negative control: pydantic's own rendering (the traceback) does carry the value.
    debug = run_billing(["--debug", command], env, tmp_path)
    assert "Traceback" in debug.stderr and OVERRIDE_SECRET in debug.stderr


def test_a_setting_out_of_range_names_it(tmp_path: Path) -> None:
    env = clean_env(tmp_path, BILLING_STAMP_MAX_ATTEMPTS="0")
    _one_line(run_billing(["stats"], env, tmp_path), "BILLING_STAMP_MAX_ATTEMPTS")


def test_broker_down_stops_the_worker_and_the_beat_with_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path, BILLING_BROKER_URL=f"redis://:{DB_PASSWORD}@127.0.0.1:{dead_port()}/0")
    for command in ("worker", "beat"):
        line = _one_line(run_billing([command], env, tmp_path), "BILLING_BROKER_URL")
        assert DB_PASSWORD not in line


@pytest.fixture()
def busy_port() -> Iterator[int]:
    """A port something listens on for the length of the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("args", [["sandbox", "finkok"], ["sandbox", "sif"], ["api"], ["flower"]])
def test_port_in_use_is_one_line(tmp_path: Path, busy_port: int, args: list[str]) -> None:
    env = clean_env(tmp_path, BILLING_FLOWER_PASSWORD="a-real-pass-123")
    _one_line(run_billing([*args, "--port", str(busy_port)], env, tmp_path),
              f"port {busy_port}", "already in use", "--port")
