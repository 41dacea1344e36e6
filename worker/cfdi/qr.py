"""SAT verification URL and its QR code (Anexo 20, "código de barras bidimensional").

``tt`` is the total with at most 6 decimals and no insignificant zeros, but at least one
decimal (1000.00 -> 1000.0, 0 -> 0.0, 0.1234565 -> 0.123457); ``fe`` the last 8
characters of the emisor's Sello, as they are (not URL-encoded). Error correction is
at least M; the printed side must be at least 2.75 cm (:data:`MIN_SIDE_MM`).

:func:`qr_rows` is what the PDF draws: the QR made by zxing-cpp's compiled encoder at
error correction M, read out of its one-byte-per-module image as one integer per row;
:func:`worker.cfdi.pdf.layout.draw_qr` draws it. A verification URL is ASCII but for
an Ñ in an RFC, so zxing-cpp writes it in ISO-8859-1, without an ECI; other text gets
the character set zxing-cpp picks for it (with an ECI naming it where that is needed).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape

import zxingcpp

VERIFY_BASE = "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx"
MIN_SIDE_MM = 27.5


def format_total(total: str | Decimal) -> str:
    """The ``tt`` value: up to 18 integer digits and 6 decimals, trailing zeros dropped."""
    value = Decimal(total).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    text = f"{value:f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def verification_url(
    *, uuid: str, rfc_emisor: str, rfc_receptor: str, total: str | Decimal, sello: str
) -> str:
    """``https://verificacfdi...?id=UUID&re=..&rr=..&tt=..&fe=..`` (``&`` in an RFC XML-escaped)."""
    return (
        f"{VERIFY_BASE}?id={uuid}&re={escape(rfc_emisor)}&rr={escape(rfc_receptor)}"
        f"&tt={format_total(total)}&fe={sello[-8:]}"
    )


def qr_rows(url: str) -> tuple[int, list[int]]:
    """The QR of ``url`` at error correction M, without quiet zone: its side in modules
    and one integer per row, top row first, whose bit c is column c (1 = dark)."""
    code = zxingcpp.create_barcode(url, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    # zxing-cpp's Image is a buffer (rows x columns, one byte each); its stub omits __buffer__
    view = memoryview(code.to_image(scale=1, add_quiet_zones=False))  # type: ignore[arg-type]
    n = len(view)  # the first dimension: rows
    assert view.shape == (n, n), view.shape
    # 0 is a dark module, 255 a light one: as "1"/"0" digits, read backwards, so that
    # each row's digits come last column first and int(..., 2) puts column c at bit c
    bits = bytes(view).translate(_TO_DIGITS)[::-1]
    return n, [int(bits[(n - 1 - r) * n : (n - r) * n], 2) for r in range(n)]


_TO_DIGITS = bytes([ord("1")] + [ord("0")] * 255)
