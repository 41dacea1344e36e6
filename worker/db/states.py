"""Every state and every named move between states: one table per row kind.

Invoice:       received ─claim─▶ stamping ─stamped|pending|retry|rejected|failed|hold─▶ …
               retry_wait ─claim─▶ stamping;  stamping ─take_over─▶ stamping (lease expired)
               held ─release─▶ retry_wait (its breaker closed);  held ─expire─▶ failed (SAT window)
               pending ─sat_waiting─▶ pending ─sat_done─▶ stamped
               rejected|failed ─reprocess─▶ received
Notification:  queued|retry_wait ─claim─▶ sending ─delivered|retry|failed|hold─▶ …
               sending ─take_over─▶ sending (lease expired);  held ─release─▶ queued
               delivered|failed|held ─resend─▶ queued

An edge names its source states, its target, whether it is **fenced** (applies only
while the caller holds the row's lease, so a worker whose lease was taken over cannot
overwrite the newer holder's outcome) and, for edges a worker or poller picks rows for,
**when** a source row is due (``next_attempt_at`` reached, or the lease expired). The claim
statements, the sweeper's and the pending poller's due queries, and every "may this row
be reprocessed / replaced / resent" question are derived from these tables
(``worker.db.lifecycle``), so they cannot drift apart. Nothing else writes a state.

Rows are born by an insert, not an edge: intake inserts them in ``received``, and a
producer's document refused at intake (``billing.submit_invoice``) is inserted directly in
``rejected`` with its NOK outbox row (``worker.invoices.refused``); no row moves there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class InvoiceState(StrEnum):
    RECEIVED = "received"  # stored, waiting for a worker
    STAMPING = "stamping"  # claimed by a worker (lease) and talking to Finkok
    RETRY_WAIT = "retry_wait"  # transient/ambiguous outcome, next try at next_attempt_at
    PENDING = "pending"  # stamped by Finkok, not yet delivered to SAT (query_pending)
    STAMPED = "stamped"  # UUID and stamped XML held: terminal
    REJECTED = "rejected"  # Finkok/SAT refused the document: terminal until reprocessed
    FAILED = "failed"  # needs a person (attempts exhausted, SAT's window closed, unknown)
    HELD = "held"  # waits on a breaker (hold_key): an outage, credentials, credits; no NOK


class NotificationState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRY_WAIT = "retry_wait"
    DELIVERED = "delivered"
    FAILED = "failed"
    HELD = "held"  # waits on its SIF target's breaker (hold_key): a 401, a sustained outage


# When a row in a source state is due for the edge (None: the edge is taken on demand).
Due = Literal["next_attempt", "lease_expired"] | None


@dataclass(frozen=True, eq=False)
class Edge:
    """One named move. Compared and hashed by identity: two tables may hold edges with the
    same name, sources and target (a notification's and a cancellation's ``hold`` are both
    sending → held), and each must stay its own table's (``lifecycle`` caches a statement
    per edge)."""

    name: str
    sources: frozenset[str]
    target: str
    fenced: bool  # only while the caller holds the lease (pass its owner)
    due: Due = None

    def allows(self, state: str) -> bool:
        return state in self.sources


def _edge(name: str, sources: set[str], target: str, *, fenced: bool = False,
          due: Due = None) -> Edge:
    return Edge(name, frozenset(sources), target, fenced, due)


S = InvoiceState
INVOICE_EDGES: dict[str, Edge] = {e.name: e for e in (
    # A worker takes a due row (CAS + lease) ...
    _edge("claim", {S.RECEIVED, S.RETRY_WAIT}, S.STAMPING, due="next_attempt"),
    # ... or one whose holder died or hung past its lease (its call may have stamped).
    _edge("take_over", {S.STAMPING}, S.STAMPING, due="lease_expired"),
    # The holder settles what Finkok said.
    _edge("stamped", {S.STAMPING}, S.STAMPED, fenced=True),
    _edge("pending", {S.STAMPING}, S.PENDING, fenced=True),
    _edge("retry", {S.STAMPING}, S.RETRY_WAIT, fenced=True),
    _edge("rejected", {S.STAMPING}, S.REJECTED, fenced=True),
    _edge("failed", {S.STAMPING}, S.FAILED, fenced=True),
    # A breaker is open for the invoice's scope (or the answer opened it): no NOK, no
    # attempt burned; the sweeper releases it when the breaker closes ...
    _edge("hold", {S.STAMPING}, S.HELD, fenced=True),
    _edge("release", {S.HELD}, S.RETRY_WAIT),
    # ... or fails it with the named NOK when SAT's 72-hour window is about to close.
    _edge("expire", {S.HELD}, S.FAILED),
    # The pending poller (no lease: a CAS on the state decides which poller moves it).
    _edge("sat_waiting", {S.PENDING}, S.PENDING, due="next_attempt"),
    _edge("sat_done", {S.PENDING}, S.STAMPED, due="next_attempt"),
    # Operations and intake: back to stamping, optionally with a corrected XML.
    _edge("reprocess", {S.REJECTED, S.FAILED}, S.RECEIVED),
    # Reconciliation takes a stamp Finkok holds for this very document (worker.ops.adopt).
    _edge("adopt", {S.FAILED, S.REJECTED, S.RETRY_WAIT, S.RECEIVED, S.HELD}, S.STAMPED),
)}

N = NotificationState
NOTIFICATION_EDGES: dict[str, Edge] = {e.name: e for e in (
    _edge("claim", {N.QUEUED, N.RETRY_WAIT}, N.SENDING, due="next_attempt"),
    _edge("take_over", {N.SENDING}, N.SENDING, due="lease_expired"),
    _edge("delivered", {N.SENDING}, N.DELIVERED, fenced=True),
    _edge("retry", {N.SENDING}, N.RETRY_WAIT, fenced=True),
    _edge("failed", {N.SENDING}, N.FAILED, fenced=True),
    _edge("hold", {N.SENDING}, N.HELD, fenced=True),
    _edge("release", {N.HELD}, N.QUEUED),
    _edge("resend", {N.DELIVERED, N.FAILED, N.HELD}, N.QUEUED),
)}

# The edges a worker's claim takes, per working state.
INVOICE_CLAIM = (INVOICE_EDGES["claim"], INVOICE_EDGES["take_over"])
NOTIFICATION_CLAIM = (NOTIFICATION_EDGES["claim"], NOTIFICATION_EDGES["take_over"])
# The edges the pending poller picks rows for.
SAT_POLL = (INVOICE_EDGES["sat_done"],)


def can(edge: Edge, state: str) -> bool:
    """May a row in ``state`` take ``edge``? (Ops and intake ask before they plan.)"""
    return edge.allows(state)


def names(edges: dict[str, Edge], state: str) -> list[str]:
    """The edges a row in ``state`` may take (for messages: "only rejected or failed ...")."""
    return [e.name for e in edges.values() if e.allows(state)]


# --- cancellations (issue 16: worker.cancellations) -------------------------------------------
#
# Cancellation:  requested ─claim─▶ sending ─sent─▶ in_process ─sat_cancelled─▶ cancelled
#                sending ─take_over─▶ sending (lease expired: ask get_receipt/get_sat_status first)
#                sending ─retry─▶ requested (transient, backoff) ─refused─▶ cancel_failed
#                sending ─settled─▶ cancelled (SAT already shows it cancelled)
#                sending ─hold─▶ held ─release─▶ requested (an outage: its breaker closed again)
#                in_process ─sat_waiting─▶ in_process ─sat_rejected─▶ cancel_rejected
#                cancel_rejected|cancel_failed ─rerequest─▶ requested (a new request, audited)


class CancellationState(StrEnum):
    REQUESTED = "requested"  # accepted at the door, waiting for a worker (next_attempt_at)
    SENDING = "sending"  # claimed (lease): signing and talking to Finkok
    IN_PROCESS = "in_process"  # Finkok/SAT took it (201/202): SAT's answer is awaited
    CANCELLED = "cancelled"  # SAT says Cancelado: terminal
    CANCEL_REJECTED = "cancel_rejected"  # the receptor rejected it (Solicitud rechazada)
    CANCEL_FAILED = "cancel_failed"  # refused (not cancelable, bad signature, ...) or exhausted
    HELD = "held"  # waits on a Finkok breaker (hold_key): an outage, credentials, credits


C = CancellationState
CANCELLATION_EDGES: dict[str, Edge] = {e.name: e for e in (
    _edge("claim", {C.REQUESTED}, C.SENDING, due="next_attempt"),
    _edge("take_over", {C.SENDING}, C.SENDING, due="lease_expired"),
    _edge("sent", {C.SENDING}, C.IN_PROCESS, fenced=True),
    _edge("settled", {C.SENDING}, C.CANCELLED, fenced=True),
    _edge("retry", {C.SENDING}, C.REQUESTED, fenced=True),
    _edge("refused", {C.SENDING}, C.CANCEL_FAILED, fenced=True),
    # A breaker of its scope is open (or this answer opened it): never cancel_failed for an
    # outage, no attempt burned; the sweeper releases it when the breaker closes.
    _edge("hold", {C.SENDING}, C.HELD, fenced=True),
    _edge("release", {C.HELD}, C.REQUESTED),
    # The SAT-status poller (no lease: a CAS on the state, like the pending poller).
    _edge("sat_waiting", {C.IN_PROCESS}, C.IN_PROCESS, due="next_attempt"),
    _edge("sat_cancelled", {C.IN_PROCESS}, C.CANCELLED, due="next_attempt"),
    _edge("sat_rejected", {C.IN_PROCESS}, C.CANCEL_REJECTED, due="next_attempt"),
    # A new request after a rejection or a failure (the same row: one cancellation per invoice).
    _edge("rerequest", {C.CANCEL_REJECTED, C.CANCEL_FAILED}, C.REQUESTED),
)}
CANCELLATION_CLAIM = (CANCELLATION_EDGES["claim"], CANCELLATION_EDGES["take_over"])
CANCELLATION_POLL = (CANCELLATION_EDGES["sat_waiting"],)
