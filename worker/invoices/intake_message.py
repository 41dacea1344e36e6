"""One ``billing.submit_invoice`` message from a producer, through the same ``submit()``.

The message contract (README, "Intake over the broker"): keyword arguments only, exactly
the HTTP API's JSON fields: ``empresaRefId``, ``reference``, optional ``pedidoga``, ``xml``
(the sealed bytes, standard base64) and optional ``replace`` (a boolean).

Two kinds of bad input, treated differently:

* **A malformed envelope** (``Malformed``): positional arguments, an unknown field, a
  missing or invalid ``empresaRefId``/``reference`` (including one that is not a single
  URL path segment), ``xml`` missing or not base64, ``replace`` not a boolean. It cannot
  be an invoice, and there is nowhere to send a NOK: it is logged with its reason and
  dropped (never retried). A body that is not JSON never reaches us: Celery refuses it
  (``accept_content=["json"]``), logs it and acks it.
* **A refused document**: a well-addressed envelope whose document ``submit()`` refuses.
  It is kept as a ``rejected`` invoice and SIF gets a NOK, once
  (``worker.invoices.refused``).

Everything else is ``submit()``: created, existing (same bytes again) or replaced.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from worker.doorbell import Ring, notify
from worker.invoices.intake import InvoiceConflict, submit
from worker.invoices.refused import store_refused
from worker.invoices.validation import Checks, InvoiceRefused, check_ids

if TYPE_CHECKING:
    from worker.doorbell import Bell

log = logging.getLogger(__name__)

FIELDS = frozenset({"empresaRefId", "reference", "pedidoga", "xml", "replace"})


class Malformed(ValueError):
    """The message cannot be an invoice at all; the text says why (logged, then dropped)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    empresa_ref_id: str
    reference: str
    pedidoga: str | None
    xml: bytes
    replace: bool


@dataclass(frozen=True, slots=True)
class Received:
    """The task's answer: ``summary`` starts with created/existing/replaced/refused/dropped
    and the id; ``follow_ups`` are rung after the commit (a NOK's notify task)."""

    summary: str
    invoice_id: str | None = None
    follow_ups: list[Ring] = field(default_factory=list)


def envelope(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Envelope:
    """The message's fields, checked; ``Malformed`` names the first problem."""
    if args:
        raise Malformed(f"{len(args)} positional argument(s): send the fields as keyword arguments")
    unknown = sorted(set(kwargs) - FIELDS)
    if unknown:
        raise Malformed(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                        f"expected {', '.join(sorted(FIELDS))}")
    empresa, reference = kwargs.get("empresaRefId"), kwargs.get("reference")
    try:
        check_ids(empresa, reference, None)
    except InvoiceRefused as exc:
        raise Malformed(exc.message) from None
    xml = kwargs.get("xml")
    if not isinstance(xml, str) or not xml:
        raise Malformed("xml is required: the sealed CFDI as a base64 string")
    try:
        data = base64.b64decode(xml, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed("xml is not valid base64") from None
    replace = kwargs.get("replace")
    if replace is not None and not isinstance(replace, bool):
        raise Malformed(f"replace must be true or false, got {str(replace)[:20]!r}")
    pedidoga = kwargs.get("pedidoga")
    return Envelope(empresa, reference, pedidoga if pedidoga != "" else None,  # type: ignore[arg-type]
                    data, bool(replace))


def receive(
    sessions: sessionmaker[Session],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    max_xml_bytes: int,
    publish: Bell | None,
    actor: str = "broker",
    checks: Checks = "strict",
) -> Received:
    """Handle one message: drop a malformed one, submit a good one, keep a refused one.

    Database errors propagate (the task retries the message: nothing was committed).
    """
    try:
        env = envelope(args, kwargs)
    except Malformed as exc:
        log.error("intake message dropped: %s", exc,
                  extra={"empresa_ref_id": _short(kwargs.get("empresaRefId")),
                         "reference": _short(kwargs.get("reference"))})
        return Received(f"dropped: {exc}")
    ids = {"empresa_ref_id": env.empresa_ref_id, "reference": env.reference}
    try:
        result = submit(sessions, env.xml, pedidoga=env.pedidoga, replace=env.replace,
                        max_xml_bytes=max_xml_bytes, publish=publish, actor=actor, checks=checks,
                        **ids)
    except InvoiceConflict as exc:
        log.warning("intake message refused: %s", exc, extra={"invoice_id": exc.invoice_id, **ids})
        return Received(f"refused conflict: {exc}", exc.invoice_id)
    except InvoiceRefused as exc:
        kept = store_refused(sessions, exc, xml=env.xml, pedidoga=env.pedidoga,
                             max_xml_bytes=max_xml_bytes, **ids)
        log.warning("intake message refused (%s): %s", exc.reason, exc.message,
                    extra={"invoice_id": kept.invoice_id, **ids})
        bells = ([notify(kept.notification_id, reference=env.reference)]
                 if kept.notification_id else [])
        return Received(kept.summary, kept.invoice_id, bells)
    return Received(f"{result.outcome} {result.invoice_id}", result.invoice_id)


def _short(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) else None
