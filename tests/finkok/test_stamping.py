"""Client against the local Finkok over real HTTP: the stamp service and its answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from worker.cfdi.csd import sandbox_pac_csd
from worker.cfdi.factory import mexico_city_now
from worker.cfdi.sealing import verify_seal
from worker.cfdi.tfd import find_tfd, verify_tfd
from worker.finkok import FinkokClient, Kind
from worker.sandbox.finkok import FinkokSandbox

Invoice = Callable[..., bytes]


def test_stamp_returns_a_verifiable_stamp(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    xml = invoice()
    res = client.stamp(xml)
    assert res.kind is Kind.OK and res.incidencias == ()
    assert res.cod_estatus == "Comprobante timbrado satisfactoriamente"
    assert res.uuid and len(res.uuid) == 36 and res.uuid == res.uuid.upper()
    assert res.xml is not None and res.xml.startswith('<?xml version="1.0" encoding="utf-8"?>\n')
    stamped = res.xml.encode("utf-8")
    tfd = find_tfd(stamped)
    assert tfd is not None and tfd.get("UUID") == res.uuid
    assert tfd.get("FechaTimbrado") == res.fecha
    assert tfd.get("SelloSAT") == res.sat_seal
    assert res.no_certificado_sat == sandbox_pac_csd().no_certificado == tfd.get("NoCertificadoSAT")
    verify_tfd(stamped, sandbox_pac_csd().cert)
    verify_seal(stamped)  # the emisor's seal still holds: only the TFD was added
    assert sandbox.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_repeat_stamp_answers_307_with_the_previous_stamp(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    xml = invoice()
    first = client.stamp(xml)
    again = client.stamp(xml)
    assert again.kind is Kind.ALREADY_STAMPED and again.codes == ("307",)
    assert again.cod_estatus == "Comprobante timbrado previamente"
    assert (again.uuid, again.xml, again.fecha) == (first.uuid, first.xml, first.fecha)
    assert again.incidencias[0].mensaje == "El CFDI contiene un timbre previo"
    assert again.incidencias[0].uuid == first.uuid
    stats = sandbox.document_stats(xml)
    assert stats is not None and (stats["new_stamps"], stats["hits_307"], stats["stamp_calls"]) == (1, 1, 2)


def test_repeat_stamp_307_without_xml(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(stamp_307_with_xml=False)
    xml = invoice()
    first = client.stamp(xml)
    again = client.stamp(xml)
    assert again.kind is Kind.ALREADY_STAMPED and again.codes == ("307",)
    assert (again.uuid, again.xml, again.has_stamp) == (None, None, False)
    recovered = client.stamped(xml)  # what the pipeline does next
    assert recovered.kind is Kind.OK and recovered.uuid == first.uuid and recovered.xml == first.xml
    assert recovered.cod_estatus == "Comprobante recibido satisfactoriamente"


def test_307_without_xml_by_receptor_rule(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    sandbox.configure(rules={"XAXX010101000": "307_no_xml"})
    generic = invoice(receptor_rfc="XAXX010101000", receptor_nombre="PUBLICO EN GENERAL",
                      receptor_cp="06000", receptor_regimen="616", uso_cfdi="S01")
    other = invoice()
    for xml in (generic, other):
        client.stamp(xml)
    assert client.stamp(generic).xml is None
    assert client.stamp(other).xml is not None


def test_stamped_603_then_the_stamp(client: FinkokClient, invoice: Invoice) -> None:
    xml = invoice()
    never = client.stamped(xml)
    assert never.kind is Kind.NOT_STAMPED and never.codes == ("603",)
    assert never.incidencias[0].mensaje == "El CFDI no contiene un timbre previo"
    first = client.stamp(xml)
    assert client.stamped(xml).uuid == first.uuid


def test_stamped_lags_with_603_once_after_a_stamp(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    sandbox.configure(stamped_603_calls=1)
    xml = invoice()
    first = client.stamp(xml)
    assert client.stamped(xml).kind is Kind.NOT_STAMPED  # Finkok's 2019 lag
    assert client.stamp(xml).uuid == first.uuid  # 307 is the second guard
    assert client.stamped(xml).uuid == first.uuid
    assert sandbox.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_quick_stamp_then_query_pending_s_then_f(client: FinkokClient, sandbox: FinkokSandbox,
                                                  invoice: Invoice) -> None:
    sandbox.configure(pending_polls=2)
    xml = invoice()
    res = client.quick_stamp(xml)
    assert res.kind is Kind.OK and res.uuid
    repeat = client.quick_stamp(xml)
    assert repeat.codes == ("307",) and repeat.xml is None and repeat.uuid is None
    polls = [client.query_pending(res.uuid) for _ in range(3)]
    assert [p.status for p in polls] == ["S", "S", "F"]
    assert polls[0].uuid == res.uuid and polls[0].error is None and polls[0].xml is None
    assert polls[0].date and dt.datetime.strptime(polls[0].date, "%Y-%m-%d %H:%M:%S.%f")
    assert polls[2].delivered and polls[2].xml == res.xml


def test_plain_stamp_is_delivered_at_once_unless_pending(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    plain = client.stamp(invoice())
    assert client.query_pending(plain.uuid or "").status == "F"
    sandbox.configure(rules={"XAXX010101000": ["pending"]}, pending_polls=1)
    pending = client.stamp(invoice(receptor_rfc="XAXX010101000", receptor_nombre="PUBLICO EN GENERAL",
                                   receptor_cp="06000", receptor_regimen="616", uso_cfdi="S01"))
    assert pending.kind is Kind.OK  # fiscally stamped: UUID and TFD are there
    assert [client.query_pending(pending.uuid or "").status for _ in range(2)] == ["S", "F"]


def test_pending_for_a_while(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(pending_rate=1.0, pending_polls=0, pending_s=0.3)
    res = client.stamp(invoice())
    assert client.query_pending(res.uuid or "").status == "S"
    import time

    time.sleep(0.35)
    assert client.query_pending(res.uuid or "").status == "F"


def test_query_pending_unknown_and_malformed(client: FinkokClient) -> None:
    unknown = "11111111-2222-3333-4444-555555555555"
    assert client.query_pending(unknown).error == f"UUID {unknown} No Encontrado"
    assert client.query_pending("nope").error == "UUID con formato invalido"


def test_seal_failure_is_302_and_nothing_is_stamped(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    xml = invoice()
    tampered = xml.replace(b'UsoCFDI="G03"', b'UsoCFDI="G01"')
    assert tampered != xml
    res = client.stamp(tampered)
    assert res.codes == ("302",) and res.kind is Kind.PERMANENT
    assert res.incidencias[0].mensaje == "Sello mal formado o inválido"
    assert res.uuid is None and res.xml is None
    assert sandbox.stats()["totals"]["new_stamps"] == 0


def test_fecha_older_than_72_hours_is_401(client: FinkokClient, invoice: Invoice) -> None:
    old = invoice(fecha=mexico_city_now() - dt.timedelta(hours=73))
    res = client.stamp(old)
    assert res.codes == ("401",)
    assert res.incidencias[0].mensaje == "Fecha y hora de generación fuera de rango"


def test_an_already_stamped_xml_is_707(client: FinkokClient, invoice: Invoice) -> None:
    stamped = client.stamp(invoice()).xml
    assert stamped is not None
    res = client.stamp(stamped.encode("utf-8"))
    assert res.codes == ("707",) and res.kind is Kind.PERMANENT


def test_not_xml_is_301(client: FinkokClient) -> None:
    res = client.stamp(b"this is not xml")
    assert res.codes == ("301",)


def test_receptor_rejection_rule(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(rules={"URE180429TM6": "reject:CFDI40143", "EKU9003173C9": "account:702"})
    rejected = client.stamp(invoice())
    assert rejected.codes == ("CFDI40143",) and rejected.kind is Kind.FISCAL_DATA
    assert rejected.incidencias[0].mensaje == (
        "Este RFC del receptor no existe en la lista de RFC inscritos no cancelados del SAT.")
    account = client.stamp(invoice(receptor_rfc="EKU9003173C9", receptor_nombre="ESCUELA KEMPER URGATE",
                                   receptor_cp="42501"))
    assert account.codes == ("702",) and account.kind is Kind.ACCOUNT
    assert account.incidencias[0].mensaje == "RFC Emisor no registrado en la cuenta"
    assert sandbox.stats()["totals"]["new_stamps"] == 0


def test_forgetful_pac_double_stamps_visibly(client: FinkokClient, sandbox: FinkokSandbox,
                                             invoice: Invoice) -> None:
    sandbox.configure(guard_307=False)
    xml = invoice()
    first, second = client.stamp(xml), client.stamp(xml)
    assert first.kind is second.kind is Kind.OK
    assert first.uuid != second.uuid
    stats = sandbox.document_stats(xml)
    assert stats is not None and stats["new_stamps"] == 2 and stats["uuids"] == [first.uuid, second.uuid]
    assert sandbox.stats()["totals"]["double_stamped_documents"] == 1


def test_sign_stamp_is_refused_without_a_stored_csd(client: FinkokClient, invoice: Invoice) -> None:
    res = client.sign_stamp(invoice())
    assert res.codes == ("720",) and res.kind is Kind.ACCOUNT


@pytest.mark.parametrize("threads", [4])
def test_concurrent_stamps_of_one_document_make_one_stamp(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice, threads: int
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    xml = invoice()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda _: client.stamp(xml), range(threads * 2)))
    assert len({a.uuid for a in answers}) == 1
    assert sum(a.kind is Kind.OK for a in answers) == 1
    assert sandbox.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]
