"""Embedded fonts for PDFs whose text is not cp1252 (Greek, Cyrillic, symbols, CJK...).

The faces come from the ``weblate-fonts`` package (Weblate's font collection, OFL):
Kurinto Sans, a pan-Unicode family, with Kurinto Sans SC/JP/KR/TC as CJK fallbacks.
They are 5-10 MB each, and fpdf2 parses and subsets a font file on every document, which
costs hundreds of milliseconds. So each face is parsed once per process, and every
document gets a tiny font (only the characters it prints) built with fontTools'
FontBuilder from the parsed glyphs; tiny fonts are cached by character set. A tiny font's
bytes depend only on the face and the character set (its head dates are the face's), so
a PDF's bytes do not depend on the process or the clock.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.resources
import io
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
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


class _Face:
    """One parsed font file: its cmap, metrics and glyphs, kept for the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.font = TTFont(path, lazy=True)
        self.cmap: dict[int, str] = self.font.getBestCmap()
        self.glyf = self.font["glyf"]
        self.hmtx = self.font["hmtx"].metrics
        self.lock = threading.Lock()

    def tiny(self, codepoints: frozenset[int]) -> bytes:
        """A complete TrueType font holding only ``codepoints`` (and .notdef)."""
        with self.lock:  # glyph objects are expanded lazily: keep it single-threaded
            return self._tiny(codepoints)

    def _tiny(self, codepoints: frozenset[int]) -> bytes:
        src = self.font
        cmap = {cp: self.cmap[cp] for cp in sorted(codepoints) if cp in self.cmap}
        order = [".notdef"]
        seen = {".notdef"}
        todo = list(cmap.values())
        while todo:  # glyph names, with the components of composite glyphs
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            order.append(name)
            glyph = self.glyf[name]
            if glyph.isComposite():
                todo.extend(glyph.getComponentNames(self.glyf))
        head, hhea, os2, post = src["head"], src["hhea"], src["OS/2"], src["post"]
        names = src["name"]
        family = names.getBestFamilyName() or "Kurinto"
        style = names.getBestSubFamilyName() or "Regular"
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
            "psName": f"{family}-{style}".replace(" ", ""),
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
        return out.getvalue()


_faces: dict[str, _Face] = {}
_faces_lock = threading.Lock()
_tiny_paths: OrderedDict[tuple[str, frozenset[int]], Path] = OrderedDict()
_tiny_lock = threading.Lock()
_tmpdir: Path | None = None


def face(file_name: str) -> _Face:
    with _faces_lock:
        if file_name not in _faces:
            _faces[file_name] = _Face(font_dir() / file_name)
        return _faces[file_name]


def _temp_dir() -> Path:
    global _tmpdir
    if _tmpdir is None:
        _tmpdir = Path(tempfile.mkdtemp(prefix="cfdi-fonts-"))
        atexit.register(shutil.rmtree, _tmpdir, True)
    return _tmpdir


def tiny_font_file(file_name: str, codepoints: frozenset[int]) -> Path:
    """A file with the tiny font (fpdf2 reads fonts from paths), cached by character set."""
    key = (file_name, codepoints)
    with _tiny_lock:
        if key in _tiny_paths:
            _tiny_paths.move_to_end(key)
            return _tiny_paths[key]
    data = face(file_name).tiny(codepoints)
    digest = hashlib.sha256(file_name.encode() + b"|" + ",".join(map(str, sorted(codepoints))).encode())
    path = _temp_dir() / f"{digest.hexdigest()[:24]}.ttf"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    with _tiny_lock:
        _tiny_paths[key] = path
        while len(_tiny_paths) > _TINY_CACHE_SIZE:
            _, old = _tiny_paths.popitem(last=False)
            old.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class FontPlan:
    """Tiny font files for one document: the main regular/bold faces and CJK fallbacks."""

    regular: Path
    bold: Path
    chars: frozenset[str]  # what the main faces print
    fallbacks: tuple[tuple[Path, frozenset[str]], ...]  # (file, characters it prints)
    missing: frozenset[str]  # characters no face has (printed as .notdef boxes)


def plan_fonts(texts: Iterable[str]) -> FontPlan:
    """Pick faces for every character of ``texts`` and build their tiny fonts."""
    chars = {ord(ch) for text in texts for ch in text if ch not in "\r\n\t"}
    chars.add(32)  # fpdf2 looks the space glyph up in every font
    main = face(REGULAR)
    main_set = frozenset(cp for cp in chars if cp in main.cmap)
    rest = set(chars - main_set)
    fallbacks: list[tuple[Path, frozenset[str]]] = []
    for name in FALLBACKS:
        if not rest:
            break
        fb_face = face(name)
        got = frozenset(cp for cp in rest if cp in fb_face.cmap)
        if got:
            fallbacks.append((tiny_font_file(name, got | {32}), frozenset(map(chr, got))))
            rest -= got
    bold_set = frozenset(cp for cp in main_set if cp in face(BOLD).cmap)
    return FontPlan(
        regular=tiny_font_file(REGULAR, main_set),
        bold=tiny_font_file(BOLD, bold_set),
        chars=frozenset(map(chr, main_set)),
        fallbacks=tuple(fallbacks),
        missing=frozenset(map(chr, rest)),
    )
