"""How the printed CFDI writes amounts, quantities, tax rates and dates for people.

The CFDI's strings are machine forms (``1160.000000``, ``0.160000``,
``2026-11-30T10:15:00``); an accountant reads ``$1,160.00``, ``16 %`` and
``30/11/2026 10:15:00``. Every function here takes the CFDI string as written, never
loses a significant digit, and gives back anything it cannot parse unchanged (a PDF
must never fail over a field's format).

``NBSP`` (U+00A0, in cp1252) joins a number to its ``%`` so a wrapped line never splits
them; text extraction reads it as a space.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

NBSP = "\u00a0"
# Currency symbols printed before an amount; other currencies print the bare number
# (the currency's code stands next to the totals).
SYMBOLS = {"MXN": "$", "USD": "$", "CAD": "$", "EUR": "€"}


def _decimal(text: str | None) -> Decimal | None:
    if text is None or not text.strip():
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _grouped(value: Decimal, min_decimals: int) -> str:
    """``1234.5000`` -> ``1,234.50`` (min_decimals=2): insignificant zeros past
    ``min_decimals`` dropped, thousands separated by commas."""
    text = f"{value:f}"
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-").partition(".")
    frac = frac.rstrip("0")
    frac = frac.ljust(min_decimals, "0")
    grouped = f"{int(whole):,}"
    return sign + grouped + (f".{frac}" if frac else "")


# A number as CFDIs write them (no exponent, ASCII digits): formatted from the string
# itself, as _grouped would from its Decimal, without building one.
_PLAIN = re.compile(r"([-+]?)([0-9]+)(?:\.([0-9]*))?", re.ASCII)


def _number(text: str | None, min_decimals: int, shift: int = 0) -> str | None:
    """``text`` times 10 ** ``shift``, grouped (see :func:`_grouped`), or None when it is
    not a finite number."""
    if text is None:
        return None
    m = _PLAIN.fullmatch(text.strip())
    if m is None:
        value = _decimal(text)
        return None if value is None else _grouped(value * 10**shift if shift else value, min_decimals)
    sign, whole, frac = m.groups()
    frac = frac or ""
    if shift:  # move the point right
        frac = frac.ljust(shift, "0")
        whole, frac = whole + frac[:shift], frac[shift:]
    frac = frac.rstrip("0").ljust(min_decimals, "0")
    return ("-" if sign == "-" else "") + f"{int(whole):,}" + (f".{frac}" if frac else "")


def money(text: str | None, currency: str = "MXN") -> str:
    """``"1160.000000"`` -> ``"$1,160.00"``: the currency's symbol, thousands separators,
    at least 2 decimals and every significant one (``"0.123456"`` -> ``"$0.123456"``).
    Empty stays empty; what is not a number comes back as written."""
    number = _number(text, 2)
    if number is None:
        return text or ""
    return SYMBOLS.get(currency.upper(), "") + number


def quantity(text: str | None) -> str:
    """``"1.000000"`` -> ``"1"``, ``"1500.5"`` -> ``"1,500.5"``: thousands separators and
    no insignificant zeros."""
    number = _number(text, 0)
    return (text or "") if number is None else number


def rate(text: str | None, tipo_factor: str | None = "Tasa") -> str:
    """A TasaOCuota as people read it: a Tasa as a percentage (``0.160000`` -> ``16 %``,
    ``0.265`` -> ``26.5 %``, ``0.106667`` -> ``10.6667 %``); a Cuota is an amount per unit
    (``1.500000`` -> ``$1.50``); Exento (no rate) -> ``Exento``."""
    if tipo_factor == "Exento":
        return "Exento"
    if tipo_factor == "Cuota":
        return money(text)
    percent = _number(text, 0, shift=2)
    return (text or "") if percent is None else percent + NBSP + "%"


def date_time(text: str | None) -> str:
    """``2026-11-30T10:15:00`` -> ``30/11/2026 10:15:00`` (day/month/year, 24-hour clock,
    the wall-clock time as written: CFDI dates carry no zone)."""
    if not text:
        return ""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    return value.strftime("%d/%m/%Y %H:%M:%S")


def date(text: str | None) -> str:
    """``2026-11-30T10:15:00`` or ``2026-11-30`` -> ``30/11/2026``."""
    if not text:
        return ""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    return value.strftime("%d/%m/%Y")
