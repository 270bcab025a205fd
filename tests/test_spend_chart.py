"""The spend chart opened as an image: a PNG of the promised size, not blank, with bars of
each kind's colour on the days that had spend and nowhere else; and the numbers under it
(every day present, names not ids, erased members as "erased")."""

from __future__ import annotations

import io
import warnings
from datetime import date, timedelta

from PIL import Image

from bot.report.spend_chart import (
    COLOURS,
    HEIGHT,
    MEMBER_COLOUR,
    MEMBER_HEIGHT,
    WIDTH,
    chart_size,
    render_spend_chart,
)
from bot.rules.spending import ERASED_LABEL, SpendRow, SpendSummary, summarize

TODAY = date(2026, 12, 3)
FIRST = TODAY - timedelta(days=29)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def opened(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated file fails here
    assert image.format == "PNG"
    return image.convert("RGB")


def columns_of(image: Image.Image, colour: str, top: int, bottom: int) -> list[int]:
    """The x positions where a bar of `colour` stands between rows `top` and `bottom`: a
    run of at least 12 pixels of it down the column (a legend's swatch is smaller)."""
    wanted = rgb(colour)
    pixels = image.load()
    assert pixels is not None
    found = []
    for x in range(image.width):
        run = 0
        for y in range(top, bottom):
            run = run + 1 if pixels[x, y] == wanted else 0
            if run >= 12:
                found.append(x)
                break
    return found


def server_summary(**names: str) -> SpendSummary:
    rows = [
        SpendRow(FIRST, 11, "tunes", 150_000),  # the window's first day
        SpendRow(TODAY, 11, "tunes", 150_000),  # and its last
        SpendRow(TODAY, 12, "images", 24_000),
        SpendRow(FIRST - timedelta(days=1), 11, "images", 999_000),  # outside: left out
        SpendRow(TODAY - timedelta(days=3), 0, "images", 12_000),  # an erased member's
    ]
    ids = {11: names.get("alice", ""), 12: names.get("bob", "")}
    return summarize(rows, title="Spend on this server", last_day=TODAY, names=ids)


def test_every_day_is_there_with_zero_days_and_nothing_outside_the_window():
    summary = server_summary(alice="alice", bob="bob")
    assert len(summary.days) == 30 and summary.days[0] == FIRST and summary.days[-1] == TODAY
    assert summary.per_day[0] == 150_000 and summary.per_day[-1] == 174_000
    assert summary.per_day[26] == 12_000 and summary.per_day.count(0) == 27
    assert summary.total_mc == 336_000  # the day before the window is not in it
    assert dict(summary.by_kind) == {"tunes": 300_000, "images": 36_000, "other": 0}


def test_members_are_named_erased_ones_are_erased_and_ids_only_without_a_name():
    summary = server_summary(alice="alice", bob="bob")
    assert summary.members == (("alice", 300_000), ("bob", 24_000), (ERASED_LABEL, 12_000))
    nameless = server_summary(alice="alice")
    assert [label for label, _ in nameless.members] == ["alice", "id 12", ERASED_LABEL]
    rows = [SpendRow(TODAY, user, "images", 1_000 * user) for user in range(1, 12)]
    many = summarize(rows, title="t", last_day=TODAY, names={u: f"m{u}" for u in range(1, 12)})
    assert [label for label, _ in many.members] == [f"m{u}" for u in range(11, 3, -1)] + [
        "3 others"
    ]
    assert many.members[-1][1] == 6_000


def test_the_server_chart_is_a_png_of_its_size_with_bars_where_spend_was():
    summary = server_summary(alice="alice", bob="bob")
    image = opened(render_spend_chart(summary))
    assert image.size == chart_size(summary) == (WIDTH, HEIGHT)
    assert len(image.getcolors(maxcolors=1_000_000) or []) > 50  # text, bars, grid: not blank
    # The per-day panel is the top half: tunes on the first and the last day only, so their
    # colour shows at the left and right ends and not in between.
    top = columns_of(image, COLOURS["tunes"], 60, HEIGHT // 2)
    assert top and top[0] < WIDTH * 0.2 and top[-1] > WIDTH * 0.8
    assert not [x for x in top if WIDTH * 0.2 < x < WIDTH * 0.8]
    images = columns_of(image, COLOURS["images"], 60, HEIGHT // 2)
    assert images and all(x > WIDTH * 0.75 for x in images)  # 3 days ago and today
    assert not columns_of(image, COLOURS["other"], 60, HEIGHT // 2)  # no corrections
    assert columns_of(image, MEMBER_COLOUR, HEIGHT // 2, HEIGHT)  # the top-members bars


def test_a_member_chart_has_its_own_size_and_an_empty_one_still_draws():
    rows = [SpendRow(TODAY - timedelta(days=10), 11, "images", 30_000)]
    mine = summarize(rows, title="alice's spend", last_day=TODAY, members=False)
    image = opened(render_spend_chart(mine))
    assert image.size == (WIDTH, MEMBER_HEIGHT) and not mine.members
    spots = columns_of(image, COLOURS["images"], 60, MEMBER_HEIGHT // 2)
    assert spots and spots[0] > WIDTH * 0.5 and spots[-1] < WIDTH * 0.75
    nothing = summarize([], title="Your spend", last_day=TODAY, members=False)
    blank = opened(render_spend_chart(nothing))
    assert blank.size == (WIDTH, MEMBER_HEIGHT)
    assert not any(columns_of(blank, c, 0, MEMBER_HEIGHT) for c in COLOURS.values())
    assert len(blank.getcolors(maxcolors=1_000_000) or []) > 10  # axes and words


def test_names_are_drawn_as_text_never_as_formulas_or_missing_glyphs():
    # `$…$` would be matplotlib's math mode (a bad one raises); an emoji is not in the
    # bundled font (matplotlib would warn and draw an empty box).
    summary = server_summary(alice="$\\frac{$", bob="bob 🎨")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = opened(render_spend_chart(summary))
    assert image.size == (WIDTH, HEIGHT)
