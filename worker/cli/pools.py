"""`billing worker` runs one Celery worker per pool, so one kind of work cannot starve another.

A Finkok that hangs until the read timeout holds one process per call: with every queue
in one pool, a slow Finkok took every process and SIF deliveries and the sweeper waited
behind it (measured: answers after 90 s held all 4 processes; 24 of 40 invoices never
tried in 5 minutes). So by default:

| pool          | queues               | processes          |
|---------------|----------------------|--------------------|
| `stamp`       | stamp                | `-c` (4)           |
| `notify`      | notify               | `--notify-c` (2)   |
| `maintenance` | maintenance, intake  | `--maintenance-c` (2) |

Each pool is its own ``billing worker -Q …`` process (a Celery worker with its own prefork
children), supervised here: SIGTERM/SIGINT go to every pool (each does its warm shutdown),
and when one pool exits the others are stopped and the command exits with its code, so a
container restarts whole. ``-Q`` runs one pool on exactly those queues (the demo and tests
start a single pool on every queue that way).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass

GRACE_S = 60.0  # a pool's warm shutdown: running stamps finish, the rest is redelivered


@dataclass(frozen=True)
class Pool:
    name: str
    queues: str
    concurrency: int


def default_pools(stamp_c: int, notify_c: int, maintenance_c: int) -> list[Pool]:
    return [Pool("stamp", "stamp", stamp_c), Pool("notify", "notify", notify_c),
            Pool("maintenance", "maintenance,intake", maintenance_c)]


def run_pools(pools: list[Pool], *, loglevel: str | None, hostname: str | None) -> int:
    """Start every pool, wait until one exits (or a signal), stop the rest; its exit code."""
    children: list[subprocess.Popen[bytes]] = []
    for pool in pools:
        node = f"{pool.name}-{hostname}" if hostname else f"{pool.name}@%h"
        argv = [sys.executable, "-m", "worker.cli", "worker", "-Q", pool.queues,
                "-c", str(pool.concurrency), "-n", node]
        if loglevel:
            argv += ["--loglevel", loglevel]
        children.append(subprocess.Popen(argv))
    stopping = {"signal": 0}

    def forward(signum: int, _frame: object) -> None:
        stopping["signal"] = signum
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while all(child.poll() is None for child in children) and not stopping["signal"]:
            time.sleep(0.2)
        first = next((c for c in children if c.poll() is not None), None)
        if not stopping["signal"]:  # one pool died: stop the others, exit with its code
            forward(signal.SIGTERM, None)
        deadline = time.monotonic() + GRACE_S
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        if stopping["signal"]:
            return 0
        return first.returncode if first is not None and first.returncode else 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

