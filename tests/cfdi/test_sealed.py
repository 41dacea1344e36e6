"""sealed_digest: a stamped CFDI and the pre-CFDI it was made from have one digest, however
the PAC wrote it; another document (another folio, one changed amount) has another."""

from __future__ import annotations

import pytest

from worker.cfdi.csd import sandbox_pac_csd
from worker.cfdi.factory import build_invoice
from worker.cfdi.sealed import NotACfdi, sealed_digest, sello
from worker.cfdi.tfd import add_tfd

UUID = "5B13C295-1111-4222-8333-444455556666"


def _stamp(xml: bytes) -> bytes:
    return add_tfd(xml, uuid=UUID, fecha_timbrado="2026-11-21T10:00:00", pac=sandbox_pac_csd())


def test_stamped_and_sealed_share_the_digest() -> None:
    sealed = build_invoice(folio="S1")
    stamped = _stamp(sealed)
    assert stamped != sealed
    assert sealed_digest(stamped) == sealed_digest(sealed)
    assert sello(stamped) == sello(sealed)


def test_reserialized_by_the_pac_still_matches() -> None:
    sealed = build_invoice(folio="S2")
    stamped = _stamp(sealed).decode()
    body = stamped.split("?>", 1)[1] if stamped.startswith("<?xml") else stamped
    rewritten = ('<?xml version="1.0" encoding="utf-8"?>\n' + body.replace("\n", "\n    ")).encode()
    assert sealed_digest(rewritten) == sealed_digest(sealed)


def test_another_document_differs() -> None:
    one, two = build_invoice(folio="S3"), build_invoice(folio="S4")
    assert sealed_digest(one) != sealed_digest(two)
    tampered = one.replace(b'Folio="S3"', b'Folio="S5"')
    assert sealed_digest(tampered) != sealed_digest(one)


def test_not_a_cfdi_is_refused() -> None:
    with pytest.raises(NotACfdi):
        sealed_digest(b"<Retenciones/>")
