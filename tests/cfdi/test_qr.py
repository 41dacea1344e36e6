"""The SAT verification URL: exact tt and fe formats (Anexo 20)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.cfdi.qr import format_total, make_qr, qr_modules, verification_url


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        ("1000.00", "1000.0"), ("0", "0.0"), ("0.00", "0.0"), ("123.45", "123.45"), ("3327.01", "3327.01"),
        ("0.1234565", "0.123457"), ("1500", "1500.0"), ("10.10", "10.1"),
        (Decimal("42025.160000"), "42025.16"),
        ("999999999999999999.999999", "999999999999999999.999999"),
    ],
)
def test_format_total(total: str, expected: str) -> None:
    assert format_total(total) == expected


def test_url_of_finkok_demo_sample() -> None:
    url = verification_url(
        uuid="6F35D3B5-3651-5370-BC2C-14CDBE384CD7", rfc_emisor="EKU9003173C9", rfc_receptor="MCI7306249Y1",
        total="3327.01", sello="CcujSbJvKzVmf7jQ...Zns584qiKklI5Q==",
    )
    assert url == (
        "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx"
        "?id=6F35D3B5-3651-5370-BC2C-14CDBE384CD7&re=EKU9003173C9&rr=MCI7306249Y1&tt=3327.01&fe=KklI5Q=="
    )


def test_ampersand_in_rfc_is_xml_escaped() -> None:
    url = verification_url(
        uuid="U", rfc_emisor="Ñ&A010101AAA", rfc_receptor="XAXX010101000", total="1", sello="12345678"
    )
    assert "&re=Ñ&amp;A010101AAA&rr=XAXX010101000&tt=1.0&fe=12345678" in url


def test_qr_error_level_at_least_m() -> None:
    qr = make_qr("https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx?id=X")
    assert qr.error in ("M", "Q", "H")
    assert not qr.is_micro


def test_qr_modules_decode_to_the_url_at_level_m() -> None:
    """The PDF's QR modules, drawn as an image with a quiet zone, read back (zxing-cpp's
    reader) to the exact URL at error correction M; zbarimg reads the PDFs' (test_pdf)."""
    import zxingcpp
    from PIL import Image

    url = verification_url(uuid="6F35D3B5-3651-5370-BC2C-14CDBE384CD7", rfc_emisor="Ñ&A010101AAA",
                           rfc_receptor="MCI7306249Y1", total="3327.01", sello="x" * 40 + "KklI5Q==")
    n, modules = qr_modules(url)
    assert (n - 21) % 4 == 0 and len(modules) == n * n and set(modules) == {0, 1}
    img = Image.new("L", (n + 8, n + 8), 255)
    img.putdata([0 if (0 <= r < n and 0 <= c < n and modules[r * n + c]) else 255
                 for r in range(-4, n + 4) for c in range(-4, n + 4)])
    found = zxingcpp.read_barcode(img.resize(((n + 8) * 4, (n + 8) * 4), Image.NEAREST))
    assert found is not None and found.text == url and found.ec_level == "M"
