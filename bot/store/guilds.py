"""Per-server settings: budget and member limits (the operator's defaults unless set), the
paused flag, the channels and roles allowed to use the bot, the ban list, the alert channel
and how results are shown outside age-restricted channels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.rules.credits import BudgetPolicy
from bot.rules.nsfw import NsfwMode
from bot.store.db import Clock, Database, Transaction, to_ms


@dataclass(frozen=True)
class GuildSettings:
    """A server's settings, defaults filled in. Empty allow-lists mean "everyone"."""

    guild_id: int
    monthly_budget_mc: int
    user_daily_limit_mc: int
    user_monthly_limit_mc: int
    paused: bool
    allowed_channel_ids: frozenset[int]
    allowed_role_ids: frozenset[int]
    banned_user_ids: frozenset[int]
    alert_channel_id: int | None = None  # where admins are told (None: nowhere)
    low_balance_alert_mc: int | None = None  # None: the operator's LOW_BALANCE_ALERT_MC
    nsfw_mode: NsfwMode = NsfwMode.SHOW  # results outside age-restricted channels

    def allows_channel(self, channel_id: int) -> bool:
        return not self.allowed_channel_ids or channel_id in self.allowed_channel_ids

    def allows_roles(self, role_ids: Iterable[int]) -> bool:
        """True when the server allows every role, or the member has one it allows."""
        return not self.allowed_role_ids or not self.allowed_role_ids.isdisjoint(role_ids)


# The `Changes` topic of a server's settings (its channels, roles and bans included).
TOPIC = "guild"


def _ids(text: object) -> frozenset[int]:
    return frozenset(int(part) for part in str(text).split(",")) if text else frozenset()


class Guilds:
    def __init__(self, db: Database, policy: BudgetPolicy, clock: Clock) -> None:
        self._db = db
        self._policy = policy
        self._clock = clock
        # Every command reads its server's settings, so they are cached. Only this class
        # changes them: each write tells the other processes (`Transaction.notify`, on
        # commit), and `_forget` hears theirs (`Changes`; docs/architecture.md §7).
        self._cache: dict[int, GuildSettings] = {}
        # Bumped by every change heard: a read that overlapped one is not cached (it may
        # have read the row before that commit).
        self._generation = 0
        db.changes.subscribe(self._forget)

    async def get(self, guild_id: int) -> GuildSettings:
        """The server's settings, or the defaults for a server that never changed any."""
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        generation = self._generation
        settings = await self._read(guild_id)
        if generation == self._generation and self._db.changes.trusted:
            self._cache[guild_id] = settings
        return settings

    def _forget(self, topic: str | None, key: int | None) -> None:
        if topic is None:
            self._generation += 1
            self._cache.clear()
        elif topic == TOPIC:
            self._generation += 1
            self._cache.pop(key or 0, None)

    async def _changed(self, guild_id: int) -> GuildSettings:
        self._generation += 1
        self._cache.pop(guild_id, None)
        return await self.get(guild_id)

    async def _read(self, guild_id: int) -> GuildSettings:
        concat = self._db.dialect.group_concat
        row = await self._db.fetchone(
            "SELECT"  # noqa: S608
            " (SELECT monthly_budget_mc FROM guild_settings WHERE guild_id = :g) AS budget,"
            " (SELECT user_daily_limit_mc FROM guild_settings WHERE guild_id = :g) AS day,"
            " (SELECT user_monthly_limit_mc FROM guild_settings WHERE guild_id = :g) AS month,"
            " (SELECT paused FROM guild_settings WHERE guild_id = :g) AS paused,"
            f" (SELECT {concat('channel_id')} FROM guild_channels WHERE guild_id = :g)"
            "   AS channels,"
            f" (SELECT {concat('role_id')} FROM guild_roles WHERE guild_id = :g) AS roles,"
            f" (SELECT {concat('user_id')} FROM guild_bans WHERE guild_id = :g) AS bans,"
            " (SELECT alert_channel_id FROM guild_settings WHERE guild_id = :g) AS alerts,"
            " (SELECT low_balance_alert_mc FROM guild_settings WHERE guild_id = :g) AS low,"
            " (SELECT nsfw_mode FROM guild_settings WHERE guild_id = :g) AS nsfw",
            {"g": guild_id},
        )
        assert row is not None
        policy = self._policy
        return GuildSettings(
            guild_id=guild_id,
            monthly_budget_mc=_or(row["budget"], policy.guild_monthly_budget_mc),
            user_daily_limit_mc=_or(row["day"], policy.user_daily_limit_mc),
            user_monthly_limit_mc=_or(row["month"], policy.user_monthly_limit_mc),
            paused=bool(row["paused"]),
            allowed_channel_ids=_ids(row["channels"]),
            allowed_role_ids=_ids(row["roles"]),
            banned_user_ids=_ids(row["bans"]),
            alert_channel_id=None if row["alerts"] is None else int(row["alerts"]),
            low_balance_alert_mc=None if row["low"] is None else int(row["low"]),
            nsfw_mode=NsfwMode(row["nsfw"] or NsfwMode.SHOW),
        )

    async def set_monthly_budget(self, guild_id: int, amount_mc: int | None) -> GuildSettings:
        """Set the server's monthly budget; None goes back to the configured default."""
        _check_limit(amount_mc)
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "monthly_budget_mc", amount_mc)
        return await self._changed(guild_id)

    async def set_user_daily_limit(self, guild_id: int, amount_mc: int | None) -> GuildSettings:
        """Set each member's daily limit here; None goes back to the configured default."""
        _check_limit(amount_mc)
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "user_daily_limit_mc", amount_mc)
        return await self._changed(guild_id)

    async def set_user_monthly_limit(self, guild_id: int, amount_mc: int | None) -> GuildSettings:
        """Set each member's monthly limit here; None goes back to the configured default."""
        _check_limit(amount_mc)
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "user_monthly_limit_mc", amount_mc)
        return await self._changed(guild_id)

    async def set_paused(self, guild_id: int, paused: bool) -> GuildSettings:
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "paused", int(paused))
        return await self._changed(guild_id)

    async def set_alert_channel(self, guild_id: int, channel_id: int | None) -> GuildSettings:
        """Where the server's admins are told about faults; None: nowhere (alerts off)."""
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "alert_channel_id", channel_id)
        return await self._changed(guild_id)

    async def set_low_balance_alert(self, guild_id: int, amount_mc: int | None) -> GuildSettings:
        """The Astria balance below which the server's admins are told; 0 never, None the
        operator's default."""
        _check_limit(amount_mc)
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "low_balance_alert_mc", amount_mc)
        return await self._changed(guild_id)

    async def set_nsfw_mode(self, guild_id: int, mode: NsfwMode) -> GuildSettings:
        """How results are shown outside age-restricted channels (see `NsfwMode`)."""
        async with self._db.write() as tx:
            await self._upsert(tx, guild_id, "nsfw_mode", mode.value)
        return await self._changed(guild_id)

    async def allow_channel(self, guild_id: int, channel_id: int) -> GuildSettings:
        return await self._add("guild_channels", "channel_id", guild_id, channel_id)

    async def disallow_channel(self, guild_id: int, channel_id: int) -> GuildSettings:
        return await self._remove("guild_channels", "channel_id", guild_id, channel_id)

    async def allow_role(self, guild_id: int, role_id: int) -> GuildSettings:
        return await self._add("guild_roles", "role_id", guild_id, role_id)

    async def disallow_role(self, guild_id: int, role_id: int) -> GuildSettings:
        return await self._remove("guild_roles", "role_id", guild_id, role_id)

    async def ban(
        self, guild_id: int, user_id: int, *, actor_id: int | None, reason: str | None = None
    ) -> GuildSettings:
        async with self._db.write() as tx:
            await tx.execute(
                "INSERT INTO guild_bans (guild_id, user_id, banned_by, reason, banned_at_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, user_id) DO UPDATE SET"
                " banned_by = excluded.banned_by, reason = excluded.reason",
                (guild_id, user_id, actor_id, reason, to_ms(self._clock())),
            )
            await tx.notify(TOPIC, guild_id)
        return await self._changed(guild_id)

    async def unban(self, guild_id: int, user_id: int) -> GuildSettings:
        return await self._remove("guild_bans", "user_id", guild_id, user_id)

    async def is_banned(self, guild_id: int, user_id: int) -> bool:
        return user_id in (await self.get(guild_id)).banned_user_ids

    async def _upsert(self, tx: Transaction, guild_id: int, column: str, value: object) -> None:
        # Only placeholders vary: `column` is one of this module's literals.
        await tx.execute(
            f"INSERT INTO guild_settings (guild_id, {column}, updated_at_ms) VALUES (?, ?, ?)"  # noqa: S608
            f" ON CONFLICT (guild_id) DO UPDATE SET {column} = excluded.{column},"
            " updated_at_ms = excluded.updated_at_ms",
            (guild_id, value, to_ms(self._clock())),
        )
        await tx.notify(TOPIC, guild_id)

    async def _add(self, table: str, column: str, guild_id: int, value: int) -> GuildSettings:
        async with self._db.write() as tx:
            # Only placeholders vary: `table` and `column` are this module's literals.
            await tx.execute(
                f"INSERT INTO {table} (guild_id, {column}) VALUES (?, ?)"  # noqa: S608
                " ON CONFLICT DO NOTHING",
                (guild_id, value),
            )
            await tx.notify(TOPIC, guild_id)
        return await self._changed(guild_id)

    async def _remove(self, table: str, column: str, guild_id: int, value: int) -> GuildSettings:
        async with self._db.write() as tx:
            await tx.execute(
                f"DELETE FROM {table} WHERE guild_id = ? AND {column} = ?",  # noqa: S608
                (guild_id, value),
            )
            await tx.notify(TOPIC, guild_id)
        return await self._changed(guild_id)


def _or(value: int | None, default: int) -> int:
    return default if value is None else int(value)


def _check_limit(value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError("a budget or limit cannot be negative")
