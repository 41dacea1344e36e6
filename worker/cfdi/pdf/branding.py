"""What the PDF prints for an emisor besides its CFDI: a logo and a postal address.

Both come from ``settings.pdf_emisores`` (keyed by emisor RFC, see worker/settings.py);
the callers pass that mapping to ``render_pdf`` and :func:`branding_for` turns one entry
into ready-to-draw data. The PDF package itself never reads settings.

The contract:

* ``logo`` is a path to a PNG or JPEG. It is read once per process and file version
  (path, size, mtime); a logo larger than needed is scaled down once, so every invoice
  embeds a small image, and it is turned into a PDF image once (:class:`PdfImage`: a
  gray or RGB JPEG as written, anything else as deflated 8-bit samples with its alpha
  channel as a soft mask), so an invoice only copies its bytes.
* A logo that is missing, unreadable or not an image is left out (logged as a warning):
  an emisor's cosmetic setting never stops an invoice's PDF.
* ``address`` is free text; ``\\n`` (a real newline or the two characters) breaks lines.
"""

from __future__ import annotations

import io
import logging
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from worker.cfdi.pdf.canvas import PdfImage

log = logging.getLogger(__name__)

# Most pixels a logo needs: 40 x 18 mm at about 300 dpi.
MAX_LOGO_PX = (480, 216)


@dataclass(frozen=True)
class Logo:
    data: bytes  # PNG or JPEG bytes (scaled down if the file was larger than needed)
    width_px: int
    height_px: int
    image: PdfImage  # ``data`` as the PDF embeds it


@dataclass(frozen=True)
class Branding:
    logo: Logo | None
    address: tuple[str, ...]  # lines


_logos: dict[tuple[str, int, int], Logo | None] = {}
_logos_lock = threading.Lock()


def load_logo(path: str | Path) -> Logo | None:
    """The logo at ``path`` ready to embed, or None (logged) when it cannot be used."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        log.warning("PDF logo %s not used: %s", path, exc.strerror or exc)
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _logos_lock:
        if key in _logos:
            return _logos[key]
    logo = _read_logo(path)
    with _logos_lock:
        _logos[key] = logo
    return logo


def _read_logo(path: Path) -> Logo | None:
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            fmt = img.format
            if fmt not in ("PNG", "JPEG"):
                log.warning("PDF logo %s not used: %s, expected PNG or JPEG", path, fmt)
                return None
            if img.width <= MAX_LOGO_PX[0] and img.height <= MAX_LOGO_PX[1]:
                return Logo(data, img.width, img.height, pdf_image(data, img))
            small = img.copy()
            small.thumbnail(MAX_LOGO_PX, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            if fmt == "JPEG":
                small.convert("RGB").save(out, "JPEG", quality=90)
            else:
                small.save(out, "PNG", optimize=True)
            data = out.getvalue()
            with Image.open(io.BytesIO(data)) as scaled:
                scaled.load()
                return Logo(data, scaled.width, scaled.height, pdf_image(data, scaled))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        log.warning("PDF logo %s not used: %s", path, exc)
        return None


def pdf_image(data: bytes, img: Image.Image) -> PdfImage:
    """``data`` (the bytes ``img`` was read from) as a PDF image: a gray or RGB JPEG as it
    is (DCTDecode); any other image as deflated 8-bit gray or RGB samples, its alpha
    channel (if it has one that is not all opaque) as a soft mask."""
    if img.format == "JPEG" and img.mode in ("L", "RGB"):
        space = "DeviceGray" if img.mode == "L" else "DeviceRGB"
        return PdfImage(img.width, img.height, space, "DCTDecode", data)
    gray = img.mode in ("1", "L", "LA", "I", "I;16", "F")
    alpha = None
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        channel = rgba.getchannel("A")
        if channel.getextrema() != (255, 255):
            alpha = PdfImage(img.width, img.height, "DeviceGray", "FlateDecode",
                             zlib.compress(channel.tobytes()))
        img = rgba
    pixels = img.convert("L" if gray else "RGB")
    return PdfImage(img.width, img.height, "DeviceGray" if gray else "DeviceRGB", "FlateDecode",
                    zlib.compress(pixels.tobytes()), alpha)


def branding_for(rfc: str, emisores: Mapping[str, Mapping[str, str]] | None) -> Branding | None:
    """The logo and address configured for emisor ``rfc`` (case-insensitive), or None."""
    if not emisores:
        return None
    key = rfc.strip().upper()
    entry = next((v for k, v in emisores.items() if k.strip().upper() == key), None)
    if not entry:
        return None
    logo = load_logo(entry["logo"]) if entry.get("logo") else None
    address = entry.get("address") or ""
    lines = tuple(line.strip() for line in address.replace("\\n", "\n").splitlines() if line.strip())
    if logo is None and not lines:
        return None
    return Branding(logo, lines)
