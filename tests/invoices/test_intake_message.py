"""billing.submit_invoice's handler: the same submit(); refused documents kept with one NOK;
malformed envelopes dropped. On SQLite and PostgreSQL (the `sessions` fixture)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.factory import build_invoice
from worker.db.models import Invoice, Notification
from worker.invoices.intake_message import receive
from worker.sif.payload import body_for

MAX = 2 * 1024 * 1024


def _msg(xml: bytes, **over: Any) -> dict[str, Any]:
    return {"empresaRefId": "E1", "reference": "R1", "xml": base64.b64encode(xml).decode(), **over}


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as s:
        return (s.scalar(select(func.count()).select_from(Invoice)) or 0,
                s.scalar(select(func.count()).select_from(Notification)) or 0)


def _receive(sessions: sessionmaker[Session], kwargs: dict[str, Any], args: tuple[Any, ...] = ()) -> Any:
    rung: list[str] = []

    def bell(row_id: str, *, reference: str | None = None) -> bool:
        rung.append(row_id)
        return True

    out = receive(sessions, args, kwargs, max_xml_bytes=MAX, publish=bell)
    return out, rung


def test_created_then_existing_rings_once(sessions: sessionmaker[Session]) -> None:
    xml = build_invoice(folio="m1")
    first, rung = _receive(sessions, _msg(xml, pedidoga="P1"))
    assert first.summary == f"created {first.invoice_id}" and rung == [first.invoice_id]
    again, rung2 = _receive(sessions, _msg(xml, pedidoga="P1"))
    assert again.summary == f"existing {first.invoice_id}" and rung2 == []
    assert _counts(sessions) == (1, 0)
    with sessions() as s:
        inv = s.get(Invoice, first.invoice_id)
        assert inv is not None and bytes(inv.xml) == xml and inv.pedidoga == "P1"


@pytest.mark.parametrize("xml", [b"not xml at all \xff\xfe", b"", b"<a>unclosed"],
                         ids=["bytes", "empty", "broken"])
def test_refused_is_kept_rejected_with_one_nok(sessions: sessionmaker[Session], xml: bytes) -> None:
    kwargs = _msg(xml, pedidoga="P9")
    if not xml:
        kwargs["xml"] = ""  # empty base64 is "xml is required": the envelope check
        out, _ = _receive(sessions, kwargs)
        assert out.summary.startswith("dropped: xml is required") and _counts(sessions) == (0, 0)
        return
    out, rung = _receive(sessions, kwargs)
    assert out.summary.startswith("refused not_") and "NOK queued" in out.summary
    assert rung == []  # nothing to stamp
    assert [b.task for b in out.follow_ups] == ["billing.notify_sif"]
    again, _ = _receive(sessions, kwargs)  # the producer sends it again
    assert again.summary.startswith("refused not_") and "already rejected" in again.summary
    assert again.follow_ups == []
    assert _counts(sessions) == (1, 1)
    with sessions() as s:
        inv = s.get(Invoice, out.invoice_id)
        assert inv is not None and inv.state == "rejected" and inv.error_kind == "intake"
        assert bytes(inv.xml) == xml  # as received, even when not XML
        assert inv.errors and inv.errors[0]["kind"] == "intake"
        (note,) = inv.notifications
        body = body_for(inv, note)  # the NOK builds without any XML
    assert body["status"] == "NOK" and body["folio"] == inv.id and body["pedidoga"] == "P9"
    assert body["error"][0].startswith(inv.errors[0]["code"] + " – ")
    assert body["errorDatosFiscales"] == 0


def test_corrected_document_replaces_the_refused_one(sessions: sessionmaker[Session]) -> None:
    out, _ = _receive(sessions, _msg(b"<oops/>"))
    fixed, rung = _receive(sessions, _msg(build_invoice(folio="fix"), replace=True))
    assert fixed.summary == f"replaced {out.invoice_id}" and rung == [out.invoice_id]
    with sessions() as s:
        inv = s.get(Invoice, out.invoice_id)
        assert inv is not None and inv.state == "received" and inv.errors is None


def test_refused_document_for_a_held_pair_is_not_stored(sessions: sessionmaker[Session]) -> None:
    good, _ = _receive(sessions, _msg(build_invoice(folio="held")))
    out, _ = _receive(sessions, _msg(b"<cfdi:Comprobante/>"))
    assert out.summary.startswith("refused ") and f"held by invoice {good.invoice_id}" in out.summary
    assert _counts(sessions) == (1, 0)


def test_conflict_is_refused_and_logged(sessions: sessionmaker[Session]) -> None:
    _receive(sessions, _msg(build_invoice(folio="a")))
    out, _ = _receive(sessions, _msg(build_invoice(folio="b")))
    assert out.summary.startswith("refused conflict: E1/R1 is already held")
    assert _counts(sessions) == (1, 0)


@pytest.mark.parametrize(
    ("kwargs", "args", "why"),
    [
        ({"empresaRefId": "E1", "reference": "R1"}, ("x",), "positional"),
        ({"reference": "R1", "xml": "PGEvPg=="}, (), "empresaRefId is required"),
        ({"empresaRefId": "E1", "xml": "PGEvPg=="}, (), "reference is required"),
        ({"empresaRefId": "..", "reference": "R1", "xml": "PGEvPg=="}, (), "single URL path segment"),
        ({"empresaRefId": "a\\b", "reference": "R1", "xml": "PGEvPg=="}, (), "single URL path segment"),
        ({"empresaRefId": "E1", "reference": "R1", "xml": "not base64!"}, (), "not valid base64"),
        ({"empresaRefId": "E1", "reference": "R1", "xml": 12}, (), "xml is required"),
        ({"empresaRefId": "E1", "reference": "R1", "xml": "PGEvPg==", "replace": "yes"}, (), "replace"),
        ({"empresaRefId": "E1", "reference": "R1", "xml": "PGEvPg==", "extra": 1}, (), "unknown field"),
    ],
)
def test_malformed_envelope_is_dropped(sessions: sessionmaker[Session], kwargs: dict[str, Any],
                                       args: tuple[Any, ...], why: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    out, rung = _receive(sessions, kwargs, args)
    assert out.summary.startswith("dropped: ") and why in out.summary, out.summary
    assert rung == [] and out.follow_ups == [] and _counts(sessions) == (0, 0)
    assert any("intake message dropped" in r.getMessage() for r in caplog.records)


def test_preflight_refusal_nok_names_the_code_it_avoids(sessions: sessionmaker[Session]) -> None:
    """A receptor rule refused at the door reads to SIF as Finkok's answer would have:
    the CFDI401xx code, errorDatosFiscales 1."""
    out, _ = _receive(sessions, _msg(build_invoice(uso_cfdi="D01")))
    assert out.summary.startswith("refused receptor_rules: ")
    with sessions() as s:
        inv = s.get(Invoice, out.invoice_id)
        assert inv is not None
        body = body_for(inv, inv.notifications[0])
    assert body["error"][0].startswith("CFDI40161 – UsoCFDI D01") and body["errorDatosFiscales"] == 1
