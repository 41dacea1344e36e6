"""Page layout for the printed CFDI: A4 geometry, fonts, a writer that places, wraps and
flows text top-down over pages, shaded tables, and the QR as an image. It knows nothing
of CFDIs; :mod:`worker.cfdi.pdf.document` decides what goes on the page.

Speed: text is placed with ``FPDF.text`` at computed positions (no cells, no tables),
lines are wrapped with our own word wrapper, the QR (zxing-cpp's compiled encoder) is
one vector path of its modules' runs, and
core Helvetica is used whenever every string is cp1252; otherwise tiny per-document
subsets of Kurinto (:mod:`worker.cfdi.fonts`) are embedded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import CoreFont, TTFFont

from worker.cfdi.fonts import FontPlan, plan_fonts
from worker.cfdi.qr import MIN_SIDE_MM, qr_modules

PAGE_H = 297.0
LEFT = 10.0
WIDTH = 190.0
RIGHT = LEFT + WIDTH
TOP = 10.0
BOTTOM = 283.0  # content stops here; the footer sits below
PT = 0.3528  # mm per point
QR_SIDE = 30.0  # mm, above SAT's 27.5 mm minimum
QR_BORDER = 4  # quiet zone, in modules
GRAY = (90, 90, 90)
SHADE = (230, 230, 230)

# A table's columns: (title, width mm, right-aligned)
Columns = tuple[tuple[str, float, bool], ...]
# mm kept free inside each side of a table cell: neighbouring cells are always 2 * PAD
# apart (a right-aligned quantity never touches the unit code after it)
PAD = 1.0
MIN_FIT_SIZE = 4.5  # pt: the smallest an amount is set to fit its column


def clean(text: str | None) -> str:
    if not text:
        return ""
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


class Page(FPDF):
    """An A4 page in mm with our margins; its footer (drawn by the writer) is ``footer_text``
    and "Página n de N"."""

    def __init__(self, title: str, footer_text: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.footer_text = footer_text
        self.core_fonts_encoding = "cp1252"
        self.set_auto_page_break(False)
        self.set_margins(LEFT, TOP, LEFT)
        self.set_creator("rupture-billing-worker")
        self.set_title(title)

    writer: Writer | None = None

    def footer(self) -> None:
        w = self.writer
        if w is None:
            return
        size, bold = w.size, w.bold
        self.set_text_color(*GRAY)
        w.font(6.5)
        w.put(LEFT, PAGE_H - 9.6, self.footer_text)
        # cell() (not text()) so that fpdf2 replaces {nb} with the page count
        self.set_xy(RIGHT - 25, PAGE_H - 10)
        self.cell(25, 4, f"Página {self.page_no()} de {{nb}}", align="R")
        self.set_text_color(0, 0, 0)
        w.font(size or 7, bold)


CP1252 = frozenset(bytes(range(256)).decode("cp1252", errors="ignore"))
try:  # fpdf2's width tables of the core fonts (1/1000 em, keyed by latin-1 char)
    from fpdf.fonts import CORE_FONTS_CHARWIDTHS as _CORE_WIDTHS
except ImportError:  # pragma: no cover - older/newer fpdf2 layout
    _CORE_WIDTHS = {}


@dataclass
class Fonts:
    """Faces besides core Helvetica: tiny Kurinto subsets for the characters cp1252 lacks.

    Helvetica prints every cp1252 character in both modes; an embedded face prints only
    the others, so documents stay small and fast even with one exotic character.
    """

    plan: FontPlan | None = None
    faces: tuple[tuple[str, frozenset[str]], ...] = ()  # (fpdf2 family, characters), in fallback order
    files: dict[str, Path] = field(default_factory=dict)  # fpdf2 font key -> tiny font file


def fonts_for(texts: Iterable[str]) -> Fonts:
    """Core Helvetica alone when every character of ``texts`` is cp1252; else Helvetica plus
    tiny embedded faces for the characters it lacks."""
    extra = {ch for text in texts for ch in text if ch not in CP1252} - {"\r", "\n", "\t"}
    if not extra:
        return Fonts()
    plan = plan_fonts(["".join(sorted(extra))])
    faces = [("uni", plan.chars)] + [(f"unifb{i}", chars) for i, (_p, chars) in enumerate(plan.fallbacks)]
    files = {"uni": plan.regular, "uniB": plan.bold}
    files.update({f"unifb{i}": path for i, (path, _c) in enumerate(plan.fallbacks)})
    return Fonts(plan, tuple(faces), files)


class Writer:
    """Places text top-down, wrapping and breaking pages."""

    def __init__(self, pdf: Page, fonts: Fonts) -> None:
        self.pdf = pdf
        self.fonts = fonts
        self.y = TOP
        self.size = 0.0
        self.bold = False
        self.on_new_page: list[Callable[[], None]] = []
        # width tables, 1/1000 em: keyed by latin-1 char (core fonts) or by code point (embedded)
        self._widths: dict[str, Mapping[Any, float]] = {}

    # fonts -----------------------------------------------------------------------
    def font(self, size: float, bold: bool = False) -> None:
        self.size, self.bold = size, bold
        self.pdf.set_font("helvetica", "B" if bold else "", size)

    def lh(self, size: float | None = None) -> float:
        return (size or self.size) * PT * 1.22

    def _key(self, face: str) -> str:
        """fpdf2 font key of a face in the current weight (fallback faces have no bold)."""
        if face in ("helvetica", "uni") and self.bold:
            return face + "B"
        return face

    def _cw(self, key: str) -> Mapping[Any, float]:
        cw = self._widths.get(key)
        if cw is None:
            if key.startswith("helvetica"):
                cw = _CORE_WIDTHS.get(key)
                if cw is None:
                    self.pdf.set_font("helvetica", key[9:], self.size)
                    current = self.pdf.current_font
                    assert current is not None  # set_font just set it
                    cw = current.cw
                    self.pdf.set_font("helvetica", "B" if self.bold else "", self.size)
            else:
                cw = self._embedded(key).cw
            self._widths[key] = cw
        return cw

    def _embedded(self, key: str) -> CoreFont | TTFFont:
        """The fpdf2 font for ``key``, added on first use (unused faces cost nothing)."""
        fonts = self.pdf.fonts
        if key not in fonts:
            family = key[:-1] if key.endswith("B") else key
            self.pdf.add_font(family, "B" if key.endswith("B") else "", self.fonts.files[key])
        return fonts[key]

    def width(self, text: str) -> float:
        """String width in mm from the fonts' width tables (fpdf2's own is ~10x slower)."""
        total = 0.0
        for run, face in self._runs(text):
            key = self._key(face)
            cw = self._cw(key)
            if face == "helvetica":
                total += sum(cw[c] for c in run.encode("cp1252").decode("latin-1"))
            else:
                total += sum(cw[ord(c)] for c in run)
        return total * self.size * 0.001 / self.pdf.k

    def _runs(self, text: str) -> Iterator[tuple[str, str]]:
        """Split text into runs of one face: Helvetica for cp1252, embedded faces for the rest."""
        if self.fonts.plan is None or CP1252.issuperset(text):
            yield text, "helvetica"
            return
        start, current = 0, "helvetica"
        for i, ch in enumerate(text):
            face = "helvetica" if ch in CP1252 else self._face_for(ch)
            if face != current:
                if i > start:
                    yield text[start:i], current
                start, current = i, face
        if start < len(text):
            yield text[start:], current

    def _face_for(self, ch: str) -> str:
        for name, chars in self.fonts.faces:
            if ch in chars:
                return name
        return "uni"  # no face has it: fpdf2 prints .notdef

    def put(self, x: float, y: float, text: str) -> None:
        """Text with its top-left at (x, y)."""
        base = y + self.size * PT * 0.9
        pdf = self.pdf
        if self.fonts.plan is None:
            pdf.text(x, base, text)
            return
        for run, face in self._runs(text):
            if face != "helvetica":
                key = self._key(face)
                self._embedded(key)
                pdf.set_font(face, key[len(face):], self.size)
            pdf.text(x, base, run)
            if face != "helvetica":
                pdf.set_font("helvetica", "B" if self.bold else "", self.size)
            x += self.width(run)

    def put_right(self, x_right: float, y: float, text: str) -> None:
        self.put(x_right - self.width(text), y, text)

    # wrapping --------------------------------------------------------------------
    def wrap(self, text: str, width: float) -> list[str]:
        text = clean(text)
        if not text:
            return [""]
        if self.width(text) <= width:
            return [text]
        lines: list[str] = []
        line = ""
        space = self.width(" ")
        line_w = 0.0
        for word in text.split(" "):
            w = self.width(word)
            if line and line_w + space + w <= width:
                line += " " + word
                line_w += space + w
                continue
            if line:
                lines.append(line)
            if w <= width:
                line, line_w = word, w
                continue
            # a word longer than the column: cut it by characters
            chunk = ""
            for ch in word:
                if chunk and self.width(chunk + ch) > width:
                    lines.append(chunk)
                    chunk = ""
                chunk += ch
            line, line_w = chunk, self.width(chunk)
        lines.append(line)
        return lines

    # flow ------------------------------------------------------------------------
    def need(self, height: float) -> None:
        if self.y + height > BOTTOM:
            self.new_page()

    def new_page(self) -> None:
        size, bold = self.size, self.bold
        self.pdf.add_page()
        self.y = TOP
        for hook in self.on_new_page:
            hook()
        self.font(size, bold)

    def paragraph(self, text: str, *, size: float = 7.0, bold: bool = False, x: float = LEFT,
                  width: float = WIDTH, gap: float = 0.0) -> None:
        self.font(size, bold)
        lh = self.lh()
        for line in self.wrap(text, width):
            self.need(lh)
            self.put(x, self.y, line)
            self.y += lh
        self.y += gap

    def label_values(self, pairs: Iterable[tuple[str, str]], *, x: float, width: float,
                     size: float = 7.0) -> float:
        """``Label: value`` lines (label bold) in a column; returns the bottom y."""
        y = self.y
        lh = self.lh(size)
        for label, value in pairs:
            if not value:
                continue
            self.font(size, True)
            head = f"{label}: "
            hw = self.width(head)
            self.put(x, y, head)
            self.font(size, False)
            first_w = width - hw
            lines = self.wrap(value, first_w)
            if len(lines) > 1:  # re-wrap the rest at full width
                rest = " ".join(lines[1:])
                lines = [lines[0]] + self.wrap(rest, width)
            self.put(x + hw, y, lines[0])
            y += lh
            for line in lines[1:]:
                self.put(x, y, line)
                y += lh
        return y

    def rule(self, gap: float = 1.5) -> None:
        self.pdf.set_draw_color(160, 160, 160)
        self.pdf.line(LEFT, self.y, RIGHT, self.y)
        self.y += gap

    def section(self, title: str) -> None:
        self.need(self.lh(8) + 8)
        self.y += 1.2
        self.pdf.set_fill_color(*SHADE)
        self.pdf.rect(LEFT, self.y, WIDTH, self.lh(7.5) + 0.6, style="F")
        self.font(7.5, True)
        self.put(LEFT + 1, self.y + 0.3, title)
        self.y += self.lh(7.5) + 1.4

    # tables ----------------------------------------------------------------------
    def table_header(self, columns: Columns) -> None:
        size, bold = self.size, self.bold
        self.font(6.3, True)
        lh = self.lh()
        rows = [self.wrap(t, width - 2 * PAD) for t, width, _r in columns]
        height = max(len(r) for r in rows) * lh + 1.0
        self.pdf.set_fill_color(*SHADE)
        self.pdf.rect(LEFT, self.y, WIDTH, height, style="F")
        x = LEFT
        for (_t, width, right), lines in zip(columns, rows, strict=True):
            for i, line in enumerate(lines):
                if right:
                    self.put_right(x + width - PAD, self.y + 0.5 + i * lh, line)
                else:
                    self.put(x + PAD, self.y + 0.5 + i * lh, line)
            x += width
        self.y += height + 0.5
        self.font(size, bold)

    def row(self, columns: Columns, values: list[str], size: float = 6.8) -> None:
        """One table row: each value fits its column's measured width less 2 * PAD, so no
        cell ever reaches the next one. Text wraps (a word longer than the column is cut);
        a right-aligned value (an amount) is never split: it is set smaller to fit, down
        to MIN_FIT_SIZE, and wraps only past that."""
        self.font(size)
        lh = self.lh()
        cells: list[tuple[list[str], float]] = []  # (lines, font size)
        for v, (_t, width, right) in zip(values, columns, strict=True):
            room = width - 2 * PAD
            if not v:
                cells.append(([""], size))
            elif right and self.width(v) > room:
                fit = size * room / self.width(v) * 0.999
                cells.append(([v], fit) if fit >= MIN_FIT_SIZE else (self.wrap(v, room), size))
            else:
                cells.append((self.wrap(v, room), size))
        height = max(len(lines) for lines, _s in cells) * lh
        self.need(height + 0.5)
        x = LEFT
        y = self.y
        for (_t, width, right), (lines, cell_size) in zip(columns, cells, strict=True):
            top = y
            if cell_size != size:  # smaller, on the row's baseline
                self.font(cell_size)
                top = y + (size - cell_size) * PT * 0.9
            for i, line in enumerate(lines):
                if not line:
                    continue
                if right:
                    self.put_right(x + width - PAD, top + i * lh, line)
                else:
                    self.put(x + PAD, top + i * lh, line)
            if cell_size != size:
                self.font(size)
            x += width
        self.y += height

    def detail(self, text: str, indent: float = 16.0) -> None:
        self.font(6.2)
        self.pdf.set_text_color(*GRAY)
        lh = self.lh()
        for line in self.wrap(text, WIDTH - indent):
            self.need(lh)
            self.put(LEFT + indent, self.y, line)
            self.y += lh
        self.pdf.set_text_color(0, 0, 0)


def draw_qr(pdf: FPDF, url: str, x: float, y: float, side: float = QR_SIDE) -> None:
    """The QR of ``url`` as vector rectangles in a ``side`` mm square at (x, y), the
    4-module quiet zone included (left white). Each run of dark modules in a row is one
    rectangle, and all of them are one path filled once: a viewer rasterizes them as one
    shape, so no anti-aliasing seam appears between modules at any resolution."""
    assert side >= MIN_SIDE_MM
    n, modules = qr_modules(url)
    module = side / (n + 2 * QR_BORDER)
    k = pdf.k
    x0 = (x + QR_BORDER * module) * k
    top = (pdf.h - y - QR_BORDER * module) * k  # PDF space: y grows upwards
    m = module * k
    ops = []
    for r in range(n):
        row = modules[r * n : (r + 1) * n]
        c = row.find(1)
        while c >= 0:
            end = row.find(0, c)
            if end < 0:
                end = n
            ops.append(f"{x0 + c * m:.3f} {top - (r + 1) * m:.3f} {(end - c) * m:.3f} {m:.3f} re")
            c = row.find(1, end)
    pdf._out("q 0 g " + " ".join(ops) + " f Q")  # noqa: SLF001 - fpdf2 has no public raw-path call
