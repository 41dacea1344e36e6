"""SAT verification URL and its QR code (Anexo 20, "código de barras bidimensional").

``tt`` is the total with at most 6 decimals and no insignificant zeros, but at least one
decimal (1000.00 -> 1000.0, 0 -> 0.0, 0.1234565 -> 0.123457); ``fe`` the last 8
characters of the emisor's Sello, as they are (not URL-encoded). Error correction is
at least M; the printed side must be at least 2.75 cm.
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


def verification_url(*, uuid: str, rfc_emisor: str, rfc_receptor: str, total: str | Decimal, sello: str) -> str:
    """``https://verificacfdi...?id=UUID&re=..&rr=..&tt=..&fe=..`` (``&`` in an RFC XML-escaped)."""
    return (
        f"{VERIFY_BASE}?id={uuid}&re={escape(rfc_emisor)}&rr={escape(rfc_receptor)}"
        f"&tt={format_total(total)}&fe={sello[-8:]}"
    )


def make_qr(url: str) -> segno.QRCode:
    """The QR with error correction M (segno may raise it when that costs no extra size)."""
    return segno.make(url, error="m", micro=False)


def qr_matrix(url: str) -> tuple[tuple[int, ...], ...]:
    """Module rows (1 = dark) without the quiet zone."""
    return tuple(tuple(row) for row in make_qr(url).matrix)
