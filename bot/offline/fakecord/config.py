"""Settings of the Discord fake: the rules a bot must live with, and the clocks they use."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

MIB = 1024 * 1024


def _tier_limits() -> dict[int, int]:
    return {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}


@dataclass
class FakeDiscordConfig:
    """Every rule of the fake in one place; tests shrink the windows, CI can widen them."""

    token: str | None = None  # None: any "Bot ..." token logs in
    bot_name: str = "Fakecord Bot"
    application_name: str = "Fakecord App"
    # Per-channel buckets: POST /channels/{c}/messages and PATCH .../messages/{m}.
    send_limit: int = 5
    send_per: float = 5.0
    edit_limit: int = 5
    edit_per: float = 5.0
    # Send X-RateLimit-* on successful responses too (discord.py then throttles itself).
    advertise_ratelimits: bool = True
    # Uploads.
    max_attachments: int = 10
    file_limit_by_tier: dict[int, int] = field(default_factory=_tier_limits)
    dm_file_limit: int = 10 * MIB
    request_limit: int = 25 * MIB
    # enforce_nonce dedupe, per (channel, author, nonce).
    nonce_window: float = 300.0
    # Interactions.
    interaction_deadline: float = 3.0
    # Hold the HTTP answer to an interaction callback this long after it took effect: the
    # member (and the gateway) then outrun the bot's read of it, as can happen on Discord.
    callback_answer_delay: float = 0.0
    token_life: float = 15 * 60.0
    # Gateway. GET /gateway/bot's advice: how many shards, and how many may identify at
    # once (Discord gives large bots 16 or more; most get 1, that is one every 5 s).
    recommended_shards: int = 1
    max_concurrency: int = 16
    heartbeat_interval: float = 41.25
    # A session the fake dropped may RESUME (missed events replayed); else INVALID_SESSION.
    allow_resume: bool = True
    # Attachment URLs stop working this long after upload (None: never).
    attachment_url_life: float | None = None
    # Seconds each attachment download waits before its bytes (a slow CDN: lets a test
    # kill the bot while a form's photos are being read).
    attachment_delay: float = 0.0
    # Windows use `clock`; timestamps, snowflakes and X-RateLimit-Reset use `wall_clock`.
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    def file_limit(self, premium_tier: int | None) -> int:
        """The per-file upload limit of a guild tier; None means a DM."""
        if premium_tier is None:
            return self.dm_file_limit
        return self.file_limit_by_tier.get(premium_tier, self.file_limit_by_tier[0])

    def __repr__(self) -> str:
        # The token stays out of logs and test output.
        return (
            f"FakeDiscordConfig(send={self.send_limit}/{self.send_per}s, "
            f"edit={self.edit_limit}/{self.edit_per}s, deadline={self.interaction_deadline}s, "
            f"nonce_window={self.nonce_window}s)"
        )
