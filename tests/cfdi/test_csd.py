"""Our test CSDs are shaped like SAT's, and SAT's real test CSD loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from worker.cfdi import csd as csd_mod
from worker.cfdi.csd import (
    EMISOR_NO_CERTIFICADO,
    PAC_NO_CERTIFICADO,
    Csd,
    CsdError,
    cached_csd,
    load_csd,
    load_csd_pem,
    no_certificado,
    rfc_of,
    serial_from_no_certificado,
)


def test_default_emisor_shape(emisor: Csd) -> None:
    assert emisor.rfc == "AAA010101AAA"
    assert emisor.no_certificado == EMISOR_NO_CERTIFICADO
    assert emisor.key.key_size == 2048
    cert = emisor.cert
    # serial bytes are the ASCII digits of NoCertificado, as in SAT's certificates
    assert cert.serial_number.to_bytes(20, "big") == b"30001000000500099001"
    unique = cert.subject.get_attributes_for_oid(x509.ObjectIdentifier("2.5.4.45"))
    assert [a.value for a in unique] == ["AAA010101AAA"]
    assert emisor.name == "EMPRESA DE PRUEBAS RUPTURE"
    assert x509.load_der_x509_certificate(emisor.cert_der) == cert


def test_pac_csd_is_distinct(emisor: Csd, pac: Csd) -> None:
    assert pac.rfc == "SPR190613I52"
    assert pac.no_certificado == PAC_NO_CERTIFICADO
    assert pac.cert.public_key().public_numbers() != emisor.cert.public_key().public_numbers()


def test_cached_in_process(emisor: Csd, pac: Csd) -> None:
    assert csd_mod.default_emisor_csd() is emisor
    assert csd_mod.sandbox_pac_csd() is pac


def test_no_certificado_reads_sat_certs(shared_dir: Path) -> None:
    folder = shared_dir / "cfdi/csd"
    eku = x509.load_der_x509_certificate((folder / "EKU9003173C9/EKU9003173C9.cer").read_bytes())
    sat = x509.load_der_x509_certificate((folder / "30001000000500003456.cer").read_bytes())
    assert no_certificado(eku) == "30001000000500003416"
    assert rfc_of(eku) == "EKU9003173C9"  # "EKU9003173C9 / VADA800927DJ3"
    assert no_certificado(sat) == "30001000000500003456"
    assert rfc_of(sat) == "SPR190613I52"


def test_serial_round_trip() -> None:
    serial = serial_from_no_certificado("30001000000500003416")
    assert serial == 0x3330303031303030303030353030303033343136
    with pytest.raises(CsdError):
        serial_from_no_certificado("123")


def test_generate_with_representative_and_curp() -> None:
    made = csd_mod.generate_csd(
        "ÑAÑ010101AB1", "ÑANDÚ & CÍA", no_certificado="30001000000500099123",
        representante_rfc="VADA800927DJ3", curp="VADA800927HSRSRL05", key_size=1024,
    )
    assert made.rfc == "ÑAÑ010101AB1"
    assert made.name == "ÑANDÚ & CÍA"
    assert made.no_certificado == "30001000000500099123"
    serial = made.cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value
    assert serial == " / VADA800927HSRSRL05"


def test_eku_sat_csd_loads(eku_csd: Csd) -> None:
    assert eku_csd.rfc == "EKU9003173C9"
    assert eku_csd.no_certificado == "30001000000500003416"
    assert eku_csd.name == "ESCUELA KEMPER URGATE SA DE CV"


def test_eku_wrong_password(shared_dir: Path) -> None:
    folder = shared_dir / "cfdi/csd/EKU9003173C9"
    with pytest.raises(CsdError, match="password"):
        load_csd(
            (folder / "EKU9003173C9.cer").read_bytes(), (folder / "EKU9003173C9.key").read_bytes(), "nope"
        )


def test_mismatched_pair_refused(emisor: Csd, pac: Csd) -> None:
    with pytest.raises(CsdError, match="does not match"):
        csd_mod.csd_from(emisor.key, pac.cert)


def test_non_sat_serial_refused() -> None:
    made = csd_mod.generate_csd("AAA010101AAA", "X", key_size=1024)
    bogus = (
        x509.CertificateBuilder()
        .subject_name(made.cert.subject).issuer_name(made.cert.issuer)
        .public_key(made.key.public_key()).serial_number(12345)
        .not_valid_before(made.cert.not_valid_before_utc).not_valid_after(made.cert.not_valid_after_utc)
        .sign(made.key, csd_mod.hashes.SHA256())
    )
    with pytest.raises(CsdError, match="20-digit"):
        no_certificado(bogus)


def test_disk_cache_shared_between_processes(tmp_path: Path) -> None:
    first = cached_csd("AAA010101AAA", "DISCO", "30001000000500099555", tmp_path)
    files = list(tmp_path.glob("*.pem"))
    assert [f.name for f in files] == ["test-csd-AAA010101AAA-30001000000500099555.pem"]
    assert files[0].stat().st_mode & 0o777 == 0o600
    # what another process would do: nothing in memory, the file on disk
    del csd_mod._cache[("AAA010101AAA", "DISCO", "30001000000500099555", str(tmp_path))]
    second = cached_csd("AAA010101AAA", "DISCO", "30001000000500099555", tmp_path)
    assert second is not first
    assert second.certificado_b64 == first.certificado_b64
    assert load_csd_pem(files[0].read_bytes()).no_certificado == "30001000000500099555"


def test_disk_cache_replaces_garbage(tmp_path: Path) -> None:
    (tmp_path / "test-csd-AAA010101AAA-30001000000500099556.pem").write_bytes(b"garbage")
    made = cached_csd("AAA010101AAA", "DISCO", "30001000000500099556", tmp_path)
    on_disk = load_csd_pem((tmp_path / "test-csd-AAA010101AAA-30001000000500099556.pem").read_bytes())
    assert on_disk.certificado_b64 == made.certificado_b64
