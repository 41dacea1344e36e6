"""SAT verification URL and its QR code (Anexo 20, "código de barras bidimensional").

``tt`` is the total with at most 6 decimals and no insignificant zeros, but at least one
decimal (1000.00 -> 1000.0, 0 -> 0.0, 0.1234565 -> 0.123457); ``fe`` the last 8
characters of the emisor's Sello, as they are (not URL-encoded). Error correction is
at least M; the printed side must be at least 2.75 cm.

:func:`qr_modules` is what the PDF draws: zxing-cpp's compiled encoder (about 0.5 ms,
against 2-3 ms for segno's pure-Python one), with segno as the fallback where the
zxing-cpp wheel is not installed. Both give a QR at level M that decodes to the URL.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape

import segno

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


def make_qr(url: str) -> segno.QRCode:
    """The QR with error correction M (segno may raise it when that costs no extra size)."""
    return segno.make(url, error="m", micro=False)


def qr_modules(url: str) -> tuple[int, bytes]:
    """The QR of ``url`` at error correction M, without quiet zone: its side in modules
    and its modules row by row, one byte each (non-zero = dark)."""
    try:
        import zxingcpp
    except ImportError:  # pragma: no cover - zxing-cpp is a dependency; segno is the fallback
        rows = make_qr(url).matrix
        return len(rows), bytes(1 if dark else 0 for row in rows for dark in row)
    code = zxingcpp.create_barcode(url, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    # zxing-cpp's Image is a buffer (rows x columns, one byte each); its stub omits __buffer__
    view = memoryview(code.to_image(scale=1, add_quiet_zones=False))  # type: ignore[arg-type]
    n = len(view)  # the first dimension: rows
    assert view.shape == (n, n), view.shape
    # the image is 0 for a dark module, 255 for a light one
    return n, bytes(view).translate(_INVERT)


_INVERT = bytes([1] + [0] * 255)


def qr_matrix(url: str) -> tuple[tuple[int, ...], ...]:
    """Module rows (1 = dark) without the quiet zone."""
    return tuple(tuple(row) for row in make_qr(url).matrix)
