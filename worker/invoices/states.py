"""Every state and every allowed transition, in one table each.

Invoice:       received -> stamping -> stamped | pending | retry_wait | rejected | failed
Notification:  queued -> sending -> delivered | retry_wait | failed

A transition is applied only as a compare-and-set UPDATE (see ``worker.db.claims``):
``UPDATE ... SET state = :to WHERE id = :id AND state IN (<allowed sources>)``. Code asks
this module for the sources of a target state; it never writes a state by hand, so an
illegal transition cannot be expressed.
"""

from __future__ import annotations

from enum import StrEnum


class InvoiceState(StrEnum):
    RECEIVED = "received"  # stored, waiting for a worker
    STAMPING = "stamping"  # claimed by a worker (lease) and talking to Finkok
    RETRY_WAIT = "retry_wait"  # transient/ambiguous outcome, next try at next_attempt_at
    PENDING = "pending"  # stamped by Finkok, not yet delivered to SAT (query_pending)
    STAMPED = "stamped"  # UUID and stamped XML held: terminal
    REJECTED = "rejected"  # Finkok/SAT refused the document: terminal until reprocessed
    FAILED = "failed"  # needs a person (account fault, attempts exhausted)


class NotificationState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRY_WAIT = "retry_wait"
    DELIVERED = "delivered"
    FAILED = "failed"


S = InvoiceState
INVOICE_TRANSITIONS: dict[InvoiceState, frozenset[InvoiceState]] = {
    S.RECEIVED: frozenset({S.STAMPING}),
    # A stamping row whose lease expired is claimed again (worker died mid-call).
    S.STAMPING: frozenset({S.STAMPED, S.PENDING, S.RETRY_WAIT, S.REJECTED, S.FAILED, S.STAMPING}),
    S.RETRY_WAIT: frozenset({S.STAMPING}),
    S.PENDING: frozenset({S.STAMPED, S.PENDING}),
    S.STAMPED: frozenset(),
    # Operations: reprocess (optionally with a corrected, re-sealed XML).
    S.REJECTED: frozenset({S.RECEIVED}),
    S.FAILED: frozenset({S.RECEIVED}),
}

N = NotificationState
NOTIFICATION_TRANSITIONS: dict[NotificationState, frozenset[NotificationState]] = {
    N.QUEUED: frozenset({N.SENDING}),
    N.SENDING: frozenset({N.DELIVERED, N.RETRY_WAIT, N.FAILED, N.SENDING}),
    N.RETRY_WAIT: frozenset({N.SENDING}),
    N.DELIVERED: frozenset({N.QUEUED}),  # operations: resend
    N.FAILED: frozenset({N.QUEUED}),  # operations: resend after the fault was fixed
}

TERMINAL_INVOICE_STATES = frozenset({S.STAMPED, S.REJECTED, S.FAILED})
REPLACEABLE_INVOICE_STATES = frozenset({S.REJECTED, S.FAILED})


def sources(
    table: dict[InvoiceState, frozenset[InvoiceState]]
    | dict[NotificationState, frozenset[NotificationState]],
    target: str,
) -> tuple[str, ...]:
    """The states from which ``target`` may be entered, for a CAS ``WHERE state IN (...)``."""
    found = tuple(sorted(str(src) for src, dests in table.items() if target in dests))
    if not found:
        raise ValueError(f"no transition leads to state {target!r}")
    return found


def invoice_sources(target: InvoiceState) -> tuple[str, ...]:
    return sources(INVOICE_TRANSITIONS, target)


def notification_sources(target: NotificationState) -> tuple[str, ...]:
    return sources(NOTIFICATION_TRANSITIONS, target)
