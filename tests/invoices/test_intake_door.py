"""Nothing accepted that cannot be carried to the end: empresaRefId one URL path segment
(the SIF client's own rule), only real UTF-8, a UTF-8 BOM stripped at the door."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.api.keys import check_empresas
from worker.cfdi.factory import build_invoice
from worker.cfdi.sealing import verify_seal
from worker.db.models import Invoice
from worker.invoices.intake import InvoiceRefused, submit
from worker.sif.client import SifConfigError, empresa_path_segment


@pytest.mark.parametrize("empresa", ["..", ".", "../x", "a/b", "a\\b"])
def test_empresa_that_is_not_one_path_segment_is_refused_everywhere(
    sessions: sessionmaker[Session], empresa: str
) -> None:
    with pytest.raises(SifConfigError):  # what the end of the pipeline would meet
        empresa_path_segment(empresa)
    with pytest.raises(InvoiceRefused) as info:  # ... refused at the door instead
        submit(sessions, build_invoice(folio="seg"), empresa_ref_id=empresa, reference="R1")
    assert info.value.reason == "invalid_id" and "single URL path segment" in info.value.message
    with pytest.raises(ValueError, match="single URL path segment"):  # billing api-keys create
        check_empresas([empresa], False)


def test_utf16le_without_bom_is_refused_although_it_decodes_as_utf8(
    sessions: sessionmaker[Session],
) -> None:
    ascii_doc = b'<?xml version="1.0"?><a x="1"/>'
    data = ascii_doc.decode("ascii").encode("utf-16-le")
    data.decode("utf-8")  # valid UTF-8 byte for byte; libxml2 still reads it as UTF-16
    with pytest.raises(InvoiceRefused) as info:
        submit(sessions, data, empresa_ref_id="E1", reference="R1")
    assert info.value.reason == "not_utf8" and "NUL byte at offset 1" in info.value.message


def test_utf8_bom_is_stripped_and_the_seal_still_verifies(sessions: sessionmaker[Session]) -> None:
    xml = build_invoice(folio="bom")
    first = submit(sessions, b"\xef\xbb\xbf" + xml, empresa_ref_id="E1", reference="R1")
    with sessions() as s:
        inv = s.get(Invoice, first.invoice_id)
        assert inv is not None and bytes(inv.xml) == xml
        assert inv.xml_sha256 == hashlib.sha256(xml).hexdigest()
    verify_seal(xml)  # the seal is over the cadena, not over the bytes
    again = submit(sessions, xml, empresa_ref_id="E1", reference="R1")  # the same document
    assert again.outcome == "existing" and again.invoice_id == first.invoice_id
