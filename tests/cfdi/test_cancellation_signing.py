"""SAT's signed cancellation request (worker.cfdi.cancellation).

The signature is checked here without the project's verifier and without signxml: the
SHA-1 digest of the canonical document less its Signature, and the RSA-SHA1 signature
over the canonical SignedInfo, both with ``cryptography`` and lxml's C14N directly.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from worker.cfdi.cancellation import (
    CancelRequest,
    CancelRequestError,
    SignatureError,
    sign_cancelacion,
    verify_cancelacion,
)
from worker.cfdi.csd import Csd, CsdError, generate_csd, load_csd

DS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "c": "http://cancelacfd.sat.gob.mx"}
U1 = "5B13C295-1111-4222-8333-444455556666"
U2 = "5B13C295-1111-4222-8333-444455556667"


def independent_check(signed: bytes) -> x509.Certificate:
    """Digest and RSA signature, recomputed by hand; returns the KeyInfo certificate."""
    root = etree.fromstring(signed)
    sig = root.find("ds:Signature", DS)
    assert sig is not None
    si = sig.find("ds:SignedInfo", DS)
    assert si.find("ds:SignatureMethod", DS).get("Algorithm").endswith("#rsa-sha1")
    assert si.find("ds:Reference", DS).get("URI") == ""
    cert = x509.load_der_x509_certificate(base64.b64decode(
        sig.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", DS).text))
    # digest: the whole document without the Signature (the enveloped transform), C14N 1.0
    copy = etree.fromstring(signed)
    copy.remove(copy.find("ds:Signature", DS))
    h = hashes.Hash(hashes.SHA1())
    h.update(etree.tostring(copy, method="c14n"))
    assert si.find("ds:Reference/ds:DigestValue", DS).text == base64.b64encode(h.finalize()).decode()
    value = base64.b64decode(sig.find("ds:SignatureValue", DS).text)
    cert.public_key().verify(value, etree.tostring(si, method="c14n"), padding.PKCS1v15(),
                             hashes.SHA1())  # raises InvalidSignature
    return cert


@pytest.mark.parametrize("motivo, substitute", [("01", U2), ("02", None), ("03", None), ("04", None)])
def test_each_motivo_signs_and_verifies_independently(
    emisor: Csd, motivo: str, substitute: str | None
) -> None:
    signed = sign_cancelacion(CancelRequest(emisor.rfc, U1.lower(), motivo, substitute), emisor,
                              fecha="2026-01-02T03:04:05")
    cert = independent_check(signed)
    assert cert == emisor.cert
    root = etree.fromstring(signed)
    assert root.get("RfcEmisor") == emisor.rfc and root.get("Fecha") == "2026-01-02T03:04:05"
    folio = root.find("c:Folios/c:Folio", DS)
    assert (folio.get("UUID"), folio.get("Motivo"), folio.get("FolioSustitucion")) == (U1, motivo, substitute)
    v = verify_cancelacion(signed)
    assert v.folios == ((U1, motivo, substitute),) and v.certificate_rfc == emisor.rfc


def test_signxml_verifies_it_too(emisor: Csd) -> None:
    from cryptography.hazmat.primitives import serialization
    from signxml import XMLVerifier
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration

    signed = sign_cancelacion(CancelRequest(emisor.rfc, U1, "02"), emisor)
    config = SignatureConfiguration(signature_methods=frozenset({SignatureMethod.RSA_SHA1}),
                                    digest_algorithms=frozenset({DigestAlgorithm.SHA1}))
    pem = emisor.cert.public_bytes(serialization.Encoding.PEM).decode()
    assert XMLVerifier().verify(signed, x509_cert=pem, expect_config=config).signed_xml is not None


def test_sat_test_csd_signs(shared_dir: Path) -> None:
    """SAT's own test CSD (EKU9003173C9, an encrypted PKCS#8 .key), read in place."""
    folder = shared_dir / "cfdi" / "csd" / "EKU9003173C9"
    if not folder.is_dir():
        pytest.skip(f"SAT test CSD not found at {folder}")
    csd = load_csd((folder / "EKU9003173C9.cer").read_bytes(), (folder / "EKU9003173C9.key").read_bytes(),
                   (folder / "password.txt").read_text().strip())
    signed = sign_cancelacion(CancelRequest(csd.rfc, U1, "03"), csd)
    assert independent_check(signed) == csd.cert
    assert verify_cancelacion(signed, at=csd.cert.not_valid_before_utc).rfc_emisor == "EKU9003173C9"


def test_altered_unsigned_or_foreign_requests_are_refused(emisor: Csd) -> None:
    signed = sign_cancelacion(CancelRequest(emisor.rfc, U1, "02"), emisor)
    with pytest.raises(SignatureError) as exc:
        verify_cancelacion(signed.replace(b'Motivo="02"', b'Motivo="03"'))
    assert exc.value.code == "302"
    root = etree.fromstring(signed)
    root.remove(root.find("ds:Signature", DS))
    with pytest.raises(SignatureError, match="not signed") as exc:
        verify_cancelacion(etree.tostring(root))
    assert exc.value.code == "302"
    # signed by someone else's key with the emisor's certificate in KeyInfo
    other = generate_csd(emisor.rfc, emisor.name)
    forged = sign_cancelacion(CancelRequest(emisor.rfc, U1, "02"), other)
    forged_root = etree.fromstring(forged)
    cert_el = forged_root.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", DS)
    cert_el.text = emisor.certificado_b64
    with pytest.raises(SignatureError) as exc:
        verify_cancelacion(etree.tostring(forged_root))
    assert exc.value.code == "302"
    # a valid signature by another RFC's CSD, claiming to be the emisor
    stranger = generate_csd("XIA190128J61", "OTRA EMPRESA")
    doc = sign_cancelacion(CancelRequest("XIA190128J61", U1, "02"), stranger)
    with pytest.raises(SignatureError) as exc:
        verify_cancelacion(doc.replace(b'RfcEmisor="XIA190128J61"', b'RfcEmisor="AAA010101AAA"'))
    assert exc.value.code == "302"  # the RFC is signed: changing it breaks the digest


def test_request_rules_refuse_before_signing(emisor: Csd) -> None:
    with pytest.raises(CancelRequestError, match="01 needs"):
        CancelRequest(emisor.rfc, U1, "01")
    with pytest.raises(CancelRequestError, match="only 01"):
        CancelRequest(emisor.rfc, U1, "02", U2)
    with pytest.raises(CancelRequestError, match="itself"):
        CancelRequest(emisor.rfc, U1, "01", U1.lower())
    with pytest.raises(CancelRequestError, match="05"):
        CancelRequest(emisor.rfc, U1, "05")
    with pytest.raises(CsdError, match="not the emisor"):
        sign_cancelacion(CancelRequest("XIA190128J61", U1, "02"), emisor)
