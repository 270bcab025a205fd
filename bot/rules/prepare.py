"""Preparing a checked photo for Astria: upright, no metadata, at most 2048 px, not bigger.

Astria's FAQ asks for about 3 MB and 1024–2048 px a photo; phones send 4032×3024 with
EXIF, GPS position included. Each photo is decoded once: the orientation tag is applied
to the pixels, every metadata block (EXIF, GPS, XMP, ICC profile, comments, PNG text) is
left behind, the long side is brought down to `LONG_SIDE`, and the result is a JPEG at
`JPEG_QUALITY` when that is smaller than what the member sent; otherwise the photo keeps
its format, re-saved without metadata. Pure: bytes in, bytes out; `store_prepared` writes
the result.

Memory: one call holds the decoded photo at full size once (a JPEG is decoded at a DCT
scale whose long side is still at least `DRAFT_SIDE`, so a large JPEG never beyond twice
that) and a few copies at the reduced size; `prepare_memory` is that bound, and the intake lets only
a fixed number of calls run at once (`bot/rules/intake.py`).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageCms, ImageOps, JpegImagePlugin

from bot.rules.photos import EXTENSIONS, PhotoInfo, PhotoKind, PhotoRules, write_atomically

log = logging.getLogger(__name__)

LONG_SIDE: Final = 2048
JPEG_QUALITY: Final = 90
# A JPEG may be decoded at a reduced scale whose long side is at least this; still within
# the 1024-2048 px Astria advises, and detail enough for training.
DRAFT_SIDE: Final = 1536
_WHITE: Final = (255, 255, 255)
# Pillow keeps RGB, RGBA and L pixels in 4 bytes or fewer each.
_BYTES_PER_PIXEL: Final = 4
_FORMATS: Final[dict[PhotoKind, str]] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_HASH_NAME: Final = re.compile(r"[0-9a-f]{64}")
_PALETTE: Final = frozenset({"1", "P", "PA"})


@dataclass(frozen=True)
class PreparedPhoto:
    """What goes to Astria for one checked photo: `source` is the photo as checked (its
    hash names the file), `data` the bytes to send, in `kind`."""

    source: PhotoInfo
    kind: PhotoKind
    data: bytes
    width: int
    height: int

    @property
    def file_name(self) -> str:
        """Named by the checked photo's hash (one file per photo in a batch), with the
        extension of what it became."""
        return f"{self.source.sha256}.{EXTENSIONS[self.kind]}"


def store_prepared(folder: Path, photo: PreparedPhoto) -> Path:
    """Write a prepared photo to `folder/<sha256 of the checked photo>.<ext>` atomically."""
    # A plain dataclass anyone can build: re-check what becomes a path.
    if not _HASH_NAME.fullmatch(photo.source.sha256) or photo.kind not in EXTENSIONS:
        raise ValueError("not a prepared photo")
    return write_atomically(folder, photo.file_name, photo.data)


def prepare_memory(rules: PhotoRules) -> int:
    """The most memory one `prepare_photo` holds: the decoded photo at full size (at most
    `rules.max_pixels`; 4 bytes a pixel, or 1 + 4 for a palette photo, which is converted
    before it is reduced) and, at the reduced size, the resized, turned and flattened
    copies and the encoder's output (generously, four images of LONG_SIDE², 4 bytes a
    pixel)."""
    return 5 * rules.max_pixels + 4 * _BYTES_PER_PIXEL * LONG_SIDE * LONG_SIDE


def fit(size: tuple[int, int], long_side: int = LONG_SIDE) -> tuple[int, int]:
    """`size` scaled down (never up) so its long side is at most `long_side`."""
    width, height = size
    longest = max(width, height)
    if longest <= long_side:
        return size
    scale = long_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_photo(info: PhotoInfo, data: bytes) -> PreparedPhoto:
    """The photo as it should travel. `data` must be the bytes `info` was checked from;
    raises (OSError, ValueError, ...) if Pillow cannot decode them in full."""
    with Image.open(io.BytesIO(data), formats=[_FORMATS[info.kind]]) as image:
        target = fit(image.size)
        if info.kind == "jpeg" and target != image.size:
            # libjpeg's DCT scaling (1/2, 1/4, 1/8) where it lands between DRAFT_SIDE and
            # LONG_SIDE: a 12 MP phone photo is decoded straight to 2016×1512, in a quarter
            # of the memory and time, with no resize after; others scale down to no less.
            image.draft(None, fit(image.size, DRAFT_SIDE))
            target = fit(image.size)
        tables = _jpeg_tables(image) if info.kind == "jpeg" else None
        lossless_webp = info.kind == "webp" and _webp_lossless(data)
        icc = image.info.get("icc_profile")
        # Reduce first, then convert, so only the decoded photo is ever full size; palette
        # images only resize by nearest neighbour, so they are converted first.
        pixels: Image.Image = image if image.mode not in _PALETTE else _normalised(image)
        pixels = (
            pixels.resize(target, Image.Resampling.LANCZOS) if pixels.size != target else pixels
        )
        if pixels is image:
            pixels = image.copy()  # a fresh image: the source object is never saved
        # The copies keep the source's info (EXIF, XMP), where the orientation is read.
        ImageOps.exif_transpose(pixels, in_place=True)
    pixels = _in_srgb(_normalised(pixels), icc)
    pixels.info = {}  # nothing of the source travels: no EXIF, XMP, ICC, comment or text

    jpeg = _encode_jpeg(_flattened(pixels), quality=JPEG_QUALITY)
    if len(jpeg) < len(data):
        return PreparedPhoto(info, "jpeg", jpeg, *pixels.size)
    del jpeg
    kept = _encode_kept(pixels, info.kind, tables, lossless_webp)
    return PreparedPhoto(info, info.kind, kept, *pixels.size)


def _jpeg_tables(image: Image.Image) -> tuple[object, int]:
    """The source JPEG's quantisation tables and subsampling, to re-save it at its own
    quality (and so about its own size) when a JPEG at JPEG_QUALITY would be bigger."""
    return getattr(image, "quantization", None), JpegImagePlugin.get_sampling(image)


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP's image chunk is VP8L (lossless), walking the RIFF chunks."""
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if kind in (b"VP8 ", b"VP8L"):
            return kind == b"VP8L"
        at += 8 + size + (size & 1)
    return False


def _normalised(image: Image.Image) -> Image.Image:
    """The image in RGB, RGBA or L: itself when it already is."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit grey: scale to 8 bits rather than let convert() clip everything to white.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _in_srgb(pixels: Image.Image, icc: object) -> Image.Image:
    """Colours moved from the photo's own profile (a phone's Display P3) into sRGB, so
    leaving the profile behind does not wash them out; on any doubt, the pixels as they
    are."""
    if not isinstance(icc, bytes) or not icc or pixels.mode not in ("RGB", "RGBA"):
        return pixels
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            pixels, source, ImageCms.createProfile("sRGB"), outputMode=pixels.mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        log.debug("photo colour profile not applied", exc_info=True)
        return pixels
    return converted if converted is not None else pixels


def _flattened(pixels: Image.Image) -> Image.Image:
    """RGB for a JPEG: transparency laid onto white."""
    if pixels.mode == "RGBA":
        white = Image.new("RGB", pixels.size, _WHITE)
        white.paste(pixels, mask=pixels.getchannel("A"))
        return white
    return pixels if pixels.mode == "RGB" else pixels.convert("RGB")


def _encode_jpeg(pixels: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    pixels.save(out, "JPEG", optimize=True, **options)
    return out.getvalue()


def _encode_kept(
    pixels: Image.Image,
    kind: PhotoKind,
    tables: tuple[object, int] | None,
    lossless_webp: bool,
) -> bytes:
    """The photo in its own format, with nothing but pixels."""
    if kind == "jpeg":
        qtables, subsampling = tables if tables is not None else (None, -1)
        flat = pixels if pixels.mode == "L" else _flattened(pixels)
        needed = 1 if flat.mode == "L" else 2  # luma, and one for chroma
        if not isinstance(qtables, dict | list) or len(qtables) < needed:
            return _encode_jpeg(flat, quality=JPEG_QUALITY)
        return _encode_jpeg(flat, qtables=qtables, subsampling=subsampling)
    out = io.BytesIO()
    if kind == "png":
        pixels.save(out, "PNG", optimize=True)
    elif lossless_webp:
        pixels.save(out, "WEBP", lossless=True)
    else:
        pixels.save(out, "WEBP", quality=JPEG_QUALITY)
    return out.getvalue()
