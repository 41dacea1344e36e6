"""The PDF shows every mandatory field (checked in its extracted text) and a QR that
decodes, with zbarimg from a pdftoppm render, to the exact SAT verification URL."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.cfdi.helpers import RICH
from worker.cfdi.csd import Csd, default_emisor_csd
from worker.cfdi.extract import StampedCfdi, extract
from worker.cfdi.factory import build_invoice
from worker.cfdi.pdf import LEGEND, render_pdf
from worker.cfdi.pdf import format as fmt
from worker.cfdi.pdf.canvas import K
from worker.cfdi.pdf.layout import PAGE_H, QR_BORDER, QR_SIDE, RIGHT, TOP
from worker.cfdi.qr import MIN_SIDE_MM, format_total, verification_url
from worker.cfdi.sealing import seal
from worker.cfdi.tfd import add_tfd, find_tfd
from worker.cfdi.words import amount_in_words
from worker.cfdi.xml import parse

FECHA = dt.datetime(2026, 11, 20, 11, 0, 0)
UNICODE = "Ñandú – 東京 – Ωmega"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (apt-get install -y poppler-utils zbar-tools)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must have it")
    pytest.skip(message)


@pytest.fixture(scope="module")
def qr_tools() -> tuple[str, str]:
    return _tool("pdftoppm"), _tool("zbarimg")


def _stamp(data: bytes, pac: Csd, n: int = 0) -> bytes:
    return add_tfd(data, uuid=f"5D2A4C3E-1B7F-4E8A-9C6D-{n:012d}", fecha_timbrado="2026-11-20T11:00:07",
                   pac=pac)


def _generated(pac: Csd) -> dict[str, bytes]:
    cases = {
        "1": dict(conceptos=1),
        "10": dict(conceptos=10),
        "300": dict(conceptos=300),
        "unicode": dict(conceptos=3, descripcion=UNICODE, receptor_nombre=f"Cliente {UNICODE}"),
        "rich": dict(conceptos=RICH, moneda="USD", tipo_cambio="17.2345", condiciones_de_pago="30 días",
                     relacionados=["ED1752FE-E865-4FF2-BFE1-0F552E770DC9"],
                     informacion_global=("04", "11", "2026"), receptor_cp="01000"),
        "pagos": dict(pagos=True, conceptos=3),
    }
    return {name: _stamp(build_invoice(fecha=FECHA, seed=i, **kw), pac, i)  # type: ignore[arg-type]
            for i, (name, kw) in enumerate(cases.items())}


def _samples(samples: list[Path], pac: Csd) -> dict[str, bytes]:
    """Every sample, stamped: as is when it has a TFD, else sealed (if needed) and stamped."""
    out = {}
    for i, path in enumerate(samples):
        data = path.read_bytes()
        root = parse(data)
        if find_tfd(root) is None:
            if not root.get("Sello"):
                data = seal(data, default_emisor_csd(), check_rfc=False)
            data = _stamp(data, pac, 1000 + i)
        out[path.name] = data
    return out


def _text(pdf: bytes) -> tuple[str, int]:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages), len(reader.pages)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _words_in_order(needle: str, haystack: str) -> bool:
    """Each word of ``needle`` appears in ``haystack`` in order (table cells wrap and interleave)."""
    pos = 0
    for word in needle.split():
        pos = haystack.find(word, pos)
        if pos < 0:
            return False
        pos += len(word)
    return True


def _check_fields(cfdi: StampedCfdi, pdf: bytes) -> None:
    text, pages = _text(pdf)
    flat = _flat(text)
    bare = "".join(text.split())
    c, tfd = cfdi.comprobante, cfdi.tfd
    cur = c.moneda

    def money(value: str | None) -> str:
        return fmt.money(value, cur)

    for value in (
        tfd.uuid, tfd.no_certificado_sat, tfd.rfc_prov_certif, c.no_certificado,
        f"Fecha y hora de emisión: {fmt.date_time(c.fecha)} (hora local, CP {c.lugar_expedicion})",
        f"Fecha y hora de certificación: {fmt.date_time(tfd.fecha_timbrado)} (hora del centro de México)",
        f"Lugar de expedición (CP): {c.lugar_expedicion}", f"Subtotal: {money(c.subtotal)}",
        f"Total ({cur}): {money(c.total)}", c.moneda, c.exportacion, c.tipo_de_comprobante,
        cfdi.emisor.rfc, cfdi.emisor.regimen_fiscal, cfdi.receptor.rfc, cfdi.receptor.domicilio_fiscal,
        cfdi.receptor.regimen_fiscal, cfdi.receptor.uso_cfdi, LEGEND,
        "No. de serie del CSD del emisor", "No. de serie del certificado del SAT", "Folio fiscal (UUID)",
    ):
        assert value in flat, value
    # the machine form of the dates only in the TFD cadena original; ISO "T" nowhere else
    assert f"|{tfd.fecha_timbrado}|" in bare
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", re.sub(r"\|\|1\.1\|[^ ]*?\|\|", "", bare))
    if cur != "XXX":
        assert f"Importe con letra: {amount_in_words(c.total, cur)}" in flat
    for optional in (c.serie, c.folio, c.tipo_cambio, c.forma_pago, c.metodo_pago):
        if optional:
            assert optional in flat, optional
    if c.descuento:
        assert f"Descuento: {money(c.descuento)}" in flat
    assert _flat(cfdi.emisor.nombre) in flat and _flat(cfdi.receptor.nombre) in flat
    # both sellos and the TFD cadena, whole (they wrap over lines)
    assert "".join(c.sello.split()) in bare
    assert tfd.sello_sat in bare
    assert "".join(tfd.cadena_original.split()) in bare
    for con in cfdi.conceptos:
        row = [con.clave_prod_serv, fmt.quantity(con.cantidad), con.clave_unidad, _flat(con.descripcion),
               money(con.valor_unitario), money(con.importe)]
        assert _words_in_order(" ".join(row), flat), con.descripcion
        for t in con.traslados:
            rate = fmt.rate(t.tasa_o_cuota, t.tipo_factor) if t.tasa_o_cuota else ""
            assert _words_in_order(f"Traslados: {t.tipo_factor} {rate} base {money(t.base)}", _flat(flat))
    for t in cfdi.impuestos.traslados:
        if t.importe:
            rate = _flat(fmt.rate(t.tasa_o_cuota, t.tipo_factor))
            assert f"{rate} (base {money(t.base)}): {money(t.importe)}" in flat
    if cfdi.impuestos.total_trasladados:
        assert f"Total impuestos trasladados: {money(cfdi.impuestos.total_trasladados)}" in flat
    for rel in cfdi.relacionados:
        assert rel.tipo_relacion in flat and all(u in flat for u in rel.uuids)
    if cfdi.pagos:
        assert "Complemento para recepción de pagos 2.0" in flat
        for pago in cfdi.pagos.pagos:
            assert f"monto {fmt.money(pago.monto, pago.moneda)}" in flat
            for d in pago.documentos:
                assert d.id_documento in bare
                assert fmt.money(d.imp_pagado, d.moneda) in flat
                assert fmt.money(d.imp_saldo_insoluto, d.moneda) in flat
    numbers = re.findall(r"Página (\d+) de (\d+)", flat)
    assert [int(n) for n, _ in numbers] == list(range(1, pages + 1))
    assert {int(m) for _, m in numbers} == {pages}


def _decode_qr(pdf: bytes, tools: tuple[str, str], tmp_path: Path) -> str:
    pdftoppm, zbarimg = tools
    src = tmp_path / "doc.pdf"
    src.write_bytes(pdf)
    # page 1 at 150 dpi; only its top-right part (where the QR is) is rasterized, which
    # keeps poppler from spending ~0.6 s on the whole page's text
    subprocess.run([pdftoppm, "-r", "150", "-f", "1", "-l", "1", "-gray", "-png",
                    "-x", "620", "-y", "0", "-W", "621", "-H", "420", str(src), str(tmp_path / "p")],
                   check=True, timeout=60)
    page = next(tmp_path.glob("p*.png"))
    out = subprocess.run([zbarimg, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(page)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"zbarimg found no QR on page 1: {out.stderr}"
    return out.stdout.strip()


def _expected_url(cfdi: StampedCfdi) -> str:
    return verification_url(uuid=cfdi.tfd.uuid, rfc_emisor=cfdi.emisor.rfc, rfc_receptor=cfdi.receptor.rfc,
                            total=cfdi.comprobante.total, sello=cfdi.comprobante.sello)


def test_generated_invoices(pac: Csd, qr_tools: tuple[str, str], tmp_path: Path) -> None:
    for name, stamped in _generated(pac).items():
        cfdi = extract(stamped)
        pdf = render_pdf(stamped)
        assert pdf.startswith(b"%PDF-")
        _check_fields(cfdi, pdf)
        folder = tmp_path / name
        folder.mkdir()
        url = _decode_qr(pdf, qr_tools, folder)
        assert url == _expected_url(cfdi), name
        assert url.endswith(f"&tt={format_total(cfdi.comprobante.total)}&fe={cfdi.comprobante.sello[-8:]}")


def test_every_sample(samples: list[Path], pac: Csd, qr_tools: tuple[str, str], tmp_path: Path) -> None:
    for name, stamped in _samples(samples, pac).items():
        cfdi = extract(stamped)
        pdf = render_pdf(stamped)
        _check_fields(cfdi, pdf)
        folder = tmp_path / name
        folder.mkdir()
        assert _decode_qr(pdf, qr_tools, folder) == _expected_url(cfdi), name


def test_finkok_demo_sample_exact_qr(shared_dir: Path, qr_tools: tuple[str, str], tmp_path: Path) -> None:
    stamped = (shared_dir / "cfdi/samples/cfdiutils_cfdi40-valid.xml").read_bytes()
    pdf = render_pdf(stamped)
    assert _decode_qr(pdf, qr_tools, tmp_path) == (
        "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx"
        "?id=6F35D3B5-3651-5370-BC2C-14CDBE384CD7&re=EKU9003173C9&rr=MCI7306249Y1&tt=3327.01&fe=KklI5Q=="
    )
    # its concepto carries U+23FB, outside cp1252: printed with an embedded font
    assert "Portable tetris gamepad pro++ ⏻" in _flat(_text(pdf)[0])


def test_qr_printed_at_least_2_75_cm(pac: Csd, qr_tools: tuple[str, str], tmp_path: Path) -> None:
    """The QR's path in page 1's content: its square (the 4-module quiet zone included, as
    the layout sizes it) is QR_SIDE mm inside the page's top right, the code itself (dark
    modules edge to edge, no quiet zone) at least SAT's 27.5 mm, and it reads back
    (zbarimg) as the verification URL."""
    stamped = _stamp(build_invoice(fecha=FECHA, seed=1, conceptos=10), pac, 1)
    pdf = render_pdf(stamped)
    content = PdfReader(io.BytesIO(pdf)).pages[0].get_contents()
    assert content is not None
    ops = content.get_data().decode("latin-1")
    found = re.findall(r"q 0 g (\S+) 0 0 -(\S+) (\S+) (\S+) cm ((?:\d+ \d+ \d+ 1 re )+)f Q", ops)
    assert len(found) == 1
    m, m2, x0, top, path = found[0]
    assert m == m2
    runs = [tuple(map(int, r)) for r in re.findall(r"(\d+) (\d+) (\d+) 1 re", path)]
    n = max(c + w for c, _r, w in runs)  # modules a side: the finder patterns reach each edge
    assert n == max(r for _c, r, _w in runs) + 1 and (n - 21) % 4 == 0
    module = float(m) / K  # mm
    side = module * (n + 2 * QR_BORDER)
    assert abs(side - QR_SIDE) < 0.01 and module * n >= MIN_SIDE_MM
    x = float(x0) / K - QR_BORDER * module
    y = PAGE_H - float(top) / K - QR_BORDER * module
    assert abs(x + side - RIGHT) < 0.01 and abs(y - TOP) < 0.01
    assert _decode_qr(pdf, qr_tools, tmp_path) == _expected_url(extract(stamped))


def test_long_invoice_flows_over_pages(pac: Csd) -> None:
    stamped = _stamp(build_invoice(fecha=FECHA, seed=9, conceptos=300), pac, 9)
    pdf = render_pdf(stamped)
    text, pages = _text(pdf)
    assert pages >= 5
    assert f"Página {pages} de {pages}" in text
    assert text.count("prod/serv") == pages  # the table header repeats on every page
    cfdi = extract(stamped)
    assert all(con.no_identificacion and con.no_identificacion in text for con in cfdi.conceptos)


def test_fonts_core_when_cp1252_embedded_otherwise(pac: Csd) -> None:
    def font_names(pdf: bytes) -> set[str]:
        names = set()
        for page in PdfReader(io.BytesIO(pdf)).pages:
            for font in page["/Resources"]["/Font"].values():
                names.add(str(font.get_object()["/BaseFont"]))
        return names

    plain = render_pdf(_stamp(build_invoice(fecha=FECHA, seed=10, descripcion="Ñandú acentuado – €"),
                              pac, 10))
    assert font_names(plain) <= {"/Helvetica", "/Helvetica-Bold", "/Courier"}
    assert "Ñandú acentuado – € 1" in _flat(_text(plain)[0])
    uni = render_pdf(_stamp(build_invoice(fecha=FECHA, seed=11, descripcion=UNICODE), pac, 11))
    embedded = {n for n in font_names(uni) if "Kurinto" in n}
    assert any("KurintoSans" in n for n in embedded) and any("SC" in n for n in embedded)
    assert f"{UNICODE} 1" in _flat(_text(uni)[0])


def test_unstamped_refused() -> None:
    with pytest.raises(ValueError, match="not stamped"):
        render_pdf(build_invoice(fecha=FECHA, seed=12))


def test_non_cp1252_anywhere_uses_embedded_fonts(pac: Csd) -> None:
    """Serie/folio also go to the footer of every page: they must not break the core font."""
    stamped = _stamp(build_invoice(fecha=FECHA, seed=13, serie="Ω東", folio="№7", conceptos=2), pac, 13)
    text, _pages = _text(render_pdf(stamped))
    assert "Serie y folio: Ω東-№7" in text
    assert "Folio fiscal 5D2A4C3E-1B7F-4E8A-9C6D-000000000013 · Ω東-№7 Página 1 de 1" in _flat(text)


def test_same_cfdi_renders_to_the_same_bytes() -> None:
    """A resend to SIF carries the very same PDF (no render-time date or random file ID)."""
    import time

    from worker.cfdi.csd import sandbox_pac_csd
    from worker.cfdi.factory import build_invoice
    from worker.cfdi.pdf import render_pdf
    from worker.cfdi.tfd import add_tfd

    stamped = add_tfd(build_invoice(folio="det"), uuid="1044D724-23CB-43A2-9AA7-C08B73FF4381",
                      fecha_timbrado="2026-11-21T10:00:00", pac=sandbox_pac_csd())
    first = render_pdf(stamped)
    time.sleep(1.1)
    assert render_pdf(stamped) == first
    assert b"D:20261121100000-06'00'" in first


_RENDER_IN_CHILD = (
    "import sys, hashlib; from pathlib import Path; from worker.cfdi.pdf import render_pdf; "
    "print(hashlib.sha256(render_pdf(Path(sys.argv[1]).read_bytes())).hexdigest())"
)


def test_unicode_cfdi_renders_to_the_same_bytes_in_two_processes(pac: Csd, tmp_path: Path) -> None:
    """Embedded tiny fonts carry no build time: two processes, a second apart, agree."""
    import sys
    import time

    src = tmp_path / "unicode.xml"
    src.write_bytes(_stamp(build_invoice(fecha=FECHA, seed=14, descripcion=UNICODE, conceptos=2), pac, 14))
    digests = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _RENDER_IN_CHILD, str(src)], capture_output=True,
                             text=True, timeout=120, check=True)
        digests.append(out.stdout.strip())
        time.sleep(1.1)  # a timestamp in seconds would differ
    assert len(digests[0]) == 64 and digests[0] == digests[1]
