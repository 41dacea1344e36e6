"""The printed representation (representación impresa) of a stamped CFDI 4.0, with fpdf2.

What it shows follows RMF regla 2.7.1.7 / Anexo 20 as quoted in REFERENCE.md §4: the QR
(or UUID), both certificate serial numbers, issue and certification dates, the TFD
cadena original, both sellos, the legend, and the CFDI's own data (emisor, receptor,
every concepto with its keys and taxes, taxes by rate, totals, payment data, related
CFDIs, InformacionGlobal, the Pagos 2.0 complement).

Speed: text is placed with ``FPDF.text`` at computed positions (no cells, no tables),
lines are wrapped with our own word wrapper, the base64 blocks are set in Courier so they
wrap by character count, the QR is a 1-bit image of its modules, and core Helvetica is
used whenever every string is cp1252; otherwise tiny per-document subsets of Kurinto
(:mod:`worker.cfdi.fonts`) are embedded.
"""

from __future__ import annotations

import datetime as dt

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF
from PIL import Image

from worker.cfdi import catalogs as cat
from worker.cfdi.extract import Concepto, StampedCfdi, Tax, extract
from worker.cfdi.fonts import FontPlan, plan_fonts
from worker.cfdi.qr import MIN_SIDE_MM, make_qr, verification_url

LEGEND = "Este documento es una representación impresa de un CFDI"
PAGE_H = 297.0
LEFT = 10.0
WIDTH = 190.0
RIGHT = LEFT + WIDTH
TOP = 10.0
BOTTOM = 283.0  # content stops here; the footer sits below
PT = 0.3528  # mm per point
QR_SIDE = 30.0  # mm, above SAT's 27.5 mm minimum
# Any of the 8 QR masks decodes; fixing one skips segno's penalty scoring (~13 ms).
QR_MASK: int | None = 4
QR_PIXELS = 4  # image pixels per QR module
QR_BORDER = 4  # quiet zone, in modules
GRAY = (90, 90, 90)
SHADE = (230, 230, 230)

# Conceptos table: (title, width mm, right-aligned)
COLUMNS = (
    ("Clave prod/serv", 16.0, False),
    ("No. identificación", 19.0, False),
    ("Cantidad", 13.0, True),
    ("Clave unidad", 12.0, False),
    ("Unidad", 13.0, False),
    ("Descripción", 54.0, False),
    ("Valor unitario", 20.0, True),
    ("Importe", 20.0, True),
    ("Descuento", 15.0, True),
    ("Obj. imp.", 8.0, False),
)
DOCTO_COLUMNS = (
    ("Id documento", 52.0, False),
    ("Serie / folio", 22.0, False),
    ("Moneda / equiv.", 17.0, False),
    ("Parcialidad", 13.0, True),
    ("Saldo anterior", 22.0, True),
    ("Importe pagado", 22.0, True),
    ("Saldo insoluto", 22.0, True),
    ("Obj. imp.", 20.0, False),
)

assert abs(sum(w for _t, w, _r in COLUMNS) - WIDTH) < 0.01
assert abs(sum(w for _t, w, _r in DOCTO_COLUMNS) - WIDTH) < 0.01


def _clean(text: str | None) -> str:
    if not text:
        return ""
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


class _Pdf(FPDF):
    def __init__(self, footer_label: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.footer_label = footer_label
        self.core_fonts_encoding = "cp1252"
        self.set_auto_page_break(False)
        self.set_margins(LEFT, TOP, LEFT)
        self.set_creator("rupture-billing-worker")
        self.set_title(footer_label)

    writer: _Writer | None = None

    def footer(self) -> None:
        w = self.writer
        if w is None:
            return
        size, bold = w.size, w.bold
        self.set_text_color(*GRAY)
        w.font(6.5)
        w.put(LEFT, PAGE_H - 9.6, f"{LEGEND}. {self.footer_label}")
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
class _Fonts:
    """Faces besides core Helvetica: tiny Kurinto subsets for the characters cp1252 lacks.

    Helvetica prints every cp1252 character in both modes; an embedded face prints only
    the others, so documents stay small and fast even with one exotic character.
    """

    plan: FontPlan | None = None
    faces: tuple[tuple[str, frozenset[str]], ...] = ()  # (fpdf2 family, characters), in fallback order
    files: dict[str, Path] = field(default_factory=dict)  # fpdf2 font key -> tiny font file


class _Writer:
    """Places text top-down, wrapping and breaking pages."""

    def __init__(self, pdf: _Pdf, fonts: _Fonts) -> None:
        self.pdf = pdf
        self.fonts = fonts
        self.y = TOP
        self.size = 0.0
        self.bold = False
        self.on_new_page: list[Callable[[], None]] = []
        self._widths: dict[str, dict] = {}

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

    def _cw(self, key: str) -> dict:
        cw = self._widths.get(key)
        if cw is None:
            if key.startswith("helvetica"):
                cw = _CORE_WIDTHS.get(key)
                if cw is None:
                    self.pdf.set_font("helvetica", key[9:], self.size)
                    cw = self.pdf.current_font.cw
                    self.pdf.set_font("helvetica", "B" if self.bold else "", self.size)
            else:
                cw = self._embedded(key).cw
            self._widths[key] = cw
        return cw

    def _embedded(self, key: str):  # type: ignore[no-untyped-def]
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
        text = _clean(text)
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

    def label_values(self, pairs: Iterable[tuple[str, str]], *, x: float, width: float, size: float = 7.0) -> float:
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


def _tax_label(t: Tax) -> str:
    name = cat.IMPUESTO.get(t.impuesto, t.impuesto)
    parts = [f"{name} ({t.impuesto})"]
    if t.tipo_factor:
        parts.append(t.tipo_factor)
    if t.tasa_o_cuota:
        parts.append(t.tasa_o_cuota)
    return " ".join(parts)


def _tax_text(t: Tax) -> str:
    text = _tax_label(t)
    if t.base:
        text += f" Base {t.base}"
    if t.importe:
        text += f" Importe {t.importe}"
    return text


MEXICO_CITY = dt.timezone(dt.timedelta(hours=-6))  # CDMX has had no DST since 2022


def _certified_at(fecha_timbrado: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(fecha_timbrado).replace(tzinfo=MEXICO_CITY)
    except ValueError:
        return dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


class _Renderer:
    def __init__(self, cfdi: StampedCfdi) -> None:
        self.c = cfdi
        comp = cfdi.comprobante
        serie_folio = "-".join(p for p in (comp.serie, comp.folio) if p)
        label = f"Folio fiscal {cfdi.tfd.uuid}" + (f" · {serie_folio}" if serie_folio else "")
        self.pdf = _Pdf(label)
        # The same CFDI renders to the same bytes (a resend to SIF carries the same PDF):
        # the creation date, and with it the file ID, come from the certification time.
        self.pdf.set_creation_date(_certified_at(cfdi.tfd.fecha_timbrado))
        self.fonts = self._choose_fonts()
        self.w = _Writer(self.pdf, self.fonts)
        self.pdf.writer = self.w
        self.serie_folio = serie_folio

    # fonts ------------------------------------------------------------------------
    def _texts(self) -> Iterator[str]:
        """Every string of the CFDI (all of it may be printed)."""
        stack: list[object] = [self.c]
        while stack:
            obj = stack.pop()
            if isinstance(obj, str):
                yield obj
            elif isinstance(obj, tuple):
                stack.extend(obj)
            elif hasattr(obj, "__dataclass_fields__"):
                stack.extend(getattr(obj, name) for name in obj.__dataclass_fields__)

    def _choose_fonts(self) -> _Fonts:
        extra = {ch for text in self._texts() for ch in text if ch not in CP1252} - {"\r", "\n", "\t"}
        if not extra:
            return _Fonts()
        plan = plan_fonts(["".join(sorted(extra))])
        faces = [("uni", plan.chars)] + [(f"unifb{i}", chars) for i, (_p, chars) in enumerate(plan.fallbacks)]
        files = {"uni": plan.regular, "uniB": plan.bold}
        files.update({f"unifb{i}": path for i, (path, _c) in enumerate(plan.fallbacks)})
        return _Fonts(plan, tuple(faces), files)

    # sections -----------------------------------------------------------------------
    def render(self) -> bytes:
        pdf = self.pdf
        pdf.add_page()
        self.header()
        self.parties()
        self.general()
        self.conceptos()
        self.totals()
        if self.c.pagos:
            self.pagos()
        self.certification()
        return bytes(pdf.output())

    def header(self) -> None:
        """Emisor on the left, title and serie/folio, and the QR at the top right of page 1."""
        w, c = self.w, self.c
        comp = c.comprobante
        self._qr(RIGHT - QR_SIDE, TOP)
        title_right = RIGHT - QR_SIDE - 3
        w.font(13, True)
        w.put_right(title_right, TOP, cat.TITULO.get(comp.tipo_de_comprobante, "CFDI"))
        w.font(9, True)
        if self.serie_folio:
            w.put_right(title_right, TOP + w.lh(13), f"Serie y folio: {self.serie_folio}")
        w.font(11, True)
        for line in w.wrap(c.emisor.nombre, 105):
            w.put(LEFT, w.y, line)
            w.y += w.lh()
        w.font(7.5)
        lines = [
            f"RFC emisor: {c.emisor.rfc}",
            f"Régimen fiscal: {cat.describe(cat.REGIMEN_FISCAL, c.emisor.regimen_fiscal)}",
            f"Lugar de expedición (CP): {comp.lugar_expedicion}",
        ]
        if c.emisor.fac_atr_adquirente:
            lines.append(f"FacAtrAdquirente: {c.emisor.fac_atr_adquirente}")
        for text in lines:
            for line in w.wrap(text, 105):
                w.put(LEFT, w.y, line)
                w.y += w.lh()
        w.y = max(w.y, TOP + QR_SIDE) + 1.5
        w.rule()

    def parties(self) -> None:
        w, c = self.w, self.c
        r, comp, tfd = c.receptor, c.comprobante, c.tfd
        top = w.y
        w.font(8, True)
        w.put(LEFT, top, "Receptor")
        w.put(LEFT + 97, top, "Datos del CFDI")
        w.y = top + w.lh(8) + 0.3
        left_bottom = w.label_values(
            [
                ("Nombre", r.nombre),
                ("RFC", r.rfc),
                ("Domicilio fiscal (CP)", r.domicilio_fiscal),
                ("Régimen fiscal", cat.describe(cat.REGIMEN_FISCAL, r.regimen_fiscal)),
                ("Uso CFDI", cat.describe(cat.USO_CFDI, r.uso_cfdi)),
                ("Residencia fiscal", r.residencia_fiscal or ""),
                ("NumRegIdTrib", r.num_reg_id_trib or ""),
            ],
            x=LEFT, width=93,
        )
        right_bottom = w.label_values(
            [
                ("Folio fiscal (UUID)", tfd.uuid),
                ("No. de serie del CSD del emisor", comp.no_certificado),
                ("No. de serie del certificado del SAT", tfd.no_certificado_sat),
                ("Fecha y hora de emisión", comp.fecha),
                ("Fecha y hora de certificación", tfd.fecha_timbrado),
                ("RFC del proveedor de certificación", tfd.rfc_prov_certif),
                ("Tipo de comprobante", cat.describe(cat.TIPO_COMPROBANTE, comp.tipo_de_comprobante)),
                ("Versión", comp.version),
            ],
            x=LEFT + 97, width=93,
        )
        w.y = max(left_bottom, right_bottom) + 1.0
        w.rule()

    def general(self) -> None:
        w, c = self.w, self.c
        comp = c.comprobante
        pairs = [
            ("Moneda", comp.moneda),
            ("Tipo de cambio", comp.tipo_cambio or ""),
            ("Forma de pago", cat.describe(cat.FORMA_PAGO, comp.forma_pago)),
            ("Método de pago", cat.describe(cat.METODO_PAGO, comp.metodo_pago)),
            ("Exportación", cat.describe(cat.EXPORTACION, comp.exportacion)),
            ("Condiciones de pago", _clean(comp.condiciones_de_pago)),
            ("Confirmación", comp.confirmacion or ""),
        ]
        half = [p for p in pairs if p[1]]
        mid = (len(half) + 1) // 2
        bottom = max(
            w.label_values(half[:mid], x=LEFT, width=93),
            w.label_values(half[mid:], x=LEFT + 97, width=93),
        )
        w.y = bottom + 0.5
        g = c.informacion_global
        if g:
            w.paragraph(
                f"Información global: periodicidad {cat.describe(cat.PERIODICIDAD, g.periodicidad)}, "
                f"meses {g.meses}, año {g.anio}"
            )
        for rel in c.relacionados:
            w.paragraph(
                f"CFDI relacionados, tipo de relación {cat.describe(cat.TIPO_RELACION, rel.tipo_relacion)}: "
                + ", ".join(rel.uuids)
            )

    # conceptos ------------------------------------------------------------------------
    def _table_header(self, columns: tuple[tuple[str, float, bool], ...]) -> None:
        w = self.w
        size, bold = w.size, w.bold
        w.font(6.3, True)
        lh = w.lh()
        rows = [w.wrap(t, width - 1) for t, width, _r in columns]
        height = max(len(r) for r in rows) * lh + 1.0
        self.pdf.set_fill_color(*SHADE)
        self.pdf.rect(LEFT, w.y, WIDTH, height, style="F")
        x = LEFT
        for (_t, width, right), lines in zip(columns, rows):
            for i, line in enumerate(lines):
                if right:
                    w.put_right(x + width - 0.5, w.y + 0.5 + i * lh, line)
                else:
                    w.put(x + 0.5, w.y + 0.5 + i * lh, line)
            x += width
        w.y += height + 0.5
        w.font(size, bold)

    def _row(self, columns: tuple[tuple[str, float, bool], ...], values: list[str], size: float = 6.8) -> None:
        w = self.w
        w.font(size)
        lh = w.lh()
        cells = [w.wrap(v, width - 1) if v else [""] for v, (_t, width, _r) in zip(values, columns)]
        height = max(len(c) for c in cells) * lh
        w.need(height + 0.5)
        x = LEFT
        y = w.y
        for (_t, width, right), lines in zip(columns, cells):
            for i, line in enumerate(lines):
                if not line:
                    continue
                if right:
                    w.put_right(x + width - 0.5, y + i * lh, line)
                else:
                    w.put(x + 0.5, y + i * lh, line)
            x += width
        w.y += height

    def _detail(self, text: str, indent: float = 16.0) -> None:
        w = self.w
        w.font(6.2)
        self.pdf.set_text_color(*GRAY)
        lh = w.lh()
        for line in w.wrap(text, WIDTH - indent):
            w.need(lh)
            w.put(LEFT + indent, w.y, line)
            w.y += lh
        self.pdf.set_text_color(0, 0, 0)

    def conceptos(self) -> None:
        w = self.w
        w.section(f"Conceptos ({len(self.c.conceptos)})")
        hook = lambda: self._table_header(COLUMNS)  # noqa: E731
        self._table_header(COLUMNS)
        w.on_new_page.append(hook)
        for con in self.c.conceptos:
            self._concepto(con)
        w.on_new_page.remove(hook)
        w.y += 0.5
        w.rule(1.0)

    def _concepto(self, con: Concepto) -> None:
        w = self.w
        w.need(w.lh(6.8) * 2)
        self._row(COLUMNS, [
            con.clave_prod_serv, con.no_identificacion or "", con.cantidad, con.clave_unidad, con.unidad or "",
            con.descripcion, con.valor_unitario, con.importe, con.descuento or "", con.objeto_imp,
        ])
        if con.traslados:
            self._detail("Traslados: " + "; ".join(_tax_text(t) for t in con.traslados))
        if con.retenciones:
            self._detail("Retenciones: " + "; ".join(_tax_text(t) for t in con.retenciones))
        if con.a_cuenta_terceros:
            t = con.a_cuenta_terceros
            self._detail(f"A cuenta de terceros: RFC {t.rfc}, {t.nombre}, régimen "
                         f"{t.regimen_fiscal}, domicilio fiscal (CP) {t.domicilio_fiscal}")
        if con.informacion_aduanera:
            self._detail("Información aduanera (pedimentos): " + ", ".join(con.informacion_aduanera))
        if con.cuenta_predial:
            self._detail("Cuenta predial: " + ", ".join(con.cuenta_predial))
        for p in con.partes:
            bits = [f"Parte: {p.clave_prod_serv}", f"cantidad {p.cantidad}"]
            if p.no_identificacion:
                bits.append(f"no. identificación {p.no_identificacion}")
            if p.unidad:
                bits.append(f"unidad {p.unidad}")
            bits.append(p.descripcion)
            if p.valor_unitario:
                bits.append(f"valor unitario {p.valor_unitario}")
            if p.importe:
                bits.append(f"importe {p.importe}")
            if p.informacion_aduanera:
                bits.append("pedimentos " + ", ".join(p.informacion_aduanera))
            self._detail(", ".join(bits))
        w.y += 0.6

    # totals -----------------------------------------------------------------------
    def totals(self) -> None:
        w, c = self.w, self.c
        comp, imp = c.comprobante, c.impuestos
        lines: list[tuple[str, str, bool]] = [("Subtotal", comp.subtotal, False)]
        if comp.descuento:
            lines.append(("Descuento", comp.descuento, False))
        # the summary as written; computed from the conceptos only if the CFDI has none
        traslados = imp.traslados if imp.present else c.taxes_by_rate()[0]
        for t in traslados:
            base = f" (base {t.base})" if t.base else ""
            value = t.importe if t.importe is not None else "Exento"
            lines.append((f"Traslado {_tax_label(t)}{base}", value, False))
        if imp.total_trasladados:
            lines.append(("Total impuestos trasladados", imp.total_trasladados, False))
        for t in imp.retenciones:
            lines.append((f"Retención {cat.IMPUESTO.get(t.impuesto, t.impuesto)} ({t.impuesto})", t.importe or "", False))
        if imp.total_retenidos:
            lines.append(("Total impuestos retenidos", imp.total_retenidos, False))
        lines.append((f"Total ({comp.moneda})", comp.total, True))
        w.font(7.5)
        lh = w.lh()
        w.need(lh * len(lines) + 1)
        for label, value, bold in lines:
            w.font(8.5 if bold else 7.5, bold)
            w.put_right(RIGHT - 32, w.y, label + ":")
            w.put_right(RIGHT, w.y, value)
            w.y += w.lh()
        w.y += 1.0

    # pagos ------------------------------------------------------------------------
    def pagos(self) -> None:
        w, pagos = self.w, self.c.pagos
        assert pagos is not None
        w.section(f"Complemento para recepción de pagos {pagos.version}")
        if pagos.totales:
            w.paragraph("Totales: " + ", ".join(f"{k} {v}" for k, v in pagos.totales), size=6.8)
        for n, pago in enumerate(pagos.pagos, 1):
            w.need(w.lh(7) * 4)
            head = [
                f"Pago {n}: fecha de pago {pago.fecha_pago}",
                f"forma de pago {cat.describe(cat.FORMA_PAGO, pago.forma_de_pago)}",
                f"moneda {pago.moneda}",
            ]
            if pago.tipo_cambio:
                head.append(f"tipo de cambio {pago.tipo_cambio}")
            head.append(f"monto {pago.monto}")
            if pago.num_operacion:
                head.append(f"núm. operación {pago.num_operacion}")
            w.paragraph(", ".join(head), size=7, bold=True)
            if pago.cuentas:
                w.paragraph(", ".join(f"{k} {v}" for k, v in pago.cuentas), size=6.5)
            hook = lambda: self._table_header(DOCTO_COLUMNS)  # noqa: E731
            self._table_header(DOCTO_COLUMNS)
            w.on_new_page.append(hook)
            for d in pago.documentos:
                self._row(DOCTO_COLUMNS, [
                    d.id_documento, "-".join(p for p in (d.serie, d.folio) if p), " / ".join(
                        p for p in (d.moneda, d.equivalencia) if p),
                    d.num_parcialidad, d.imp_saldo_ant, d.imp_pagado, d.imp_saldo_insoluto,
                    cat.describe(cat.OBJETO_IMP, d.objeto_imp) if d.objeto_imp != "02" else "02",
                ], size=6.5)
                if d.traslados:
                    self._detail("Traslados DR: " + "; ".join(_tax_text(t) for t in d.traslados), indent=4)
                if d.retenciones:
                    self._detail("Retenciones DR: " + "; ".join(_tax_text(t) for t in d.retenciones), indent=4)
                w.y += 0.4
            w.on_new_page.remove(hook)
            if pago.traslados:
                self._detail("Impuestos P, traslados: " + "; ".join(_tax_text(t) for t in pago.traslados), indent=0)
            if pago.retenciones:
                self._detail("Impuestos P, retenciones: " + "; ".join(_tax_text(t) for t in pago.retenciones),
                             indent=0)
            w.y += 1.0

    # certification ------------------------------------------------------------------
    def certification(self) -> None:
        w, c, pdf = self.w, self.c, self.pdf
        x_text = LEFT
        text_w = WIDTH
        mono = 6.0
        per_line = int(text_w / (0.6 * mono * PT))  # Courier advances 0.6 em per character
        blocks = [
            ("Sello digital del CFDI:", c.comprobante.sello),
            ("Sello digital del SAT:", c.tfd.sello_sat),
            ("Cadena original del complemento de certificación digital del SAT:", c.tfd.cadena_original),
        ]
        mono_ok = all(CP1252.issuperset(b[1]) for b in blocks)
        chunks: list[tuple[str, list[str]]] = []
        for title, value in blocks:
            if mono_ok:
                chunks.append((title, [value[i : i + per_line] for i in range(0, len(value), per_line)] or [""]))
            else:
                w.font(mono)
                chunks.append((title, w.wrap(value, text_w)))
        lh_mono = mono * PT * 1.2
        head_lh = w.lh(6.8)
        height = sum(head_lh + len(lines) * lh_mono + 0.8 for _t, lines in chunks) + head_lh * 2
        w.need(height + 2)
        w.y += 1.0
        for title, lines in chunks:
            w.font(6.8, True)
            w.put(x_text, w.y, title)
            w.y += head_lh
            if mono_ok:
                pdf.set_font("courier", "", mono)
                for line in lines:
                    pdf.text(x_text, w.y + mono * PT * 0.9, line)
                    w.y += lh_mono
            else:
                w.font(mono)
                for line in lines:
                    w.put(x_text, w.y, line)
                    w.y += lh_mono
            w.y += 0.8
        w.font(6.8, True)
        w.put(x_text, w.y, f"RFC del proveedor de certificación: {c.tfd.rfc_prov_certif}    "
                           f"Fecha y hora de certificación: {c.tfd.fecha_timbrado}")
        w.y += head_lh + 0.5
        w.font(7.5, True)
        w.put(LEFT, w.y + 0.5, LEGEND)
        w.y += w.lh() + 1

    def _qr(self, x: float, y: float) -> None:
        c = self.c
        url = verification_url(
            uuid=c.tfd.uuid, rfc_emisor=c.emisor.rfc, rfc_receptor=c.receptor.rfc,
            total=c.comprobante.total, sello=c.comprobante.sello,
        )
        self.pdf.image(_qr_image(url), x=x, y=y, w=QR_SIDE, h=QR_SIDE)


def _qr_image(url: str) -> Image.Image:
    """The QR as a 1-bit image with the 4-module quiet zone, QR_PIXELS pixels per module.

    Pixels are big on purpose: viewers smooth an image they must enlarge, and a
    one-pixel-per-module QR comes out blurred and unreadable at 150 dpi.
    """
    qr = make_qr(url) if QR_MASK is None else _make_qr_masked(url)
    rows = qr.matrix
    n = len(rows)
    size = n + 2 * QR_BORDER
    stride = (size + 7) // 8 * 8  # mode "1" rows are padded to whole bytes
    white = (1 << stride) - 1
    packed = bytearray(white.to_bytes(stride // 8, "big") * QR_BORDER)
    for row in rows:
        bits = white
        for i, dark in enumerate(row):
            if dark:
                bits ^= 1 << (stride - 1 - QR_BORDER - i)
        packed += bits.to_bytes(stride // 8, "big")
    packed += white.to_bytes(stride // 8, "big") * QR_BORDER
    small = Image.frombytes("1", (size, size), bytes(packed))
    assert QR_SIDE >= MIN_SIDE_MM
    return small.resize((size * QR_PIXELS, size * QR_PIXELS), Image.NEAREST)


def _make_qr_masked(url: str):  # type: ignore[no-untyped-def]
    import segno

    return segno.make(url, error="m", micro=False, mask=QR_MASK)


def render_pdf(stamped_xml: bytes) -> bytes:
    """The printed representation of a stamped CFDI 4.0, as PDF bytes."""
    return render_cfdi(extract(stamped_xml))


def render_cfdi(cfdi: StampedCfdi) -> bytes:
    """Like :func:`render_pdf`, from already extracted data."""
    return _Renderer(cfdi).render()
