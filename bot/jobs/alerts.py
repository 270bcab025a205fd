"""Alerts for the admins: what the core notices that an admin should hear about, in words
an admin reads (no routes, status codes or tracebacks), written to the store's outbox
(bot/store/alerts.py) for the Discord side to post in each server's alert channel.

Job alerts (stuck, overage, undeliverable, Discord refusing posts) go to the job's server;
account alerts (out of credit, low balance, drift, Astria failing) to every server with an
alert channel, since they share the Astria account. A kind repeats inside the window as one
alert with a count. Errors that happen now and then are normal (the bot retries them): only
`REPEATS` of a kind inside `repeat_window` make an alert. Knows no Discord.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.config import Settings
from bot.rules.credits import format_mc
from bot.store import Store, StoreError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class AlertKind(StrEnum):
    STUCK = "stuck"
    OUT_OF_CREDIT = "out-of-credit"
    LOW_BALANCE = "low-balance"
    DRIFT = "drift"
    OVERAGE = "overage"
    UNDELIVERABLE = "undeliverable"
    ASTRIA_ERRORS = "astria-errors"
    DISCORD_ERRORS = "discord-errors"


@dataclass(frozen=True)
class AlertPolicy:
    window: timedelta = timedelta(hours=1)  # one alert of a kind per server per window
    low_balance_mc: int = 500_000  # the operator's default threshold (0: never)
    repeats: int = 3  # errors of a kind inside `repeat_window` before admins are told
    repeat_window: timedelta = timedelta(minutes=5)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPolicy:
        return cls(
            window=timedelta(seconds=settings.alert_window_seconds),
            low_balance_mc=settings.low_balance_alert_mc,
        )


class Repeats:
    """Counts errors by key; `due` says, per key, how many to tell about once at least
    `threshold` fell inside the last `window` (those before it included). Pure."""

    def __init__(self, threshold: int, window: timedelta) -> None:
        self._threshold = threshold
        self._window = window
        self._seen: dict[object, deque[datetime]] = {}
        self._untold: dict[object, int] = {}

    def note(self, key: object, now: datetime) -> None:
        self._seen.setdefault(key, deque()).append(now)
        self._untold[key] = self._untold.get(key, 0) + 1

    def due(self, now: datetime) -> dict[object, int]:
        found: dict[object, int] = {}
        for key, times in list(self._seen.items()):
            while times and now - times[0] > self._window:
                times.popleft()
            if not times:  # never repeated enough: forgotten
                del self._seen[key]
                self._untold.pop(key, None)
                continue
            # Errors that fell out of the window untold are forgotten with it.
            untold = min(self._untold.get(key, 0), len(times))
            self._untold[key] = untold
            if untold and len(times) >= self._threshold:
                found[key] = untold
                self._untold[key] = 0
        return found


class Alerter:
    """Writes alerts to the outbox and nudges whoever posts them (`notify`, set by the
    Discord side). A failing write is logged and never breaks the caller's work."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        policy: AlertPolicy | None = None,
        *,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.policy = policy or AlertPolicy()
        self.notify = notify
        self._errors = Repeats(self.policy.repeats, self.policy.repeat_window)

    async def tell(
        self, kind: AlertKind, text: str, *, guild_id: int | None = None, count: int = 1
    ) -> None:
        """Record `count` faults of `kind` for one server, or (None) every server with an
        alert channel."""
        try:
            written = await self._store.alerts.raise_alert(
                str(kind), text, guild_id=guild_id, window=self.policy.window, count=count
            )
        except StoreError as exc:
            log.warning("alert %s not recorded (%s)", kind, exc)
            return
        if written and self.notify is not None:
            self.notify()

    # ------------------------------------------------------------------ what is noticed

    async def stuck(self, job: str, guild_id: int) -> None:
        await self.tell(
            AlertKind.STUCK,
            f"⏳ `{job}` is taking much longer than expected at Astria. The bot keeps "
            "checking and its credit stays held; `/admin cancel` stops it (settled at what "
            "Astria says it cost).",
            guild_id=guild_id,
        )

    async def out_of_credit(self, need_mc: int) -> None:
        await self.tell(
            AlertKind.OUT_OF_CREDIT,
            "💳 Astria refused a job because the bot's Astria account is out of credit. Paid "
            "commands are paused on every server this account serves, and paid jobs wait "
            f"with their credit held. Once the balance covers {format_mc(need_mc)} more "
            "they start by themselves; `/admin refresh-balance` checks at once after a top-up.",
        )

    async def balance_read(self, previous_mc: int | None, balance_mc: int) -> None:
        """A new balance reading: each server whose threshold it fell below is told (once
        per fall: a reading still below it after the first says nothing new)."""
        try:
            thresholds = await self._store.alerts.low_balance_thresholds(self.policy.low_balance_mc)
        except StoreError as exc:
            log.warning("low-balance thresholds not read (%s)", exc)
            return
        for guild_id, threshold in thresholds.items():
            crossed = previous_mc is None or previous_mc >= threshold
            if threshold > 0 and balance_mc < threshold and crossed:
                await self.tell(
                    AlertKind.LOW_BALANCE,
                    f"🪫 The Astria balance is {format_mc(balance_mc)}, below this server's "
                    f"alert threshold of {format_mc(threshold)}. The bot's owner can add "
                    "credit at Astria before paid commands stop.",
                    guild_id=guild_id,
                )

    async def drift(self, moved_mc: int, charged_mc: int) -> None:
        await self.tell(
            AlertKind.DRIFT,
            f"🔎 The Astria balance fell by {format_mc(moved_mc)} since the last reading, but "
            f"the bot's own jobs cost {format_mc(charged_mc)}: "
            f"{format_mc(moved_mc - charged_mc)} the bot cannot account for. Another app "
            "using the same Astria key, or a price change at Astria, does this; compare the "
            "ledger with Astria's billing page.",
        )

    async def refund_statement(self, stated: str, found: str) -> None:
        await self.tell(
            AlertKind.DRIFT,
            f"🔎 The bot is set up as if Astria {stated} the cost of failed prompts, but the "
            f"balance shows Astria {found} it. Until the operator changes "
            "ASTRIA_REFUNDS_FAILED_PROMPTS, the ledger and Astria's bill drift apart.",
        )

    async def ledger_problems(self, problems: list[str]) -> None:
        await self.tell(
            AlertKind.DRIFT,
            f"🔎 The bot's credit ledger has {len(problems)} inconsistencies; the operator "
            "will find them in the bot's log.",
        )

    async def overage(self, job: str, guild_id: int, reserved_mc: int, cost_mc: int) -> None:
        await self.tell(
            AlertKind.OVERAGE,
            f"💸 `{job}` cost {format_mc(cost_mc)} at Astria, {format_mc(cost_mc - reserved_mc)} "
            f"more than the {format_mc(reserved_mc)} it was priced at. The extra counts against "
            "the budgets; the operator may need to raise TUNE_PRICE_MC or IMAGE_PRICE_MC.",
            guild_id=guild_id,
        )

    async def undeliverable(self, job: str, guild_id: int) -> None:
        await self.tell(
            AlertKind.UNDELIVERABLE,
            f"📭 The result of `{job}` could not be posted in its channel nor sent to its "
            "member by DM; it is kept for them in `/jobs`. Check that the bot may view and "
            "send messages (and attach files) in the channels it is used in.",
            guild_id=guild_id,
        )

    def astria_error(self) -> None:
        """One request to Astria failed (retried by the bot): told once it repeats."""
        self._errors.note(AlertKind.ASTRIA_ERRORS, self._clock())

    def discord_error(self, guild_id: int) -> None:
        """Discord failed or refused one report for this server (retried): told once it
        repeats."""
        self._errors.note((AlertKind.DISCORD_ERRORS, guild_id), self._clock())

    async def flush(self) -> None:
        """Tell about the errors that repeated since the last flush (each tracker round)."""
        for key, count in self._errors.due(self._clock()).items():
            if key == AlertKind.ASTRIA_ERRORS:
                await self.tell(
                    AlertKind.ASTRIA_ERRORS,
                    "⚠️ Astria keeps failing the bot's requests (it is down, slow, or "
                    "refusing the key). Jobs wait and are retried by themselves.",
                    count=count,
                )
            elif isinstance(key, tuple):
                await self.tell(
                    AlertKind.DISCORD_ERRORS,
                    "⚠️ Discord keeps failing or refusing the bot's posts here. Results "
                    "wait and are tried again; check the bot's permissions in the channels "
                    "it is used in.",
                    guild_id=int(key[1]),
                    count=count,
                )


__all__ = ["AlertKind", "AlertPolicy", "Alerter", "Repeats"]
