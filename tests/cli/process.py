"""Run the real `billing` console script as a subprocess, in a clean BILLING_* environment."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def billing_argv() -> list[str]:
    """The installed `billing` script beside this interpreter (or the same entry point)."""
    script = shutil.which("billing", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from worker.cli import app; app()"]


def clean_env(tmp: Path, **settings: str) -> dict[str, str]:
    """os.environ without any BILLING_* variable, data in ``tmp``, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({"BILLING_DATA_DIR": str(tmp / "var"), "COLUMNS": "200"})
    env.update(settings)
    return env


def run_billing(args: list[str], env: dict[str, str], cwd: Path,
                timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*billing_argv(), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def dead_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
