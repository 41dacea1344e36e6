"""Fixtures for the CFDI tests: our test CSDs (made once per session) and SAT's own
XSD/XSLT from ``../shared`` as oracles (skipped when the reference data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from worker.cfdi.csd import Csd, default_emisor_csd, load_csd, sandbox_pac_csd

SAT_CFD = Path("cfdi/sat/resources/www.sat.gob.mx/sitio_internet/cfd")


@pytest.fixture(scope="session")
def emisor() -> Csd:
    return default_emisor_csd()


@pytest.fixture(scope="session")
def pac() -> Csd:
    return sandbox_pac_csd()


@pytest.fixture(scope="session")
def sat_cfd(shared_dir: Path) -> Path:
    path = shared_dir / SAT_CFD
    if not path.is_dir():
        pytest.skip(f"SAT XSD/XSLT tree not found at {path}")
    return path


@pytest.fixture(scope="session")
def cadena_xslt(sat_cfd: Path) -> etree.XSLT:
    """SAT's cadenaoriginal_4_0.xslt, the oracle for our cadena original."""
    return etree.XSLT(etree.parse(str(sat_cfd / "4/cadenaoriginal_4_0/cadenaoriginal_4_0.xslt")))


@pytest.fixture(scope="session")
def tfd_xslt(sat_cfd: Path) -> etree.XSLT:
    return etree.XSLT(etree.parse(str(sat_cfd / "TimbreFiscalDigital/cadenaoriginal_TFD_1_1.xslt")))


@pytest.fixture(scope="session")
def cfdi_schema(sat_cfd: Path) -> etree.XMLSchema:
    """CFDI 4.0 + TFD 1.1 + Pagos 2.0 XSDs, compiled once (about 0.3 s)."""
    imports = {
        "http://www.sat.gob.mx/cfd/4": sat_cfd / "4/cfdv40.xsd",
        "http://www.sat.gob.mx/TimbreFiscalDigital":
            sat_cfd / "TimbreFiscalDigital/TimbreFiscalDigitalv11.xsd",
        "http://www.sat.gob.mx/Pagos20": sat_cfd / "Pagos/Pagos20.xsd",
    }
    body = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{path.as_uri()}"/>' for ns, path in imports.items()
    )
    wrapper = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{body}</xs:schema>'
    return etree.XMLSchema(etree.fromstring(wrapper.encode()))


@pytest.fixture(scope="session")
def samples(shared_dir: Path) -> list[Path]:
    found = sorted((shared_dir / "cfdi/samples").glob("*.xml"))
    if not found:
        pytest.skip("no sample CFDIs in shared/cfdi/samples")
    return found


@pytest.fixture(scope="session")
def eku_csd(shared_dir: Path) -> Csd:
    """SAT's real 2023 test CSD (EKU9003173C9); its key is PBES2-encrypted PKCS#8 DER."""
    folder = shared_dir / "cfdi/csd/EKU9003173C9"
    if not folder.is_dir():
        pytest.skip(f"SAT test CSD not found at {folder}")
    password = (folder / "password.txt").read_text(encoding="utf-8").strip()
    return load_csd(
        (folder / "EKU9003173C9.cer").read_bytes(), (folder / "EKU9003173C9.key").read_bytes(), password
    )

