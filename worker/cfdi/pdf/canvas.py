"""A small PDF writer for the printed CFDI: A4 pages of drawing operators, serialized to a
PDF 1.4 file with one deflated content stream per page.

What it can draw is what the layout needs and nothing more: text in the core fonts
Helvetica, Helvetica-Bold and Courier (cp1252, ``/WinAnsiEncoding``), text in tiny
embedded TrueType fonts (:mod:`worker.cfdi.fonts`) for the characters cp1252 lacks,
filled rectangles, lines, raw path operators (the QR) and JPEG/PNG images (the logo).
The API takes mm from the page's top-left corner; the content streams are in points from
the bottom-left. Text is given with its baseline's left end.

Why not fpdf2 (which this replaced, keeping the output's structure): its per-call
bookkeeping (``text`` normalizes and re-encodes each string, ``set_font`` resolves the
family, every call goes through two decorators) and its document model cost ~0.9 ms per
PDF before any text and ~12 us per string on this project's 2-core machine, most of a
10-concepto invoice's time. Here a string is one formatted operator (a table row's cells
one text object), the font and colour are only re-emitted when they change, and the
file is assembled directly.

Contract: the same calls give the same bytes (no clock, no randomness: the file ID is a
hash of the file; the creation date is the caller's). Text passed to :meth:`Canvas.text`
must be cp1252 (the caller routes other characters to :meth:`Canvas.glyphs`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from worker.cfdi import fonts

K = 72 / 25.4  # points per mm
PAGE_W = 210.0  # mm, A4
PAGE_H = 297.0
H_PT = PAGE_H * K
CORE_FONTS = {"helvetica": "Helvetica", "helveticaB": "Helvetica-Bold", "courier": "Courier"}
LINE_WIDTH = 0.2  # mm, for lines (rules)
_ESCAPES = str.maketrans({"\\": "\\\\", "(": "\\(", ")": "\\)"})


@dataclass(frozen=True)
class PdfImage:
    """An image XObject ready to embed: ``data`` is the stream as written (``filter``
    says how it is encoded); ``smask`` is its alpha channel, if any (DeviceGray)."""

    width: int
    height: int
    color_space: str  # DeviceRGB, DeviceGray
    filter: str  # DCTDecode (a JPEG as it is) or FlateDecode (8-bit samples, deflated)
    data: bytes
    smask: PdfImage | None = None


def _color(rgb: tuple[int, int, int], stroke: bool) -> str:
    """The operator setting colour ``rgb`` (0-255): gray (g/G) when r == g == b, else RGB."""
    r, g, b = rgb
    if r == g == b:
        return f"{r / 255:.4f} {'G' if stroke else 'g'}"
    return f"{r / 255:.4f} {g / 255:.4f} {b / 255:.4f} {'RG' if stroke else 'rg'}"


_BLACK_FILL, _BLACK_STROKE = _color((0, 0, 0), False), _color((0, 0, 0), True)


def _pdf_string(text: str) -> str:
    """A PDF text string (the Info dictionary): literal when ASCII, else UTF-16BE hex."""
    if text.isascii():
        return "(" + text.translate(_ESCAPES) + ")"
    return "<FEFF" + text.encode("utf-16-be").hex().upper() + ">"


def _pdf_date(when: dt.datetime) -> str:
    """``D:YYYYMMDDHHmmSS+hh'mm'`` (``Z`` for UTC, none for a naive datetime)."""
    text = f"D:{when:%Y%m%d%H%M%S}"
    offset = when.utcoffset()
    if offset is None:
        return text
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return text + "Z"
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}'{mins:02d}'"


# Content streams are deflated at level 1: for a 10-concepto page, 0.25 ms against
# 0.6 ms at zlib's default 6, for ~15 % more bytes (the file stays smaller than fpdf2's
# at level 6, which wrote longer operators).
CONTENT_LEVEL = 1


def _stream(data: bytes, extra: str = "", *, deflate: bool = True) -> bytes:
    if deflate:
        data = zlib.compress(data, CONTENT_LEVEL)
        extra = "/Filter /FlateDecode " + extra
    return f"<< {extra}/Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def _content_bytes(ops: list[str]) -> bytes:
    """A page's operators as bytes: text is cp1252 (which has no U+0080-U+009F), so every
    character below U+0100 is its own byte, as in ISO-8859-1, whose codec is ~100 times
    faster than Python's cp1252 one; only a page with cp1252's other characters (€, –,
    “...) goes through that."""
    text = "\n".join(ops)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("cp1252")


def _to_unicode(gids: dict[int, int]) -> bytes:
    """A ToUnicode CMap: each glyph id (2-byte code, Identity-H) to its character."""
    by_gid: dict[int, int] = {}
    for cp, gid in sorted(gids.items()):
        by_gid.setdefault(gid, cp)
    lines = [
        "/CIDInit /ProcSet findresource begin", "12 dict begin", "begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def", "/CMapType 2 def",
        "1 begincodespacerange", "<0000> <FFFF>", "endcodespacerange",
    ]
    pairs = sorted(by_gid.items())
    for start in range(0, len(pairs), 100):  # at most 100 entries per block
        block = pairs[start : start + 100]
        lines.append(f"{len(block)} beginbfchar")
        lines += [f"<{gid:04X}> <{chr(cp).encode('utf-16-be').hex().upper()}>" for gid, cp in block]
        lines.append("endbfchar")
    lines += ["endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end"]
    return "\n".join(lines).encode("ascii")


class Canvas:
    """Pages of drawing operators and the resources they use, written by :meth:`output`."""

    def __init__(self) -> None:
        self.pages: list[list[str]] = []
        self._ops: list[str] = []  # the current page's operators
        self._tf = ""  # the Tf operator in force on the current page ("" = none yet)
        self._font_ops: dict[tuple[str, float], str] = {}
        self._fill = _BLACK_FILL  # the non-stroking colour in force ("" = unknown)
        self._stroke = _BLACK_STROKE
        self._fonts: dict[str, str] = {}  # font key (core name or face file) -> resource name
        self._codepoints: dict[str, set[int]] = {}  # face file -> code points it prints
        self._glyph_runs: list[tuple[list[str], int, str, str]] = []  # (ops, index, face file, text)
        self._images: list[PdfImage] = []
        self._colors: dict[tuple[tuple[int, int, int], bool], str] = {}
        self._fill_rgb: tuple[int, int, int] | None = None  # the argument of the last fill()

    # pages ----------------------------------------------------------------------------
    def add_page(self) -> None:
        """Start a new page (the graphics state is the PDF default: black, no font)."""
        self._ops = [f"{LINE_WIDTH * K:.2f} w 2 J"]
        self.pages.append(self._ops)
        self._tf, self._fill, self._stroke = "", _BLACK_FILL, _BLACK_STROKE
        self._fill_rgb = None

    def select_page(self, index: int) -> None:
        """Draw on page ``index`` again, after what it has (e.g. its footer, once the page
        count is known). The state at its end is not tracked: the next text and colour
        operators are written out in full."""
        self._ops = self.pages[index]
        self._tf, self._fill, self._stroke = "", "", ""
        self._fill_rgb = None

    # state ----------------------------------------------------------------------------
    def _font(self, key: str) -> str:
        name = self._fonts.get(key)
        if name is None:
            name = self._fonts[key] = f"F{len(self._fonts) + 1}"
        return name

    def fill(self, rgb: tuple[int, int, int]) -> None:
        """Set the colour of text and filled shapes."""
        if rgb is self._fill_rgb:  # the common case: the same colour object again
            return
        self._fill_rgb = rgb
        op = self._colors.get((rgb, False))
        if op is None:
            op = self._colors[(rgb, False)] = _color(rgb, False)
        if op != self._fill:
            self._ops.append(op)
            self._fill = op

    def stroke(self, rgb: tuple[int, int, int]) -> None:
        """Set the colour of lines."""
        op = self._colors.get((rgb, True))
        if op is None:
            op = self._colors[(rgb, True)] = _color(rgb, True)
        if op != self._stroke:
            self._ops.append(op)
            self._stroke = op

    # drawing --------------------------------------------------------------------------
    def font_op(self, font: str, size: float) -> str:
        """The operator selecting ``font`` (a :data:`CORE_FONTS` key or an embedded face's
        file) at ``size`` pt, for :meth:`text` and :meth:`glyphs`; the font becomes one of
        the document's resources."""
        op = self._font_ops.get((font, size))
        if op is None:
            op = self._font_ops[(font, size)] = f"/{self._font(font)} {size:.2f} Tf "
        return op

    def text(self, x: float, y: float, font_op: str, text: str) -> None:
        """``text`` (cp1252 only) in a core font (``font_op`` from :meth:`font_op`), its
        baseline starting at (x, y) mm."""
        if "(" in text or ")" in text or "\\" in text:
            text = text.translate(_ESCAPES)
        if font_op is self._tf:
            self._ops.append("BT %.2f %.2f Td (%s) Tj ET" % (x * K, H_PT - y * K, text))  # noqa: UP031 - faster
        else:
            self._tf = font_op
            self._ops.append("BT %s%.2f %.2f Td (%s) Tj ET" % (font_op, x * K, H_PT - y * K, text))  # noqa: UP031

    def texts(self, y: float, font_op: str, items: list[tuple[float, str]]) -> None:
        """Several cp1252 texts on the baseline y mm in one core font, each (x mm, text), in
        order: one text object, each text placed relative to the one before (the moves
        are between positions rounded as :meth:`text` writes them, so none drifts)."""
        parts = ["BT " if font_op is self._tf else "BT " + font_op]
        self._tf = font_op
        prev = None
        for x, text in items:
            if "(" in text or ")" in text or "\\" in text:
                text = text.translate(_ESCAPES)
            at = round(x * K, 2)
            if prev is None:
                parts.append("%.2f %.2f Td (%s) Tj" % (at, H_PT - y * K, text))  # noqa: UP031 - faster
            else:
                parts.append(" %.2f 0 Td (%s) Tj" % (at - prev, text))  # noqa: UP031
            prev = at
        parts.append(" ET")
        self._ops.append("".join(parts))

    def glyphs(self, x: float, y: float, face: str, size: float, text: str) -> None:
        """``text`` in the embedded face ``face`` (a :mod:`worker.cfdi.fonts` file name),
        like :meth:`text`. The glyph ids are written at :meth:`output`, once the face's
        tiny font (every character the document prints in it) is built."""
        self._codepoints.setdefault(face, set()).update(map(ord, text))
        tf = self.font_op(face, size)
        head = f"BT {'' if tf is self._tf else tf}{x * K:.2f} {H_PT - y * K:.2f} Td "
        self._tf = tf
        self._glyph_runs.append((self._ops, len(self._ops), face, text))
        self._ops.append(head)

    def line(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self._ops.append(f"{x1 * K:.2f} {H_PT - y1 * K:.2f} m {x2 * K:.2f} {H_PT - y2 * K:.2f} l S")

    def rect(self, x: float, y: float, w: float, h: float) -> None:
        """A filled rectangle, top-left corner at (x, y)."""
        self._ops.append(f"{x * K:.2f} {H_PT - (y + h) * K:.2f} {w * K:.2f} {h * K:.2f} re f")

    def raw(self, ops: str) -> None:
        """Operators as they are (they must leave the graphics state as they found it)."""
        self._ops.append(ops)

    def image(self, image: PdfImage, x: float, y: float, w: float, h: float) -> None:
        """``image`` scaled into the w x h mm box whose top-left corner is (x, y)."""
        number = next((i for i, known in enumerate(self._images, 1) if known is image), 0)
        if not number:
            self._images.append(image)
            number = len(self._images)
        self._ops.append(f"q {w * K:.2f} 0 0 {h * K:.2f} {x * K:.2f} {H_PT - (y + h) * K:.2f} cm "
                         f"/I{number} Do Q")

    # the file ---------------------------------------------------------------------------
    def output(self, *, title: str, creator: str, created: dt.datetime) -> bytes:
        """The PDF file. ``created`` is written as the creation date; the file ID is the
        MD5 of the file's body, so the same drawing gives the same bytes."""
        tiny = {face: fonts.tiny_font(face, frozenset(cps)) for face, cps in self._codepoints.items()}
        for ops, index, face, text in self._glyph_runs:
            gids = tiny[face].gids
            ops[index] += "<" + "".join(f"{gids.get(ord(ch), 0):04X}" for ch in text) + "> Tj ET"

        objects: list[bytes] = []

        def new() -> int:
            objects.append(b"")
            return len(objects)

        catalog, pages_id, info, resources = new(), new(), new(), new()
        kids = []
        for ops in self.pages:
            page, contents = new(), new()
            kids.append(page)
            objects[page - 1] = (f"<< /Type /Page /Parent {pages_id} 0 R /Resources {resources} 0 R "
                                 f"/Contents {contents} 0 R >>").encode()
            objects[contents - 1] = _stream(_content_bytes(ops))
        font_refs = []
        for key, name in self._fonts.items():
            if key in CORE_FONTS:
                ref = new()
                objects[ref - 1] = (f"<< /Type /Font /Subtype /Type1 /BaseFont /{CORE_FONTS[key]} "
                                    "/Encoding /WinAnsiEncoding >>").encode()
            else:
                ref = self._embed(tiny[key], new, objects)
            font_refs.append(f"/{name} {ref} 0 R")
        image_refs = []
        for i, image in enumerate(self._images):
            ref = new()
            smask = ""
            if image.smask is not None:
                mask = new()
                objects[mask - 1] = self._image_object(image.smask, "")
                smask = f"/SMask {mask} 0 R "
            objects[ref - 1] = self._image_object(image, smask)
            image_refs.append(f"/I{i + 1} {ref} 0 R")
        xobjects = f" /XObject << {' '.join(image_refs)} >>" if image_refs else ""
        objects[resources - 1] = (f"<< /ProcSet [/PDF /Text /ImageB /ImageC /ImageI] "
                                  f"/Font << {' '.join(font_refs)} >>{xobjects} >>").encode()
        objects[pages_id - 1] = (f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] "
                                 f"/Count {len(kids)} /MediaBox [0 0 {PAGE_W * K:.2f} {H_PT:.2f}] >>"
                                 ).encode()
        objects[catalog - 1] = (f"<< /Type /Catalog /Pages {pages_id} 0 R "
                                f"/OpenAction [{kids[0]} 0 R /FitH null] /PageLayout /OneColumn >>").encode()
        objects[info - 1] = (f"<< /Title {_pdf_string(title)} /Creator {_pdf_string(creator)} "
                             f"/CreationDate ({_pdf_date(created)}) >>").encode("ascii")

        out = bytearray(b"%PDF-1.4\n%\xe9\xeb\xf1\xbf\n")
        offsets = []
        for number, body in enumerate(objects, 1):
            offsets.append(len(out))
            out += b"%d 0 obj\n" % number
            out += body
            out += b"\nendobj\n"
        xref = len(out)
        file_id = hashlib.md5(out, usedforsecurity=False).hexdigest().upper()
        out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
        out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
        out += (f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R /Info {info} 0 R "
                f"/ID [<{file_id}><{file_id}>] >>\nstartxref\n{xref}\n%%EOF\n").encode()
        return bytes(out)

    @staticmethod
    def _image_object(image: PdfImage, smask: str) -> bytes:
        return _stream(image.data, f"/Type /XObject /Subtype /Image /Width {image.width} "
                                   f"/Height {image.height} /ColorSpace /{image.color_space} "
                                   f"/BitsPerComponent 8 {smask}/Filter /{image.filter} ", deflate=False)

    @staticmethod
    def _embed(font: fonts.TinyFont, new: Callable[[], int], objects: list[bytes]) -> int:
        """The objects of a Type0 font over the tiny TrueType ``font``; its reference."""
        type0, cid, descriptor, program, to_unicode = new(), new(), new(), new(), new()
        name = font.ps_name
        widths = " ".join(map(str, font.widths))
        objects[type0 - 1] = (f"<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H "
                              f"/DescendantFonts [{cid} 0 R] /ToUnicode {to_unicode} 0 R >>").encode()
        objects[cid - 1] = (f"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} "
                            "/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
                            f"/FontDescriptor {descriptor} 0 R /CIDToGIDMap /Identity "
                            f"/DW {font.widths[0]} /W [0 [{widths}]] >>").encode()
        flags = 4 | (1 << 18 if font.bold else 0)  # symbolic (glyph ids, no standard encoding), force bold
        objects[descriptor - 1] = (f"<< /Type /FontDescriptor /FontName /{name} /Flags {flags} "
                                   f"/FontBBox [{' '.join(map(str, font.bbox))}] "
                                   f"/ItalicAngle {font.italic_angle:g} /Ascent {font.ascent} "
                                   f"/Descent {font.descent} /CapHeight {font.cap_height} "
                                   f"/StemV {165 if font.bold else 87} /FontFile2 {program} 0 R >>").encode()
        objects[program - 1] = _stream(font.compressed, f"/Filter /FlateDecode /Length1 {len(font.data)} ",
                                       deflate=False)
        objects[to_unicode - 1] = _stream(_to_unicode(dict(font.gids)))
        return type0

