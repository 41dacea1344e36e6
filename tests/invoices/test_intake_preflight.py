"""Pre-flight checks at intake: what Finkok would refuse is refused at the door, naming the
code it avoids, and the local Finkok sandbox (over HTTP) refuses the same document with
the same code. lenient records, off skips; a check that cannot run is recorded, never a
refusal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.csd import generate_csd
from worker.cfdi.factory import build_invoice, mexico_city_now
from worker.cfdi.sealing import serialize
from worker.cfdi.xml import CFDI_NS, parse
from worker.db.models import AuditLog
from worker.finkok import FinkokClient
from worker.invoices.intake import InvoiceRefused, submit
from worker.sandbox.finkok import FinkokSandbox


@pytest.fixture(scope="module")
def finkok() -> Iterator[FinkokClient]:
    with FinkokSandbox(username="u", password="p") as sandbox, FinkokClient(
        sandbox.url, "u", "p", connect_timeout_s=0.5, read_timeout_s=5.0
    ) as client:
        yield client


def _tampered() -> bytes:
    xml = build_invoice(folio="tamper")
    return xml.replace(b'Folio="tamper"', b'Folio="tamperX"')


def _expired_certificate() -> bytes:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    csd = generate_csd("EKU9003173C9", "ESCUELA KEMPER URGATE", not_before=start, valid_days=9)
    return build_invoice(folio="expired", emisor=csd)


CASES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "seal": (_tampered, "302", "bad_seal"),
    "old": (lambda: build_invoice(fecha=mexico_city_now() - dt.timedelta(hours=73)), "401",
            "fecha_out_of_range"),
    "future": (lambda: build_invoice(fecha=mexico_city_now() + dt.timedelta(hours=3)), "401",
               "fecha_out_of_range"),
    "certificate": (_expired_certificate, "305", "certificate_not_valid"),
    "regimen_unknown": (lambda: build_invoice(receptor_regimen="999"), "CFDI40157", "receptor_rules"),
    "regimen_persona": (lambda: build_invoice(receptor_rfc="RARA760229C54", receptor_regimen="601"),
                        "CFDI40158", "receptor_rules"),
    "generic_rfc": (lambda: build_invoice(receptor_rfc="XAXX010101000", receptor_nombre="PUBLICO EN GENERAL",
                                          receptor_regimen="601", uso_cfdi="S01"), "CFDI40159",
                    "receptor_rules"),
    "uso_unknown": (lambda: build_invoice(uso_cfdi="X99"), "CFDI40160", "receptor_rules"),
    "uso_regimen": (lambda: build_invoice(uso_cfdi="D01"), "CFDI40161", "receptor_rules"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_at_the_door_with_the_code_finkok_answers(
    name: str, sessions: sessionmaker[Session], finkok: FinkokClient
) -> None:
    make, code, reason = CASES[name]
    xml = make()
    with pytest.raises(InvoiceRefused) as info:
        submit(sessions, xml, empresa_ref_id="E1", reference=f"R-{name}")
    assert (info.value.code, info.value.reason) == (code, reason)
    assert f"Finkok would answer {code}" in info.value.message
    assert finkok.stamp(xml).codes == (code,)  # the sandbox refuses it alike


def test_lenient_accepts_and_records_off_skips(sessions: sessionmaker[Session]) -> None:
    xml = build_invoice(uso_cfdi="D01")
    lenient = submit(sessions, xml, empresa_ref_id="E1", reference="R-len", checks="lenient")
    off = submit(sessions, build_invoice(uso_cfdi="D01"), empresa_ref_id="E1", reference="R-off",
                 checks="off")
    with sessions() as s:
        audit = {a.invoice_id: a for a in s.scalars(select(AuditLog))}
    assert audit[lenient.invoice_id].action == "intake-checks"
    assert audit[lenient.invoice_id].details["finding"].startswith("CFDI40161: ")  # type: ignore[index]
    assert off.invoice_id not in audit


def test_a_seal_that_cannot_be_checked_is_accepted_and_recorded(sessions: sessionmaker[Session]) -> None:
    """An unsupported SAT complement: no cadena here, so no verdict on the seal (Finkok
    decides); the invoice is accepted and the skipped check is on record."""
    root = parse(build_invoice(folio="implocal"))
    complemento = root.find(f"{{{CFDI_NS}}}Complemento")
    if complemento is None:
        complemento = etree.SubElement(root, f"{{{CFDI_NS}}}Complemento")
    ns = "http://www.sat.gob.mx/implocal"
    etree.SubElement(complemento, f"{{{ns}}}ImpuestosLocales", version="1.0",
                     TotaldeRetenciones="0.00", TotaldeTraslados="0.00")
    result = submit(sessions, serialize(root), empresa_ref_id="E1", reference="R-implocal")
    with sessions() as s:
        (audit,) = s.scalars(select(AuditLog).where(AuditLog.invoice_id == result.invoice_id))
    assert "ImpuestosLocales" in audit.details["skipped_seal"]  # type: ignore[index]
