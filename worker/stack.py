"""A whole deployment on this machine, as real processes: the Finkok and SIF sandboxes,
Celery workers and the beat, all configured through BILLING_* variables.

`billing demo`, the pipeline benchmark and the chaos run use it; so can a person who
wants to watch the system work (`billing demo --keep-running`). Every process writes its
log under ``<data_dir>/logs``.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

QUEUES = "stamp,notify,maintenance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(interval_s)
    return False


@dataclass
class LocalStack:
    data_dir: Path
    database_url: str = ""  # empty: SQLite in data_dir
    broker_url: str = ""  # empty: the filesystem broker in data_dir
    workers: int = 1
    concurrency: int = 4
    # Optional SIF-notification and maintenance worker (processes); the others then take only
    # `stamp`. 0: every worker takes all queues.
    notify_concurrency: int = 0
    settings_env: dict[str, str] = field(default_factory=dict)  # extra BILLING_* values
    finkok_config: dict[str, Any] = field(default_factory=dict)
    sif_args: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.finkok_url = f"http://127.0.0.1:{free_port()}"
        self.sif_root = f"http://127.0.0.1:{free_port()}"
        self.database_url = self.database_url or f"sqlite:///{self.data_dir / 'billing.db'}"
        self.broker_url = self.broker_url or "filesystem://"

    # --- configuration every child process shares ---------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        env.update({
            "BILLING_DATA_DIR": str(self.data_dir),
            "BILLING_DATABASE_URL": self.database_url,
            "BILLING_BROKER_URL": self.broker_url,
            "BILLING_FINKOK_ENVIRONMENT": self.finkok_url,
            "BILLING_SIF_BASE_URL": f"{self.sif_root}/mcs/sif",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.settings_env)
        return env

    def settings(self) -> Any:
        """The same settings the children read, for this process (producer, checks)."""
        from worker.settings import Settings

        # strings, as in the environment: the settings parse them
        values: dict[str, Any] = {k.removeprefix("BILLING_").lower(): v for k, v in self.env().items()
                                  if k.startswith("BILLING_") and not k.startswith("BILLING_TEST_")}
        return Settings(**values)

    # --- processes -----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.data_dir,
        )
        self.processes[name] = proc
        return proc

    def start_sandboxes(self) -> None:
        finkok_port = self.finkok_url.rsplit(":", 1)[1]
        sif_port = self.sif_root.rsplit(":", 1)[1]
        self._spawn("finkok", ["-m", "worker.sandbox.finkok", "--port", finkok_port,
                               "--config", json.dumps(self.finkok_config)])
        self._spawn("sif", ["-m", "worker.sandbox.sif", "--port", sif_port, *self.sif_args])
        for name, url in (("finkok", f"{self.finkok_url}/_sandbox/stats"),
                          ("sif", f"{self.sif_root}/_sandbox/received")):
            if not wait_until(functools.partial(_answers, url), 20):
                raise RuntimeError(f"the {name} sandbox did not start: see {self.logs / name}.log")

    def migrate(self) -> None:
        from worker.db.migrate import upgrade

        upgrade(self.database_url)

    def start_worker(self, index: int, *, queues: str = "", concurrency: int = 0,
                     name: str = "") -> subprocess.Popen[bytes]:
        name = name or f"worker{index}"
        if not queues:
            queues = "stamp" if self.notify_concurrency else QUEUES
        return self._spawn(name, [
            "-m", "celery", "-A", "worker.tasks", "worker", "-P", "prefork",
            "-c", str(concurrency or self.concurrency), "-Q", queues, "-n", f"{name}@%h",
            "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ])

    def start_beat(self) -> subprocess.Popen[bytes]:
        return self._spawn("beat", [
            "-m", "celery", "-A", "worker.tasks", "beat", "--loglevel", "INFO",
            "-s", str(self.data_dir / "celerybeat-schedule"),
        ])

    def start(self, *, beat: bool = True) -> LocalStack:
        self.migrate()
        self.start_sandboxes()
        for i in range(self.workers):
            self.start_worker(i)
        if self.notify_concurrency:
            # as `billing worker` keeps them apart (worker/cli/pools.py): stamping alone in
            # its pool; SIF delivery and the maintenance tasks (sweep, pollers) beside it
            self.start_worker(0, queues="notify,maintenance", concurrency=self.notify_concurrency,
                              name="notifier")
        if beat:
            self.start_beat()
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        """Wait until every Celery worker started here logged "<name>@<host> ready." (its
        pool is up and it consumes). A fixed sleep is not enough on a loaded box: measured,
        2 workers x 12 processes took more than 3 s to start on 2 cores."""
        workers = [name for name in self.processes if name not in ("finkok", "sif", "beat")]

        def ready(name: str) -> bool:
            log = self.logs / f"{name}.log"
            return log.exists() and f"{name}@" in (text := log.read_text(errors="replace")) \
                and " ready." in text

        return wait_until(lambda: all(ready(name) for name in workers), timeout_s, 0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM if name in ("finkok", "sif") else signal.SIGKILL)
        self.processes.clear()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the sandboxes' own records ----------------------------------------------------------
    def finkok_configure(self, **changes: Any) -> None:
        httpx.post(f"{self.finkok_url}/_sandbox/config", json=changes, timeout=5).raise_for_status()

    def finkok_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.finkok_url}/_sandbox/stats", timeout=10).json()  # type: ignore[no-any-return]

    def sif_configure(self, **changes: Any) -> None:
        httpx.post(f"{self.sif_root}/_sandbox/config", json=changes, timeout=5).raise_for_status()

    def sif_received(self) -> dict[str, Any]:
        return httpx.get(f"{self.sif_root}/_sandbox/received", timeout=10).json()  # type: ignore[no-any-return]
