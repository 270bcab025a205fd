"""Spend over the last days, as a chart shows it: per UTC day and job kind with every day
present (zero days too), the biggest spenders by name, and the totals per kind. Pure: the
ledger's sums come in, numbers and labels go out (bot/report draws them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal

from bot.rules.prompts import clean_name

SpendKind = Literal["tunes", "images", "other"]
KINDS: Final[tuple[SpendKind, ...]] = ("tunes", "images", "other")
KIND_LABELS: Final[Mapping[SpendKind, str]] = {
    "tunes": "Tunes",
    "images": "Images",
    "other": "Corrections",  # an admin's adjustment that names no job
}
CHART_DAYS: Final = 30
TOP_MEMBERS: Final = 8
NAME_LIMIT: Final = 24
# Erasing a member sets their id in the ledger to 0 (the amounts stay): one bar for all.
ERASED_ID: Final = 0
ERASED_LABEL: Final = "erased"


@dataclass(frozen=True)
class SpendRow:
    """One day's spend (held included, grants excluded) by one member on one kind of job,
    in millicents; `user_id` None for a server-wide correction."""

    day: date
    user_id: int | None
    kind: SpendKind
    amount_mc: int


@dataclass(frozen=True)
class SpendSummary:
    """What the chart shows. `by_day[kind][i]` is the spend on `days[i]`; `members` is
    empty for one member's own chart."""

    title: str
    days: tuple[date, ...]
    by_day: Mapping[SpendKind, tuple[int, ...]]
    members: tuple[tuple[str, int], ...]
    by_kind: tuple[tuple[SpendKind, int], ...]
    total_mc: int

    @property
    def per_day(self) -> tuple[int, ...]:
        return tuple(sum(self.by_day[k][i] for k in KINDS) for i in range(len(self.days)))


def window(last_day: date, days: int = CHART_DAYS) -> tuple[date, date]:
    """The first and the last day (both included) of the `days` ending on `last_day`."""
    return last_day - timedelta(days=days - 1), last_day


def member_label(user_id: int | None, names: Mapping[int, str]) -> str:
    """A member as the chart names them: their display name when one is known, "erased"
    for erased members, their id only when no name is known."""
    if user_id is None:
        return "no member"
    if user_id == ERASED_ID:
        return ERASED_LABEL
    name = clean_name(names.get(user_id, "")).strip()
    if not name:
        return f"id {user_id}"
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "…"


def ranked_members(rows: Iterable[SpendRow]) -> list[tuple[int | None, int]]:
    """Members by what they spent, most first (ties by id), leaving out those at 0."""
    spent: dict[int | None, int] = defaultdict(int)
    for row in rows:
        spent[row.user_id] += row.amount_mc
    ranked = [(user, mc) for user, mc in spent.items() if mc != 0]
    return sorted(ranked, key=lambda item: (-item[1], -1 if item[0] is None else item[0]))


def summarize(
    rows: Iterable[SpendRow],
    *,
    title: str,
    last_day: date,
    days: int = CHART_DAYS,
    names: Mapping[int, str] | None = None,
    members: bool = True,
    top: int = TOP_MEMBERS,
) -> SpendSummary:
    """The chart's numbers from the ledger's per-day sums; rows outside the window are
    left out. With `members`, the `top` biggest spenders and one bar for the rest."""
    first, last = window(last_day, days)
    shown = [r for r in rows if first <= r.day <= last]
    dates = tuple(first + timedelta(days=i) for i in range(days))
    index = {d: i for i, d in enumerate(dates)}
    columns: dict[SpendKind, list[int]] = {k: [0] * days for k in KINDS}
    for row in shown:
        columns[row.kind][index[row.day]] += row.amount_mc
    by_kind = tuple((k, sum(columns[k])) for k in KINDS)
    listed: list[tuple[str, int]] = []
    if members:
        ranked = ranked_members(shown)
        labels = names or {}
        listed = [(member_label(user, labels), mc) for user, mc in ranked[:top]]
        rest = ranked[top:]
        if rest:
            others = "1 other" if len(rest) == 1 else f"{len(rest)} others"
            listed.append((others, sum(mc for _, mc in rest)))
    return SpendSummary(
        title=title,
        days=dates,
        by_day={k: tuple(v) for k, v in columns.items()},
        members=tuple(listed),
        by_kind=by_kind,
        total_mc=sum(mc for _, mc in by_kind),
    )
