"""Image bytes: checking uploads with Pillow and drawing deterministic PNG results."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageDraw


def is_image(data: bytes) -> bool:
    """True when Pillow recognises the bytes as an image it could decode.

    Decompression bombs count as "not an image", not as a warning.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return False
    return True


# What a photo can carry besides pixels, as Pillow names it in `Image.info`.
_METADATA_KEYS = {
    "exif": "exif",
    "xmp": "xmp",
    "XML:com.adobe.xmp": "xmp",
    "icc_profile": "icc",
    "comment": "comment",
    "photoshop": "photoshop",
}
# JPEG APPn segments that are structure, not metadata: JFIF (APP0) and Adobe (APP14).
_STRUCTURAL_APPS = {"APP0", "APP14"}


@dataclass(frozen=True)
class PhotoFacts:
    """What the emulator noted of one uploaded photo (its bytes are not kept): enough for a
    test to see what would have reached Astria."""

    size: int
    format: str
    width: int
    height: int
    metadata: tuple[str, ...]  # e.g. ("exif", "gps", "comment"); () when only pixels came


def photo_facts(data: bytes) -> PhotoFacts | None:
    """The facts of an upload Pillow can read, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            found = {_METADATA_KEYS[key] for key in image.info if key in _METADATA_KEYS}
            exif = image.getexif()
            if exif:
                found.add("exif")
            if exif.get_ifd(0x8825):  # the GPS IFD
                found.add("gps")
            found.update(
                f"jpeg {marker}"
                for marker, _ in getattr(image, "applist", [])
                if marker not in _STRUCTURAL_APPS
            )
            if getattr(image, "text", None):
                found.add("text")
            return PhotoFacts(
                len(data), str(image.format), image.width, image.height, tuple(sorted(found))
            )
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _colours(key: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(key.encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def draw_png(key: str, size: tuple[int, int], label: str = "") -> bytes:
    """A PNG gradient whose colours depend only on key, so results are reproducible."""
    first, second = _colours(key)
    mask = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, first), Image.new("RGB", size, second), mask)
    if label:
        ImageDraw.Draw(image).text((8, 8), label, fill=(255, 255, 255))
    out = io.BytesIO()
    # Low compression: these are test fixtures, and speed matters more than bytes.
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class ImageCache:
    """Draws PNGs on first request and keeps the most recent ones."""

    def __init__(self, size: tuple[int, int], capacity: int = 64) -> None:
        self._size = size
        self._capacity = capacity
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str, label: str = "", *, scale: int = 1) -> bytes:
        """The PNG for `key`, `scale` times the configured size on each side."""
        cache_key = f"{key}@{scale}"
        data = self._cache.get(cache_key)
        if data is None:
            size = (self._size[0] * scale, self._size[1] * scale)
            data = draw_png(key, size, label)
            self._cache[cache_key] = data
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(cache_key)
        return data
