"""SAT's cancellation request: the ``Cancelacion`` document, signed with the emisor's CSD.

    request = CancelRequest(rfc_emisor, uuid, motivo="01", folio_sustitucion=new_uuid)
    signed = sign_cancelacion(request, csd)          # bytes, sent as-is to cancel_signature
    check = verify_cancelacion(signed)               # what the local Finkok checks

The document (namespace ``http://cancelacfd.sat.gob.mx``)::

    <Cancelacion RfcEmisor="..." Fecha="2026-11-21T10:00:00">
      <Folios><Folio UUID="..." Motivo="01" FolioSustitucion="..."/></Folios>
      <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">...</ds:Signature>
    </Cancelacion>

The signature is XMLDSig, enveloped, as SAT requires: inclusive C14N 1.0, RSA-SHA1 over the
SignedInfo, SHA-1 digest of the whole document less the Signature (``Reference URI=""``
with the enveloped-signature transform), and a KeyInfo with the certificate's issuer,
serial and DER (``X509IssuerSerial`` + ``X509Certificate``). The ``ds:`` prefix is
XMLDSig's own (signxml's default-namespace mode does not survive a parent with its own
default namespace: the signature no longer verifies once serialized). SHA-1 is SAT's choice, not
ours; signxml refuses it by default, so :class:`_SatSigner` opts in for this one document.

Motivos (SAT's catalog): ``01`` errors with a relation (needs ``FolioSustitucion``, the
UUID of the CFDI that replaces it), ``02`` errors without a relation, ``03`` the operation
did not take place, ``04`` a nominative operation related in a global invoice. A request
that breaks these rules raises :class:`CancelRequestError` before anything is signed.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from worker.cfdi.csd import Csd, CsdError, rfc_of
from worker.cfdi.xml import UnsafeXmlError, parse

SAT_NS = "http://cancelacfd.sat.gob.mx"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
MOTIVOS = {
    "01": "Comprobante emitido con errores con relación",
    "02": "Comprobante emitido con errores sin relación",
    "03": "No se llevó a cabo la operación",
    "04": "Operación nominativa relacionada en una factura global",
}
MX_TZ = ZoneInfo("America/Mexico_City")
UUID_RE = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


class CancelRequestError(ValueError):
    """The request breaks SAT's rules (motivo, substitution, UUID form); nothing was signed."""


@dataclass(frozen=True)
class CancelRequest:
    """One UUID to cancel (the worker cancels one invoice per request)."""

    rfc_emisor: str
    uuid: str
    motivo: str
    folio_sustitucion: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", self.uuid.strip().upper())
        if self.folio_sustitucion is not None:
            object.__setattr__(self, "folio_sustitucion",
                               self.folio_sustitucion.strip().upper() or None)
        check_request(self.uuid, self.motivo, self.folio_sustitucion)


def check_request(uuid: str, motivo: str, folio_sustitucion: str | None) -> None:
    """SAT's rules for one folio: a known motivo; 01 needs a substitute UUID, the others
    take none; a UUID never substitutes itself."""
    if motivo not in MOTIVOS:
        raise CancelRequestError(f"motivo {motivo!r} is not one of SAT's 01, 02, 03, 04")
    if not UUID_RE.match(uuid.upper()):
        raise CancelRequestError(f"{uuid!r} is not a SAT UUID")
    if motivo == "01":
        if not folio_sustitucion:
            raise CancelRequestError("motivo 01 needs the UUID of the CFDI that substitutes it")
        if not UUID_RE.match(folio_sustitucion.upper()):
            raise CancelRequestError(f"substitute {folio_sustitucion!r} is not a SAT UUID")
        if folio_sustitucion.upper() == uuid.upper():
            raise CancelRequestError("a CFDI cannot substitute itself")
    elif folio_sustitucion:
        raise CancelRequestError(f"motivo {motivo} takes no substitute (only 01 does)")


def mexico_fecha(now: datetime | None = None) -> str:
    """SAT's ``Fecha``: Mexico City wall time, seconds, no offset."""
    local = (now or datetime.now(MX_TZ)).astimezone(MX_TZ)
    return local.replace(tzinfo=None, microsecond=0).isoformat()


def build_cancelacion(request: CancelRequest, fecha: str) -> etree._Element:
    """The unsigned document."""
    root = etree.Element(f"{{{SAT_NS}}}Cancelacion",
                         nsmap={None: SAT_NS})  # type: ignore[dict-item]  # lxml's default namespace
    root.set("RfcEmisor", request.rfc_emisor)
    root.set("Fecha", fecha)
    folios = etree.SubElement(root, f"{{{SAT_NS}}}Folios")
    folio = etree.SubElement(folios, f"{{{SAT_NS}}}Folio")
    folio.set("UUID", request.uuid)
    folio.set("Motivo", request.motivo)
    if request.folio_sustitucion:
        folio.set("FolioSustitucion", request.folio_sustitucion)
    return root


def _key_info(csd: Csd) -> etree._Element:
    """KeyInfo as SAT's examples carry it: issuer and serial, then the certificate."""
    ki = etree.Element(f"{{{DS_NS}}}KeyInfo", nsmap={"ds": DS_NS})
    data = etree.SubElement(ki, f"{{{DS_NS}}}X509Data")
    serial = etree.SubElement(data, f"{{{DS_NS}}}X509IssuerSerial")
    etree.SubElement(serial, f"{{{DS_NS}}}X509IssuerName").text = csd.cert.issuer.rfc4514_string()
    etree.SubElement(serial, f"{{{DS_NS}}}X509SerialNumber").text = str(csd.cert.serial_number)
    etree.SubElement(data, f"{{{DS_NS}}}X509Certificate").text = csd.certificado_b64
    return ki


def sign_cancelacion(request: CancelRequest, csd: Csd, *, fecha: str | None = None) -> bytes:
    """The signed ``Cancelacion`` for one folio as UTF-8 bytes (with an XML declaration).

    Refuses (``CsdError``) a CSD of another RFC: SAT answers 303 to that.
    """
    if csd.rfc.upper() != request.rfc_emisor.upper():
        raise CsdError(f"the CSD is {csd.rfc}'s, not the emisor {request.rfc_emisor}'s")
    return sign_document(build_cancelacion(request, fecha or mexico_fecha()), csd)


def sign_document(root: etree._Element, csd: Csd) -> bytes:
    """Sign any SAT request document (enveloped XMLDSig, SAT's algorithms) with ``csd``.
    No rule of its content is checked here (tests build refusable requests with it)."""
    from signxml.algorithms import (
        CanonicalizationMethod,
        DigestAlgorithm,
        SignatureMethod,
    )
    from signxml.signer import XMLSigner  # imported here: the CLI's --help stays light

    class _SatSigner(XMLSigner):
        def check_deprecated_methods(self) -> None:  # SAT's algorithm, not our choice
            return None

    signer = _SatSigner(
        signature_algorithm=SignatureMethod.RSA_SHA1,
        digest_algorithm=DigestAlgorithm.SHA1,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    )
    key_pem = csd.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    signed = signer.sign(root, key=key_pem, key_info=_key_info(csd))
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


# --- verification (the local Finkok, and tests) -----------------------------------------------


@dataclass(frozen=True)
class Verified:
    rfc_emisor: str
    fecha: str
    folios: tuple[tuple[str, str | None, str | None], ...]  # (UUID, Motivo, FolioSustitucion)
    certificate: x509.Certificate
    certificate_rfc: str


class SignatureError(ValueError):
    """The request is not signed, or its signature does not verify. ``code`` is SAT's:
    301 malformed, 302 bad seal, 303 seal not the emisor's, 304 certificate expired."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _one(parent: etree._Element, path: str) -> etree._Element:
    found = parent.findall(path, {"ds": DS_NS, "c": SAT_NS})
    if len(found) != 1:
        raise SignatureError("302", f"the signature needs exactly one {path.split(':')[-1]}")
    return found[0]


def verify_cancelacion(data: bytes, *, at: datetime | None = None) -> Verified:
    """Check a signed ``Cancelacion`` as SAT does, without signxml: the enveloped
    signature's SHA-1 digest over the canonical document less the Signature, the RSA-SHA1
    signature over the canonical SignedInfo with the KeyInfo's certificate, that the
    certificate is the emisor's (its RFC) and valid at ``at`` (default now)."""
    try:
        root = parse(data)
    except UnsafeXmlError as exc:
        raise SignatureError("301", str(exc)) from None
    if root.tag != f"{{{SAT_NS}}}Cancelacion":
        raise SignatureError("301", "not a SAT Cancelacion document")
    sigs = root.findall(f"{{{DS_NS}}}Signature")
    if len(sigs) != 1:
        raise SignatureError("302", "the request is not signed" if not sigs else "more than one Signature")
    sig = sigs[0]
    signed_info = _one(sig, "ds:SignedInfo")
    algs = (_one(signed_info, "ds:CanonicalizationMethod").get("Algorithm"),
            _one(signed_info, "ds:SignatureMethod").get("Algorithm"))
    if algs != (C14N_10, RSA_SHA1):
        raise SignatureError("302", f"SAT expects C14N 1.0 and RSA-SHA1, not {algs}")
    ref = _one(signed_info, "ds:Reference")
    transforms = [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", {"ds": DS_NS})]
    if ref.get("URI") != "" or transforms not in ([ENVELOPED], [ENVELOPED, C14N_10]) or \
            _one(ref, "ds:DigestMethod").get("Algorithm") != SHA1:
        raise SignatureError("302", "the signature must be enveloped over the whole document (SHA-1)")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(
            _one(sig, "ds:KeyInfo/ds:X509Data/ds:X509Certificate").text or ""))
    except ValueError as exc:
        raise SignatureError("302", f"the KeyInfo certificate cannot be read: {exc}") from None
    # The digest: the document without its Signature, canonicalized.
    unsigned = etree.fromstring(etree.tostring(root))
    signature = unsigned.find(f"{{{DS_NS}}}Signature")
    if signature is None:
        raise SignatureError("302", "the request is not signed (no ds:Signature)")
    unsigned.remove(signature)
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303  (SAT's algorithm)
    digest.update(etree.tostring(unsigned, method="c14n", exclusive=False, with_comments=False))
    expected = base64.b64encode(digest.finalize()).decode()
    if (_one(ref, "ds:DigestValue").text or "").strip() != expected:
        raise SignatureError("302", "the digest does not match the document (altered after signing)")
    c14n_si = etree.tostring(signed_info, method="c14n", exclusive=False, with_comments=False)
    value = base64.b64decode("".join((_one(sig, "ds:SignatureValue").text or "").split()))
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise SignatureError("302", "the certificate's key is not RSA")
    try:
        public.verify(value, c14n_si, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    except Exception:
        raise SignatureError("302", "the signature does not verify with the request's certificate") from None
    try:
        cert_rfc = rfc_of(cert)
    except CsdError:
        raise SignatureError("306", "the certificate is not a CSD") from None
    rfc = root.get("RfcEmisor") or ""
    if cert_rfc.upper() != rfc.upper():
        raise SignatureError("303", f"the seal is {cert_rfc}'s, not the emisor {rfc}'s")
    moment = at or datetime.now(MX_TZ)
    if not (cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc):
        raise SignatureError("304", "the certificate is expired or not yet valid")
    folios = tuple(
        ((f.get("UUID") or "").upper(), f.get("Motivo"), f.get("FolioSustitucion"))
        for f in root.iterfind(f"{{{SAT_NS}}}Folios/{{{SAT_NS}}}Folio")
    )
    return Verified(rfc, root.get("Fecha") or "", folios, cert, cert_rfc)
