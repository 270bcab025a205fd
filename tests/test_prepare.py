"""Prepared photos: what leaves the machine is upright, at most 2048 px, free of EXIF, GPS and
every other metadata block, and never grown by a pointless re-encode."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from bot.astria import AstriaClient, TuneRequest
from bot.offline.emulator import Emulator
from bot.rules.intake import PhotoIntake, PhotoSource
from bot.rules.photos import PhotoInfo, PhotoRules, check_photo
from bot.rules.prepare import (
    JPEG_QUALITY,
    LONG_SIDE,
    PreparedPhoto,
    fit,
    prepare_photo,
    store_prepared,
)
from tests.conftest import photo

RED = (230, 20, 20)
# JPEG segments that carry metadata: APP1 (EXIF, XMP), APP2 (ICC), APP13 (Photoshop), COM.
JPEG_METADATA = {0xE1: "APP1", 0xE2: "APP2", 0xED: "APP13", 0xFE: "COM"}
PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"tIME"}


def phone_jpeg(
    size: tuple[int, int] = (3000, 2000),
    *,
    noise: float = 0.0,
    quality: int = 92,
    icc: bool = True,
) -> bytes:
    """A landscape JPEG as a phone stores a portrait shot: sideways, with orientation 6
    ("turn 90° clockwise to view"), a GPS position, a camera name, XMP, an ICC profile and a
    comment. The stored top-left corner is red, so after turning it is the top-right."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    if noise:
        grain = Image.frombytes("RGB", size, random.Random(7).randbytes(width * height * 3))
        image = Image.blend(image, grain, noise)
    image.paste(RED, (0, 0, width // 5, height // 5))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 24.0)
    gps[3], gps[4] = "E", (2.0, 21.0, 3.0)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() if icc else b""
    out = io.BytesIO()
    image.save(
        out,
        "JPEG",
        quality=quality,
        exif=exif.tobytes(),
        icc_profile=profile,
        comment=b"taken at home",
        xmp=b"<x:xmpmeta><rdf:Description tiff:Orientation='6'/></x:xmpmeta>",
    )
    return out.getvalue()


def jpeg_markers(data: bytes) -> list[int]:
    """Every segment marker before the image data (Pillow writes all of them there)."""
    assert data[:2] == b"\xff\xd8"
    markers, at = [], 2
    while at < len(data):
        assert data[at] == 0xFF, "not a marker"
        marker = data[at + 1]
        if marker == 0xDA:  # start of scan
            break
        markers.append(marker)
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return markers


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kinds.append(data[at + 4 : at + 8])
        at += 12 + length
    return kinds


def assert_no_metadata(data: bytes) -> None:
    """No metadata, read from the bytes themselves and again by Pillow."""
    if data.startswith(b"\xff\xd8"):
        found = [JPEG_METADATA[m] for m in jpeg_markers(data) if m in JPEG_METADATA]
        assert found == [], f"metadata segments left: {found}"
    elif data.startswith(b"\x89PNG"):
        found_chunks = [c for c in png_chunks(data) if c in PNG_METADATA]
        assert found_chunks == [], f"metadata chunks left: {found_chunks}"
    for needle in (b"Exif\x00\x00", b"PhoneMaker", b"taken at home", b"xmpmeta", b"secret"):
        assert needle not in data
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert not image.getexif()
        assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
        assert not getattr(image, "text", None)


def checked(data: bytes) -> PhotoInfo:
    info = check_photo(data)
    assert isinstance(info, PhotoInfo), info
    return info


def test_a_phone_photo_comes_out_upright_small_and_without_exif_or_gps() -> None:
    data = phone_jpeg()
    with Image.open(io.BytesIO(data)) as original:  # the premise: all of it is there
        assert original.getexif().get_ifd(0x8825) and "icc_profile" in original.info
    prepared = prepare_photo(checked(data), data)
    assert_no_metadata(prepared.data)
    assert prepared.kind == "jpeg" and len(prepared.data) < len(data)
    with Image.open(io.BytesIO(prepared.data)) as image:
        # Turned upright: portrait now, long side 2048, the red corner at the top right.
        assert image.size == (prepared.width, prepared.height) == (1365, LONG_SIDE)
        assert image.mode == "RGB"
        top_right = image.getpixel((image.width - 20, 20))
        top_left = image.getpixel((20, 20))
    assert isinstance(top_right, tuple) and isinstance(top_left, tuple)
    assert top_right[0] > 200 and top_right[1] < 60
    assert top_left[1] > 150  # not red: the stored bottom-left, white on the gradient


def test_a_noisy_phone_sized_photo_goes_up_under_three_megabytes() -> None:
    data = phone_jpeg((4032, 3024), noise=0.35, quality=92, icc=False)
    assert len(data) > 5 * 1024 * 1024
    prepared = prepare_photo(checked(data), data)
    assert len(prepared.data) <= 3 * 1024 * 1024
    # Decoded at half scale by libjpeg (within 1536-2048 px), upright, and no resize after.
    assert (prepared.width, prepared.height) == (1512, 2016)
    assert_no_metadata(prepared.data)


def test_a_small_png_stays_a_small_png_without_its_text_chunks() -> None:
    image = Image.new("RGB", (640, 640), (40, 120, 200))
    out = io.BytesIO()
    info = PngInfo()
    info.add_text("Comment", "secret place")
    image.save(out, "PNG", pnginfo=info)
    data = out.getvalue()
    assert b"tEXt" in data
    prepared = prepare_photo(checked(data), data)
    assert prepared.kind == "png"  # a JPEG of it would be bigger
    assert len(prepared.data) <= len(data)
    assert (prepared.width, prepared.height) == (640, 640)
    assert_no_metadata(prepared.data)


def test_a_photo_that_re_encoding_would_grow_is_not_grown() -> None:
    # A coarse JPEG: at quality 90 it would come out larger than the member sent it.
    size = (1200, 900)
    grain = Image.frombytes("RGB", size, random.Random(3).randbytes(size[0] * size[1] * 3))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    grain.save(out, "JPEG", quality=40, exif=exif.tobytes())
    data = out.getvalue()
    again = io.BytesIO()
    grain.save(again, "JPEG", quality=JPEG_QUALITY, optimize=True)
    assert len(again.getvalue()) > len(data)  # the premise: re-encoding grows it
    prepared = prepare_photo(checked(data), data)
    assert prepared.kind == "jpeg"
    assert len(prepared.data) <= len(data)
    assert (prepared.width, prepared.height) == size
    assert_no_metadata(prepared.data)


def test_transparency_is_laid_on_white_when_the_photo_becomes_a_jpeg() -> None:
    size = (2600, 1800)
    rgba = Image.linear_gradient("L").resize(size).convert("RGBA")
    rgba.paste((0, 0, 0, 0), (0, 0, 400, 400))  # a fully transparent corner
    out = io.BytesIO()
    rgba.save(out, "PNG", compress_level=1)
    data = out.getvalue()
    prepared = prepare_photo(checked(data), data)
    assert prepared.kind == "jpeg" and max(prepared.width, prepared.height) == LONG_SIDE
    with Image.open(io.BytesIO(prepared.data)) as image:
        assert image.mode == "RGB"
        corner = image.getpixel((10, 10))
    assert isinstance(corner, tuple) and min(corner) > 240


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4032, 3024), (2048, 1536)), ((3024, 4032), (1536, 2048)), ((800, 600), (800, 600))],
)
def test_fit_brings_the_long_side_to_2048_and_never_enlarges(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert fit(size) == expected


def broken_stream_png() -> bytes:
    """A PNG whose chunks and CRCs are all valid but whose pixel stream is not zlib: it
    passes the checks (which never inflate a PNG) and fails the full decode."""
    good = photo(1, size=600, fmt="PNG")
    head = good[:33]  # signature and IHDR
    body = b"definitely not zlib" * 50
    idat = struct.pack(">I", len(body)) + b"IDAT" + body
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + body))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return head + idat + end


async def test_intake_keeps_only_prepared_photos_on_disk(tmp_path: Path) -> None:
    sources = [_source(f"photo {n}", phone_jpeg((2600 + n, 1800))) for n in range(1, 5)]
    sources.append(_source("photo 5", broken_stream_png()))
    intake = PhotoIntake(tmp_path, PhotoRules(), max_concurrent_downloads=2)
    result = await intake.take(sources)
    assert result.ok and len(result.paths) == 4
    assert "photo 5: this file is damaged or cut short; send the photo again" in result.summary
    for path in result.paths:
        data = path.read_bytes()
        assert_no_metadata(data)
        assert path.suffix == ".jpg"
        with Image.open(path) as image:
            assert image.height == LONG_SIDE and image.width < image.height
    # The file is named by the checked photo's hash, as before.
    assert [p.stem for p in result.paths] == [i.sha256 for i in result.accepted]


async def test_preparations_at_once_never_pass_their_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.rules.intake as intake_module

    running, peak = 0, 0
    real = prepare_photo

    def counting(info: PhotoInfo, data: bytes) -> PreparedPhoto:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return real(info, data)
        finally:
            running -= 1

    monkeypatch.setattr(intake_module, "prepare_photo", counting)
    intake = PhotoIntake(tmp_path, PhotoRules(), max_concurrent_downloads=4)
    members = [[_source(f"p{i}", photo(m * 10 + i, size=900)) for i in range(4)] for m in range(4)]
    results = await asyncio.gather(*(intake.take(s) for s in members))
    assert all(r.ok for r in results)
    assert peak == intake.prepare_slots == 1


async def test_astria_receives_the_prepared_bytes(
    tmp_path: Path, emulator: Emulator, client: AstriaClient
) -> None:
    intake = PhotoIntake(tmp_path, PhotoRules(), max_concurrent_downloads=2)
    result = await intake.take(
        [_source(f"photo {n}", phone_jpeg((3000 + n, 2000))) for n in range(4)]
    )
    assert result.ok
    request = TuneRequest(title="prepared-1", name="man", images=list(result.paths))
    await client.create_tune(request)
    received = emulator.photos_received["prepared-1"]
    assert len(received) == 4
    for facts in received:
        assert facts.metadata == ()
        assert facts.format == "JPEG"
        assert max(facts.width, facts.height) <= LONG_SIDE and facts.height > facts.width
    # The emulator would have seen it otherwise: the same photos as they came.
    raw = [phone_jpeg((3000 + n, 2000)) for n in range(4)]
    await client.create_tune(TuneRequest(title="raw-1", name="man", images=raw))
    seen = emulator.photos_received["raw-1"]
    assert all({"exif", "gps", "icc", "comment", "xmp"} <= set(f.metadata) for f in seen)
    assert all(f.width == 3000 + n for n, f in enumerate(seen))


def _source(label: str, data: bytes) -> PhotoSource:
    async def read() -> bytes:
        return data

    return PhotoSource(label, len(data), read)


def test_store_prepared_names_the_file_by_the_checked_hash_and_refuses_forged_ones(
    tmp_path: Path,
) -> None:
    data = photo(4, size=700)
    prepared = prepare_photo(checked(data), data)
    path = store_prepared(tmp_path / "batch-x", prepared)
    assert path.name == f"{prepared.source.sha256}.jpg" and path.read_bytes() == prepared.data
    forged = PhotoInfo("jpeg", "../../etc/passwd", 700, 700, 1)
    with pytest.raises(ValueError, match="not a prepared photo"):
        store_prepared(tmp_path, PreparedPhoto(forged, "jpeg", b"x", 1, 1))


@pytest.mark.parametrize("lossless", [True, False])
def test_a_webp_keeps_its_kind_of_compression_when_it_stays_webp(lossless: bool) -> None:
    image = Image.new("RGBA", (600, 600), (20, 200, 90, 255))
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    image.save(out, "WEBP", lossless=lossless, exif=exif.tobytes())
    data = out.getvalue()
    prepared = prepare_photo(checked(data), data)
    assert prepared.kind == "webp" and len(prepared.data) <= len(data) * 1.1
    assert (b"VP8L" in prepared.data) is lossless
    assert b"EXIF" in data and b"EXIF" not in prepared.data
    assert_no_metadata(prepared.data)
