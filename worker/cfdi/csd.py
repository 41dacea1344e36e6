"""Certificados de Sello Digital (CSD): load SAT's, or make test ones of our own.

A SAT CSD is an RSA key plus an X.509 certificate whose subject carries the RFC in
``x500UniqueIdentifier`` (OID 2.5.4.45) and whose serial number, read as bytes, is the
ASCII text of the 20-digit ``NoCertificado`` (serial ``0x3330...`` is "30..."). Our own
test CSDs copy that shape, so :func:`no_certificado` and :func:`rfc_of` read SAT's
certificates and ours the same way.

Our test identities (documented choices, used by the demo, the sandbox and the tests):

* emisor: RFC ``AAA010101AAA``, the RFC that SAT uses in its published CFDI examples (so
  it cannot be a real taxpayer), under a name of our own; NoCertificado
  ``30001000000500099001``.
* sandbox PAC ("SAT" signer of ``SelloSAT``): RFC ``SPR190613I52`` (the RFC of SAT's test
  "SAT PRUEBAS" certificate that signs Finkok demo stamps), NoCertificadoSAT
  ``30001000000500099002``. The key is ours; SAT's real one is not public.

Both certificates are self-signed: nothing checks them against SAT's CA here.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

OID_NAME = ObjectIdentifier("2.5.4.41")  # X.520 "name": SAT puts the taxpayer's name here
OID_UNIQUE_ID = NameOID.X500_UNIQUE_IDENTIFIER  # 2.5.4.45: "RFC" or "RFC / RFC representante"

EMISOR_RFC = "AAA010101AAA"
EMISOR_NAME = "EMPRESA DE PRUEBAS RUPTURE"
EMISOR_NO_CERTIFICADO = "30001000000500099001"
PAC_RFC = "SPR190613I52"
PAC_NAME = "SAT PRUEBAS SANDBOX RUPTURE"
PAC_NO_CERTIFICADO = "30001000000500099002"

_PRINTABLE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


class CsdError(ValueError):
    """A certificate or key is not a usable CSD (wrong password, mismatched pair, bad serial)."""


@dataclass(frozen=True)
class Csd:
    """A key and its certificate, with the values a CFDI carries."""

    rfc: str
    name: str
    key: rsa.RSAPrivateKey = field(repr=False)
    cert: x509.Certificate = field(repr=False)
    no_certificado: str
    certificado_b64: str = field(repr=False)

    def sign(self, data: bytes) -> str:
        """Base64 RSA PKCS#1 v1.5 SHA-256 signature, the form of Sello and SelloSAT."""
        return base64.b64encode(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 key followed by the certificate (test CSDs only)."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return key + self.cert.public_bytes(serialization.Encoding.PEM)


def no_certificado(cert: x509.Certificate) -> str:
    """The 20-digit NoCertificado: the certificate serial's bytes read as ASCII digits."""
    serial = cert.serial_number
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    text = raw.decode("ascii", errors="replace")
    if len(text) != 20 or not text.isdigit():
        raise CsdError(f"certificate serial {serial:#x} is not a SAT-style 20-digit NoCertificado")
    return text


def serial_from_no_certificado(no_cert: str) -> int:
    """Inverse of :func:`no_certificado`."""
    if len(no_cert) != 20 or not no_cert.isdigit():
        raise CsdError(f"NoCertificado must be 20 digits, got {no_cert!r}")
    return int.from_bytes(no_cert.encode("ascii"), "big")


def rfc_of(cert: x509.Certificate) -> str:
    """The RFC in the subject's x500UniqueIdentifier ("RFC / RFC-of-representative")."""
    values = cert.subject.get_attributes_for_oid(OID_UNIQUE_ID)
    if not values:
        raise CsdError("certificate has no x500UniqueIdentifier (2.5.4.45): not a CSD")
    return str(values[0].value).split("/")[0].strip()


def name_of(cert: x509.Certificate) -> str:
    """The taxpayer's name (2.5.4.41, else O, else CN)."""
    for oid in (OID_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        values = cert.subject.get_attributes_for_oid(oid)
        if values:
            return str(values[0].value)
    return ""


def csd_from(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> Csd:
    """Pair a key and certificate after checking that they belong together."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CsdError(f"a CSD key must be RSA, got {type(key).__name__}")
    cert_key = cert.public_key()
    if (not isinstance(cert_key, rsa.RSAPublicKey)
            or key.public_key().public_numbers() != cert_key.public_numbers()):
        raise CsdError("the private key does not match the certificate")
    der = cert.public_bytes(serialization.Encoding.DER)
    return Csd(
        rfc=rfc_of(cert),
        name=name_of(cert),
        key=key,
        cert=cert,
        no_certificado=no_certificado(cert),
        certificado_b64=base64.b64encode(der).decode(),
    )


def load_csd(cer_bytes: bytes, key_bytes: bytes, password: str | bytes | None) -> Csd:
    """Load a SAT CSD: the ``.cer`` (DER or PEM) and the ``.key`` (encrypted PKCS#8 DER, or PEM).

    Loading a SAT key runs PBKDF2 (tens of ms): do it once per process, not per invoice.
    """
    pwd = password.encode("utf-8") if isinstance(password, str) else password
    try:
        cert = (
            x509.load_pem_x509_certificate(cer_bytes)
            if cer_bytes.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(cer_bytes)
        )
    except ValueError as exc:
        raise CsdError(f"not an X.509 certificate: {exc}") from None
    try:
        if key_bytes.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(key_bytes, pwd)
        else:
            key = serialization.load_der_private_key(key_bytes, pwd)
    except (ValueError, TypeError) as exc:
        # cryptography says "Bad decrypt. Incorrect password?" for a wrong password
        raise CsdError(f"cannot open the private key (wrong password?): {exc}") from None
    return csd_from(key, cert)  # type: ignore[arg-type]


def load_csd_pem(pem: bytes) -> Csd:
    """Load what :meth:`Csd.to_pem` wrote (an unencrypted key and a certificate, one file)."""
    marker = b"-----BEGIN CERTIFICATE-----"
    cut = pem.find(marker)
    if cut < 0:
        raise CsdError("no certificate in the PEM file")
    # Our own test key, checked against its certificate below: skip OpenSSL's slow RSA check.
    key = serialization.load_pem_private_key(pem[:cut], None, unsafe_skip_rsa_key_validation=True)
    return csd_from(key, x509.load_pem_x509_certificate(pem[cut:]))  # type: ignore[arg-type]


def _attr(oid: ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    # SAT encodes these as PrintableString; fall back to UTF8String for Ñ, & and the like.
    kind = _ASN1Type.PrintableString if set(value) <= _PRINTABLE else _ASN1Type.UTF8String
    return x509.NameAttribute(oid, value, _type=kind)


def generate_csd(
    rfc: str,
    name: str,
    *,
    no_certificado: str = EMISOR_NO_CERTIFICADO,
    representante_rfc: str | None = None,
    curp: str | None = None,
    not_before: dt.datetime | None = None,
    valid_days: int = 4 * 365,
    key_size: int = 2048,
) -> Csd:
    """A new self-signed test CSD shaped like SAT's (RSA key, RFC in 2.5.4.45, ASCII serial)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    unique = f"{rfc} / {representante_rfc}" if representante_rfc else rfc
    attrs = [
        _attr(NameOID.COMMON_NAME, name),
        _attr(OID_NAME, name),
        _attr(NameOID.ORGANIZATION_NAME, name),
        _attr(OID_UNIQUE_ID, unique),
    ]
    if curp:
        attrs.append(_attr(NameOID.SERIAL_NUMBER, f" / {curp}"))
    attrs.append(_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "CSD de pruebas sin validez fiscal"))
    subject = x509.Name(attrs)
    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial_from_no_certificado(no_certificado))
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csd_from(key, cert)


_cache: dict[tuple[str, str, str, str | None], Csd] = {}
_cache_lock = threading.Lock()


def cached_csd(
    rfc: str, name: str, no_cert: str, cache_dir: str | os.PathLike[str] | None = None
) -> Csd:
    """A test CSD made once per process and, when ``cache_dir`` is given, once per folder.

    The folder copy lets separate processes (the sandbox, the demo, the tests) share one
    certificate. It is replaced when it expires within 30 days or does not match.
    """
    folder = str(cache_dir) if cache_dir is not None else None
    key = (rfc, name, no_cert, folder)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        csd = _load_from_disk(rfc, no_cert, folder) if folder else None
        if csd is None:
            csd = generate_csd(rfc, name, no_certificado=no_cert)
            if folder:
                _save_to_disk(csd, folder)
        _cache[key] = csd
        return csd


def _disk_path(folder: str, rfc: str, no_cert: str) -> Path:
    return Path(folder) / f"test-csd-{rfc}-{no_cert}.pem"


def _load_from_disk(rfc: str, no_cert: str, folder: str) -> Csd | None:
    path = _disk_path(folder, rfc, no_cert)
    try:
        csd = load_csd_pem(path.read_bytes())
    except (OSError, ValueError):
        return None
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    if csd.rfc != rfc or csd.no_certificado != no_cert or csd.cert.not_valid_after_utc < soon:
        return None
    return csd


def _save_to_disk(csd: Csd, folder: str) -> None:
    """Write atomically (key and cert in one file), so concurrent processes never mix pairs."""
    target = _disk_path(folder, csd.rfc, csd.no_certificado)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".csd-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(csd.to_pem())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_emisor_csd(cache_dir: str | os.PathLike[str] | None = None) -> Csd:
    """Our test emisor (AAA010101AAA), for the demo, the tests and the benchmarks."""
    return cached_csd(EMISOR_RFC, EMISOR_NAME, EMISOR_NO_CERTIFICADO, cache_dir)


def sandbox_pac_csd(cache_dir: str | os.PathLike[str] | None = None) -> Csd:
    """The certificate the local PAC sandbox signs SelloSAT with (NoCertificadoSAT below)."""
    return cached_csd(PAC_RFC, PAC_NAME, PAC_NO_CERTIFICADO, cache_dir)
