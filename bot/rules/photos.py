"""Checking members' training photos from their real bytes: type, size, dimensions, repeats.

Pure: no Discord, no HTTP, no SQL. The only I/O is `store_photo` (and `write_atomically`,
which it and `bot.rules.prepare.store_prepared` use), which writes one file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from PIL import Image

log = logging.getLogger(__name__)

PhotoKind = Literal["jpeg", "png", "webp"]

# The extension is ours, chosen from the sniffed type; nothing the member sent becomes a path.
EXTENSIONS: Final[dict[PhotoKind, str]] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_PILLOW_FORMATS: Final[dict[PhotoKind, str]] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}

HEIC_TIP: Final = "export it as JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)"
_ACCEPTED_TEXT: Final = "send a JPEG, PNG or WebP photo"

# Brands of the ISO base media file format (the `ftyp` box) that mean HEIF/HEIC stills.
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})

DISPLAY_LIMIT: Final = 60
_HASH_NAME = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PhotoRules:
    """What a training set must be; the defaults follow Astria's advice (4–20 clear photos)."""

    min_photos: int = 4
    max_photos: int = 20
    max_bytes: int = 10 * 1024 * 1024
    min_side: int = 512
    # Far below Pillow's own bomb bound (~89 MP): no phone photo is this large, and a decoded
    # 40 MP image is already ~160 MB of memory.
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class PhotoInfo:
    """A photo that passed: only facts we measured, never the member's name or metadata."""

    kind: PhotoKind
    sha256: str
    width: int
    height: int
    size: int

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.kind]

    @property
    def file_name(self) -> str:
        return f"{self.sha256}.{self.ext}"


@dataclass(frozen=True)
class PhotoProblem:
    """Why one photo was refused, in words a member can act on.

    `label` is for display only ("photo 3", or "photo 3 (IMG_1234.HEIC)") and is sanitised
    on construction, so it is safe to put in any Discord message.
    """

    label: str
    reason: str
    tip: str | None = None

    def __post_init__(self) -> None:
        # Sanitise once here so no caller can forget; the dataclass is frozen, hence setattr.
        object.__setattr__(self, "label", display_name(self.label, limit=DISPLAY_LIMIT + 20))

    def __str__(self) -> str:
        text = f"{self.label}: {self.reason}"
        return f"{text}; {self.tip}" if self.tip else text


@dataclass(frozen=True)
class BatchProblem:
    """Why a whole set was refused (too few or too many usable photos)."""

    reason: str
    problems: tuple[PhotoProblem, ...] = ()

    def __str__(self) -> str:
        return self.reason


# Discord markdown, mentions (@everyone, <@id>), emoji (:x:), links and control or bidi
# characters all need a character outside this set, so keeping only these is enough.
_SAFE_PUNCTUATION: Final = frozenset(" .-_()+,'…")


def display_name(text: str, *, limit: int = DISPLAY_LIMIT) -> str:
    """`text` made safe to show in Discord: no markdown, no pings, one line, at most `limit`.

    Idempotent, so sanitising twice changes nothing.
    """
    # Backslashes go first, so our own escapes below survive a second pass unchanged.
    text = text.replace("\\", "")
    kept = "".join(c if c.isalnum() or c in _SAFE_PUNCTUATION else " " for c in text)
    kept = " ".join(kept.split())
    if len(kept) > limit:
        kept = kept[: limit - 1].rstrip() + "…"
    # Underscores stay (IMG_1234 is common) but escaped, or two of them make italics.
    return kept.replace("_", "\\_") or "?"


def photo_label(number: int, file_name: str | None = None) -> str:
    """The display label "photo 3", or "photo 3 (IMG_1234.HEIC)" with the name sanitised."""
    if not file_name:
        return f"photo {number}"
    return f"photo {number} ({display_name(file_name)})"


def _megabytes(size: int, digits: int = 1) -> str:
    return f"{size / (1024 * 1024):.{digits}f} MB"


def _sniff(data: bytes) -> PhotoKind | tuple[str, str | None]:
    """The photo's type from its magic number, or why we refuse it (reason, tip)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        brands = _ftyp_brands(data)
        if brands & _AVIF_BRANDS:
            return "this is an AVIF photo", "export it as JPEG"
        if brands & _HEIF_BRANDS:
            return "this is a HEIC photo", HEIC_TIP
        return "this is a video, not a photo", _ACCEPTED_TEXT
    for magic, name in (
        (b"GIF87a", "a GIF"),
        (b"GIF89a", "a GIF"),
        (b"%PDF-", "a PDF"),
        (b"II*\x00", "a TIFF"),
        (b"MM\x00*", "a TIFF"),
        (b"BM", "a BMP"),
    ):
        if data.startswith(magic):
            return f"this is {name}, not a JPEG, PNG or WebP photo", None
    return "this is not a JPEG, PNG or WebP photo", None


def _ftyp_brands(data: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an ISO-BMFF `ftyp` box, as far as the box goes."""
    box_size = int.from_bytes(data[:4], "big")
    end = min(max(box_size, 16), len(data), 256)
    compatible = (data[i : i + 4] for i in range(16, end - 3, 4))
    return frozenset({data[8:12], *compatible})


def _refused(label: str, reason: str, tip: str | None = None) -> PhotoProblem:
    return PhotoProblem(label=label, reason=reason, tip=tip)


def check_photo(
    data: bytes, rules: PhotoRules = PhotoRules(), *, label: str = "photo"
) -> PhotoInfo | PhotoProblem:
    """Accept or refuse one photo from its bytes; never raises on any input.

    `label` names the photo in the problem text and is used for nothing else.
    """
    return _check(data, rules, label, hashlib.sha256(data).hexdigest())


def _check(data: bytes, rules: PhotoRules, label: str, digest: str) -> PhotoInfo | PhotoProblem:
    size = len(data)
    if size == 0:
        return _refused(label, "the file is empty")
    if size > rules.max_bytes:
        return _refused(
            label,
            f"too big: {_megabytes(rules.max_bytes, 0)} at most; this one is {_megabytes(size)}",
            "send a smaller copy",
        )
    kind = _sniff(data)
    if isinstance(kind, tuple):
        reason, tip = kind
        return _refused(label, reason, tip)

    too_large = _refused(
        label,
        f"too large: at most {rules.max_pixels / 1_000_000:g} megapixels",
        "send a smaller copy",
    )
    try:
        # Pillow only warns about a bomb up to twice its bound; we refuse, never warn. The
        # filter is process-global state, so our own pixel check below is the real guard.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[kind]]) as image:
                width, height = image.size
                if width * height > rules.max_pixels:
                    return too_large
                if min(width, height) < rules.min_side:
                    # Short side, so EXIF rotation (which we never read) cannot matter.
                    return _refused(
                        label,
                        f"too small: at least {rules.min_side} px on the short side; "
                        f"this one is {width}×{height}",
                        "send the original photo, not a thumbnail or screenshot",
                    )
                if getattr(image, "is_animated", False):
                    return _refused(label, "this is an animation, not a photo", _ACCEPTED_TEXT)
                _check_complete(image, kind)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return too_large
    except Exception:
        # Pillow's plugins raise a zoo (OSError, SyntaxError, struct.error, ValueError, ...)
        # on hostile or damaged bytes; each one means the same thing to the member.
        log.debug("photo %s unreadable", digest, exc_info=True)
        return _refused(label, "this file is damaged or cut short", "send the photo again")
    return PhotoInfo(kind=kind, sha256=digest, width=width, height=height, size=size)


def _check_complete(image: Image.Image, kind: PhotoKind) -> None:
    """Raise if the file is cut short, without paying for a full-size decode.

    JPEG: decode at 1/8 scale (libjpeg's DCT scaling), which still reads every byte of the
    stream, in 1/64 of the memory. PNG: `verify()` walks every chunk and checks its CRC
    without inflating pixels. WebP: Pillow's demuxer already refused an incomplete file in
    `Image.open`.
    """
    if kind == "jpeg":
        width, height = image.size
        image.draft(None, (max(1, width // 8), max(1, height // 8)))
        image.load()
    elif kind == "png":
        image.verify()


class PhotoBatch:
    """One training set checked as its photos arrive one at a time; holds no photo bytes."""

    def __init__(self, rules: PhotoRules = PhotoRules()) -> None:
        self.rules = rules
        self._accepted: list[PhotoInfo] = []
        self._problems: list[PhotoProblem] = []
        self._labels: dict[str, str] = {}  # sha256 -> display label of its first copy

    @property
    def accepted(self) -> tuple[PhotoInfo, ...]:
        return tuple(self._accepted)

    @property
    def problems(self) -> tuple[PhotoProblem, ...]:
        return tuple(self._problems)

    def add(self, label: str, data: bytes) -> PhotoInfo | PhotoProblem:
        """Check one photo; a repeat of an accepted photo is refused, naming the first."""
        digest = hashlib.sha256(data).hexdigest()
        first = self._labels.get(digest)
        result: PhotoInfo | PhotoProblem
        if first is not None:
            result = _refused(label, f"the same photo as {first}")
        else:
            result = _check(data, self.rules, label, digest)
        if isinstance(result, PhotoInfo):
            self._accepted.append(result)
            self._labels[digest] = display_name(label, limit=DISPLAY_LIMIT + 20)
        else:
            self._problems.append(result)
        return result

    def withdraw(self, info: PhotoInfo, problem: PhotoProblem) -> None:
        """Refuse a photo accepted earlier (its full decode, after the checks, failed)."""
        self._accepted = [a for a in self._accepted if a is not info]
        self._labels.pop(info.sha256, None)
        self._problems.append(problem)

    def summary(self) -> str:
        """One short paragraph: how many were usable, and what was wrong with the rest."""
        usable = len(self._accepted)
        text = f"{usable} {'photo was' if usable == 1 else 'photos were'} usable"
        return text + _listing(self._problems)

    def verdict(self) -> tuple[PhotoInfo, ...] | BatchProblem:
        """The accepted photos if there are enough and not too many, else why not."""
        usable = len(self._accepted)
        rules = self.rules
        if usable < rules.min_photos:
            were = "was" if usable == 1 else "were"
            return BatchProblem(
                f"{rules.min_photos} photos at least; {usable} {were} usable"
                + _listing(self._problems),
                self.problems,
            )
        if usable > rules.max_photos:
            return BatchProblem(
                f"{rules.max_photos} photos at most; {usable} were usable: "
                f"leave out {usable - rules.max_photos}",
                self.problems,
            )
        return self.accepted


def _listing(problems: Iterable[PhotoProblem], shown: int = 10) -> str:
    """ ": photo 2: too small ...; photo 5: ..." kept short enough for one Discord message."""
    items = list(problems)
    if not items:
        return ""
    lines = [f"{p.label}: {p.reason}" for p in items[:shown]]
    if len(items) > shown:
        lines.append(f"and {len(items) - shown} more")
    return ": " + "; ".join(lines)


def store_photo(folder: Path, info: PhotoInfo, data: bytes) -> Path:
    """Write an accepted photo to `folder/<sha256>.<ext>` atomically and return the path.

    The name comes only from the hash and our extension. The bytes go to a temporary file
    in the same folder first and are renamed into place, so a crash never leaves half a
    file under the final name.
    """
    # PhotoInfo is a plain dataclass anyone can build: re-check what becomes a path.
    if not _HASH_NAME.fullmatch(info.sha256) or info.kind not in EXTENSIONS:
        raise ValueError("not a checked photo")
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise ValueError("these bytes are not the photo that was checked")
    return write_atomically(folder, info.file_name, data)


# Members' face photos: owner-only folders and files (mkstemp makes the files 0600).
PHOTO_FOLDER_MODE = 0o700


def private_folder(folder: Path) -> None:
    """Make `folder` and any missing parents owner-only (0700), and narrow `folder` itself
    if it exists with a wider mode (a photos folder made before this rule)."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for part in reversed(missing):
        part.mkdir(mode=PHOTO_FOLDER_MODE, exist_ok=True)
    if folder.stat().st_mode & 0o777 != PHOTO_FOLDER_MODE:
        folder.chmod(PHOTO_FOLDER_MODE)


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` to `folder/name` (0600, in a 0700 folder) through a temporary file
    renamed into place."""
    private_folder(folder)
    final = folder / name
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            # Data on disk before the rename, or a power cut could leave an empty file there.
            os.fsync(file.fileno())
        os.replace(temp_name, final)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return final
