"""`billing --help` (and -h, --version, a command's help) loads none of the heavy
libraries: the CLI modules import them inside the commands that use them. Checked on
sys.modules in a fresh interpreter, not with a clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("celery", "kombu", "zeep", "sqlalchemy", "fastapi", "uvicorn", "httpx",
         "fontTools", "PIL", "zxingcpp", "worker.tasks", "worker.db.models")

PROBE = """
import json, sys
from worker.cli import app
try:
    app(sys.argv[1:], prog_name="billing")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)  # noqa: UP031 - the template is Python full of braces; %r reads best


def _probe(tmp: Path, *args: str) -> dict[str, object]:
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "BILLING_DATA_DIR": str(tmp / "var")}
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         timeout=60, env=env, cwd=tmp)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["invoices", "list", "-h"],
                                  ["reprocess", "--help"], ["demo", "-h"], ["db", "--help"]])
def test_help_imports_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    result = _probe(tmp_path, *args)
    assert result["code"] in (0, None)
    assert result["loaded"] == []


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """Negative control: a command that does use the database loads SQLAlchemy."""
    result = _probe(tmp_path, "db", "current")
    assert "sqlalchemy" in result["loaded"]  # type: ignore[operator]


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    res = subprocess.run([sys.executable, "-c", "from worker.cli import app; app()", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"billing {version('rupture-billing-worker')}"
