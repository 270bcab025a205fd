"""The spend chart as a PNG: spend per UTC day stacked by kind of job, the biggest spenders
and the totals per kind, drawn with matplotlib on the Agg canvas.

The chart is drawn in a worker thread (the actions call it through `asyncio.to_thread`), so
pyplot is never used: its figure registry is process-wide state that is not thread-safe.
Each chart is its own `Figure` on its own `FigureCanvasAgg`, and one lock lets one chart be
drawn at a time (matplotlib's font cache is shared, and a render is CPU-bound anyway).
matplotlib is imported on the first render, in that thread, not when the bot starts.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from bot.rules.credits import format_mc
from bot.rules.spending import KIND_LABELS, KINDS, SpendKind, SpendSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DPI: Final = 100
WIDTH: Final = 1200
HEIGHT: Final = 800  # a server's chart: the days above, members and kinds below
MEMBER_HEIGHT: Final = 600  # a member's own: the days above, kinds below
COLOURS: Final[dict[SpendKind, str]] = {"tunes": "#4c72b0", "images": "#dd8452", "other": "#8c8c8c"}
MEMBER_COLOUR: Final = "#55a868"
GRID_COLOUR: Final = "#e3e3e3"
MIN_SLOTS: Final = 3  # bar places a horizontal panel keeps, however few bars it has
TICK_EVERY: Final = 5  # days between date labels, counted back from today

_LOCK = threading.Lock()


def chart_size(summary: SpendSummary) -> tuple[int, int]:
    """The picture's width and height in pixels."""
    return WIDTH, HEIGHT if summary.members else MEMBER_HEIGHT


def render_spend_chart(summary: SpendSummary) -> bytes:
    """The chart as PNG bytes. Blocking (a few hundred ms): call it in a worker thread."""
    with _LOCK:
        return _draw(summary)


def _draw(summary: SpendSummary) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = chart_size(summary)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.set_facecolor("white")
    figure.suptitle(_plain(summary.title), fontsize=15, fontweight="bold")
    if summary.members:
        grid = figure.add_gridspec(2, 2, height_ratios=(3, 2))
        _days(figure.add_subplot(grid[0, :]), summary)
        _bars(figure.add_subplot(grid[1, 0]), "Top members", summary.members, [MEMBER_COLOUR])
        kinds_axes = figure.add_subplot(grid[1, 1])
    else:
        grid = figure.add_gridspec(2, 1, height_ratios=(3, 1.3))
        _days(figure.add_subplot(grid[0]), summary)
        kinds_axes = figure.add_subplot(grid[1])
    spent = [(kind, mc) for kind, mc in summary.by_kind if mc != 0]
    kinds = [(KIND_LABELS[kind], mc) for kind, mc in spent]
    _bars(kinds_axes, "By kind of job", kinds, [COLOURS[kind] for kind, _ in spent])
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, facecolor="white")
    return out.getvalue()


def _days(axes: Axes, summary: SpendSummary) -> None:
    """Spend per day, one bar a day (an empty day shows no bar but keeps its place), stacked
    by kind; a day's negative part (a correction) hangs below zero."""
    count = len(summary.days)
    places = list(range(count))
    up, down = [0] * count, [0] * count
    for kind in KINDS:
        values = summary.by_day[kind]
        if not any(values):
            continue
        gains = [max(v, 0) for v in values]
        losses = [min(v, 0) for v in values]
        colour = COLOURS[kind]
        axes.bar(places, gains, bottom=up, width=0.8, color=colour, label=KIND_LABELS[kind])
        if any(losses):
            axes.bar(places, losses, bottom=down, width=0.8, color=colour)
        up = [a + b for a, b in zip(up, gains, strict=True)]
        down = [a + b for a, b in zip(down, losses, strict=True)]
    first, last = summary.days[0], summary.days[-1]
    axes.set_title(
        _plain(f"Per day (UTC), {_date(first)} to {_date(last)}: {format_mc(summary.total_mc)}"),
        loc="left",
    )
    ticks = places[::-1][::TICK_EVERY][::-1]
    axes.set_xticks(ticks, labels=[_date(summary.days[i]) for i in ticks])
    axes.set_xlim(-0.6, count - 0.4)
    _money_axis(axes, "y")
    if not any(up) and not any(down):
        axes.set_ylim(0, 100_000)
        axes.text(
            0.5,
            0.5,
            f"Nothing spent in these {count} days",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#777777",
            fontsize=13,
        )
    else:
        # Above the panel, right of its title: never over a bar.
        axes.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=3, frameon=False)
        axes.axhline(0, color="#999999", linewidth=0.8)
    _tidy(axes, "y")


def _bars(axes: Axes, title: str, items: Sequence[tuple[str, int]], colours: Sequence[str]) -> None:
    """Horizontal bars, biggest first, each with its amount at its end."""
    axes.set_title(title, loc="left")
    places = list(range(len(items)))
    values = [mc for _, mc in items]
    if items:
        axes.barh(places, values, height=0.6, color=list(colours))
        axes.set_yticks(places, labels=[_plain(label) for label, _ in items])
        # Biggest at the top, and room for at least three bars, so one is not a slab.
        axes.set_ylim(max(len(items), MIN_SLOTS) - 0.5, -0.5)
        for place, value in zip(places, values, strict=True):
            axes.text(
                value,
                place,
                f" {_plain(format_mc(value))} ",
                va="center",
                ha="left" if value >= 0 else "right",
                fontsize=10,
            )
    low, high = min([0, *values]), max([0, *values])
    span = max(high - low, 100_000)
    axes.set_xlim(low - (0.3 * span if low < 0 else 0), high + 0.3 * span)
    if not any(values):
        axes.set_yticks([])
        axes.text(
            0.5,
            0.5,
            "Nothing spent",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#777777",
        )
    _money_axis(axes, "x")
    _tidy(axes, "x")


def _money_axis(axes: Axes, which: str) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis = axes.yaxis if which == "y" else axes.xaxis
    axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: _plain(format_mc(round(value)))))


def _tidy(axes: Axes, grid: str) -> None:
    axes.grid(axis="y" if grid == "y" else "x", color=GRID_COLOUR)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _date(day: object) -> str:
    import datetime as dt

    assert isinstance(day, dt.date)
    return f"{day:%b} {day.day}"


def _plain(text: str) -> str:
    """Text drawn as it is: a `$` would start matplotlib's math mode (a member named
    `$x$` must not become a formula), and a character the bundled font lacks (an emoji)
    is shown as `?` instead of a warning and an empty box."""
    known = _font_chars()
    shown = "".join(c if ord(c) in known else "?" for c in text)
    return shown.replace("$", r"\$")


@lru_cache(maxsize=1)
def _font_chars() -> frozenset[int]:
    """The characters of the font matplotlib draws text in (DejaVu Sans, bundled)."""
    from matplotlib import font_manager, ft2font

    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(ft2font.FT2Font(path).get_charmap())
