"""Real Finkok responses, served over real HTTP, parse into our results.

A tiny loopback server answers every POST with the bytes of one captured response (HTTP
500 when it is a SOAP fault, as Finkok does); our client calls the matching operation and
the test asserts the values Finkok sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from worker.finkok import CancelFolio, FinkokClient, FinkokFault, Kind
from worker.finkok import results as r

pytestmark = pytest.mark.shared


class _Canned(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body: bytes = b""
    status: int = 200
    seen: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        type(self).seen.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def canned() -> Iterator[tuple[type[_Canned], FinkokClient]]:
    handler = type("Handler", (_Canned,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    client = FinkokClient(f"http://127.0.0.1:{server.server_port}", "user@example.com", "pw-12345",
                          connect_timeout_s=0.5, read_timeout_s=2.0)
    yield handler, client
    client.close()
    server.shutdown()
    server.server_close()


def _envelopes(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if raw.count(b"<senv:Envelope") <= 1:
        return [raw]
    return [part for part in re.split(rb"(?=<\?xml )", raw) if part.strip()]


def serve(canned: tuple[type[_Canned], FinkokClient], path: Path, index: int = 0) -> FinkokClient:
    handler, client = canned
    body = _envelopes(path)[index]
    handler.body = body
    handler.status = 500 if b"senv:Fault" in body else 200
    return client


CAP = Path("finkok/captures")
SAT = CAP / "satcfdi"
MAHR = CAP / "MAHR19_esquemacompleto"
CCALIX = CAP / "Christopher-MCT_ejemplo_timbradoCFDI"

# --- stamp family ------------------------------------------------------------------------------

STAMPS: list[tuple[Path, str, str, str, str, str]] = [
    # file, operation, UUID, Fecha, CodEstatus, NoCertificadoSAT
    (SAT / "test_finkok_stamp__stampResponse.xml", "stamp",
     "1E5A6E1B-9C1B-5319-BFED-123BD143A310", "2024-06-12T02:20:02",
     "Comprobante timbrado satisfactoriamente", "30001000000500003456"),
    (SAT / "test_finkok_quick_stamp__quick_stampResponse.xml", "quick_stamp",
     "C0AACAF9-9620-5BBD-9D73-4CF5E695B447", "2024-06-14T00:23:50",
     "Comprobante timbrado satisfactoriamente", "30001000000500003456"),
    (SAT / "test_finkok_stamped__stampedResponse.xml", "stamped",
     "F08A8B8C-26DB-5385-86AF-2A1D354C5CC3", "2024-06-15T15:58:42",
     "Comprobante recibido satisfactoriamente", "30001000000500003456"),
    (SAT / "test_finkok_issue__sign_stampResponse.xml", "sign_stamp",
     "AF124DC7-BD75-5EFF-8EDF-28C1E7D43B1D", "2024-06-12T00:50:43",
     "Comprobante timbrado satisfactoriamente", "30001000000500003456"),
    (MAHR / "Cancelacion_Cancelable_sin_aceptacion_response.xml", "stamp",
     "22073F30-01E7-5906-92F9-29CE02B15EAD", "2022-08-12T09:54:43",
     "Comprobante timbrado satisfactoriamente", "30001000000400002495"),
    (CCALIX / "creacion_xml_codigo_peticionesTimbrado_SoapResponse.xml", "sign_stamp",
     "B931AA10-5F97-59C3-B5DD-7A5700E76AF5", "2023-09-21T10:50:04",
     "Comprobante timbrado satisfactoriamente", "30001000000400002495"),
]


@pytest.mark.parametrize("rel,op,uuid,fecha,cod,nocert", STAMPS, ids=[s[0].name for s in STAMPS])
def test_stamp_family(shared_dir: Path, canned: Any, rel: Path, op: str, uuid: str, fecha: str,
                      cod: str, nocert: str) -> None:
    client = serve(canned, shared_dir / rel)
    res = getattr(client, op)(b"<cfdi:Comprobante/>")
    assert isinstance(res, r.StampResult)
    assert (res.uuid, res.fecha, res.cod_estatus, res.no_certificado_sat) == (uuid, fecha, cod, nocert)
    assert res.incidencias == ()
    assert res.kind is Kind.OK
    assert res.xml is not None
    assert res.xml.startswith('<?xml version="1.0" encoding="utf-8"?>\n<cfdi:Comprobante')
    assert f'UUID="{uuid}"' in res.xml  # the TFD, unescaped: the exact text Finkok sent
    assert res.sat_seal and res.sat_seal in res.xml


def test_sign_stamp_from_a_multi_line_capture(shared_dir: Path, canned: Any) -> None:
    client = serve(canned, shared_dir / CCALIX / "envolturas_response.xml")
    res = client.sign_stamp(b"x")
    assert res.uuid == "7ED34E9C-9B8E-5BFC-96A3-576C5A04CDB8"
    assert res.kind is Kind.OK


def test_query_pending_status_s(shared_dir: Path, canned: Any) -> None:
    client = serve(canned, shared_dir / SAT / "test_finkok_pending_stamp__query_pendingResponse.xml")
    res = client.query_pending("4C012AAE-0127-5B98-9647-5F0BA84BA552")
    assert res == r.QueryPendingResult(
        status="S", xml=None, uuid="4C012AAE-0127-5B98-9647-5F0BA84BA552", uuid_status=None,
        next_attempt=None, attempts=None, error=None, date="2024-06-15 19:49:36.367515",
    )
    assert res.pending and not res.delivered


def test_request_sent_is_base64_of_the_exact_bytes(canned: Any, shared_dir: Path) -> None:
    import base64

    handler, _ = canned
    client = serve(canned, shared_dir / SAT / "test_finkok_stamp__stampResponse.xml")
    payload = "<cfdi:Comprobante Nombre=\"ESPAÑOLA &amp; CIA\"/>".encode()
    client.stamp(payload)
    sent = handler.seen[-1].decode()
    m = re.search(r"<(?:\w+:)?xml>([^<]+)</(?:\w+:)?xml>", sent)
    assert m and base64.b64decode(m.group(1)) == payload
    assert "http://facturacion.finkok.com/stamp" in sent


# --- cancel family -----------------------------------------------------------------------------

CANCELS: list[tuple[Path, int, str, tuple[tuple[str, str, str], ...], str | None, str | None, bool]] = [
    # file, envelope, operation, folios, Fecha, CodEstatus, Acuse present
    (SAT / "test_finkok_cancel__cancel_signatureResponse.xml", 0, "cancel_signature",
     (("B107F0AC-6BC3-52CF-A3D7-5E9479414209", "201", "Petición de cancelación realizada exitosamente"),),
     "2024-06-16T12:37:01", None, True),
    (SAT / "test_finkok_cancel_comprobante__cancel_signatureResponse.xml", 0, "cancel_signature",
     (("035DD56C-7293-5365-BC40-17C07C2B4BEF", "201", "Petición de cancelación realizada exitosamente"),),
     "2024-06-16T13:07:03", None, True),
    (MAHR / "Cancelacion_Aceptacion_responseCancelAC.xml", 0, "cancel",
     (("5A72852F-7D84-53C1-9D60-42787F060DF7", "201", "Petición de cancelación realizada exitosamente"),),
     "2022-08-17T10:49:06", None, True),
    (MAHR / "Cancelacion_Aceptacion_responseCancelACC.xml", 0, "cancel",
     (("5A72852F-7D84-53C1-9D60-42787F060DF7", "202", "Plazo vencido"),),
     "2022-08-17 11:47:47.629189", None, False),
    (MAHR / "Cancelacion_Cancelable_sin_aceptacion_responseCancelCrp20.xml", 0, "cancel",
     (("22073F30-01E7-5906-92F9-29CE02B15EAD", "202", "Cancelado sin aceptación"),),
     "2022-08-17 11:49:40.756095", None, False),
    (MAHR / "Cancelacion_No_cancelable_responseCancelInvoiceA.xml", 0, "cancel",
     (("54F7AA1A-D156-59C6-8827-56189AE8ED0D", "201", "Petición de cancelación realizada exitosamente"),),
     "2022-08-17T13:21:28", None, True),
    (MAHR / "Cancelacion_No_cancelable_responseCancelInvoiceB.xml", 0, "cancel",
     (("A152316A-F9D4-5347-9C96-0A0456302A1E", "201", "Petición de cancelación realizada exitosamente"),),
     "2022-08-17T13:13:23", None, True),
    (CCALIX / "envolturas_SoapResponse.xml", 0, "cancel", (), None, "Invalid Username or Password", False),
    (CCALIX / "envolturas_SoapResponse.xml", 1, "cancel",
     (("7ED34E9C-9B8E-5BFC-96A3-576C5A04CDB8", "201", "Petición de cancelación realizada exitosamente"),),
     "2023-09-14T11:19:37", None, True),
    (CCALIX / "envolturas_SoapResponse.xml", 2, "cancel", (), None,
     "Motivo cancelación es 01, FolioSustitucion del CFDI es requerido.", False),
    (CCALIX / "envolturas_SoapResponse.xml", 3, "cancel", (), None,
     "Motivo cancelación es 01, FolioSustitucion del CFDI es requerido.", False),
]


def _call_cancel(client: FinkokClient, op: str) -> r.CancelResult:
    if op == "cancel_signature":
        return client.cancel_signature(b"<Cancelacion/>")
    return client.cancel([CancelFolio("7ED34E9C-9B8E-5BFC-96A3-576C5A04CDB8", "02")], "EKU9003173C9",
                         b"cer", b"key")


@pytest.mark.parametrize(
    "rel,index,op,folios,fecha,cod,acuse", CANCELS, ids=[f"{c[0].name}#{c[1]}" for c in CANCELS]
)
def test_cancel_family(shared_dir: Path, canned: Any, rel: Path, index: int, op: str,
                       folios: tuple[tuple[str, str, str], ...], fecha: str | None, cod: str | None,
                       acuse: bool) -> None:
    client = serve(canned, shared_dir / rel, index)
    res = _call_cancel(client, op)
    assert tuple((f.uuid, f.estatus_uuid, f.estatus_cancelacion) for f in res.folios) == folios
    assert (res.fecha, res.cod_estatus) == (fecha, cod)
    assert (res.acuse is not None) == acuse
    if acuse:
        assert res.acuse is not None and res.acuse.startswith("<s:Envelope")
        assert "<EstatusUUID>201</EstatusUUID>" in res.acuse
    if folios:
        assert res.rfc_emisor == "EKU9003173C9"
        assert res.kind is Kind.OK
    elif cod == "Invalid Username or Password":
        assert res.kind is Kind.ACCOUNT
    else:
        assert res.kind is Kind.PERMANENT


def test_get_receipt(shared_dir: Path, canned: Any) -> None:
    client = serve(canned, shared_dir / SAT / "test_finkok_get_receipt__get_receiptResponse.xml")
    res = client.get_receipt("LAN7008173R5", "E174F807-BEFA-4CF6-9B11-2A013B12F398")
    assert (res.uuid, res.success, res.taxpayer_id, res.date, res.error) == (
        "E174F807-BEFA-4CF6-9B11-2A013B12F398", True, "LAN7008173R5", "2019-04-05T15:23:01", None)
    assert res.receipt is not None and 'RfcEmisor="LAN7008173R5"' in res.receipt  # CDATA content


def test_accept_reject_signature(shared_dir: Path, canned: Any) -> None:
    client = serve(
        canned, shared_dir / SAT / "test_finkok_accept_reject__accept_reject_signatureResponse.xml"
    )
    res = client.accept_reject_signature(b"<SolicitudAceptacionRechazo/>")
    assert res.rechazo == (r.UuidStatus("2D0E7634-886F-4119-B58F-2DCA228D510F", "1000"),)
    assert res.aceptacion == (r.UuidStatus("E5B5DB3F-6FF8-42E0-AAE5-645FECFF96DC", "1001"),)
    assert res.error is None


def test_get_pending(shared_dir: Path, canned: Any) -> None:
    client = serve(canned, shared_dir / SAT / "test_finkok_pending__get_pendingResponse.xml")
    res = client.get_pending("EKU9003173C9")
    assert res.uuids == ("2D0E7634-886F-4119-B58F-2DCA228D510F",)


SAT_STATUS = [
    ("Cancelacion_Aceptacion_responsestatusxmlAC", "Vigente", "Cancelable con aceptación", None),
    ("Cancelacion_Aceptacion_responsestatusxmlACC", "Cancelado", "Cancelable con aceptación",
     "Plazo vencido"),
    ("Cancelacion_Cancelable_sin_aceptacion_responsestatuCRP20.xml", "Vigente",
     "Cancelable sin aceptación", None),
    ("Cancelacion_No_cancelable_responsestatusInvoiceCancelA.xml", "Cancelado",
     "Cancelable sin aceptación", "Cancelado sin aceptación"),
]


@pytest.mark.parametrize("name,estado,cancelable,estatus", SAT_STATUS)
def test_get_sat_status(shared_dir: Path, canned: Any, name: str, estado: str, cancelable: str,
                        estatus: str | None) -> None:
    client = serve(canned, shared_dir / MAHR / name)
    res = client.get_sat_status("EKU9003173C9", "XAXX010101000", "X", "1.00")
    assert (res.estado, res.es_cancelable, res.estatus_cancelacion) == (estado, cancelable, estatus)
    assert res.codigo_estatus == "S - Comprobante obtenido satisfactoriamente."
    assert res.validacion_efos == "100"


REGISTRATION = [
    (MAHR / "Registro_responseRFC.xml", "registration_add", "Account Created successfully"),
    (CCALIX / "registration_method_registros_sinCSD_SOAP_Response_add.xml", "registration_add",
     "Account Created successfully"),
    (MAHR / "ActualizarCSD_responseUpdate.xml", "registration_edit", "Account was Activated successfully"),
]


@pytest.mark.parametrize("rel,method,message", REGISTRATION, ids=[x[0].name for x in REGISTRATION])
def test_registration(shared_dir: Path, canned: Any, rel: Path, method: str, message: str) -> None:
    client = serve(canned, shared_dir / rel)
    call: Callable[..., r.RegistrationResult] = getattr(client, method)
    res = call("EKU9003173C9") if method == "registration_add" else call("EKU9003173C9", "A")
    assert res == r.RegistrationResult(success=True, message=message)


# --- SOAP faults -------------------------------------------------------------------------------

FAULTS = [
    (0, "'NoneType' object has no attribute 'date'"),
    (1, "error:0D0C5006:asn1 encoding routines"),
    (2, "RSA_padding_check_PKCS1_type_1"),
    (3, "INT_RSA_VERIFY:wrong signature length"),
    (4, "PEM_read_bio:no start line:pem_lib.c:707:Expecting: CERTIFICATE"),
]


@pytest.mark.parametrize("index,text", FAULTS)
def test_soap_faults_raise_our_fault(shared_dir: Path, canned: Any, index: int, text: str) -> None:
    client = serve(canned, shared_dir / CCALIX /
                   "creacion_xml_codigo_ejemplo_cancelacion_01_cancelaciones_SoapResponse.xml", index)
    with pytest.raises(FinkokFault) as info:
        client.cancel([CancelFolio("7ED34E9C-9B8E-5BFC-96A3-576C5A04CDB8", "02")], "EKU9003173C9",
                      b"cer", b"key")
    assert info.value.code == "senv:Server"
    assert text in info.value.fault_message
    assert info.value.kind is Kind.TRANSIENT
    assert info.value.__context__ is None and info.value.__cause__ is None
