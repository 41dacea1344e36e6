"""The PDF as an accountant sees it, checked with poppler: word positions from
``pdftotext -bbox`` (every table cell stays inside its column, so a quantity never runs
into the unit code), ``pdftotext -layout`` for what is printed where (total in words on
the last page, ``$1,160.00``, ``16 %``, dd/mm/yyyy dates), and ``pdftoppm`` pixels for
the emisor's logo. The rendered PNGs are left in pytest's tmp folder to look at."""

from __future__ import annotations

import html
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from tests.cfdi.test_pdf import FECHA, UNICODE, _stamp, _tool
from worker.cfdi.csd import Csd
from worker.cfdi.extract import extract
from worker.cfdi.factory import Concepto, build_invoice
from worker.cfdi.pdf import render_pdf
from worker.cfdi.pdf.document import COLUMNS
from worker.cfdi.pdf.layout import LEFT, PAD

MM = 72 / 25.4  # points per mm
TOL = 0.3  # pt


@pytest.fixture(scope="module")
def poppler() -> tuple[str, str]:
    return _tool("pdftotext"), _tool("pdftoppm")


@dataclass(frozen=True)
class Word:
    page: int
    x0: float
    y0: float
    x1: float
    y1: float
    text: str


def _words(pdf: Path, pdftotext: str) -> list[Word]:
    out = subprocess.run([pdftotext, "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    words, page = [], 0
    for line in out.splitlines():
        if "<page " in line:
            page += 1
        m = re.search(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*)</word>', line)
        if m:
            words.append(Word(page, *map(float, m.groups()[:4]), html.unescape(m.group(5))))
    return words


def _layout_pages(pdf: Path, pdftotext: str) -> list[str]:
    out = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return out.split("\f")[:-1]


def _columns() -> list[tuple[float, float]]:
    """Each column's [left, right] in points."""
    bounds, x = [], LEFT
    for _title, width, _right in COLUMNS:
        bounds.append((x * MM, (x + width) * MM))
        x += width
    return bounds


def _lines(words: list[Word]) -> list[list[Word]]:
    """Words grouped into printed lines (by vertical centre: a cell set smaller to fit
    shares its row's baseline, not its top), each sorted left to right."""
    lines: list[list[Word]] = []
    centre = -1.0
    for w in sorted(words, key=lambda w: (w.page, (w.y0 + w.y1) / 2)):
        c = (w.y0 + w.y1) / 2
        if not lines or w.page != lines[-1][0].page or abs(c - centre) > 1.5:
            lines.append([])
            centre = c
        lines[-1].append(w)
    return [sorted(line, key=lambda w: w.x0) for line in lines]


def _assert_inside_columns(line: list[Word]) -> None:
    """Every word sits inside one column, PAD clear of both of its edges."""
    for w in line:
        col = next((c for c in _columns() if c[0] <= w.x0 < c[1]), None)
        assert col is not None, w
        assert w.x0 >= col[0] + PAD * MM - TOL and w.x1 <= col[1] - PAD * MM + TOL, (
            f"{w.text!r} at {w.x0:.1f}-{w.x1:.1f} pt crosses its column {col[0]:.1f}-{col[1]:.1f}")


def _row_lines(words: list[Word]) -> list[list[Word]]:
    """The first line of each concepto row: it starts with the 8-digit ClaveProdServ at the
    table's left edge."""
    first_x = (LEFT + PAD) * MM
    rows = []
    for line in _lines(words):
        if abs(line[0].x0 - first_x) < TOL and re.fullmatch(r"\d{8}", line[0].text):
            rows.append(line)
    return rows


def _render(stamped: bytes, folder: Path, name: str, pdftoppm: str, **kw: object) -> Path:
    pdf = folder / f"{name}.pdf"
    pdf.write_bytes(render_pdf(stamped, **kw))  # type: ignore[arg-type]
    # first and last page as PNG (look at them: pytest --basetemp=DIR keeps them)
    last = str(len(PdfReader(pdf).pages))
    for page, label in (("1", "first"), (last, "last")):
        subprocess.run([pdftoppm, "-r", "90", "-png", "-singlefile", "-f", page, "-l", page, str(pdf),
                        str(folder / f"{name}-{label}")], check=True, timeout=120)
    return pdf


LONG = [
    Concepto(descripcion="Servicio de consultoría " * 40, cantidad="123456.123456", valor_unitario="98765.43",
             no_identificacion="SKU-" + "X" * 60, unidad="Unidad de servicio", objeto_imp="01"),
    Concepto(descripcion="Pieza" + "Z" * 120, cantidad="999999.999999", valor_unitario="0.000001",
             clave_unidad="XBX", unidad="Caja", objeto_imp="01"),
    Concepto(descripcion="Corto", cantidad="1", valor_unitario="1000000.00", objeto_imp="01"),
]


def _cases(pac: Csd) -> dict[str, bytes]:
    specs = {
        "1": dict(conceptos=[Concepto(descripcion="Servicio", valor_unitario="1000.00")]),
        "10": dict(conceptos=10),
        "300": dict(conceptos=300),
        "unicode": dict(conceptos=3, descripcion=UNICODE, receptor_nombre=f"Cliente {UNICODE}"),
        "long": dict(conceptos=LONG),
    }
    return {name: _stamp(build_invoice(fecha=FECHA, seed=40 + i, **kw), pac, 40 + i)  # type: ignore[arg-type]
            for i, (name, kw) in enumerate(specs.items())}


def test_table_cells_stay_in_their_columns(pac: Csd, poppler: tuple[str, str], tmp_path: Path) -> None:
    pdftotext, pdftoppm = poppler
    for name, stamped in _cases(pac).items():
        pdf = _render(stamped, tmp_path, name, pdftoppm)
        assert (tmp_path / f"{name}-first.png").stat().st_size > 1000
        words = _words(pdf, pdftotext)
        rows = _row_lines(words)
        cfdi = extract(stamped)
        assert len(rows) == len(cfdi.conceptos), name
        for line in rows:
            _assert_inside_columns(line)
        cant_left, cant_right = _columns()[2]
        unit_left, _ = _columns()[3]
        for line, con in zip(rows, cfdi.conceptos, strict=True):
            qty = [w for w in line if cant_left <= w.x0 < cant_right]
            unit = [w for w in line if unit_left <= w.x0 < unit_left + 5 * MM]
            assert qty and unit and unit[0].text == con.clave_unidad, (name, line)
            assert unit[0].x0 - qty[-1].x1 >= 2 * PAD * MM - TOL  # 2 mm of paper between them
    # "long": no taxes, so every line between the table header and the totals is a row's:
    # each wrapped description or SKU line stays in its column too
    words = _words(tmp_path / "long.pdf", pdftotext)
    top = max(w.y1 for w in words if w.text == "imp." and w.page == 1)
    bottom = min(w.y0 for w in words if w.text == "Importe" and w.page == 1 and w.x0 < 60)
    body = [w for w in words if w.page == 1 and top < w.y0 < bottom]
    assert len(body) > 100
    for line in _lines(body):
        _assert_inside_columns(line)


def test_what_an_accountant_reads(pac: Csd, poppler: tuple[str, str], tmp_path: Path) -> None:
    pdftotext, pdftoppm = poppler
    cases = _cases(pac)
    pages = _layout_pages(_render(cases["1"], tmp_path, "1", pdftoppm), pdftotext)
    text = pages[-1]
    assert re.search(r"Total \(MXN\):\s+\$1,160\.00", text)
    assert re.search(r"Subtotal:\s+\$1,000\.00", text)
    assert re.search(r"Traslado IVA \(002\) Tasa 16 % \(base \$1,000\.00\):\s+\$160\.00", text)
    assert "Importe con letra:" in text and "UN MIL CIENTO SESENTA PESOS 00/100 M.N." in text
    assert "Fecha y hora de emisión: 20/11/2026 11:00:00 (hora local, CP 06000)" in text
    assert "Fecha y hora de certificación: 20/11/2026 11:00:07 (hora del centro de México)" in text
    assert "0.160000" not in text and "1160.00" not in text
    # the row: quantity, unit code and amounts in their own columns of the -layout text
    assert re.search(r"01010101\s+1\s+H87\s+Pieza\s+Servicio\s+\$1,000\.00\s+\$1,000\.00\s+02", text)

    # 300 conceptos: the total in words on the last page only, next to the totals
    pages = _layout_pages(_render(cases["300"], tmp_path, "300", pdftoppm), pdftotext)
    cfdi = extract(cases["300"])
    assert len(pages) >= 5
    assert [("Importe con letra:" in p) for p in pages] == [False] * (len(pages) - 1) + [True]
    last = pages[-1]
    assert re.search(r"Total \(MXN\):\s+\$[\d,]+\.\d\d", last)
    total = f"{float(cfdi.comprobante.total):,.2f}"
    assert f"${total}" in last and "PESOS" in last and "/100 M.N." in last
    assert all("16 %" in p for p in pages[:-1])  # every page's conceptos show the rate

    # unicode: embedded fonts, same reading
    text = "\n".join(_layout_pages(_render(cases["unicode"], tmp_path, "unicode", pdftoppm), pdftotext))
    assert UNICODE in text and "Cliente " + UNICODE in text and "Tasa 16 %" in text


def _logo(path: Path, fmt: str) -> None:
    img = Image.new("RGB", (800, 200), (200, 20, 20))  # wide, red, to be scaled down
    img.save(path, fmt)


def test_emisor_logo_and_address(pac: Csd, poppler: tuple[str, str], tmp_path: Path) -> None:
    pdftotext, pdftoppm = poppler
    stamped = _stamp(build_invoice(fecha=FECHA, seed=50), pac, 50)
    rfc = extract(stamped).emisor.rfc
    for fmt in ("PNG", "JPEG"):
        logo = tmp_path / f"logo.{fmt.lower()}"
        _logo(logo, fmt)
        address = "Av. Reforma 222, Col. Juárez\\nCDMX, CP 06600"
        emisores = {rfc.lower(): {"logo": str(logo), "address": address}}
        pdf = _render(stamped, tmp_path, f"logo-{fmt}", pdftoppm, emisores=emisores)
        assert render_pdf(stamped, emisores) == pdf.read_bytes()  # same input, same bytes
        page = Image.open(tmp_path / f"logo-{fmt}-first.png").convert("RGB")
        scale = 90 / 25.4  # px per mm
        # the logo: 40 x 10 mm at the top left corner (10 mm margins), red
        r, g, b = page.getpixel((int(30 * scale), int(15 * scale)))
        assert r > 150 and g < 80 and b < 80, (fmt, (r, g, b))
        text = _layout_pages(pdf, pdftotext)[0]
        assert "Av. Reforma 222, Col. Juárez" in text and "CDMX, CP 06600" in text
        # the emisor block moved right of the logo: its name starts past 50 mm
        name = next(w for w in _words(pdf, pdftotext) if w.text == "EMPRESA")
        assert name.x0 > 50 * MM
    # no entry for this RFC, or a logo that cannot be read: the plain PDF, never a failure
    plain = render_pdf(stamped)
    assert render_pdf(stamped, {"XAXX010101000": {"address": "Otro"}}) == plain
    missing = {rfc: {"logo": str(tmp_path / "nope.png"), "address": "Calle 1"}}
    text = _layout_pages(_render(stamped, tmp_path, "missing", pdftoppm, emisores=missing), pdftotext)[0]
    assert "Calle 1" in text
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert render_pdf(stamped, {rfc: {"logo": str(tmp_path / "bad.png")}}) == plain


def test_logo_transparency_cmyk_and_palette(pac: Csd, poppler: tuple[str, str], tmp_path: Path) -> None:
    """A PNG's alpha channel (or a palette's transparent colour) shows the page through; a
    CMYK JPEG prints in its colours. Each logo is 40 x 10 mm at the top-left corner: its
    left half is the colour, its right half transparent (or cyan, for the JPEG)."""
    _pdftotext, pdftoppm = poppler
    stamped = _stamp(build_invoice(fecha=FECHA, seed=51), pac, 51)
    rfc = extract(stamped).emisor.rfc
    rgba = Image.new("RGBA", (400, 100), (0, 0, 0, 0))
    rgba.paste((20, 40, 200, 255), (0, 0, 200, 100))
    rgba.save(tmp_path / "alpha.png")
    pal = Image.new("P", (400, 100), 0)
    pal.putpalette([255, 255, 0, 20, 40, 200] + [0] * 762)
    pal.paste(1, (0, 0, 200, 100))
    pal.save(tmp_path / "pal.png", transparency=0)
    cmyk = Image.new("CMYK", (400, 100), (255, 0, 0, 0))  # cyan
    cmyk.paste((200, 160, 0, 0), (0, 0, 200, 100))  # blue
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    scale = 90 / 25.4  # px per mm
    for name, right_side in (("alpha.png", "white"), ("pal.png", "white"), ("cmyk.jpg", "cyan")):
        emisores = {rfc: {"logo": str(tmp_path / name)}}
        _render(stamped, tmp_path, name, pdftoppm, emisores=emisores)
        page = Image.open(tmp_path / f"{name}-first.png").convert("RGB")
        r, g, b = page.getpixel((int(18 * scale), int(15 * scale)))
        assert b > 120 and r < 100 and g < 120, (name, (r, g, b))  # blue
        r, g, b = page.getpixel((int(42 * scale), int(15 * scale)))
        if right_side == "white":
            assert min(r, g, b) > 240, (name, (r, g, b))
        else:
            assert r < 100 and g > 150 and b > 150, (name, (r, g, b))


def test_settings_pdf_emisores_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from worker.settings import load_settings

    monkeypatch.setenv("BILLING_PDF_EMISORES", '{"eku9003173c9": {"logo": "/l.png", "address": "Calle 1"}}')
    assert load_settings().pdf_emisores == {"EKU9003173C9": {"logo": "/l.png", "address": "Calle 1"}}
    monkeypatch.setenv("BILLING_PDF_EMISORES", '{"EKU9003173C9": {"logo": "/l.png", "adress": "typo"}}')
    with pytest.raises(ValidationError, match="unknown keys"):
        load_settings()
    monkeypatch.delenv("BILLING_PDF_EMISORES")
    assert load_settings().pdf_emisores == {}
