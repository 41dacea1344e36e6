"""What the local Finkok remembers: every document it stamped, and counters per document.

A document is identified like Finkok recognises a repeated pre-CFDI: by its seal
(``key`` = SHA-256 of the ``Sello`` value). Counters let a test prove "no double stamp":
``new_stamps`` must stay 1 per document however often the worker calls.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stamp:
    uuid: str
    xml: str  # stamped CFDI text, as answered
    fecha: str  # FechaTimbrado
    sat_seal: str
    no_certificado_sat: str
    stamped_at: float


@dataclass
class DocumentRecord:
    key: str
    receptor_rfc: str | None
    emisor_rfc: str | None
    stamps: list[Stamp] = field(default_factory=list)  # more than one only with guard_307=False
    new_stamps: int = 0
    hits_307: int = 0
    stamp_calls: int = 0
    quick_stamp_calls: int = 0
    stamped_calls: int = 0
    pending: bool = False
    pending_polls_left: int = 0
    pending_until: float = 0.0
    stamped_603_left: int = 0
    fired: set[str] = field(default_factory=set)  # *_once rules already applied
    relacionados: tuple[str, ...] = ()
    cancel_status: str | None = None  # None, "requested" (awaiting receptor), "cancelled", "rejected"
    cancel_acuse: str | None = None
    cancel_date: str | None = None
    # How SAT settles a request (worker.sandbox.finkok.cancel): "sin" (cancelled without
    # the receptor), "accept"/"reject" (the receptor answers by rule), "await" (an
    # accept_reject call decides); and how many get_sat_status polls say "En proceso" first.
    cancel_outcome: str | None = None
    cancel_polls_left: int = 0
    cancel_requests: int = 0  # requests answered 201: one per cancellation

    @property
    def last(self) -> Stamp | None:
        return self.stamps[-1] if self.stamps else None

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "receptor_rfc": self.receptor_rfc,
            "emisor_rfc": self.emisor_rfc,
            "uuids": [s.uuid for s in self.stamps],
            "new_stamps": self.new_stamps,
            "hits_307": self.hits_307,
            "stamp_calls": self.stamp_calls,
            "quick_stamp_calls": self.quick_stamp_calls,
            "stamped_calls": self.stamped_calls,
            "pending": self.pending,
            "cancel_status": self.cancel_status,
            "cancel_requests": self.cancel_requests,
        }


@dataclass
class Customer:
    taxpayer_id: str
    status: str = "A"
    type_user: str = "O"
    credit: int = -1
    counter: int = 0


class Ledger:
    """Thread-safe store of documents, UUIDs, customers and call counters."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.documents: dict[str, DocumentRecord] = {}
        self.by_uuid: dict[str, DocumentRecord] = {}
        self.customers: dict[str, Customer] = {}
        self.signed_contracts: dict[str, tuple[str, str]] = {}
        self.calls: Counter[str] = Counter()
        self.events: Counter[str] = Counter()  # faults, drops, hangs, auth failures...
        self.started = time.time()

    def reset(self) -> None:
        """Forget every document, customer and counter."""
        with self._lock:
            self._key_locks.clear()
            self.documents.clear()
            self.by_uuid.clear()
            self.customers.clear()
            self.signed_contracts.clear()
            self.calls.clear()
            self.events.clear()
            self.started = time.time()

    def key_lock(self, key: str) -> threading.Lock:
        """One lock per document: concurrent stamps of the same bytes are serialized."""
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def count_call(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def count_event(self, event: str) -> None:
        with self._lock:
            self.events[event] += 1

    def get(self, key: str) -> DocumentRecord | None:
        with self._lock:
            return self.documents.get(key)

    def get_or_create(self, key: str, receptor: str | None, emisor: str | None) -> DocumentRecord:
        with self._lock:
            rec = self.documents.get(key)
            if rec is None:
                rec = self.documents[key] = DocumentRecord(key, receptor, emisor)
            return rec

    def add_stamp(self, rec: DocumentRecord, stamp: Stamp) -> None:
        with self._lock:
            rec.stamps.append(stamp)
            rec.new_stamps += 1
            self.by_uuid[stamp.uuid] = rec

    def find_uuid(self, uuid: str) -> DocumentRecord | None:
        with self._lock:
            return self.by_uuid.get(uuid.strip().upper())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            docs = [d.summary() for d in self.documents.values()]
            return {
                "totals": {
                    "documents": len(docs),
                    "stamped_documents": sum(1 for d in self.documents.values() if d.stamps),
                    "new_stamps": sum(d["new_stamps"] for d in docs),
                    "hits_307": sum(d["hits_307"] for d in docs),
                    "double_stamped_documents": sum(1 for d in docs if d["new_stamps"] > 1),
                },
                "calls": dict(self.calls),
                "events": dict(self.events),
                "documents": docs,
            }
