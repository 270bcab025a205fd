"""Fitting result images into Discord's limits: 10 files a message, the guild's per-file
upload limit, 25 MiB a request. Pure functions over bytes, so they are tested directly;
`fit` is CPU-bound (0.6 s for a 27 MB PNG), so callers run it in a worker thread."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

MIB = 1024 * 1024
FILES_PER_MESSAGE = 10
REQUEST_LIMIT = 25 * MIB
MULTIPART_SLACK = 64 * 1024  # form framing and the JSON payload share the request


class CannotFit(Exception):
    """The image cannot be posted as a file: trying again will not change that."""


class ImageTooLarge(CannotFit):
    """Even re-encoded, the image does not fit the limit."""


class ImageUnreadable(CannotFit):
    """Too large as it is, and not an image Pillow can decode to shrink it."""


@dataclass(frozen=True)
class Limits:
    per_file: int
    per_request: int = REQUEST_LIMIT
    per_message: int = FILES_PER_MESSAGE


def fit(data: bytes, max_bytes: int) -> tuple[bytes, str]:
    """The image as it is if it fits, else re-encoded as JPEG (smaller quality, then
    smaller size) until it does. Returns the bytes and the file extension."""
    if len(data) <= max_bytes:
        return data, _extension(data)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageUnreadable(f"cannot decode an image of {len(data)} bytes ({exc})") from None
    for scale in (1.0, 0.75, 0.5, 0.35, 0.25):
        if scale < 1.0:
            size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            candidate = image.resize(size, Image.Resampling.LANCZOS)
        else:
            candidate = image
        for quality in (90, 80, 70, 55):
            out = io.BytesIO()
            # Not optimize=True: that encodes the whole image in one call holding the GIL
            # (0.2 s for 9 megapixels), so even in a worker thread it stalls the loop.
            candidate.save(out, "JPEG", quality=quality)
            if out.tell() <= max_bytes:
                return out.getvalue(), "jpg"
    raise ImageTooLarge(f"cannot fit an image of {len(data)} bytes into {max_bytes}")


def batches(sizes: Sequence[int], limits: Limits) -> list[list[int]]:
    """Indices of files grouped into messages: in order, at most `per_message` each, and
    each message's total under the request limit."""
    budget = limits.per_request - MULTIPART_SLACK
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, size in enumerate(sizes):
        if size > budget:
            raise ImageTooLarge(f"file {index} alone is over the request limit")
        if current and (len(current) >= limits.per_message or total + size > budget):
            groups.append(current)
            current, total = [], 0
        current.append(index)
        total += size
    if current:
        groups.append(current)
    return groups


def _extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"
