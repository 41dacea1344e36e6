"""SAT verification URL and its QR code (Anexo 20, "código de barras bidimensional").

``tt`` is the total with at most 6 decimals and no insignificant zeros, but at least one
decimal (1000.00 -> 1000.0, 0 -> 0.0, 0.1234565 -> 0.123457); ``fe`` the last 8
characters of the emisor's Sello, as they are (not URL-encoded). Error correction is
at least M; the printed side must be at least 2.75 cm.

:func:`qr_modules` is what the PDF draws. It is a table-driven encoder of ISO/IEC 18004
QR codes at error correction M (this module's own, about 0.2 ms for a verification URL,
against ~1 ms for zxing-cpp's and 5-25 ms for segno's):

* the text is split into byte segments (ISO-8859-1, no ECI, as zxing-cpp/zint write it)
  and alphanumeric segments where those are shorter (the UUID, the RFCs, the total), so
  a verification URL fits version 8 or 9;
* per version, the geometry (function patterns, the placement order of the data bits,
  each mask's cells, the format and version information) is computed once per process
  and kept as Python integers with one bit per module of a padded grid;
* Reed-Solomon uses a 256-entry table per generator (one XOR per data byte);
* all eight masks are scored (ISO/IEC 18004 §7.8.3, N1-N4, outside the symbol counting
  as light, format and version areas as light, as segno scores them) with whole-grid
  bit operations, and the lowest score wins (the first on a tie).

Text that ISO-8859-1 cannot encode goes to zxing-cpp (which adds an ECI), or segno where
zxing-cpp is not installed. Every path gives a QR at level M that decodes to the text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from itertools import chain
from operator import itemgetter
from xml.sax.saxutils import escape

import segno

VERIFY_BASE = "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx"
MIN_SIDE_MM = 27.5


def format_total(total: str | Decimal) -> str:
    """The ``tt`` value: up to 18 integer digits and 6 decimals, trailing zeros dropped."""
    value = Decimal(total).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    text = f"{value:f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def verification_url(
    *, uuid: str, rfc_emisor: str, rfc_receptor: str, total: str | Decimal, sello: str
) -> str:
    """``https://verificacfdi...?id=UUID&re=..&rr=..&tt=..&fe=..`` (``&`` in an RFC XML-escaped)."""
    return (
        f"{VERIFY_BASE}?id={uuid}&re={escape(rfc_emisor)}&rr={escape(rfc_receptor)}"
        f"&tt={format_total(total)}&fe={sello[-8:]}"
    )


def make_qr(url: str) -> segno.QRCode:
    """The QR with error correction M (segno may raise it when that costs no extra size)."""
    return segno.make(url, error="m", micro=False)


def qr_modules(url: str) -> tuple[int, bytes]:
    """The QR of ``url`` at error correction M, without quiet zone: its side in modules
    and its modules row by row, one byte each (1 = dark, 0 = light)."""
    try:
        return encode(url)
    except UnicodeEncodeError:
        return _other_modules(url)


def qr_matrix(url: str) -> tuple[tuple[int, ...], ...]:
    """Module rows (1 = dark) without the quiet zone."""
    return tuple(tuple(row) for row in make_qr(url).matrix)


def _other_modules(url: str) -> tuple[int, bytes]:
    """zxing-cpp's QR (segno's where it is not installed), for text beyond ISO-8859-1."""
    try:
        import zxingcpp
    except ImportError:  # pragma: no cover - zxing-cpp is a dependency; segno is the fallback
        rows = segno.make(url, error="m", micro=False, boost_error=False).matrix
        return len(rows), bytes(1 if dark else 0 for row in rows for dark in row)
    code = zxingcpp.create_barcode(url, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    # zxing-cpp's Image is a buffer (rows x columns, one byte each); its stub omits __buffer__
    view = memoryview(code.to_image(scale=1, add_quiet_zones=False))  # type: ignore[arg-type]
    n = len(view)  # the first dimension: rows
    assert view.shape == (n, n), view.shape
    # the image is 0 for a dark module, 255 for a light one
    return n, bytes(view).translate(_INVERT)


_INVERT = bytes([1] + [0] * 255)

# --- data ------------------------------------------------------------------------------

# Level M per version 1-40: (EC codewords per block, ((blocks, data codewords each), ...))
# (ISO/IEC 18004:2015 Table 9)
_LEVEL_M: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = (
    (10, ((1, 16),)), (16, ((1, 28),)), (26, ((1, 44),)), (18, ((2, 32),)), (24, ((2, 43),)),
    (16, ((4, 27),)), (18, ((4, 31),)), (22, ((2, 38), (2, 39))), (22, ((3, 36), (2, 37))),
    (26, ((4, 43), (1, 44))), (30, ((1, 50), (4, 51))), (22, ((6, 36), (2, 37))), (22, ((8, 37), (1, 38))),
    (24, ((4, 40), (5, 41))), (24, ((5, 41), (5, 42))), (28, ((7, 45), (3, 46))),
    (28, ((10, 46), (1, 47))), (26, ((9, 43), (4, 44))), (26, ((3, 44), (11, 45))),
    (26, ((3, 41), (13, 42))), (26, ((17, 42),)), (28, ((17, 46),)), (28, ((4, 47), (14, 48))),
    (28, ((6, 45), (14, 46))), (28, ((8, 47), (13, 48))), (28, ((19, 46), (4, 47))),
    (28, ((22, 45), (3, 46))), (28, ((3, 45), (23, 46))), (28, ((21, 45), (7, 46))),
    (28, ((19, 47), (10, 48))), (28, ((2, 46), (29, 47))), (28, ((10, 46), (23, 47))),
    (28, ((14, 46), (21, 47))), (28, ((14, 46), (23, 47))), (28, ((12, 47), (26, 48))),
    (28, ((6, 47), (34, 48))), (28, ((29, 46), (14, 47))), (28, ((13, 46), (32, 47))),
    (28, ((40, 47), (7, 48))), (28, ((18, 47), (31, 48))),
)
_DATA_CODEWORDS = tuple(sum(b * d for b, d in groups) for _e, groups in _LEVEL_M)
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_ALNUM_VALUE = {ch: i for i, ch in enumerate(_ALNUM)}
_ALNUM_RUN = re.compile(r"[0-9A-Z $%*+\-./:]+")
_MODE_ALNUM, _MODE_BYTE = 0b0010, 0b0100
_PAD = b"\xec\x11" * 1500


def _count_bits(version: int) -> tuple[int, int]:
    """Character count indicator lengths (alphanumeric, byte) for ``version``."""
    if version <= 9:
        return 9, 8
    if version <= 26:
        return 11, 16
    return 13, 16


def _segments(text: str, version: int) -> list[tuple[int, str]]:
    """(mode, text) segments: a run of alphanumeric characters is its own segment when
    that takes fewer bits than leaving it in the byte segment around it; the rest is
    byte mode."""
    alnum_cc, byte_cc = _count_bits(version)
    segments: list[tuple[int, str]] = []
    pos = 0
    for m in _ALNUM_RUN.finditer(text):
        start, end = m.span()
        size = end - start
        alnum_bits = 4 + alnum_cc + 11 * (size // 2) + 6 * (size % 2)
        # a run inside byte text splits it: one more byte segment header
        split = 4 + byte_cc if start > 0 and end < len(text) else 0
        if start == 0 and end == len(text):
            split = -(4 + byte_cc)  # the whole text: no byte segment at all
        if alnum_bits + split < 8 * size:
            if start > pos:
                segments.append((_MODE_BYTE, text[pos:start]))
            segments.append((_MODE_ALNUM, m.group()))
            pos = end
    if pos < len(text) or not segments:
        segments.append((_MODE_BYTE, text[pos:]))
    return segments


def _bit_stream(segments: list[tuple[int, str]], data: bytes, version: int) -> tuple[int, int]:
    """The segments' bits (mode, count, data) as an integer and its length in bits.
    ``data`` is the whole text in ISO-8859-1 (byte segments are slices of it)."""
    alnum_cc, byte_cc = _count_bits(version)
    acc = nbits = pos = 0
    for mode, text in segments:
        size = len(text)
        if mode == _MODE_BYTE:
            acc = (((acc << 4 | mode) << byte_cc | size) << 8 * size) | int.from_bytes(data[pos : pos + size])
            nbits += 4 + byte_cc + 8 * size
        else:
            acc = (acc << 4 | mode) << alnum_cc | size
            values = [_ALNUM_VALUE[ch] for ch in text]
            for i in range(0, size - 1, 2):
                acc = acc << 11 | (values[i] * 45 + values[i + 1])
            if size % 2:
                acc = acc << 6 | values[-1]
            nbits += 4 + alnum_cc + 11 * (size // 2) + 6 * (size % 2)
        pos += size
    return acc, nbits


def _data_codewords(text: str, data: bytes) -> tuple[int, bytes]:
    """The smallest version at level M that holds ``text``, and its data codewords
    (segments, terminator, padding bits and pad codewords)."""
    for first, last in ((1, 9), (10, 26), (27, 40)):
        segments = _segments(text, last)
        acc, nbits = _bit_stream(segments, data, last)
        for version in range(first, last + 1):
            capacity = 8 * _DATA_CODEWORDS[version - 1]
            if nbits <= capacity:
                terminator = min(4, capacity - nbits)
                acc <<= terminator
                nbits += terminator
                fill = -nbits % 8
                acc <<= fill
                nbits += fill
                size = nbits // 8
                return version, acc.to_bytes(size) + _PAD[: capacity // 8 - size]
    raise ValueError(f"text too long for a QR code at level M: {len(text)} characters")


# --- Reed-Solomon over GF(256), x^8 + x^4 + x^3 + x^2 + 1 ------------------------------

_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


_RS_TABLES: dict[int, list[int]] = {}


def _rs_table(degree: int) -> list[int]:
    """For each byte f, f times the generator polynomial of ``degree`` (its coefficients
    below the leading 1, highest first) as one integer of ``degree`` bytes."""
    table = _RS_TABLES.get(degree)
    if table is None:
        divisor = [0] * (degree - 1) + [1]
        root = 1
        for _ in range(degree):
            for j in range(degree):
                divisor[j] = _mul(divisor[j], root)
                if j + 1 < degree:
                    divisor[j] ^= divisor[j + 1]
            root = _mul(root, 2)
        table = [int.from_bytes(bytes(_mul(c, f) for c in divisor)) for f in range(256)]
        _RS_TABLES[degree] = table
    return table


def _ecc(block: bytes, degree: int) -> bytes:
    """The Reed-Solomon error correction codewords of ``block``."""
    table = _rs_table(degree)
    shift = 8 * (degree - 1)
    mask = (1 << 8 * degree) - 1
    rem = 0
    for b in block:
        rem = (rem << 8 & mask) ^ table[rem >> shift ^ b]
    return rem.to_bytes(degree)


def _codewords(version: int, data: bytes) -> bytes:
    """Data and error correction codewords, split in blocks and interleaved (§7.6)."""
    degree, groups = _LEVEL_M[version - 1]
    blocks = []
    pos = 0
    for count, size in groups:
        for _ in range(count):
            blocks.append(data[pos : pos + size])
            pos += size
    short = len(blocks[0])
    out = bytes(chain.from_iterable(zip(*blocks, strict=False)))  # the first `short` of each block
    out += bytes(b[short] for b in blocks if len(b) > short)
    return out + bytes(chain.from_iterable(zip(*(_ecc(b, degree) for b in blocks), strict=True)))


# --- geometry ---------------------------------------------------------------------------


def alignment_positions(version: int) -> list[int]:
    """Row/column centres of the alignment patterns (ISO/IEC 18004 Annex E)."""
    if version == 1:
        return []
    count = version // 7 + 2
    step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
    return sorted([version * 4 + 10 - i * step for i in range(count - 1)] + [6])


def _format_bits(mask: int) -> int:
    """The 15 format information bits for level M (indicator 00) and ``mask``."""
    data = mask  # level M: 00 << 3
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    return ((data << 10) | rem) ^ 0x5412


def _version_bits(version: int) -> int:
    rem = version
    for _ in range(12):
        rem = (rem << 1) ^ ((rem >> 11) * 0x1F25)
    return version << 12 | rem


# the data mask patterns (§7.8.2): dark-light swapped where true, at row r, column c
_MASKS: tuple[Callable[[int, int], bool], ...] = (
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: r * c % 2 + r * c % 3 == 0,
    lambda r, c: (r * c % 2 + r * c % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + r * c % 3) % 2 == 0,
)


class _Geometry:
    """One version's modules as bits of a padded grid: symbol row r, column c is bit
    ``(r + 4) * stride + c`` with ``stride = n + 4``; the 4 columns right of each row and
    4 rows above and below the symbol are light (outside the symbol), so a shift by 1 or
    by ``stride`` moves to a neighbour without wrapping into the symbol."""

    def __init__(self, version: int) -> None:
        n = self.n = version * 4 + 17
        w = self.stride = n + 4
        self.size = w * (n + 8)
        dark = [[False] * n for _ in range(n)]
        function = [[False] * n for _ in range(n)]

        def put(r: int, c: int, is_dark: bool) -> None:
            dark[r][c] = is_dark
            function[r][c] = True

        for i in range(n):  # timing patterns (the finders overwrite their ends)
            put(6, i, i % 2 == 0)
            put(i, 6, i % 2 == 0)
        for cr, cc in ((3, 3), (3, n - 4), (n - 4, 3)):  # finders with their separators
            for dr in range(-4, 5):
                for dc in range(-4, 5):
                    if 0 <= cr + dr < n and 0 <= cc + dc < n:
                        put(cr + dr, cc + dc, max(abs(dr), abs(dc)) not in (2, 4))
        centres = alignment_positions(version)
        last = len(centres) - 1
        for i, cr in enumerate(centres):
            for j, cc in enumerate(centres):
                if (i, j) in ((0, 0), (0, last), (last, 0)):
                    continue
                for dr in range(-2, 3):
                    for dc in range(-2, 3):
                        put(cr + dr, cc + dc, max(abs(dr), abs(dc)) != 1)
        # format (both copies), the dark module and version information: function
        # modules, light while the masks are scored; set once the mask is chosen
        # (row, column) of format bit i, first copy (around the top-left finder) and second
        fmt_cells = [(i, 8) for i in range(6)] + [(7, 8), (8, 8), (8, 7)]
        fmt_cells += [(8, 14 - i) for i in range(9, 15)]
        fmt_cells2 = [(8, n - 1 - i) for i in range(8)] + [(n - 15 + i, 8) for i in range(8, 15)]
        version_cells: list[tuple[int, int, int]] = []  # (row, column, bit)
        if version >= 7:
            for i in range(18):
                a, b = n - 11 + i % 3, i // 3
                version_cells += [(b, a, i), (a, b, i)]
        for r, c in fmt_cells + fmt_cells2 + [(n - 8, 8)] + [(r, c) for r, c, _i in version_cells]:
            put(r, c, False)

        def bit(r: int, c: int) -> int:
            return 1 << (r + 4) * w + c

        self.base = sum(bit(r, c) for r in range(n) for c in range(n) if dark[r][c])
        cells = [(r, c) for r in range(n) for c in range(n) if not function[r][c]]
        self.masks = tuple(sum(bit(r, c) for r, c in cells if fn(r, c)) for fn in _MASKS)
        vbits = _version_bits(version) if version >= 7 else 0
        fixed = bit(n - 8, 8) | sum(bit(r, c) for r, c, i in version_cells if vbits >> i & 1)
        self.final = tuple(
            fixed | sum(bit(r, c) for cells_ in (fmt_cells, fmt_cells2)
                        for i, (r, c) in enumerate(cells_) if _format_bits(m) >> i & 1)
            for m in range(8)
        )
        # the data bits' placement: two-module columns, right to left, zigzag (§7.7.3)
        order: list[tuple[int, int]] = []
        right = n - 1
        while right >= 1:
            if right == 6:
                right = 5
            upward = (right + 1) & 2 == 0
            for vert in range(n):
                r = n - 1 - vert if upward else vert
                for c in (right, right - 1):
                    if not function[r][c]:
                        order.append((r, c))
            right -= 2
        self.nbits = 8 * sum(b * (d + _LEVEL_M[version - 1][0]) for b, d in _LEVEL_M[version - 1][1])
        position = {((r + 4) * w + c): k for k, (r, c) in enumerate(order) if k < self.nbits}
        zero = self.nbits  # the index of a "0" appended to the bit string
        # gather the bit string into the grid, most significant bit (the last cell) first
        self.gather = itemgetter(*(position.get(p, zero) for p in range(self.size - 1, -1, -1)))
        self.full = (1 << self.size) - 1
        self.pair_h = sum(bit(r, c) for r in range(n) for c in range(n - 1))  # cell and its right one
        self.pair_v = sum(bit(r, c) for r in range(n - 1) for c in range(n))  # cell and the one below

    def penalty(self, m: int) -> int:
        """ISO/IEC 18004 §7.8.3 penalty of the symbol whose dark modules are ``m``."""
        w = self.stride
        eq_h = self.pair_h ^ (self.pair_h & (m ^ m >> 1))  # same colour as the right neighbour
        eq_v = self.pair_v ^ (self.pair_v & (m ^ m >> w))  # same colour as the one below
        score = 0
        for eq, s in ((eq_h, 1), (eq_v, w)):
            # N1: a run of L >= 5 scores L - 2 = (L - 4 windows of 5) + 2 for its start
            five = eq & eq >> s & eq >> 2 * s & eq >> 3 * s
            starts = five ^ (five & eq << s)
            score += five.bit_count() + 2 * starts.bit_count()
        score += 3 * (eq_h & eq_v & eq_h >> w).bit_count()  # N2: 2x2 blocks
        light = self.full ^ m
        for s in (1, w):  # N3: 1:1:3:1:1 with 4 light modules before or after
            four = light & light >> s & light >> 2 * s & light >> 3 * s
            finder = (m & light >> s & m >> 2 * s & m >> 3 * s & m >> 4 * s & light >> 5 * s
                      & m >> 6 * s)
            score += 40 * (finder & (four << 4 * s | four >> 7 * s)).bit_count()
        n = self.n
        score += 10 * int(abs(m.bit_count() / (n * n) * 100 - 50) / 5)  # N4
        return score

    def modules(self, m: int) -> bytes:
        """The symbol's modules row by row, one byte each (1 = dark)."""
        grid = format(m, f"0{self.size}b")[::-1]
        w, n = self.stride, self.n
        rows = "".join(grid[(r + 4) * w : (r + 4) * w + n] for r in range(n))
        return rows.encode("ascii").translate(_FROM_ASCII_BITS)


_FROM_ASCII_BITS = bytes.maketrans(b"01", b"\x00\x01")
_geometries: dict[int, _Geometry] = {}
_geometries_lock = threading.Lock()


def _geometry(version: int) -> _Geometry:
    found = _geometries.get(version)
    if found is None:
        with _geometries_lock:
            found = _geometries.get(version)
            if found is None:
                found = _geometries[version] = _Geometry(version)
    return found


def _symbol(text: str, mask: int | None) -> tuple[_Geometry, int]:
    """The geometry of ``text``'s version and the symbol's dark modules on its grid."""
    version, codewords = _data_codewords(text, text.encode("latin-1"))
    geo = _geometry(version)
    stream = _codewords(version, codewords)
    bits = format(int.from_bytes(stream), f"0{8 * len(stream)}b") + "0"
    placed = int("".join(geo.gather(bits)), 2)
    base = geo.base
    if mask is None:
        scores = [geo.penalty(base | (placed ^ region)) for region in geo.masks]
        mask = scores.index(min(scores))
    return geo, base | (placed ^ geo.masks[mask]) | geo.final[mask]


def encode(text: str, mask: int | None = None) -> tuple[int, bytes]:
    """The QR code of ``text`` at level M, its bytes in ISO-8859-1 (UnicodeEncodeError
    if it has other characters): its side in modules and its modules row by row, one
    byte each (1 = dark). ``mask`` forces a mask pattern (for tests); by default the one
    with the lowest penalty is used."""
    geo, m = _symbol(text, mask)
    return geo.n, geo.modules(m)


def qr_rows(url: str) -> tuple[int, list[int]]:
    """The QR of ``url`` as :func:`qr_modules` makes it, as its side in modules and one
    integer per row whose bit c is column c (1 = dark): what the PDF draws."""
    try:
        geo, m = _symbol(url, None)
    except UnicodeEncodeError:
        n, modules = _other_modules(url)
        bits = modules.translate(_TO_ASCII_BITS).decode("ascii")
        return n, [int(bits[r * n : (r + 1) * n][::-1], 2) for r in range(n)]
    w, n = geo.stride, geo.n
    row = (1 << n) - 1
    return n, [m >> (r + 4) * w & row for r in range(n)]


_TO_ASCII_BITS = bytes.maketrans(b"\x00\x01", b"01")
