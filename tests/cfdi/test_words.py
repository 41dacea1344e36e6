"""Amounts in words as Mexican invoices print them (worker.cfdi.words)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.cfdi.words import amount_in_words, integer_in_words


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0", "CERO PESOS 00/100 M.N."),
        ("0.50", "CERO PESOS 50/100 M.N."),
        ("1", "UN PESO 00/100 M.N."),
        ("1.99", "UN PESO 99/100 M.N."),
        ("2", "DOS PESOS 00/100 M.N."),
        ("15", "QUINCE PESOS 00/100 M.N."),
        ("16", "DIECISÉIS PESOS 00/100 M.N."),
        ("21", "VEINTIÚN PESOS 00/100 M.N."),
        ("22", "VEINTIDÓS PESOS 00/100 M.N."),
        ("30", "TREINTA PESOS 00/100 M.N."),
        ("31", "TREINTA Y UN PESOS 00/100 M.N."),
        ("99", "NOVENTA Y NUEVE PESOS 00/100 M.N."),
        ("100", "CIEN PESOS 00/100 M.N."),
        ("101", "CIENTO UN PESOS 00/100 M.N."),
        ("115", "CIENTO QUINCE PESOS 00/100 M.N."),
        ("500", "QUINIENTOS PESOS 00/100 M.N."),
        ("777", "SETECIENTOS SETENTA Y SIETE PESOS 00/100 M.N."),
        ("1000", "UN MIL PESOS 00/100 M.N."),
        ("1001", "UN MIL UN PESOS 00/100 M.N."),
        ("1160.00", "UN MIL CIENTO SESENTA PESOS 00/100 M.N."),
        ("1160.21", "UN MIL CIENTO SESENTA PESOS 21/100 M.N."),
        ("2000", "DOS MIL PESOS 00/100 M.N."),
        ("21000", "VEINTIÚN MIL PESOS 00/100 M.N."),
        ("31000", "TREINTA Y UN MIL PESOS 00/100 M.N."),
        ("100000", "CIEN MIL PESOS 00/100 M.N."),
        ("101000", "CIENTO UN MIL PESOS 00/100 M.N."),
        ("999999", "NOVECIENTOS NOVENTA Y NUEVE MIL NOVECIENTOS NOVENTA Y NUEVE PESOS 00/100 M.N."),
        ("1000000", "UN MILLÓN DE PESOS 00/100 M.N."),
        ("1000001", "UN MILLÓN UN PESOS 00/100 M.N."),
        ("1001000", "UN MILLÓN UN MIL PESOS 00/100 M.N."),
        ("2000000", "DOS MILLONES DE PESOS 00/100 M.N."),
        ("21000000", "VEINTIÚN MILLONES DE PESOS 00/100 M.N."),
        ("1234567.89",
         "UN MILLÓN DOSCIENTOS TREINTA Y CUATRO MIL QUINIENTOS SESENTA Y SIETE PESOS 89/100 M.N."),
        ("1000000000", "UN MIL MILLONES DE PESOS 00/100 M.N."),
        ("2500000000", "DOS MIL QUINIENTOS MILLONES DE PESOS 00/100 M.N."),
        ("1000000000000", "UN BILLÓN DE PESOS 00/100 M.N."),
        ("3000000000001", "TRES BILLONES UN PESOS 00/100 M.N."),
        # rounded half up to cents, carrying into the whole part
        ("0.994", "CERO PESOS 99/100 M.N."),
        ("0.995", "UN PESO 00/100 M.N."),
        ("41.125000", "CUARENTA Y UN PESOS 13/100 M.N."),
    ],
)
def test_pesos(amount: str, expected: str) -> None:
    assert amount_in_words(amount, "MXN") == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1160", "USD", "UN MIL CIENTO SESENTA DÓLARES 00/100 USD"),
        ("1", "USD", "UN DÓLAR 00/100 USD"),
        ("21.05", "usd", "VEINTIÚN DÓLARES 05/100 USD"),
        ("1000000", "USD", "UN MILLÓN DE DÓLARES 00/100 USD"),
        ("2.50", "EUR", "DOS EUROS 50/100 EUR"),
        ("1", "CAD", "UN DÓLAR CANADIENSE 00/100 CAD"),
        ("300", "JPY", "TRESCIENTOS YENES 00/100 JPY"),
        # a currency without a noun here: the number and the code, never a wrong noun
        ("21", "BRL", "VEINTIÚN 00/100 BRL"),
        ("1000000", "GBP", "UN MILLÓN 00/100 GBP"),
    ],
)
def test_other_currencies(amount: str, currency: str, expected: str) -> None:
    assert amount_in_words(amount, currency) == expected


def test_default_currency_is_pesos_and_decimal_input() -> None:
    assert amount_in_words(Decimal("1160.000000")) == "UN MIL CIENTO SESENTA PESOS 00/100 M.N."
    assert amount_in_words(7) == "SIETE PESOS 00/100 M.N."


def test_integers_without_a_noun() -> None:
    assert integer_in_words(21) == "VEINTIUNO"
    assert integer_in_words(21, short=True) == "VEINTIÚN"
    assert integer_in_words(0) == "CERO"
    top = "NOVECIENTOS NOVENTA Y NUEVE MIL NOVECIENTOS NOVENTA Y NUEVE"
    assert integer_in_words(10**18 - 1) == f"{top} BILLONES {top} MILLONES {top}"


@pytest.mark.parametrize("amount", ["-1", "abc", "", "1e18", "999999999999999999.995"])
def test_refused(amount: str) -> None:
    with pytest.raises(ValueError):
        amount_in_words(amount)


def test_every_number_below_two_thousand_is_distinct_and_well_formed() -> None:
    """No two amounts share words, and no word sequence a reader would trip on appears."""
    seen = set()
    for n in range(2000):
        words = integer_in_words(n, short=True)
        assert words not in seen, n
        seen.add(words)
        assert "  " not in words and not words.startswith(" ") and not words.endswith(" ")
        assert "UNO MIL" not in words and "Y CERO" not in words and "CIENTO CERO" not in words
        assert ("CIEN" in words.split()) == (n % 1000 == 100), n  # CIEN alone, CIENTO before more
