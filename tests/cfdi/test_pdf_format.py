"""How the PDF writes amounts, quantities, rates and dates (worker.cfdi.pdf.format)."""

from __future__ import annotations

import pytest

from worker.cfdi.pdf.format import NBSP, date, date_time, money, quantity, rate


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("1160.00", "MXN", "$1,160.00"),
        ("1160.000000", "MXN", "$1,160.00"),
        ("1160", "MXN", "$1,160.00"),
        ("0", "MXN", "$0.00"),
        ("0.123456", "MXN", "$0.123456"),
        ("19.990000", "MXN", "$19.99"),
        ("1234567.5", "MXN", "$1,234,567.50"),
        ("999999999999999999.999999", "MXN", "$999,999,999,999,999,999.999999"),
        ("100.00", "USD", "$100.00"),
        ("100.00", "EUR", "€100.00"),
        ("100.00", "XXX", "100.00"),
        ("", "MXN", ""),
        (None, "MXN", ""),
        ("n/a", "MXN", "n/a"),
    ],
)
def test_money(text: str | None, currency: str, expected: str) -> None:
    assert money(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", "1"), ("1.000000", "1"), ("1.5", "1.5"), ("1500.250", "1,500.25"), ("0.001", "0.001"), ("x", "x")],
)
def test_quantity(text: str, expected: str) -> None:
    assert quantity(text) == expected


@pytest.mark.parametrize(
    ("text", "factor", "expected"),
    [
        ("0.160000", "Tasa", f"16{NBSP}%"),
        ("0.080000", "Tasa", f"8{NBSP}%"),
        ("0.265", "Tasa", f"26.5{NBSP}%"),
        ("0.106667", "Tasa", f"10.6667{NBSP}%"),
        ("0.000000", "Tasa", f"0{NBSP}%"),
        ("1.000000", "Tasa", f"100{NBSP}%"),
        ("1.500000", "Cuota", "$1.50"),
        (None, "Exento", "Exento"),
        ("", "Tasa", ""),
    ],
)
def test_rate(text: str | None, factor: str, expected: str) -> None:
    assert rate(text, factor) == expected


def test_dates() -> None:
    assert date_time("2026-11-30T10:15:00") == "30/11/2026 10:15:00"
    assert date_time("2026-01-02T00:00:09") == "02/01/2026 00:00:09"
    assert date("2026-11-30T10:15:00") == "30/11/2026"
    assert date("2026-11-30") == "30/11/2026"
    assert date_time("not a date") == "not a date" and date_time("") == "" and date(None) == ""


@pytest.mark.parametrize(
    "text",
    ["0", "-0", "+5", "1.", "007", "-0.50", " 12 ", "1e3", "0.160000", "0.265", "0.106667", "-0.000000",
     "0.5", "1_000", "1.5E-2", "123456789012345678.123456",
     "-1.2300", "0.000000", ".5", "NaN", "Infinity", "", " ", "-", "abc"],
)
def test_plain_numbers_format_as_their_decimal(text: str) -> None:
    """Amounts written as plain decimals are formatted from the string (no Decimal built):
    the same result as through Decimal, and anything else still goes through Decimal."""
    from worker.cfdi.pdf.format import _decimal, _grouped, _number

    value = _decimal(text)
    for min_decimals in (0, 2):
        assert _number(text, min_decimals) == (None if value is None else _grouped(value, min_decimals))
    assert _number(text, 0, shift=2) == (None if value is None else _grouped(value * 100, 0))  # rates
