"""The SAT verification URL (exact tt and fe formats, Anexo 20) and the QR the PDF draws
(zxing-cpp's, read back with zxing-cpp's reader; zbarimg reads the PDFs' in test_pdf)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.cfdi.qr import format_total, qr_rows, verification_url


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


def _url(rfc_emisor: str = "EKU9003173C9", total: str = "3327.01") -> str:
    return verification_url(uuid="6F35D3B5-3651-5370-BC2C-14CDBE384CD7", rfc_emisor=rfc_emisor,
                            rfc_receptor="MCI7306249Y1", total=total, sello="x" * 40 + "KklI5Q==")


def _decode(n: int, rows: list[int]) -> tuple[str, str]:
    """The rows drawn as an image with a 4-module quiet zone, 4 pixels a module, read back:
    (text, error correction level)."""
    import zxingcpp
    from PIL import Image

    img = Image.new("L", (n + 8, n + 8), 255)
    img.putdata([0 if (0 <= r < n and 0 <= c < n and rows[r] >> c & 1) else 255
                 for r in range(-4, n + 4) for c in range(-4, n + 4)])
    found = zxingcpp.read_barcode(img.resize(((n + 8) * 4, (n + 8) * 4), Image.NEAREST))
    assert found is not None
    return found.text, found.ec_level


# verification URLs (an RFC holding Ñ and &, a total of 18 digits) and texts of every size
# class (versions 1 to 40): the rows must come out of zxing-cpp's image right at any size
TEXTS = [
    _url(), _url("Ñ&A010101AAA"), _url(total="999999999999999999.999999"),
    "A", "hola", "HOLA MUNDO 123", "ab" * 40, "x" * 300, "x" * 1400, "ALNUM 123 " * 250,
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_qr_rows_decode_to_the_text_at_level_m(text: str) -> None:
    n, rows = qr_rows(text)
    assert (n - 21) % 4 == 0 and 21 <= n <= 177 and len(rows) == n
    assert all(0 <= row < 1 << n for row in rows)
    assert _decode(n, rows) == (text, "M")


def test_rows_put_column_c_at_bit_c() -> None:
    """The finder patterns sit top-left, top-right and bottom-left, none bottom-right: a
    row's bit c is its column c (not mirrored) and rows come top first (not flipped)."""
    n, rows = qr_rows(_url())
    finder = [0b1111111, 0b1000001, 0b1011101, 0b1011101, 0b1011101, 0b1000001, 0b1111111]
    assert [row & 0x7F for row in rows[:7]] == finder  # top-left
    assert [row >> (n - 7) for row in rows[:7]] == finder  # top-right
    assert [row & 0x7F for row in rows[n - 7 :]] == finder  # bottom-left
    assert [row >> (n - 7) for row in rows[n - 7 :]] != finder  # bottom-right: data
    assert rows[7] & 0xFF == 0 and rows[7] >> (n - 8) == 0 and rows[n - 8] & 0xFF == 0  # separators


def test_verification_urls_keep_large_modules() -> None:
    """A verification URL fits version 9 (53 modules a side, about 0.49 mm each in the
    PDF's 30 mm square), also with Ñ and & in an RFC and an 18-digit total."""
    assert qr_rows(_url())[0] <= 53
    assert qr_rows(_url("Ñ&A010101AAA", "999999999999999999.999999"))[0] <= 53


@pytest.mark.parametrize("text", [_url("Ω東010101AAA"), "ñ東 " + _url(), "€ " + _url()],
                         ids=["shift-jis", "utf-8-eci", "iso-8859-15-eci"])
def test_text_beyond_latin1_decodes(text: str) -> None:
    """Text ISO-8859-1 cannot hold: zxing-cpp picks a character set (and an ECI naming it
    where needed); the reader gets the text back."""
    n, rows = qr_rows(text)
    assert _decode(n, rows) == (text, "M")
