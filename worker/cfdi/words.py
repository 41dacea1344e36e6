"""Amounts in Spanish words, as Mexican invoices print them ("importe con letra").

    amount_in_words("1160.00", "MXN")  # 'UN MIL CIENTO SESENTA PESOS 00/100 M.N.'
    amount_in_words("21", "USD")       # 'VEINTIÚN DÓLARES 00/100 USD'
    amount_in_words("2000000", "MXN")  # 'DOS MILLONES DE PESOS 00/100 M.N.'

The contract:

* Upper case, the integer part in words, then the currency's noun, then the cents as
  digits over 100 and the currency's suffix (``M.N.`` for pesos, the ISO code otherwise).
  The amount is rounded half up to cents first (``0.995`` -> ``UN PESO 00/100``).
* Long scale as in Spanish: MIL, MILLÓN (10^6), MIL MILLONES (10^9), BILLÓN (10^12), MIL
  BILLONES (10^15); amounts from 10^18 on (CFDI allows 18 integer digits) are refused.
* Mexican banking style writes every thousand with its count: ``UN MIL`` (1000),
  ``UN MIL UN`` (1001), ``UN MIL MILLONES`` (10^9), so no figure can be prefixed.
* "uno" is shortened before a noun (UN PESO, VEINTIÚN MIL, CIENTO UN PESOS, TREINTA Y
  UN MIL); exact millions take DE (UN MILLÓN DE PESOS); exactly one unit is singular
  (UN PESO, UN DÓLAR); CIEN alone, CIENTO before more.
* Currencies: MXN (PESOS, M.N.), USD (DÓLARES), EUR (EUROS), CAD (DÓLARES CANADIENSES),
  JPY (YENES), CHF (FRANCOS SUIZOS); any other code prints the number without a noun and
  the code as the suffix (``… 00/100 BRL``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_UNITS = ("CERO", "UNO", "DOS", "TRES", "CUATRO", "CINCO", "SEIS", "SIETE", "OCHO", "NUEVE",
          "DIEZ", "ONCE", "DOCE", "TRECE", "CATORCE", "QUINCE", "DIECISÉIS", "DIECISIETE", "DIECIOCHO",
          "DIECINUEVE", "VEINTE", "VEINTIUNO", "VEINTIDÓS", "VEINTITRÉS", "VEINTICUATRO", "VEINTICINCO",
          "VEINTISÉIS", "VEINTISIETE", "VEINTIOCHO", "VEINTINUEVE")
_TENS = ("", "", "", "TREINTA", "CUARENTA", "CINCUENTA", "SESENTA", "SETENTA", "OCHENTA", "NOVENTA")
_HUNDREDS = ("", "CIENTO", "DOSCIENTOS", "TRESCIENTOS", "CUATROCIENTOS", "QUINIENTOS", "SEISCIENTOS",
             "SETECIENTOS", "OCHOCIENTOS", "NOVECIENTOS")
LIMIT = 10**18

# ISO 4217 code -> (singular noun, plural noun, suffix after the cents)
CURRENCIES: dict[str, tuple[str, str, str]] = {
    "MXN": ("PESO", "PESOS", "M.N."),
    "USD": ("DÓLAR", "DÓLARES", "USD"),
    "EUR": ("EURO", "EUROS", "EUR"),
    "CAD": ("DÓLAR CANADIENSE", "DÓLARES CANADIENSES", "CAD"),
    "JPY": ("YEN", "YENES", "JPY"),
    "CHF": ("FRANCO SUIZO", "FRANCOS SUIZOS", "CHF"),
}


def _below_thousand(n: int, short: bool) -> str:
    """1..999 in words; ``short``: the last "uno" shortened (it precedes a noun or MIL)."""
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append("CIEN" if hundreds == 1 and rest == 0 else _HUNDREDS[hundreds])
    if rest:
        if rest < 30:
            word = _UNITS[rest]
            if short and rest == 1:
                word = "UN"
            elif short and rest == 21:
                word = "VEINTIÚN"
            words.append(word)
        else:
            tens, unit = divmod(rest, 10)
            words.append(_TENS[tens])
            if unit:
                words += ["Y", "UN" if short and unit == 1 else _UNITS[unit]]
    return " ".join(words)


def _below_million(n: int, short: bool) -> str:
    """1..999 999 in words, every thousand with its count (UN MIL)."""
    thousands, rest = divmod(n, 1000)
    words = []
    if thousands:
        words += [_below_thousand(thousands, short=True), "MIL"]
    if rest:
        words.append(_below_thousand(rest, short))
    return " ".join(words)


def integer_in_words(n: int, *, short: bool = False) -> str:
    """A whole number 0 <= n < 10^18 in upper-case Spanish words.

    ``short`` shortens a final "uno" as before a noun (21 -> VEINTIÚN, not VEINTIUNO).
    """
    if not 0 <= n < LIMIT:
        raise ValueError(f"{n} is outside 0 .. 10^18 - 1")
    if n == 0:
        return "CERO"
    billions, rest = divmod(n, 10**12)
    millions, units = divmod(rest, 10**6)
    words = []
    for count, one, many in ((billions, "BILLÓN", "BILLONES"), (millions, "MILLÓN", "MILLONES")):
        if count == 1:
            words += ["UN", one]
        elif count:
            words += [_below_million(count, short=True), many]
    if units:
        words.append(_below_million(units, short))
    return " ".join(words)


def amount_in_words(amount: str | Decimal | int, currency: str = "MXN") -> str:
    """The amount as Mexican invoices write it in words (see the module docstring)."""
    try:
        value = Decimal(amount).quantize(Decimal("0.01"), ROUND_HALF_UP)
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"not an amount: {amount!r}") from None
    if value < 0:
        raise ValueError(f"negative amount: {amount!r}")
    whole = int(value)
    cents = int((value - whole) * 100)
    words = integer_in_words(whole, short=True)
    code = currency.strip().upper()
    one, many, suffix = CURRENCIES.get(code, ("", "", code))
    noun = one if whole == 1 else many
    if noun and whole >= 10**6 and whole % 10**6 == 0:
        noun = "DE " + noun
    return " ".join(part for part in (words, noun, f"{cents:02d}/100", suffix) if part)
