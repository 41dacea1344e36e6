"""What the printed representation (representación impresa) of a stamped CFDI 4.0 shows.

It follows RMF regla 2.7.1.7 / Anexo 20 as quoted in REFERENCE.md §4: the QR (or UUID),
both certificate serial numbers, issue and certification dates, the TFD cadena
original, both sellos, the legend, and the CFDI's own data (emisor, receptor, every
concepto with its keys and taxes, taxes by rate, totals, payment data, related CFDIs,
InformacionGlobal, the Pagos 2.0 complement). How it is drawn: :mod:`worker.cfdi.pdf.layout`.

Written for people (:mod:`worker.cfdi.pdf.format`): amounts as ``$1,160.00``, rates as
``16 %``, dates as ``20/11/2026 11:00:00`` with the clock they are in (Fecha: local time
of the LugarExpedicion; FechaTimbrado: central Mexico), the total in words
(:mod:`worker.cfdi.words`), and per emisor an optional logo and address
(:mod:`worker.cfdi.pdf.branding`). The machine forms stay where they are the data: the
TFD cadena original and the sellos.

The base64 blocks are set in Courier so they wrap by character count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from worker.cfdi import catalogs as cat
from worker.cfdi.extract import Concepto, StampedCfdi, Tax, extract
from worker.cfdi.pdf import format as fmt
from worker.cfdi.pdf.branding import Branding, branding_for
from worker.cfdi.pdf.canvas import Canvas
from worker.cfdi.pdf.layout import (
    CP1252,
    LEFT,
    PT,
    QR_SIDE,
    RIGHT,
    TOP,
    WIDTH,
    Columns,
    Writer,
    clean,
    draw_qr,
)
from worker.cfdi.qr import verification_url
from worker.cfdi.words import amount_in_words

LEGEND = "Este documento es una representación impresa de un CFDI"

# The conceptos table and the Pagos documents table (layout.Columns)
COLUMNS: Columns = (
    ("Clave prod/serv", 15.0, False),
    ("No. identificación", 17.0, False),
    ("Cantidad", 14.0, True),
    ("Clave unidad", 11.0, False),
    ("Unidad", 13.0, False),
    ("Descripción", 53.0, False),
    ("Valor unitario", 21.0, True),
    ("Importe", 21.0, True),
    ("Descuento", 16.0, True),
    ("Obj. imp.", 9.0, False),
)
DOCTO_COLUMNS: Columns = (
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


def _tax_label(t: Tax) -> str:
    """``IVA (002) Tasa 16 %``, ``IEPS (003) Cuota $1.50``, ``IVA (002) Exento``."""
    name = cat.IMPUESTO.get(t.impuesto, t.impuesto)
    parts = [f"{name} ({t.impuesto})"]
    if t.tipo_factor:
        parts.append(t.tipo_factor)
    if t.tasa_o_cuota:
        parts.append(fmt.rate(t.tasa_o_cuota, t.tipo_factor))
    return " ".join(parts)


def _tax_text(t: Tax, currency: str) -> str:
    text = _tax_label(t)
    if t.base:
        text += f", base {fmt.money(t.base, currency)}"
    if t.importe:
        text += f", importe {fmt.money(t.importe, currency)}"
    return text


MEXICO_CITY = dt.timezone(dt.timedelta(hours=-6))  # CDMX has had no DST since 2022


def _certified_at(fecha_timbrado: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(fecha_timbrado).replace(tzinfo=MEXICO_CITY)
    except ValueError:
        return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


LOGO_MAX = (40.0, 18.0)  # mm, width x height
TITLE_MAX = 62.0  # mm: the title and serie/folio block, left of the QR


class _Renderer:
    def __init__(self, cfdi: StampedCfdi, branding: Branding | None = None) -> None:
        self.c = cfdi
        self.branding = branding
        comp = cfdi.comprobante
        self.cur = comp.moneda
        serie_folio = "-".join(p for p in (comp.serie, comp.folio) if p)
        label = f"Folio fiscal {cfdi.tfd.uuid}" + (f" · {serie_folio}" if serie_folio else "")
        self.title = label
        self.canvas = Canvas()
        self.w = Writer(self.canvas, f"{LEGEND}. {label}")
        self.serie_folio = serie_folio

    # sections -----------------------------------------------------------------------
    def render(self) -> bytes:
        """The PDF. The same CFDI renders to the same bytes (a resend to SIF carries the same
        PDF): the creation date, and with it the file ID, come from the certification time."""
        self.canvas.add_page()
        self.header()
        self.parties()
        self.general()
        self.conceptos()
        self.totals()
        if self.c.pagos:
            self.pagos()
        self.certification()
        self.w.finish()
        return self.canvas.output(title=self.title, creator="rupture-billing-worker",
                                  created=_certified_at(self.c.tfd.fecha_timbrado))

    def header(self) -> None:
        """The emisor's logo (if configured) and data on the left, title and serie/folio,
        and the QR at the top right of page 1. The emisor's block never reaches the title."""
        w, c = self.w, self.c
        comp = c.comprobante
        self._qr(RIGHT - QR_SIDE, TOP)
        title_right = RIGHT - QR_SIDE - 3
        title = cat.TITULO.get(comp.tipo_de_comprobante, "CFDI")
        w.font(13, True)
        title_w = w.width(title)
        w.put_right(title_right, TOP, title)
        w.font(9, True)
        if self.serie_folio:  # at most TITLE_MAX wide, wrapped under the title
            y = TOP + w.lh(13)
            for line in w.wrap(f"Serie y folio: {self.serie_folio}", TITLE_MAX):
                title_w = max(title_w, w.width(line))
                w.put_right(title_right, y, line)
                y += w.lh()
        x = LEFT
        logo_bottom = TOP
        logo = self.branding.logo if self.branding else None
        if logo is not None:
            scale = min(LOGO_MAX[0] / logo.width_px, LOGO_MAX[1] / logo.height_px)
            lw, lh = logo.width_px * scale, logo.height_px * scale
            self.canvas.image(logo.image, LEFT, TOP, lw, lh)
            x = LEFT + lw + 3
            logo_bottom = TOP + lh
        # the emisor block stops 4 mm before the title block
        width = title_right - max(title_w, 30.0) - 4 - x
        w.font(11, True)
        for line in w.wrap(c.emisor.nombre, width):
            w.put(x, w.y, line)
            w.y += w.lh()
        w.font(7.5)
        lines = [
            f"RFC emisor: {c.emisor.rfc}",
            f"Régimen fiscal: {cat.describe(cat.REGIMEN_FISCAL, c.emisor.regimen_fiscal)}",
        ]
        if self.branding:
            lines += list(self.branding.address)
        lines.append(f"Lugar de expedición (CP): {comp.lugar_expedicion}")
        if c.emisor.fac_atr_adquirente:
            lines.append(f"FacAtrAdquirente: {c.emisor.fac_atr_adquirente}")
        for text in lines:
            for line in w.wrap(text, width):
                w.put(x, w.y, line)
                w.y += w.lh()
        w.y = max(w.y, logo_bottom, TOP + QR_SIDE) + 1.5
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
                ("Fecha y hora de emisión", self._fecha()),
                ("Fecha y hora de certificación", self._fecha_timbrado()),
                ("RFC del proveedor de certificación", tfd.rfc_prov_certif),
                ("Tipo de comprobante", cat.describe(cat.TIPO_COMPROBANTE, comp.tipo_de_comprobante)),
                ("Versión", comp.version),
            ],
            x=LEFT + 97, width=93,
        )
        w.y = max(left_bottom, right_bottom) + 1.0
        w.rule()

    def _fecha(self) -> str:
        """Fecha is the local time where the CFDI was issued (its LugarExpedicion)."""
        comp = self.c.comprobante
        return f"{fmt.date_time(comp.fecha)} (hora local, CP {comp.lugar_expedicion})"

    def _fecha_timbrado(self) -> str:
        """FechaTimbrado is in central Mexico's time (Anexo 20: Zona Centro)."""
        return f"{fmt.date_time(self.c.tfd.fecha_timbrado)} (hora del centro de México)"

    def general(self) -> None:
        w, c = self.w, self.c
        comp = c.comprobante
        pairs = [
            ("Moneda", comp.moneda),
            ("Tipo de cambio", comp.tipo_cambio or ""),
            ("Forma de pago", cat.describe(cat.FORMA_PAGO, comp.forma_pago)),
            ("Método de pago", cat.describe(cat.METODO_PAGO, comp.metodo_pago)),
            ("Exportación", cat.describe(cat.EXPORTACION, comp.exportacion)),
            ("Condiciones de pago", clean(comp.condiciones_de_pago)),
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
    def conceptos(self) -> None:
        w = self.w
        w.section(f"Conceptos ({len(self.c.conceptos)})")
        hook = lambda: w.table_header(COLUMNS)  # noqa: E731
        w.table_header(COLUMNS)
        w.on_new_page.append(hook)
        for con in self.c.conceptos:
            self._concepto(con)
        w.on_new_page.remove(hook)
        w.y += 0.5
        w.rule(1.0)

    def _concepto(self, con: Concepto) -> None:
        w = self.w
        w.need(w.lh(6.8) * 2)
        cur = self.cur
        w.row(COLUMNS, [
            con.clave_prod_serv, con.no_identificacion or "", fmt.quantity(con.cantidad),
            con.clave_unidad, con.unidad or "", con.descripcion, fmt.money(con.valor_unitario, cur),
            fmt.money(con.importe, cur), fmt.money(con.descuento, cur), con.objeto_imp,
        ])
        if con.traslados:
            w.detail("Traslados: " + "; ".join(_tax_text(t, cur) for t in con.traslados))
        if con.retenciones:
            w.detail("Retenciones: " + "; ".join(_tax_text(t, cur) for t in con.retenciones))
        if con.a_cuenta_terceros:
            t = con.a_cuenta_terceros
            w.detail(f"A cuenta de terceros: RFC {t.rfc}, {t.nombre}, régimen "
                         f"{t.regimen_fiscal}, domicilio fiscal (CP) {t.domicilio_fiscal}")
        if con.informacion_aduanera:
            w.detail("Información aduanera (pedimentos): " + ", ".join(con.informacion_aduanera))
        if con.cuenta_predial:
            w.detail("Cuenta predial: " + ", ".join(con.cuenta_predial))
        for p in con.partes:
            bits = [f"Parte: {p.clave_prod_serv}", f"cantidad {fmt.quantity(p.cantidad)}"]
            if p.no_identificacion:
                bits.append(f"no. identificación {p.no_identificacion}")
            if p.unidad:
                bits.append(f"unidad {p.unidad}")
            bits.append(p.descripcion)
            if p.valor_unitario:
                bits.append(f"valor unitario {fmt.money(p.valor_unitario, cur)}")
            if p.importe:
                bits.append(f"importe {fmt.money(p.importe, cur)}")
            if p.informacion_aduanera:
                bits.append("pedimentos " + ", ".join(p.informacion_aduanera))
            w.detail(", ".join(bits))
        w.y += 0.6

    # totals -----------------------------------------------------------------------
    def totals(self) -> None:
        """Amounts on the right (label right-aligned against its value), the total in words
        on the left, both on one page; the words never reach the labels."""
        w, c, cur = self.w, self.c, self.cur
        comp, imp = c.comprobante, c.impuestos
        lines: list[tuple[str, str, bool]] = [("Subtotal", fmt.money(comp.subtotal, cur), False)]
        if comp.descuento:
            lines.append(("Descuento", fmt.money(comp.descuento, cur), False))
        # the summary as written; computed from the conceptos only if the CFDI has none
        traslados = imp.traslados if imp.present else c.taxes_by_rate()[0]
        for t in traslados:
            base = f" (base {fmt.money(t.base, cur)})" if t.base else ""
            value = fmt.money(t.importe, cur) if t.importe is not None else "Exento"
            lines.append((f"Traslado {_tax_label(t)}{base}", value, False))
        if imp.total_trasladados:
            lines.append(("Total impuestos trasladados", fmt.money(imp.total_trasladados, cur), False))
        for t in imp.retenciones:
            name = cat.IMPUESTO.get(t.impuesto, t.impuesto)
            lines.append((f"Retención {name} ({t.impuesto})", fmt.money(t.importe, cur), False))
        if imp.total_retenidos:
            lines.append(("Total impuestos retenidos", fmt.money(imp.total_retenidos, cur), False))
        lines.append((f"Total ({cur})", fmt.money(comp.total, cur), True))
        value_col = 34.0  # mm for the values, more if one needs it
        for _label, value, bold in lines:
            w.font(8.5 if bold else 7.5, bold)
            value_col = max(value_col, w.width(value) + 3)
        label_left = RIGHT - value_col
        for label, _value, bold in lines:
            w.font(8.5 if bold else 7.5, bold)
            label_left = min(label_left, RIGHT - value_col - w.width(label + ":"))
        words = self._total_in_words()
        words_w = max(60.0, label_left - LEFT - 6)
        w.font(7.5)
        words_lines = w.wrap(words, words_w) if words else []
        height = max(w.lh(8.5) * len(lines), w.lh(7.5) * (len(words_lines) + 1))
        w.need(height + 1)
        top = w.y
        if words_lines:
            w.font(7.5, True)
            w.put(LEFT, top, "Importe con letra:")
            w.font(7.5)
            y = top + w.lh()
            for line in words_lines:
                w.put(LEFT, y, line)
                y += w.lh()
        for label, value, bold in lines:
            w.font(8.5 if bold else 7.5, bold)
            w.put_right(RIGHT - value_col, w.y, label + ":")
            w.put_right(RIGHT, w.y, value)
            w.y += w.lh()
        w.y = max(w.y, top + height) + 1.0

    def _total_in_words(self) -> str:
        """The Total in words in the CFDI's currency; none for XXX (a Pagos CFDI's zero)."""
        comp = self.c.comprobante
        if comp.moneda == "XXX":
            return ""
        try:
            return amount_in_words(comp.total, comp.moneda)
        except ValueError:
            return ""

    @staticmethod
    def _taxes(taxes: tuple[Tax, ...], currency: str) -> str:
        return "; ".join(_tax_text(t, currency) for t in taxes)

    # pagos ------------------------------------------------------------------------
    def pagos(self) -> None:
        w, pagos = self.w, self.c.pagos
        assert pagos is not None
        w.section(f"Complemento para recepción de pagos {pagos.version}")
        if pagos.totales:
            w.paragraph("Totales: " + ", ".join(f"{k} {fmt.money(v)}" for k, v in pagos.totales), size=6.8)
        for n, pago in enumerate(pagos.pagos, 1):
            w.need(w.lh(7) * 4)
            head = [
                f"Pago {n}: fecha de pago {fmt.date_time(pago.fecha_pago)}",
                f"forma de pago {cat.describe(cat.FORMA_PAGO, pago.forma_de_pago)}",
                f"moneda {pago.moneda}",
            ]
            if pago.tipo_cambio:
                head.append(f"tipo de cambio {pago.tipo_cambio}")
            head.append(f"monto {fmt.money(pago.monto, pago.moneda)}")
            if pago.num_operacion:
                head.append(f"núm. operación {pago.num_operacion}")
            w.paragraph(", ".join(head), size=7, bold=True)
            if pago.cuentas:
                w.paragraph(", ".join(f"{k} {v}" for k, v in pago.cuentas), size=6.5)
            hook = lambda: w.table_header(DOCTO_COLUMNS)  # noqa: E731
            w.table_header(DOCTO_COLUMNS)
            w.on_new_page.append(hook)
            for d in pago.documentos:
                w.row(DOCTO_COLUMNS, [
                    d.id_documento, "-".join(p for p in (d.serie, d.folio) if p), " / ".join(
                        p for p in (d.moneda, d.equivalencia) if p),
                    d.num_parcialidad, fmt.money(d.imp_saldo_ant, d.moneda),
                    fmt.money(d.imp_pagado, d.moneda), fmt.money(d.imp_saldo_insoluto, d.moneda),
                    cat.describe(cat.OBJETO_IMP, d.objeto_imp) if d.objeto_imp != "02" else "02",
                ], size=6.5)
                if d.traslados:
                    w.detail("Traslados DR: " + self._taxes(d.traslados, d.moneda), indent=4)
                if d.retenciones:
                    w.detail("Retenciones DR: " + self._taxes(d.retenciones, d.moneda), indent=4)
                w.y += 0.4
            w.on_new_page.remove(hook)
            if pago.traslados:
                w.detail("Impuestos P, traslados: " + self._taxes(pago.traslados, pago.moneda), indent=0)
            if pago.retenciones:
                w.detail("Impuestos P, retenciones: " + self._taxes(pago.retenciones, pago.moneda), indent=0)
            w.y += 1.0

    # certification ------------------------------------------------------------------
    def certification(self) -> None:
        w, c = self.w, self.c
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
                lines = [value[i : i + per_line] for i in range(0, len(value), per_line)]
                chunks.append((title, lines or [""]))
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
                for line in lines:
                    w.put_mono(x_text, w.y, line, mono)
                    w.y += lh_mono
            else:
                w.font(mono)
                for line in lines:
                    w.put(x_text, w.y, line)
                    w.y += lh_mono
            w.y += 0.8
        w.font(6.8, True)
        w.put(x_text, w.y, f"RFC del proveedor de certificación: {c.tfd.rfc_prov_certif}    "
                           f"Fecha y hora de certificación: {self._fecha_timbrado()}")
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
        draw_qr(self.canvas, url, x, y, QR_SIDE)


Emisores = Mapping[str, Mapping[str, str]]


def render_pdf(stamped_xml: bytes, emisores: Emisores | None = None) -> bytes:
    """The printed representation of a stamped CFDI 4.0, as PDF bytes.

    ``emisores`` is ``settings.pdf_emisores`` (logo and address per emisor RFC); without
    it, or without an entry for this CFDI's emisor, the PDF has neither. The same XML and
    the same ``emisores`` (and logo file) give the same bytes.
    """
    return render_cfdi(extract(stamped_xml), emisores)


def render_cfdi(cfdi: StampedCfdi, emisores: Emisores | None = None) -> bytes:
    """Like :func:`render_pdf`, from already extracted data."""
    return _Renderer(cfdi, branding_for(cfdi.emisor.rfc, emisores)).render()
