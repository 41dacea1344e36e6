"""The SAT verification URL: exact tt and fe formats (Anexo 20)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.cfdi.qr import format_total, make_qr, qr_modules, verification_url


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        ("1000.00", "1000.0"), ("0", "0.0"), ("0.00", "0.0"), ("123.45", "123.45"), ("3327.01", "3327.01"),
        ("0.1234565", "0.123457"), ("1500", "1500.0"), ("10.10", "10.1"),
        (Decimal("42025.160000"), "42025.16"),
        ("999999999999999999.999999", "999999999999999999.999999"),
    ],
)
def test_format_total(total: str, expected: str) -> None:
    assert format_total(total) == expected


def test_url_of_finkok_demo_sample() -> None:
    url = verification_url(
        uuid="6F35D3B5-3651-5370-BC2C-14CDBE384CD7", rfc_emisor="EKU9003173C9", rfc_receptor="MCI7306249Y1",
        total="3327.01", sello="CcujSbJvKzVmf7jQ...Zns584qiKklI5Q==",
    )
    assert url == (
        "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx"
        "?id=6F35D3B5-3651-5370-BC2C-14CDBE384CD7&re=EKU9003173C9&rr=MCI7306249Y1&tt=3327.01&fe=KklI5Q=="
    )


def test_ampersand_in_rfc_is_xml_escaped() -> None:
    url = verification_url(
        uuid="U", rfc_emisor="Ñ&A010101AAA", rfc_receptor="XAXX010101000", total="1", sello="12345678"
    )
    assert "&re=Ñ&amp;A010101AAA&rr=XAXX010101000&tt=1.0&fe=12345678" in url


def test_qr_error_level_at_least_m() -> None:
    qr = make_qr("https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx?id=X")
    assert qr.error in ("M", "Q", "H")
    assert not qr.is_micro


def test_qr_modules_decode_to_the_url_at_level_m() -> None:
    """The PDF's QR modules, drawn as an image with a quiet zone, read back (zxing-cpp's
    reader) to the exact URL at error correction M; zbarimg reads the PDFs' (test_pdf)."""
    import zxingcpp
    from PIL import Image

    url = verification_url(uuid="6F35D3B5-3651-5370-BC2C-14CDBE384CD7", rfc_emisor="Ñ&A010101AAA",
                           rfc_receptor="MCI7306249Y1", total="3327.01", sello="x" * 40 + "KklI5Q==")
    n, modules = qr_modules(url)
    assert (n - 21) % 4 == 0 and len(modules) == n * n and set(modules) == {0, 1}
    img = Image.new("L", (n + 8, n + 8), 255)
    img.putdata([0 if (0 <= r < n and 0 <= c < n and modules[r * n + c]) else 255
                 for r in range(-4, n + 4) for c in range(-4, n + 4)])
    found = zxingcpp.read_barcode(img.resize(((n + 8) * 4, (n + 8) * 4), Image.NEAREST))
    assert found is not None and found.text == url and found.ec_level == "M"


# --- the PDF's own encoder (worker.cfdi.qr.encode) -------------------------------------

def _url(rfc_emisor: str = "EKU9003173C9", total: str = "3327.01") -> str:
    return verification_url(uuid="6F35D3B5-3651-5370-BC2C-14CDBE384CD7", rfc_emisor=rfc_emisor,
                            rfc_receptor="MCI7306249Y1", total=total, sello="x" * 40 + "KklI5Q==")


# verification URLs (with an RFC holding Ñ and &, a total of 18 digits), and texts that land
# in each class of character count lengths (versions 1-9, 10-26, 27-40) in each mode mix
TEXTS = [
    _url(), _url("Ñ&A010101AAA"), _url(total="999999999999999999.999999"),
    "A", "hola", "HOLA MUNDO 123", "ab" * 40, "AB12-" * 60, "x" * 300, "Zz09:" * 200,
    "https://example.com/?q=" + "ABCDEFGHIJ0123456789" * 30, "x" * 1400, "ALNUM 123 " * 250,
]


def _decode(n: int, modules: bytes) -> tuple[str, str]:
    import zxingcpp
    from PIL import Image

    img = Image.new("L", (n + 8, n + 8), 255)
    img.putdata([0 if (0 <= r < n and 0 <= c < n and modules[r * n + c]) else 255
                 for r in range(-4, n + 4) for c in range(-4, n + 4)])
    found = zxingcpp.read_barcode(img.resize(((n + 8) * 4, (n + 8) * 4), Image.NEAREST))
    assert found is not None
    return found.text, found.ec_level


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_encoder_decodes_at_level_m(text: str) -> None:
    n, modules = qr_modules(text)
    assert (n - 21) % 4 == 0 and len(modules) == n * n and set(modules) <= {0, 1}
    assert _decode(n, modules) == (text, "M")


def test_verification_urls_fit_version_9() -> None:
    """The UUID, RFCs and total go in alphanumeric segments: the QR keeps large modules."""
    assert qr_modules(_url())[0] == 49  # version 8
    assert qr_modules(_url("Ñ&A010101AAA", "999999999999999999.999999"))[0] <= 53


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_encoder_matches_segno_for_every_mask(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments, bit stream, Reed-Solomon, interleaving, placement, masks, format and
    version information: the same modules as segno given the same segments, version and
    mask. (segno adds a whole zero byte when the stream already ends on a byte boundary
    after the terminator, which ISO/IEC 18004 §7.4.10 does not: its rule is patched to
    the standard's here.)"""
    import segno
    import segno.consts

    from worker.cfdi import qr

    monkeypatch.setattr(segno.encoder, "write_padding_bits",
                        lambda buff, version, length: buff.extend([0] * (-length % 8)))
    version, _data = qr._data_codewords(text, text.encode("latin-1"))
    top = 9 if version <= 9 else 26 if version <= 26 else 40
    segments = [(s, segno.consts.MODE_BYTE if mode == qr._MODE_BYTE else segno.consts.MODE_ALPHANUMERIC)
                for mode, s in qr._segments(text, top)]
    for mask in range(8):
        ref = segno.make(segments, error="m", version=version, mask=mask, boost_error=False, micro=False)
        assert qr.encode(text, mask) == (len(ref.matrix), bytes(v for row in ref.matrix for v in row)), mask


def _iso_penalty(rows: list[list[int]]) -> int:
    """ISO/IEC 18004 §7.8.3, written plainly: N1 runs of 5+ (3 + excess), N2 2x2 blocks
    (3 each), N3 1011101 with 4 light modules before or after (outside the symbol is
    light; 40 each), N4 dark proportion (10 per 5 % from 50 %)."""
    n = len(rows)
    score = 0
    for line in rows + [[rows[r][c] for r in range(n)] for c in range(n)]:
        run = 1
        for i in range(1, n + 1):
            if i < n and line[i] == line[i - 1]:
                run += 1
                continue
            if run >= 5:
                score += run - 2
            run = 1
        padded = [0] * 4 + line + [0] * 4
        for i in range(4, n + 4 - 6):
            if padded[i : i + 7] == [1, 0, 1, 1, 1, 0, 1] and (
                    padded[i - 4 : i] == [0] * 4 or padded[i + 7 : i + 11] == [0] * 4):
                score += 40
    score += 3 * sum(rows[r][c] == rows[r][c + 1] == rows[r + 1][c] == rows[r + 1][c + 1]
                     for r in range(n - 1) for c in range(n - 1))
    return score + 10 * int(abs(sum(map(sum, rows)) / (n * n) * 100 - 50) / 5)


@pytest.mark.parametrize("text", TEXTS[:6] + [TEXTS[7]], ids=range(7))
def test_mask_penalty_is_iso_scoring(text: str) -> None:
    """The bit-parallel scorer gives the plain scorer's penalty for every mask of the
    symbol as scored (format and version areas light), and the lowest one is used."""
    from worker.cfdi import qr

    version, data = qr._data_codewords(text, text.encode("latin-1"))
    geo = qr._geometry(version)
    stream = qr._codewords(version, data)
    placed = int("".join(geo.gather(format(int.from_bytes(stream), f"0{8 * len(stream)}b") + "0")), 2)
    scores = []
    for region in geo.masks:
        m = geo.base | (placed ^ region)
        modules = geo.modules(m)
        rows = [list(modules[r * geo.n : (r + 1) * geo.n]) for r in range(geo.n)]
        scores.append(geo.penalty(m))
        assert scores[-1] == _iso_penalty(rows)
    assert qr.encode(text) == qr.encode(text, scores.index(min(scores)))


def test_alignment_and_information_tables() -> None:
    import segno.consts

    from worker.cfdi import qr

    assert all(tuple(qr.alignment_positions(v)) == segno.consts.ALIGNMENT_POS[v - 2] for v in range(2, 41))
    assert all(qr._format_bits(m) == segno.consts.FORMAT_INFO[m] for m in range(8))  # level M
    assert all(qr._version_bits(v) == segno.consts.VERSION_INFO[v - 7] for v in range(7, 41))


def test_text_beyond_latin1_falls_back_and_decodes() -> None:
    text = _url("Ω東010101AAA")
    n, modules = qr_modules(text)
    assert _decode(n, modules) == (text, "M")


@pytest.mark.parametrize("text", [_url(), _url("Ω東010101AAA")], ids=["own", "fallback"])
def test_rows_are_the_modules(text: str) -> None:
    """qr_rows (what the PDF draws) is qr_modules as one integer per row, bit c = column c."""
    from worker.cfdi.qr import qr_rows

    n, modules = qr_modules(text)
    side, rows = qr_rows(text)
    assert side == n and len(rows) == n
    assert all((rows[r] >> c & 1) == modules[r * n + c] for r in range(n) for c in range(n))
