"""Every other client method against the local Finkok over real HTTP."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from worker.cfdi.factory import mexico_city_now
from worker.finkok import CancelFolio, FinkokClient, Kind
from worker.finkok import results as r
from worker.sandbox.finkok import FinkokSandbox

Invoice = Callable[..., bytes]
EMISOR = "AAA010101AAA"
RECEPTOR = "URE180429TM6"


def cancelacion(*uuids: str, motivo: str = "02", rfc: str = EMISOR, sustitucion: str | None = None,
                csd: object = None) -> bytes:
    """A CFDI 4.0 cancellation request, signed with the test emisor's CSD (the sandbox
    verifies the XMLDSig signature as SAT does)."""
    from lxml import etree

    from worker.cfdi.cancellation import sign_document
    from worker.cfdi.csd import default_emisor_csd

    folios = "".join(
        f'<Folio UUID="{u}" Motivo="{motivo}"'
        + (f' FolioSustitucion="{sustitucion}"' if sustitucion else "") + "/>"
        for u in uuids
    )
    fecha = mexico_city_now().strftime("%Y-%m-%dT%H:%M:%S")
    doc = (f'<Cancelacion xmlns="http://cancelacfd.sat.gob.mx" RfcEmisor="{rfc}" Fecha="{fecha}">'
           f"<Folios>{folios}</Folios></Cancelacion>").encode()
    return sign_document(etree.fromstring(doc), csd or default_emisor_csd())  # type: ignore[arg-type]


def stamped_uuid(client: FinkokClient, invoice: Invoice, **kwargs: object) -> str:
    res = client.stamp(invoice(**kwargs))
    assert res.uuid
    return res.uuid


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_signature_receipt_and_status(client: FinkokClient, invoice: Invoice) -> None:
    uid = stamped_uuid(client, invoice)
    before = client.get_sat_status(EMISOR, RECEPTOR, uid, "1.00")
    assert (before.estado, before.es_cancelable) == ("Vigente", "Cancelable sin aceptación")
    assert client.get_receipt(EMISOR, uid).success is False

    res = client.cancel_signature(cancelacion(uid), store_pending=True)
    assert res.folios == (r.Folio(uid, "201", "Petición de cancelación realizada exitosamente"),)
    assert res.kind is Kind.OK and res.rfc_emisor == EMISOR and res.cod_estatus is None
    assert res.acuse and f"<UUID>{uid}</UUID><EstatusUUID>201</EstatusUUID>" in res.acuse

    repeat = client.cancel_signature(cancelacion(uid))
    assert repeat.folios[0].estatus_uuid == "202" and repeat.acuse is None
    assert repeat.kind is Kind.OK

    receipt = client.get_receipt(EMISOR, uid)
    assert (receipt.success, receipt.uuid, receipt.taxpayer_id, receipt.receipt) == (
        True, uid, EMISOR, res.acuse)
    after = client.get_sat_status(EMISOR, RECEPTOR, uid, "1.00")
    assert (after.estado, after.estatus_cancelacion) == ("Cancelado", "Cancelado sin aceptación")
    assert client.query_pending_cancellation(uid).status == "F"


def test_cancel_request_errors(client: FinkokClient, invoice: Invoice) -> None:
    uid = stamped_uuid(client, invoice)
    unknown = "11111111-2222-3333-4444-555555555555"
    res = client.cancel_signature(cancelacion(unknown))
    assert res.cod_estatus == f"UUID: {unknown} No Encontrado" and res.folios == ()
    res = client.cancel_signature(cancelacion(uid, motivo="01"))
    assert res.cod_estatus == "Motivo cancelación es 01, FolioSustitucion del CFDI es requerido."
    assert res.kind is Kind.PERMANENT
    # signed by the emisor's CSD for another RFC: SAT's 303, nothing processed
    assert client.cancel_signature(cancelacion(uid, rfc="EKU9003173C9")).cod_estatus == "303"
    # another taxpayer, signing its own request for our UUID: 203 for that folio
    from worker.cfdi.csd import generate_csd

    other = generate_csd("EKU9003173C9", "ESCUELA KEMPER URGATE")
    wrong_rfc = client.cancel_signature(cancelacion(uid, rfc="EKU9003173C9", csd=other))
    assert wrong_rfc.folios[0].estatus_uuid == "203" and wrong_rfc.kind is Kind.PERMANENT
    assert client.get_sat_status(EMISOR, RECEPTOR, unknown, "1").estado == "No Encontrado"


def test_cancel_with_acceptance(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(cancel_mode="con_aceptacion")
    accepted, rejected = stamped_uuid(client, invoice), stamped_uuid(client, invoice)
    for uid in (accepted, rejected):
        assert client.cancel_signature(cancelacion(uid)).folios[0].estatus_uuid == "201"
    assert set(client.get_pending(RECEPTOR).uuids) == {accepted, rejected}
    assert client.get_sat_status(EMISOR, RECEPTOR, accepted, "1").estatus_cancelacion == "En proceso"
    solicitud = (
        '<SolicitudAceptacionRechazo xmlns="http://cancelacfd.sat.gob.mx" RfcReceptor="URE180429TM6" '
        f'RfcPacEnviaSolicitud="SPR190613I52" Fecha="2026-01-01T00:00:00"><Folios><UUID>{accepted}</UUID>'
        "<Respuesta>Aceptacion</Respuesta></Folios></SolicitudAceptacionRechazo>"
    ).encode()
    res = client.accept_reject_signature(solicitud)
    assert res.aceptacion == (r.UuidStatus(accepted, "1000"),) and res.rechazo == ()
    res = client.accept_reject([(rejected, "Rechazo")], RECEPTOR, b"cer", b"key")
    assert res.rechazo == (r.UuidStatus(rejected, "1000"),)
    assert client.get_pending(RECEPTOR).uuids == ()
    assert client.get_sat_status(EMISOR, RECEPTOR, accepted, "1").estado == "Cancelado"
    assert client.get_sat_status(EMISOR, RECEPTOR, rejected, "1").estado == "Vigente"
    again = client.out_accept_reject(accepted, "Aceptacion", RECEPTOR, b"cer", b"key")
    assert again.aceptacion == (r.UuidStatus(accepted, "1001"),)
    assert client.get_out_pending(RECEPTOR).uuids == ()


def test_cancel_with_csd_operations(client: FinkokClient, invoice: Invoice) -> None:
    a, b = stamped_uuid(client, invoice), stamped_uuid(client, invoice)
    res = client.cancel([CancelFolio(a, "02")], EMISOR, b"cer", b"key")
    assert res.folios[0].uuid == a and res.folios[0].estatus_uuid == "201"
    res = client.sign_cancel([CancelFolio(b, "01", folio_sustitucion=a)], EMISOR, "30001000000500099001")
    assert res.folios[0].estatus_uuid == "201"
    other_pac = "99999999-8888-7777-6666-555555555555"
    res = client.out_cancel(cancelacion(other_pac), EMISOR, b"cer", b"key")
    assert res.folios == (r.Folio(other_pac, "201", "Petición de cancelación realizada exitosamente"),)


def test_related(client: FinkokClient, invoice: Invoice) -> None:
    parent = stamped_uuid(client, invoice)
    child = stamped_uuid(client, invoice, relacionados=[parent])
    peticion = (f'<PeticionConsultaRelacionados xmlns="http://cancelacfd.sat.gob.mx" RfcEmisor="{EMISOR}" '
                f'RfcPacEnviaSolicitud="SPR190613I52" RfcReceptor="{RECEPTOR}" Uuid="{parent}"/>').encode()
    res = client.get_related_signature(peticion)
    assert res.padres == (r.RelatedCfdi(child, EMISOR, RECEPTOR),) and res.hijos == ()
    res = client.get_related(EMISOR, RECEPTOR, child, b"cer", b"key")
    assert res.hijos == (r.RelatedCfdi(parent, EMISOR, RECEPTOR),) and res.padres == ()
    unknown = "11111111-2222-3333-4444-555555555555"
    res = client.get_out_related(EMISOR, RECEPTOR, unknown, b"c", b"k")
    assert res.error == f"UUID: {unknown} No Encontrado"
    assert client.get_out_sat_status(EMISOR, RECEPTOR, unknown, "1").estado == "No Encontrado"


# --- utilities ---------------------------------------------------------------------------------


def test_utilities(client: FinkokClient, invoice: Invoice) -> None:
    now = client.datetime("06000")
    assert now.error is None and now.datetime and now.datetime[:4].isdigit()
    first = client.stamp(invoice())
    second = client.stamp(invoice())
    assert client.get_xml(first.uuid or "", EMISOR).xml == first.xml
    assert client.get_xml("11111111-2222-3333-4444-555555555555", EMISOR).error == "UUID Does not Exists"
    total = client.report_total(EMISOR, "2020-01-01T00:00:00", "2099-01-01T00:00:00")
    assert total.entries == (r.TotalEntry(EMISOR, 2),)
    report = client.report_uuid(EMISOR, "2020-01-01T00:00:00", "2099-01-01T00:00:00")
    assert [e.uuid for e in report.invoices] == [first.uuid, second.uuid]
    assert report.invoices[0].date == first.fecha


def test_tokens(client: FinkokClient) -> None:
    added = client.add_token("caja-1", EMISOR)
    assert added.success is True and added.token and len(added.token) == 32
    reset = client.reset_token(added.token)
    assert reset.success is True and reset.token != added.token
    assert client.update_token(added.token, "I").success is True
    assert client.update_token(added.token, "X").success is False


# --- registration ------------------------------------------------------------------------------


def test_registration_lifecycle(client: FinkokClient) -> None:
    rfc = "EKU9003173C9"
    assert client.registration_add(rfc) == r.RegistrationResult(True, "Account Created successfully")
    assert client.registration_add(rfc) == r.RegistrationResult(True, "Account Already exists")
    assert client.registration_add("NOT-AN-RFC") == r.RegistrationResult(False, "RFC Invalido")
    got = client.registration_get(rfc)
    assert got.users == (r.Customer(rfc, "A", 0, -1),)
    assert client.registration_get("XAXX010101000").message == "RFC no encontrado"
    assert client.registration_edit(rfc, "S").message == "Account was Suspended successfully"
    assert client.registration_get(rfc).users[0].status == "S"
    on_demand = client.registration_assign(rfc, 10)
    assert (on_demand.success, on_demand.credit, on_demand.message) == (
        False, -1, "The user is on demand type"
    )
    assert client.registration_switch(rfc, "P").success is True
    assert client.registration_assign(rfc, 10) == r.AssignResult(True, 10, "Success")
    too_many = client.registration_assign(rfc, -20)
    assert too_many.success is False and too_many.credit == 10
    credit = client.report_credit(rfc)
    assert [e.credit for e in credit.entries] == [10]
    client.registration_add("MCI7306249Y1", type_user="P")
    page = client.registration_customers(1)
    assert page.message == "Showing 1 to 2 of 2 entries"
    assert [u.taxpayer_id for u in page.users] == [rfc, "MCI7306249Y1"]


# --- retentions --------------------------------------------------------------------------------


def retencion(folio: str) -> bytes:
    """A retention document (the sandbox does not verify retention seals)."""
    sello = base64.b64encode(hashlib.sha256(folio.encode()).digest()).decode()
    fecha = mexico_city_now().strftime("%Y-%m-%dT%H:%M:%S-06:00")
    return (
        '<retenciones:Retenciones xmlns:retenciones="http://www.sat.gob.mx/esquemas/retencionpago/2" '
        f'Version="2.0" FolioInt="{folio}" Sello="{sello}" NoCertificado="30001000000500099001" '
        f'Certificado="MIIB" FechaExp="{fecha}" LugarExpRetenc="06000" CveRetenc="14">'
        f'<retenciones:Emisor RfcE="{EMISOR}" NomDenRazSocE="EMPRESA" RegimenFiscalE="601"/>'
        '<retenciones:Receptor NacionalidadR="Nacional"><retenciones:Nacional RfcR="URE180429TM6" '
        'NomDenRazSocR="UNIVERSIDAD" DomicilioFiscalR="86991"/></retenciones:Receptor>'
        '<retenciones:Periodo MesIni="01" MesFin="01" Ejercicio="2026"/>'
        '<retenciones:Totales MontoTotOperacion="100" MontoTotGrav="100" MontoTotExent="0" '
        'MontoTotRet="10"/></retenciones:Retenciones>'
    ).encode()


def test_retentions(client: FinkokClient) -> None:
    xml = retencion("R-1")
    assert client.retentions_stamped(xml).codes == ("603",)
    res = client.retentions_stamp(xml)
    assert res.kind is Kind.OK and res.uuid and res.xml and f'UUID="{res.uuid}"' in res.xml
    again = client.retentions_stamp(xml)
    assert again.kind is Kind.ALREADY_STAMPED and again.uuid == res.uuid
    assert again.cod_estatus == "Comprobante timbrado previamente"
    assert client.retentions_stamped(xml).uuid == res.uuid
    cancel_doc = (f'<Cancelacion xmlns="http://cancelaretencion.sat.gob.mx" RfcEmisor="{EMISOR}" '
                  f'Fecha="2026-01-01T00:00:00"><Folios><UUID>{res.uuid}</UUID></Folios></Cancelacion>').encode()
    cancelled = client.retentions_cancel_signature(cancel_doc)
    assert cancelled.folios == (r.Folio(res.uuid, "1201", None),)
    assert cancelled.kind is Kind.OK
    receipt = client.retentions_get_receipt(EMISOR, res.uuid)
    assert receipt.success is True and receipt.receipt == cancelled.acuse


# --- manifest ----------------------------------------------------------------------------------


def test_manifest(client: FinkokClient) -> None:
    texts = client.manifest_get_contracts("SN-1", EMISOR, "EMPRESA DE PRUEBAS", "CDMX", "a@example.com")
    assert texts.success is True and texts.contract and b"EMPRESA DE PRUEBAS" in texts.contract
    assert texts.privacy and b"a@example.com" in texts.privacy
    assert client.manifest_get_documents("SN-1", EMISOR).success is False
    signed = client.manifest_sign_contract("SN-1", "<privacy signed/>", "<contract signed/>")
    assert signed == r.SignContractResult(True, "Contracts signed successfully")
    docs = client.manifest_get_documents("SN-1", EMISOR, "XML")
    assert (docs.contract, docs.privacy) == (b"<contract signed/>", b"<privacy signed/>")


@pytest.mark.parametrize("key", ["stamp", "cancel", "utilities", "registration", "retentions", "firmar"])
def test_wsdl_served_and_soap_on_the_wsdl_path(sandbox: FinkokSandbox, key: str) -> None:
    import zeep

    from worker.finkok import services

    wsdl_url = services.SERVICES[key].wsdl_url(sandbox.url)
    zc = zeep.Client(wsdl_url)  # loads our WSDL from the sandbox, over HTTP
    (service,) = zc.wsdl.services.values()
    (port,) = service.ports.values()
    assert port.binding_options["address"] == services.SERVICES[key].address(sandbox.url)
    if key == "utilities":  # Finkok also answers SOAP POSTed to the .wsdl URL
        proxy = zc.create_service(services.SERVICES[key].binding, wsdl_url)
        assert proxy.datetime(username="sandbox@example.com", password="x").error == (
            "Invalid Username or Password")
