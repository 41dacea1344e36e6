"""kombu's filesystem transport, made safe for several processes on one machine.

The embedded default uses kombu's ``filesystem://`` transport as its doorbell (it works
across processes, and Flower/inspect see it, unlike ``sqla+sqlite``). Three races in it
showed up in our worker tests as ``JSONDecodeError`` that killed the worker:

* ``_put`` creates the message file in the queue folder and then writes it: a consumer
  can take the still-empty file. We write a hidden temp file and ``os.replace`` it in.
* ``_get`` moves a taken file to the system temp dir, which may be another filesystem
  (copy + delete, not atomic: two consumers can both read it). We rename it into a
  ``taken`` folder beside the queue: exactly one rename wins.
* exchange tables (fanout bindings for events and remote control) are truncated before
  their lock is taken. We rewrite them with temp + replace under a lock file, and a
  reader that still meets a torn table retries.

Limits that remain (documented in the README): a message taken by a worker that is then
SIGKILLed is gone (there is no visibility timeout); the database sweeper re-rings it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

ALIAS = "billingfs"


def _lock(f: Any) -> None:
    import fcntl

    fcntl.flock(f, fcntl.LOCK_EX)


class Channel(filesystem.Channel):
    # kombu's filesystem Channel has these two signatures (narrower than the virtual base's);
    # celery-types' stubs silence the same override error on it
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(time.monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(tmp, folder / name)

    def _get(self, queue: str) -> Any:  # type: ignore[override]  # as kombu's filesystem._get
        suffix = f".{queue}.msg"
        folder = Path(self.data_folder_in)
        taken = folder.parent / "taken"
        taken.mkdir(exist_ok=True)
        for name in sorted(n for n in os.listdir(folder) if n.endswith(suffix) and n[0] != "."):
            mine = taken / f"{os.getpid()}-{name}"
            try:
                os.rename(folder / name, mine)  # atomic: one consumer wins
            except FileNotFoundError:
                continue
            try:
                payload = mine.read_bytes()
            finally:
                mine.unlink(missing_ok=True)
            return loads(bytes_to_str(payload))
        raise Empty()

    def get_table(self, exchange: str) -> list[Any]:
        for _ in range(50):
            try:
                return super().get_table(exchange)
            except json.JSONDecodeError:
                time.sleep(0.01)  # a writer from an older kombu is mid-write
        return super().get_table(exchange)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        control = Path(self.control_folder)
        control.mkdir(parents=True, exist_ok=True)
        file = self._exchange_file(exchange)  # type: ignore[attr-defined]  # kombu's, not in the stubs
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with open(control / f".{exchange}.lock", "a+b") as lock_file:
            _lock(lock_file)  # released when the file closes
            try:
                queues = [filesystem.exchange_queue_t(*q) for q in loads(file.read_text())]
            except (FileNotFoundError, json.JSONDecodeError):
                queues = []
            if entry in queues:
                return
            queues.insert(0, entry)
            tmp = control / f".{exchange}.{uuid.uuid4().hex}.tmp"
            tmp.write_text(dumps(queues))
            os.replace(tmp, file)


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    """Make ``billingfs://`` resolvable by kombu (producers, workers, Flower alike)."""
    TRANSPORT_ALIASES.setdefault(ALIAS, "worker.broker_fs:Transport")
