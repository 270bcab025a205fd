"""Image bytes: checking uploads with Pillow and drawing deterministic PNG results."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import OrderedDict

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

    def get(self, key: str, label: str = "") -> bytes:
        data = self._cache.get(key)
        if data is None:
            data = draw_png(key, self._size, label)
            self._cache[key] = data
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return data
