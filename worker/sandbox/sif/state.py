"""The SIF sandbox's memory: config, recorded requests and held statuses behind one lock."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from typing import Any

from worker.sandbox.sif.config import SandboxConfig, coerce


class State:
    """Config, records and held statuses behind one lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self.initial = config
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self.config = replace(self.initial, faults=list(self.initial.faults))
        self.rng = random.Random(self.config.seed)
        self.requests: list[dict[str, Any]] = []
        self.statuses: dict[tuple[str, str], list[str]] = {}

    def reset(self) -> None:
        with self.lock:
            self._reset_locked()
            self.lock.notify_all()

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.config = coerce(self.config, changes)
            if "seed" in changes:
                self.rng = random.Random(self.config.seed)
            return self.config.public()

    def next_fault(self) -> tuple[str | None, SandboxConfig]:
        """The fault for this request (scripted first, then by rate) and a config snapshot."""
        with self.lock:
            config = self.config
            scripted = config.faults.pop(0) if config.faults else None
            snapshot = replace(config, faults=list(config.faults))
            if scripted is not None:
                return scripted, snapshot
            draw = self.rng.random
            if config.hang_rate and draw() < config.hang_rate:
                return "hang", snapshot
            if config.error_rate and draw() < config.error_rate:
                return str(config.error_status), snapshot
            if config.not_found_rate and draw() < config.not_found_rate:
                return "404", snapshot
            if config.drop_rate and draw() < config.drop_rate:
                return "drop", snapshot
            return None, snapshot

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = len(self.requests) + 1
            self.requests.append(entry)
            self.lock.notify_all()

    def take_status(self, empresa: str, reference: str, status: str) -> int:
        """SIF's decision for a valid body: 409 once an OK is held, else 204 (accepted)."""
        with self.lock:
            seq = self.statuses.setdefault((empresa, reference), [])
            if "OK" in seq:
                return 409
            seq.append(status)
            return 204
