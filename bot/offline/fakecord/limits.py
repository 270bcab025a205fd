"""Per-channel rate limits (fixed windows, as the headers describe them) and nonce dedupe."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from bot.offline.fakecord.config import FakeDiscordConfig


@dataclass
class Verdict:
    """What one request on a bucket got, and the numbers its X-RateLimit-* headers carry."""

    kind: str
    channel_id: int
    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    early: bool = False

    @property
    def bucket(self) -> str:
        # One hash per route kind; discord.py adds the channel id (the major parameter).
        return f"fakecord-{self.kind}"


@dataclass
class _Window:
    limit: int
    per: float
    start: float | None = None
    count: int = 0
    retry_not_before: float = -math.inf


def _round_up(seconds: float) -> float:
    return math.ceil(max(seconds, 0.0) * 1000) / 1000


class RateLimits:
    """Buckets keyed by (kind, channel): `send` for POST messages, `edit` for PATCH."""

    def __init__(self, config: FakeDiscordConfig) -> None:
        self.config = config
        self._windows: dict[tuple[str, int], _Window] = {}
        self.limited: collections.Counter[int] = collections.Counter()  # 429s per channel
        self.early: collections.Counter[int] = collections.Counter()  # early retries per channel

    def _window(self, kind: str, channel_id: int) -> _Window:
        window = self._windows.get((kind, channel_id))
        if window is None:
            if kind == "send":
                window = _Window(self.config.send_limit, self.config.send_per)
            else:
                window = _Window(self.config.edit_limit, self.config.edit_per)
            self._windows[(kind, channel_id)] = window
        return window

    def hit(self, kind: str, channel_id: int, now: float) -> Verdict:
        window = self._window(kind, channel_id)
        early = now < window.retry_not_before
        if early:
            self.early[channel_id] += 1
        if window.start is None or now >= window.start + window.per:
            window.start, window.count = now, 0
        reset_after = _round_up(window.start + window.per - now)
        if window.count >= window.limit:
            self.limited[channel_id] += 1
            window.retry_not_before = max(window.retry_not_before, now + reset_after)
            return Verdict(kind, channel_id, False, window.limit, 0, reset_after, early)
        window.count += 1
        remaining = window.limit - window.count
        return Verdict(kind, channel_id, True, window.limit, remaining, reset_after, early)


class Nonces:
    """enforce_nonce: the same nonce from one author in one channel within the window."""

    def __init__(self, config: FakeDiscordConfig) -> None:
        self.config = config
        self._seen: dict[tuple[int, int, str], tuple[int, float]] = {}
        self.deduped = 0

    def find(self, channel_id: int, author_id: int, nonce: str, now: float) -> int | None:
        entry = self._seen.get((channel_id, author_id, nonce))
        if entry is None or now - entry[1] > self.config.nonce_window:
            return None
        return entry[0]

    def remember(
        self, channel_id: int, author_id: int, nonce: str, message_id: int, now: float
    ) -> None:
        self._seen[(channel_id, author_id, nonce)] = (message_id, now)
