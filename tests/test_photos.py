"""Checking training photos: what a member sees for each kind of bad photo, and storage."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.rules.photos import (
    HEIC_TIP,
    BatchProblem,
    PhotoBatch,
    PhotoInfo,
    PhotoProblem,
    PhotoRules,
    check_photo,
    display_name,
    photo_label,
    store_photo,
)

RULES = PhotoRules()


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (600, 800), colour: tuple[int, int, int] = (1, 2, 3)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height, with no pixels behind it: a bomb in 57 bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def distinct_photos(count: int) -> list[bytes]:
    return [image_bytes(colour=(i * 11 % 256, 100, 200)) for i in range(count)]


def problem(result: PhotoInfo | PhotoProblem) -> PhotoProblem:
    assert isinstance(result, PhotoProblem), result
    return result


@pytest.mark.parametrize(("fmt", "kind", "ext"), [("JPEG", "jpeg", "jpg"), ("PNG", "png", "png")])
def test_good_jpeg_and_png_are_accepted_with_measured_facts(fmt: str, kind: str, ext: str) -> None:
    data = image_bytes(fmt)
    info = check_photo(data, RULES)
    assert info == PhotoInfo(
        kind=kind,  # type: ignore[arg-type]
        sha256=hashlib.sha256(data).hexdigest(),
        width=600,
        height=800,
        size=len(data),
    )
    assert info.ext == ext


def test_good_webp_is_accepted() -> None:
    info = check_photo(image_bytes("WEBP"), RULES)
    assert isinstance(info, PhotoInfo)
    assert (info.kind, info.ext, info.width, info.height) == ("webp", "webp", 600, 800)


def test_pdf_named_png_is_refused_by_its_bytes() -> None:
    refused = problem(check_photo(b"%PDF-1.7\n" + b"0" * 100, RULES, label="photo 1 (scan.png)"))
    assert str(refused) == "photo 1 (scan.png): this is a PDF, not a JPEG, PNG or WebP photo"


def test_heic_is_refused_with_the_export_tip() -> None:
    data = b"\x00\x00\x00\x18ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 200
    refused = problem(check_photo(data, RULES, label=photo_label(3, "IMG_1234.HEIC")))
    assert refused.tip == HEIC_TIP
    assert str(refused) == (
        "photo 3 (IMG\\_1234.HEIC): this is a HEIC photo; export it as JPEG "
        "(on an iPhone: Settings > Camera > Formats > Most Compatible)"
    )


def test_video_in_an_ftyp_box_is_not_taken_for_heic() -> None:
    refused = problem(check_photo(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, RULES))
    assert refused.reason == "this is a video, not a photo"


def test_gif_is_refused() -> None:
    refused = problem(check_photo(image_bytes("GIF"), RULES))
    assert refused.reason == "this is a GIF, not a JPEG, PNG or WebP photo"


def test_unknown_bytes_and_empty_files_are_refused_plainly() -> None:
    assert problem(check_photo(b"hello", RULES)).reason == "this is not a JPEG, PNG or WebP photo"
    assert problem(check_photo(b"", RULES)).reason == "the file is empty"


def test_small_photo_is_refused_naming_the_minimum() -> None:
    refused = problem(check_photo(image_bytes(size=(300, 400)), RULES, label="photo 2"))
    assert refused.reason == "too small: at least 512 px on the short side; this one is 300×400"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_photo_is_refused(fmt: str) -> None:
    data = image_bytes(fmt, colour=(200, 10, 10))
    refused = problem(check_photo(data[: len(data) // 2], RULES))
    assert refused.reason == "this file is damaged or cut short"


def test_oversize_file_is_refused_naming_the_limit() -> None:
    data = image_bytes()
    refused = problem(check_photo(data, PhotoRules(max_bytes=len(data) - 1)))
    assert refused.reason.startswith("too big: ")
    twelve_mb = b"\xff\xd8\xff" + b"\0" * (12 * 1024 * 1024 - 3)
    assert problem(check_photo(twelve_mb, RULES)).reason == (
        "too big: 10 MB at most; this one is 12.0 MB"
    )


@pytest.mark.parametrize(
    "side",
    [
        7_000,  # 49 MP: over our bound, under Pillow's
        10_000,  # 100 MP: Pillow only warns, and the warning must refuse
        20_000,  # 400 MP: Pillow raises DecompressionBombError
    ],
)
def test_decompression_bomb_is_refused_without_decoding(side: int) -> None:
    refused = problem(check_photo(png_header_only(side, side), RULES))
    assert refused.reason == "too large: at most 40 megapixels"


def test_bomb_warning_is_an_error_even_when_our_bound_is_higher() -> None:
    rules = PhotoRules(max_pixels=10**12)
    with (
        pytest.warns(Image.DecompressionBombWarning),  # Pillow alone would only warn
        Image.open(io.BytesIO(png_header_only(10_000, 10_000))),
    ):
        pass
    refused = problem(check_photo(png_header_only(10_000, 10_000), rules))
    assert refused.reason.startswith("too large")


def test_animated_webp_is_refused() -> None:
    frames = [Image.new("RGB", (600, 800), (i * 50, 0, 0)) for i in range(2)]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:])
    assert problem(check_photo(out.getvalue(), RULES)).reason == "this is an animation, not a photo"


def test_repeated_photo_is_refused_naming_the_first() -> None:
    batch = PhotoBatch(RULES)
    data = image_bytes()
    assert isinstance(batch.add("photo 1", data), PhotoInfo)
    repeat = problem(batch.add("photo 4", data))
    assert str(repeat) == "photo 4: the same photo as photo 1"
    assert len(batch.accepted) == 1
    assert batch.problems == (repeat,)


def test_too_few_usable_photos_says_why_each_was_refused() -> None:
    batch = PhotoBatch(RULES)
    good = distinct_photos(3)
    batch.add("photo 1", good[0])
    batch.add("photo 2", image_bytes(size=(300, 400)))
    batch.add("photo 3", good[1])
    batch.add("photo 4", good[2])
    batch.add("photo 5", good[0])
    verdict = batch.verdict()
    assert isinstance(verdict, BatchProblem)
    assert str(verdict) == (
        "4 photos at least; 3 were usable: photo 2: too small: at least 512 px on the short "
        "side; this one is 300×400; photo 5: the same photo as photo 1"
    )
    assert len(verdict.problems) == 2
    assert batch.summary().startswith("3 photos were usable: photo 2: too small")


def test_too_many_usable_photos_is_refused() -> None:
    batch = PhotoBatch(PhotoRules(max_photos=5))
    for number, data in enumerate(distinct_photos(7), start=1):
        batch.add(f"photo {number}", data)
    verdict = batch.verdict()
    assert isinstance(verdict, BatchProblem)
    assert str(verdict) == "5 photos at most; 7 were usable: leave out 2"


def test_enough_photos_pass_with_their_infos_in_order() -> None:
    batch = PhotoBatch(RULES)
    photos = distinct_photos(4)
    for number, data in enumerate(photos, start=1):
        batch.add(f"photo {number}", data)
    verdict = batch.verdict()
    assert isinstance(verdict, tuple)
    assert [info.sha256 for info in verdict] == [hashlib.sha256(p).hexdigest() for p in photos]
    assert batch.summary() == "4 photos were usable"


def test_display_names_cannot_inject_markdown_or_pings() -> None:
    hostile = "`x` **@everyone** <@123> <@&4> ||spoiler|| [link](https://evil) \n# head\u202e.png"
    label = photo_label(2, hostile)
    for bad in ("`", "@", "<", ">", "*", "|", "[", "]", ":", "#", "\n", "\u202e"):
        assert bad not in label
    refused = problem(check_photo(b"nope", RULES, label=hostile))
    assert "@" not in str(refused)
    assert "`" not in str(refused)


def test_long_display_names_are_capped() -> None:
    name = display_name("a" * 500 + ".jpg")
    assert len(name) == 60
    assert name.endswith("…")


@given(st.text())
def test_display_name_is_safe_and_idempotent(text: str) -> None:
    name = display_name(text)
    assert display_name(name) == name
    assert len(name.replace("\\_", "_")) <= 60
    assert not set(name) & set("`@<>*|~[]:#\n\r")


def test_store_photo_names_the_file_by_its_hash(tmp_path: Path) -> None:
    data = image_bytes()
    batch = PhotoBatch(RULES)
    info = batch.add(photo_label(1, "../../etc/passwd"), data)
    assert isinstance(info, PhotoInfo)
    folder = tmp_path / "tunes" / "new"
    path = store_photo(folder, info, data)
    assert path == folder / f"{hashlib.sha256(data).hexdigest()}.jpg"
    assert path.read_bytes() == data
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp file left behind
    assert not (tmp_path / "etc").exists()


def test_store_photo_refuses_bytes_that_were_not_checked(tmp_path: Path) -> None:
    info = check_photo(image_bytes(), RULES)
    assert isinstance(info, PhotoInfo)
    with pytest.raises(ValueError, match="not the photo"):
        store_photo(tmp_path, info, image_bytes(colour=(9, 9, 9)))
    forged = PhotoInfo(kind="jpeg", sha256="../../x", width=1, height=1, size=1)
    with pytest.raises(ValueError, match="not a checked photo"):
        store_photo(tmp_path, forged, b"x")
    assert list(tmp_path.iterdir()) == []


MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"\x00\x00\x00\x18ftypheic",
    b"GIF89a",
    b"",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_check_photo_never_raises(magic: bytes, rest: bytes) -> None:
    result = check_photo(magic + rest, PhotoRules(min_side=1))
    assert isinstance(result, PhotoInfo | PhotoProblem)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["JPEG", "PNG", "WEBP"]), st.data())
def test_check_photo_never_raises_on_damaged_real_photos(fmt: str, data: st.DataObject) -> None:
    photo = bytearray(image_bytes(fmt, size=(64, 64), colour=(5, 6, 7)))
    for _ in range(data.draw(st.integers(1, 8))):
        photo[data.draw(st.integers(0, len(photo) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(photo)))
    result = check_photo(bytes(photo[:cut]), PhotoRules(min_side=1))
    assert isinstance(result, PhotoInfo | PhotoProblem)
