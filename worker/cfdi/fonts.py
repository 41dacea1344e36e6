"""Embedded fonts for PDFs whose text is not cp1252 (Greek, Cyrillic, symbols, CJK...).

The faces come from the ``weblate-fonts`` package (Weblate's font collection, OFL):
Kurinto Sans, a pan-Unicode family, with Kurinto Sans SC/JP/KR/TC as CJK fallbacks.
They are 5-10 MB each, so each face is parsed once per process (on first use), and:

* :func:`face_for` picks the face that prints a character, and :func:`advance` gives its
  width, both from the parsed face's cmap and metrics (cached per character), so text is
  measured and laid out before any font file is built;
* :func:`tiny_font` builds, with fontTools' FontBuilder, a complete TrueType font holding
  only the characters a document prints, with everything the PDF needs to embed it
  (glyph id per character, widths, descriptor values, the compressed font program).
  Tiny fonts are cached in memory by (face, character set).

A tiny font's bytes depend only on the face and the character set (its head dates are the
face's, its glyph order follows the code points), so a PDF's bytes do not depend on the
process or the clock.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.ttLib import TTFont

PACKAGE = "weblate_fonts"
SUBDIR = "static/weblate_fonts/kurinto/ttf"
REGULAR = "KurintoSans-Rg.ttf"
BOLD = "KurintoSans-Bd.ttf"
# CJK fallbacks in the order they are tried for a character the main face lacks.
FALLBACKS = ("KurintoSansSC-Rg.ttf", "KurintoSansJP-Rg.ttf", "KurintoSansKR-Rg.ttf", "KurintoSansTC-Rg.ttf")
_TINY_CACHE_SIZE = 256


class FontUnavailable(RuntimeError):
    """The Unicode fonts are not installed (pip install weblate-fonts)."""


def font_dir() -> Path:
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise FontUnavailable(
            "text outside cp1252 needs the 'weblate-fonts' package (Kurinto fonts): pip install weblate-fonts"
        ) from None
    path = Path(str(root)) / SUBDIR
    if not (path / REGULAR).is_file():
        raise FontUnavailable(f"{REGULAR} not found under {path}: unexpected weblate-fonts layout")
    return path


@dataclass(frozen=True)
class TinyFont:
    """A TrueType font with only some characters of a face, ready to embed as a PDF
    CIDFontType2 with ``/CIDToGIDMap /Identity`` (so a character's CID is its glyph id).

    Metrics are in 1/1000 em (PDF glyph space); ``gids`` maps each code point the font
    prints to its glyph id; ``widths[gid]`` is that glyph's advance (glyph 0 is .notdef).
    """

    ps_name: str  # PostScript name, with a subset tag derived from the character set
    data: bytes  # the font program (TrueType), as a PDF FontFile2 stream holds it
    compressed: bytes  # ``data`` deflated, what the PDF embeds
    gids: Mapping[int, int]
    widths: tuple[int, ...]
    ascent: int
    descent: int
    cap_height: int
    bbox: tuple[int, int, int, int]
    italic_angle: float
    bold: bool


class _Face:
    """One parsed font file: its cmap, metrics and glyphs, kept for the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.font = TTFont(path, lazy=True)
        self.cmap: dict[int, str] = self.font.getBestCmap()
        self.glyf = self.font["glyf"]
        self.hmtx: dict[str, tuple[int, int]] = self.font["hmtx"].metrics
        self.scale: float = 1000 / self.font["head"].unitsPerEm
        self.bold: bool = self.font["OS/2"].usWeightClass >= 600
        self.lock = threading.Lock()

    def advance(self, cp: int) -> float:
        """Advance width of code point ``cp`` in 1/1000 em (.notdef's when the face lacks it)."""
        advance: int = self.hmtx[self.cmap.get(cp, ".notdef")][0]
        return advance * self.scale

    def tiny(self, codepoints: frozenset[int]) -> TinyFont:
        """A complete TrueType font holding only ``codepoints`` (and .notdef)."""
        with self.lock:  # glyph objects are expanded lazily: keep it single-threaded
            return self._tiny(codepoints)

    def _tiny(self, codepoints: frozenset[int]) -> TinyFont:
        src = self.font
        cmap = {cp: self.cmap[cp] for cp in sorted(codepoints) if cp in self.cmap}
        order = [".notdef"]
        seen = {".notdef"}
        for name in cmap.values():  # the characters' glyphs first, in code point order
            if name not in seen:
                seen.add(name)
                order.append(name)
        todo = list(order[1:])
        while todo:  # then the components of composite glyphs
            glyph = self.glyf[todo.pop()]
            if glyph.isComposite():
                for name in glyph.getComponentNames(self.glyf):
                    if name not in seen:
                        seen.add(name)
                        order.append(name)
                        todo.append(name)
        head, hhea, os2, post = src["head"], src["hhea"], src["OS/2"], src["post"]
        names = src["name"]
        family = names.getBestFamilyName() or "Kurinto"
        style = names.getBestSubFamilyName() or "Regular"
        ps_name = f"{family}-{style}".replace(" ", "")
        fb = FontBuilder(head.unitsPerEm, isTTF=True)
        # FontBuilder stamps head.created/modified with the current time, which made the
        # same CFDI render to different bytes in different processes: take the face's own.
        fb.font["head"].created, fb.font["head"].modified = head.created, head.modified
        fb.setupGlyphOrder(order)
        fb.setupCharacterMap(cmap)
        fb.setupGlyf({name: self.glyf[name] for name in order})
        fb.setupHorizontalMetrics({name: self.hmtx[name] for name in order})
        fb.setupHorizontalHeader(ascent=hhea.ascent, descent=hhea.descent, lineGap=hhea.lineGap)
        fb.setupNameTable({
            "familyName": family, "styleName": style,
            "uniqueFontIdentifier": f"{family}-{style}-subset", "fullName": f"{family} {style}",
            "psName": ps_name,
        })
        fb.setupOS2(
            sTypoAscender=os2.sTypoAscender, sTypoDescender=os2.sTypoDescender, sTypoLineGap=os2.sTypoLineGap,
            usWinAscent=os2.usWinAscent, usWinDescent=os2.usWinDescent, usWeightClass=os2.usWeightClass,
            fsType=os2.fsType, sCapHeight=getattr(os2, "sCapHeight", hhea.ascent),
            sxHeight=getattr(os2, "sxHeight", 0), yStrikeoutSize=os2.yStrikeoutSize,
            yStrikeoutPosition=os2.yStrikeoutPosition,
        )
        fb.setupPost(
            isFixedPitch=post.isFixedPitch, italicAngle=post.italicAngle,
            underlinePosition=post.underlinePosition, underlineThickness=post.underlineThickness,
        )
        out = io.BytesIO()
        fb.save(out)
        data = out.getvalue()
        gid = {name: i for i, name in enumerate(order)}
        s = self.scale
        # a subset's PostScript name starts with six capitals naming the subset (PDF 9.6.4)
        digest = hashlib.sha256(",".join(map(str, sorted(cmap))).encode()).digest()
        tag = "".join(chr(65 + b % 26) for b in digest[:6])
        return TinyFont(
            ps_name=f"{tag}+{ps_name}",
            data=data,
            compressed=zlib.compress(data),
            gids={cp: gid[name] for cp, name in cmap.items()},
            widths=tuple(round(self.hmtx[name][0] * s) for name in order),
            ascent=round(hhea.ascent * s),
            descent=round(hhea.descent * s),
            cap_height=round(getattr(os2, "sCapHeight", hhea.ascent) * s),
            bbox=(round(head.xMin * s), round(head.yMin * s), round(head.xMax * s), round(head.yMax * s)),
            italic_angle=float(post.italicAngle),
            bold=self.bold,
        )


_faces: dict[str, _Face] = {}
_faces_lock = threading.Lock()
_tiny: OrderedDict[tuple[str, frozenset[int]], TinyFont] = OrderedDict()
_tiny_lock = threading.Lock()
_face_of: dict[tuple[str, bool], str] = {}


def face(file_name: str) -> _Face:
    """The parsed face of ``file_name`` (parsed on first use, kept for the process)."""
    with _faces_lock:
        if file_name not in _faces:
            _faces[file_name] = _Face(font_dir() / file_name)
        return _faces[file_name]


def face_for(ch: str, bold: bool = False) -> str:
    """The file of the face that prints ``ch``: Kurinto Sans (Bold when ``bold`` and the bold
    face has it), else the first CJK fallback that has it; Kurinto Sans when none does
    (the PDF then shows its .notdef box). Cached per character."""
    key = (ch, bold)
    found = _face_of.get(key)
    if found is None:
        cp = ord(ch)
        if bold and cp in face(BOLD).cmap:
            found = BOLD
        elif cp in face(REGULAR).cmap:
            found = REGULAR
        else:
            found = next((name for name in FALLBACKS if cp in face(name).cmap), REGULAR)
        _face_of[key] = found
    return found


def advance(ch: str, bold: bool = False) -> float:
    """Width of ``ch`` in 1/1000 em in the face :func:`face_for` picks."""
    return face(face_for(ch, bold)).advance(ord(ch))


def tiny_font(file_name: str, codepoints: frozenset[int]) -> TinyFont:
    """The tiny font of face ``file_name`` for ``codepoints``, cached by character set.

    Code points the face lacks are left out (``gids`` has no entry: print glyph 0)."""
    key = (file_name, codepoints)
    with _tiny_lock:
        found = _tiny.get(key)
        if found is not None:
            _tiny.move_to_end(key)
            return found
    built = face(file_name).tiny(codepoints)
    with _tiny_lock:
        _tiny[key] = built
        while len(_tiny) > _TINY_CACHE_SIZE:
            _tiny.popitem(last=False)
    return built

