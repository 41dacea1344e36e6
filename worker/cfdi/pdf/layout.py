"""Page layout for the printed CFDI: A4 geometry, fonts, a writer that places, wraps and
flows text top-down over pages, shaded tables, and the QR. It knows nothing of CFDIs;
:mod:`worker.cfdi.pdf.document` decides what goes on the page, and
:mod:`worker.cfdi.pdf.canvas` writes the PDF.

Speed: text is measured with the fonts' width tables (a string's widths summed in C),
wrapped with our own word wrapper and placed as one operator per string at computed
positions, a table row's one-line cells as one text object (no cells, no tables); the
QR (zxing-cpp's modules, :func:`worker.cfdi.qr.qr_rows`) is one vector path of its
modules' runs put together from per-process fragments. Core Helvetica prints every
cp1252 character; the others are printed with tiny embedded subsets of Kurinto
(:mod:`worker.cfdi.fonts`) holding only the characters the document prints.

Caches kept across documents hold only what does not depend on an invoice: font metrics
(per character), the table headers' layout (per column set), the QR path fragments (per
chunk position and value).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from operator import getitem

from worker.cfdi import fonts
from worker.cfdi.pdf.canvas import Canvas, K
from worker.cfdi.pdf.metrics import HELVETICA, HELVETICA_BOLD
from worker.cfdi.qr import MIN_SIDE_MM, qr_rows

PAGE_H = 297.0
LEFT = 10.0
WIDTH = 190.0
RIGHT = LEFT + WIDTH
TOP = 10.0
BOTTOM = 283.0  # content stops here; the footer sits below
PT = 0.3528  # mm per point
QR_SIDE = 33.0  # mm with the quiet zone: the code itself (45-53 modules of 53-61) is over 27.5 mm
QR_BORDER = 4  # quiet zone, in modules
BLACK = (0, 0, 0)
GRAY = (90, 90, 90)
RULE = (160, 160, 160)
SHADE = (230, 230, 230)

# A table's columns: (title, width mm, right-aligned)
Columns = tuple[tuple[str, float, bool], ...]
# mm kept free inside each side of a table cell: neighbouring cells are always 2 * PAD
# apart (a right-aligned quantity never touches the unit code after it)
PAD = 1.0
MIN_FIT_SIZE = 4.5  # pt: the smallest an amount is set to fit its column

CP1252 = frozenset(bytes(range(256)).decode("cp1252", errors="ignore"))


def _core_widths(table: tuple[int, ...]) -> dict[str, float]:
    """Character -> advance (1/1000 em) for every character cp1252 encodes."""
    widths = {}
    for byte, advance in enumerate(table):
        ch = bytes([byte]).decode("cp1252", errors="ignore")
        if ch:
            widths[ch] = float(advance)
    return widths


# Width tables per weight (False: regular, True: bold), 1/1000 em, keyed by character: the
# core font's for cp1252, and, added on first sight, the embedded face's for any other
# character. Shared by every document of the process (font metrics only).
_WIDTHS: dict[bool, dict[str, float]] = {False: _core_widths(HELVETICA), True: _core_widths(HELVETICA_BOLD)}
# The same core widths split in high and low bytes, indexed by byte: a string that
# ISO-8859-1 encodes (cp1252's bytes for those characters) is measured by two
# bytes.translate and two sums, all in C (~2x faster than a lookup per character).
_SPLIT_WIDTHS = {bold: (bytes(w >> 8 for w in table), bytes(w & 0xFF for w in table))
                 for bold, table in ((False, HELVETICA), (True, HELVETICA_BOLD))}
# Table headers' lines: per line, (x, text) of each column's title (bold, 6.3 pt)
_HEADERS: dict[Columns, list[list[tuple[float, str]]]] = {}
_C1 = re.compile(b"[\x80-\x9f]")  # not cp1252 characters: measured in the embedded face


def clean(text: str | None) -> str:
    """``text`` on one line (CR, LF and tab as spaces); "" for None."""
    if not text:
        return ""
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


class Writer:
    """Places text top-down on a :class:`Canvas`, wrapping and breaking pages.

    Its state is a position ``y`` (mm from the page top), a font (``size`` pt, ``bold``)
    and a text colour. Every page gets, at :meth:`finish`, ``footer_text`` and
    "Página n de N" at its bottom.
    """

    def __init__(self, canvas: Canvas, footer_text: str) -> None:
        self.canvas = canvas
        self.footer_text = footer_text
        self.y = TOP
        self.size = 0.0
        self.bold = False
        self.color = BLACK
        self.on_new_page: list[Callable[[], None]] = []
        self._cw = _WIDTHS[False]
        self._hi, self._lo = _SPLIT_WIDTHS[False]
        self._scale = 0.0  # mm per 1/1000 em at the current size
        self._tf = ""  # the canvas's operator for the current core font

    # fonts -----------------------------------------------------------------------
    def font(self, size: float, bold: bool = False) -> None:
        if size == self.size and bold is self.bold and self._tf:
            return
        self.size, self.bold = size, bold
        self._cw = _WIDTHS[bold]
        self._hi, self._lo = _SPLIT_WIDTHS[bold]
        self._scale = size * 0.001 / K
        self._tf = self.canvas.font_op("helveticaB" if bold else "helvetica", size)

    def lh(self, size: float | None = None) -> float:
        return (size or self.size) * PT * 1.22

    def width(self, text: str) -> float:
        """String width in mm in the current font."""
        try:
            b = text.encode("latin-1")
        except UnicodeEncodeError:  # cp1252's other characters, or beyond: per character
            return self._width_chars(text)
        if not b.isascii() and _C1.search(b):
            return self._width_chars(text)
        return ((sum(b.translate(self._hi)) << 8) + sum(b.translate(self._lo))) * self._scale

    def _width_chars(self, text: str) -> float:
        try:
            return sum(map(self._cw.__getitem__, text)) * self._scale
        except KeyError:  # a character not seen yet: outside cp1252
            pass
        cw = self._cw
        for ch in text:
            if ch not in cw:
                cw[ch] = fonts.advance(ch, self.bold)
        return sum(map(cw.__getitem__, text)) * self._scale

    def _runs(self, text: str) -> Iterator[tuple[str, str | None]]:
        """Split text into runs of one face: None (core Helvetica) for cp1252, else the
        embedded face's file."""
        start, current = 0, None
        for i, ch in enumerate(text):
            face = None if ch in CP1252 else fonts.face_for(ch, self.bold)
            if face != current:
                if i > start:
                    yield text[start:i], current
                start, current = i, face
        if start < len(text):
            yield text[start:], current

    def put(self, x: float, y: float, text: str) -> None:
        """Text with its top-left at (x, y)."""
        canvas = self.canvas
        canvas.fill(self.color)
        base = y + self.size * PT * 0.9
        if text.isascii() or CP1252.issuperset(text):
            canvas.text(x, base, self._tf, text)
            return
        for run, face in self._runs(text):
            if face is None:
                canvas.text(x, base, self._tf, run)
            else:
                canvas.glyphs(x, base, face, self.size, run)
            x += self.width(run)

    def put_line(self, y: float, items: list[tuple[float, str]]) -> None:
        """cp1252 texts in the current font with their tops at y, each (x, text), in order."""
        self.canvas.fill(self.color)
        self.canvas.texts(y + self.size * PT * 0.9, self._tf, items)

    def put_right(self, x_right: float, y: float, text: str) -> None:
        self.put(x_right - self.width(text), y, text)

    def put_mono(self, x: float, y: float, text: str, size: float) -> None:
        """cp1252 text in Courier (every character 0.6 em wide) with its top-left at (x, y)."""
        self.canvas.fill(self.color)
        self.canvas.text(x, y + size * PT * 0.9, self.canvas.font_op("courier", size), text)

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
        self.canvas.add_page()
        self.y = TOP
        for hook in self.on_new_page:
            hook()
        self.font(size, bold)

    def finish(self) -> None:
        """Draw every page's footer: ``footer_text`` and "Página n de N"."""
        size, bold, color = self.size, self.bold, self.color
        count = len(self.canvas.pages)
        self.color = GRAY
        for n in range(count):
            self.canvas.select_page(n)
            self.font(6.5)
            self.put(LEFT, PAGE_H - 9.6, self.footer_text)
            # the baseline 0.3 em under the middle of a 4 mm box 10 mm above the bottom
            self.put_right(RIGHT - 1, PAGE_H - 8 + 6.5 * (0.3 / K - 0.9 * PT), f"Página {n + 1} de {count}")
        self.color = color
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
        self.canvas.stroke(RULE)
        self.canvas.line(LEFT, self.y, RIGHT, self.y)
        self.y += gap

    def section(self, title: str) -> None:
        self.need(self.lh(8) + 8)
        self.y += 1.2
        self.canvas.fill(SHADE)
        self.canvas.rect(LEFT, self.y, WIDTH, self.lh(7.5) + 0.6)
        self.font(7.5, True)
        self.put(LEFT + 1, self.y + 0.3, title)
        self.y += self.lh(7.5) + 1.4

    # tables ----------------------------------------------------------------------
    def table_header(self, columns: Columns) -> None:
        """The columns' titles (bold, wrapped to their columns) on a shaded band."""
        size, bold = self.size, self.bold
        self.font(6.3, True)
        lh = self.lh()
        lines = _HEADERS.get(columns)
        if lines is None:  # the titles' layout is constant: computed once per process
            lines = []
            x = LEFT
            for title, width, right in columns:
                for i, line in enumerate(self.wrap(title, width - 2 * PAD)):
                    assert CP1252.issuperset(line), line  # drawn with put_line
                    while len(lines) <= i:
                        lines.append([])
                    lines[i].append((x + width - PAD - self.width(line) if right else x + PAD, line))
                x += width
            _HEADERS[columns] = lines
        height = len(lines) * lh + 1.0
        self.canvas.fill(SHADE)
        self.canvas.rect(LEFT, self.y, WIDTH, height)
        for i, items in enumerate(lines):
            self.put_line(self.y + 0.5 + i * lh, items)
        self.y += height + 0.5
        self.font(size, bold)

    def row(self, columns: Columns, values: list[str], size: float = 6.8) -> None:
        """One table row: each value fits its column's measured width less 2 * PAD, so no
        cell ever reaches the next one. Text wraps (a word longer than the column is cut);
        a right-aligned value (an amount) is never split: it is set smaller to fit, down
        to MIN_FIT_SIZE, and wraps only past that."""
        self.font(size)
        lh = self.lh()
        # per cell: (lines, font size, width of its one line, or -1 when it wraps)
        cells: list[tuple[list[str], float, float]] = []
        height = lh
        for v, (_t, width, right) in zip(values, columns, strict=True):
            if not v:
                cells.append(([], size, 0.0))
                continue
            room = width - 2 * PAD
            v = clean(v)
            w = self.width(v)
            if w <= room:
                cells.append(([v], size, w))
                continue
            fit = size * room / w * 0.999
            if right and fit >= MIN_FIT_SIZE:
                cells.append(([v], fit, w * fit / size))
                continue
            lines = self.wrap(v, room)
            cells.append((lines, size, -1.0))
            height = max(height, len(lines) * lh)
        self.need(height + 0.5)
        x = LEFT
        y = self.y
        batch: list[tuple[float, str]] = []  # one-line cells in the row's font, drawn together
        for (_t, width, right), (lines, cell_size, w) in zip(columns, cells, strict=True):
            if not lines:
                pass
            elif w >= 0 and cell_size == size and (lines[0].isascii() or CP1252.issuperset(lines[0])):
                batch.append((x + width - PAD - w if right else x + PAD, lines[0]))
            else:
                if batch:  # keep the order of the cells (text extraction reads them in it)
                    self.put_line(y, batch)
                    batch = []
                if w >= 0:  # one line, width known: smaller (on the row's baseline), or not cp1252
                    self.font(cell_size)
                    self.put(x + width - PAD - w if right else x + PAD, y + (size - cell_size) * PT * 0.9,
                             lines[0])
                    self.font(size)
                else:
                    for i, line in enumerate(lines):
                        if not line:
                            continue
                        if right:
                            self.put_right(x + width - PAD, y + i * lh, line)
                        else:
                            self.put(x + PAD, y + i * lh, line)
            x += width
        if batch:
            self.put_line(y, batch)
        self.y += height

    def detail(self, text: str, indent: float = 16.0) -> None:
        self.font(6.2)
        self.color = GRAY
        lh = self.lh()
        for line in self.wrap(text, WIDTH - indent):
            self.need(lh)
            self.put(LEFT + indent, self.y, line)
            self.y += lh
        self.color = BLACK


# QR path fragments: _CHUNK_OPS[k][v] draws the dark modules of byte v (bit i: module
# 8k + i) as modules 8k..8k+7 of a row, one rectangle per run, "@" standing for the row.
# Built per chunk position on first use and kept for the process (geometry, not data).
_CHUNK_OPS: list[list[str]] = []
_CHUNK_LOCK = threading.Lock()
_ROW_NUMBERS = [str(r) for r in range(200)]


def _runs_of_byte(v: int) -> list[tuple[int, int]]:
    """(start, length) of each run of set bits of byte ``v``, bit 0 first."""
    runs, i = [], 0
    while i < 8:
        if v >> i & 1:
            j = i
            while j < 8 and v >> j & 1:
                j += 1
            runs.append((i, j - i))
            i = j
        else:
            i += 1
    return runs


def _chunk_ops(chunks: int) -> list[list[str]]:
    if len(_CHUNK_OPS) < chunks:
        with _CHUNK_LOCK:
            runs = [_runs_of_byte(v) for v in range(256)]
            for k in range(len(_CHUNK_OPS), chunks):
                _CHUNK_OPS.append(["".join(f"{8 * k + c} @ {w} 1 re " for c, w in r) for r in runs])
    return _CHUNK_OPS


def draw_qr(canvas: Canvas, url: str, x: float, y: float, side: float = QR_SIDE) -> None:
    """The QR of ``url`` as vector rectangles in a ``side`` mm square at (x, y), the
    4-module quiet zone included (left white), the code itself at least 27.5 mm. Dark
    modules are rectangles, at most one per run within each 8-module chunk of a row, and
    all of them are one path filled once:
    a viewer rasterizes them as one shape, so no anti-aliasing seam appears between
    modules at any resolution. The path is in module units (one ``cm`` maps modules to
    the page), and each row is put together from ready-made fragments (one per chunk
    value), so no number is formatted per module."""
    n, rows = qr_rows(url)
    # SAT's "sides no smaller than 2.75 cm", read strictly: the code without its quiet zone
    # (a short text's code grows past ``side`` rather than print below it).
    module = max(side / (n + 2 * QR_BORDER), MIN_SIDE_MM / n)  # mm
    x0 = (x + QR_BORDER * module) * K
    top = (PAGE_H - y - QR_BORDER * module) * K  # PDF space: y grows upwards
    chunks = (n + 7) // 8
    tables = _chunk_ops(chunks)[:chunks]
    path = [
        "".join(map(getitem, tables, row.to_bytes(chunks, "little"))).replace("@", _ROW_NUMBERS[r])
        for r, row in enumerate(rows)
    ]
    canvas.raw(f"q 0 g {module * K:.5f} 0 0 {-module * K:.5f} {x0:.3f} {top:.3f} cm " + "".join(path) + "f Q")
