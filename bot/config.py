"""The bot's one settings object, read from the environment and `.env`.

Every setting has a default or an explained error: a bad value ends in one readable message
naming the variable and how to fix it, never a pydantic traceback.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import secrets
import socket
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

Branch = Literal["fast", "flux1", "sd15", "sdxl1"]
ProfileName = Literal["flux-lora", "sd15-checkpoint", "faceid"]
ModelType = Literal["lora", "faceid"] | None
# Astria's Flux training presets (docs/architecture.md §6); "none" sends no preset, which
# Astria reads as its "high" preset (100 steps a photo against the portrait preset's 27).
FluxPreset = Literal["flux-lora-portrait", "flux-lora-focus", "none"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

BRANCHES: tuple[str, ...] = ("fast", "flux1", "sd15", "sdxl1")
# The branches each profile can train on: its own model family, and the free mock. FaceID
# adapts an SD1.5 gallery model (690204, Realistic Vision), so it is sd15 too. No profile
# trains SDXL (a `pti` LoRA on base 666678), so `sdxl1` goes with none of them.
PROFILE_BRANCHES: dict[ProfileName, tuple[Branch, ...]] = {
    "flux-lora": ("fast", "flux1"),
    "sd15-checkpoint": ("fast", "sd15"),
    "faceid": ("fast", "sd15"),
}
# Astria's FaceID docs prompt FaceID at this guidance; higher burns the face in.
FACEID_CFG_SCALE = 3.0

# Prices are configuration: Astria publishes none (docs/architecture.md §6). Defaults follow the
# last published figures ($1.50 a fine-tune); operators should set their own. They are what a
# job reserves and shows; the ledger settles at the `cost_mc` Astria reports. For flux1 the
# figure assumes the portrait preset (27 steps a photo): Astria's "high" preset (no preset,
# 100 a photo) trains about 3.7x as long, and `check` says so when FLUX_TRAINING_PRESET=none.
DEFAULT_TUNE_PRICE_MC: dict[str, int] = {
    "fast": 0,
    "flux1": 150_000,
    "sd15": 150_000,
    "sdxl1": 150_000,
}
DEFAULT_IMAGE_PRICE_MC: dict[str, int] = {"fast": 0, "flux1": 3_000, "sd15": 2_000, "sdxl1": 2_500}
# An Upscale is one image with Astria's super-resolution (x4), which Astria bills as an
# extra on the image; it publishes no figure, so the default assumes the extra equals one
# image (twice the image price). Set it from the invoice line of one upscale.
DEFAULT_UPSCALE_PRICE_MC: dict[str, int] = {
    "fast": 0,
    "flux1": 6_000,
    "sd15": 4_000,
    "sdxl1": 5_000,
}
# `/imagine quality:high` asks Astria for `resolution=2K` (about four times the pixels of
# the 1K default). Astria bills it as an extra on each image and publishes no figure: the
# default assumes half an image more (1.5x the image price, per image). Set it from the
# invoice line of one 2K prompt divided by its image count.
DEFAULT_HIGH_RESOLUTION_PRICE_MC: dict[str, int] = {
    "fast": 0,
    "flux1": 4_500,
    "sd15": 3_000,
    "sdxl1": 3_750,
}

ASTRIA_KEY_HELP = "find it at https://www.astria.ai/users/edit#api (API settings)"

# The callback signing key must carry 32 bytes (256 bits) of entropy. Randomness cannot be
# read off a string, so the rule counts what an attacker must guess at most: the key's
# length times the bits of the smallest alphabet it is written in (hex 4 bits, base64 6,
# any other printable ASCII log2(95)), so 64 hex or 43 base64 characters at least; and at
# least 10 different characters, which refuses "aaaa..." and short repeated patterns.
SIGNING_KEY_BITS = 256
SIGNING_KEY_DISTINCT = 10
_HEX = frozenset(string.hexdigits)
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/-_=")
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def fresh_signing_key() -> str:
    """A new random key of 32 bytes, as `astria-bot check` and the settings errors offer."""
    return secrets.token_urlsafe(32)


def signing_key_bits(key: str) -> float:
    """The most entropy `key` can carry by the rule above (0 outside printable ASCII)."""
    chars = frozenset(key)
    if not chars <= _PRINTABLE:
        return 0.0
    alphabet = 16 if chars <= _HEX else 64 if chars <= _BASE64 else len(_PRINTABLE)
    return len(key) * math.log2(alphabet)


def signing_key_problem(key: str) -> str | None:
    """Why `key` is too weak to sign callback URLs, or None when it passes the rule."""
    if not frozenset(key) <= _PRINTABLE:
        return "must be printable ASCII (letters, digits, punctuation)"
    if len(frozenset(key)) < SIGNING_KEY_DISTINCT or signing_key_bits(key) < SIGNING_KEY_BITS:
        return (
            f"is too weak: it needs {SIGNING_KEY_BITS // 8} random bytes, such as 64 hex or "
            "43 base64 characters"
        )
    return None


def _key_example() -> str:
    return (
        f"for example CALLBACK_SIGNING_KEY={fresh_signing_key()} (freshly generated; "
        "`astria-bot check` prints another)"
    )


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class ModelProfile:
    """How tunes are trained and prompted for one model family."""

    name: ProfileName
    model_type: ModelType  # None: a checkpoint tune
    base_tune_id: int
    token: str
    expected_prompt_seconds: float
    # Sent as `tune[preset]` when a tune trains on a paid branch; None sends none.
    training_preset: str | None = None
    # Sent as `prompt[cfg_scale]` when a prompt goes to the base tune; None: Astria's own.
    cfg_scale: float | None = None
    # Flux ignores negative prompts ("No negatives" in Astria's Flux docs).
    takes_negative_prompt: bool = True

    @property
    def prompts_go_to_base(self) -> bool:
        """LoRA and FaceID prompts are posted to the base tune with a tag in the text."""
        return self.model_type is not None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything the bot reads from its environment. Variable names are the field names
    in upper case (`ASTRIA_API_KEY` for `astria_api_key`)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,  # `DEV_GUILD_ID=` in .env means "not set"
        hide_input_in_errors=True,
        validate_default=True,
    )

    # Secrets and where to reach the services.
    discord_token: SecretStr | None = None
    astria_api_key: SecretStr | None = None
    astria_base_url: str = "https://api.astria.ai"
    astria_branch: Branch = "fast"
    # Whether the account has Astria's idempotency on: `auto` (the default) believes the probe
    # (two creates of one fast-branch title, bot/astria/probe.py); true or false are checked
    # against it and the bot refuses to start on a contradiction.
    astria_idempotency: bool | Literal["auto"] = "auto"
    # Astria does not document whether a failed prompt's cost goes back to the balance;
    # the members never pay for one either way (docs/architecture.md §3).
    astria_refunds_failed_prompts: bool = True
    # What Astria charges to keep a tune another 30 days when the account auto-extends
    # ("$0.5 per model per month" in its FAQ): booked as the operator's cost when a tune's
    # expires_at moves, so the ledger still equals the bill.
    astria_extension_price_mc: int = Field(default=50_000, ge=0, le=10_000_000)

    # Model profile.
    model_profile: ProfileName = "flux-lora"
    flux_base_tune_id: int = Field(default=1504944, gt=0)
    sd15_base_tune_id: int = Field(default=690204, gt=0)
    faceid_base_tune_id: int = Field(default=690204, gt=0)
    # Trigger words in prompt text (Astria's term is "token"; not a secret).
    flux_token: str = "ohwx"  # noqa: S105
    # Astria's recommended preset for Flux LoRA faces; sent with every paid Flux tune.
    flux_training_preset: FluxPreset = "flux-lora-portrait"
    sd15_token: str = "sks"  # noqa: S105
    flux_prompt_seconds: float = Field(default=30.0, gt=0)
    sd15_prompt_seconds: float = Field(default=20.0, gt=0)
    faceid_prompt_seconds: float = Field(default=20.0, gt=0)

    # Storage. DATABASE_URL (postgresql://user:password@host:port/db) puts the store on
    # PostgreSQL; unset, it is the SQLite file at DATABASE_PATH (the default, and `demo`).
    database_path: Path = Path("data/bot.sqlite3")
    database_url: SecretStr | None = None
    # PostgreSQL ends a session left idle inside a transaction this long (a frozen or
    # stopped process), so its row locks, money lock and leases do not wait on it forever.
    database_idle_transaction_seconds: float = Field(default=60.0, ge=1.0, le=86_400.0)
    # Who this process is when it holds job leases (several processes on one PostgreSQL
    # share the jobs through them): unique per running process; by default host and pid.
    process_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        max_length=200,
    )
    # How long a job's lease lasts unless renewed (renewed every third of it): a process
    # that dies has its jobs taken over by another within about this long.
    lease_seconds: float = Field(default=30.0, ge=3.0, le=3600.0)
    photos_dir: Path = Path("data/photos")
    # A training photo no unfinished tune refers to (a kill while a form was read) is
    # deleted once it is this old; the sweep runs at start and every 10 minutes.
    photo_sweep_grace_seconds: float = Field(default=600.0, ge=0)
    max_concurrent_downloads: int = Field(default=4, ge=1)

    # Money, in millicents (100,000 mc = $1).
    tune_price_mc: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TUNE_PRICE_MC))
    image_price_mc: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_IMAGE_PRICE_MC))
    upscale_price_mc: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_UPSCALE_PRICE_MC))
    high_resolution_price_mc: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_HIGH_RESOLUTION_PRICE_MC)
    )
    guild_monthly_budget_mc: int = Field(default=2_000_000, ge=0)
    user_daily_limit_mc: int = Field(default=200_000, ge=0)
    user_monthly_limit_mc: int = Field(default=1_000_000, ge=0)
    balance_safety_margin_mc: int = Field(default=100_000, ge=0)
    budget_timezone: str = "UTC"

    # Talking to Astria.
    astria_request_timeout_seconds: float = Field(default=120.0, gt=0)
    astria_retry_base_seconds: float = Field(default=30.0, ge=0)
    astria_retry_max_attempts: int = Field(default=5, ge=1)
    astria_lookup_wait_seconds: float = Field(default=60.0, ge=0)
    poll_tune_min_seconds: float = Field(default=30.0, gt=0)
    poll_prompt_min_seconds: float = Field(default=5.0, gt=0)
    poll_max_seconds: float = Field(default=600.0, gt=0)
    # The Astria account's request rate and burst (a token bucket). On PostgreSQL they are
    # the budget of all the processes together (bot/store/budget.py), on SQLite this one's.
    astria_requests_per_second: float = Field(default=5.0, gt=0)
    astria_request_burst: int = Field(default=5, ge=1, le=1000)
    tune_stuck_after_seconds: float = Field(default=3600.0, gt=0)
    prompt_stuck_after_seconds: float = Field(default=900.0, gt=0)
    stuck_poll_seconds: float = Field(default=1800.0, gt=0)
    balance_refresh_seconds: float = Field(default=300.0, gt=0)

    # Alerts to the admins' channel (`/admin alerts`).
    alert_window_seconds: float = Field(default=3600.0, gt=0)
    low_balance_alert_mc: int = Field(default=500_000, ge=0)

    # The local queue in front of Astria.
    max_training_per_member: int = Field(default=1, ge=1)
    max_generating_per_member: int = Field(default=4, ge=1)
    max_waiting_per_member: int = Field(default=10, ge=1, le=1000)
    max_jobs_in_flight: int = Field(default=50, ge=1)
    max_concurrent_creates: int = Field(default=4, ge=1)
    expiry_reminder_days: int = Field(default=3, ge=0, le=29)
    # Finished jobs' events and old prompts' image links are pruned after this many days
    # (the ledger never is): bot/store/retention.py.
    retention_days: int = Field(default=90, ge=7, le=3650)

    # Callbacks (optional: without a public URL the bot polls).
    public_callback_url: str | None = None
    callback_listen: str = "127.0.0.1:8080"
    callback_signing_key: SecretStr | None = None

    # Prompt text.
    prompt_max_length: int = Field(default=600, ge=1, le=600)
    prompt_banned_words: str = ""

    # Discord.
    sync_commands_on_start: bool = True
    post_image_links: bool = False
    dev_guild_id: int | None = Field(default=None, gt=0)
    # Sharding: unset, one connection (enough below about 2,500 servers); SHARD_COUNT=N runs
    # N shards (an AutoShardedBot); SHARD_IDS, comma-separated, the ones this process holds.
    shard_count: int | None = Field(default=None, ge=1, le=4096)
    shard_ids: str = ""
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None

    # Logs (bot/logs.py): the level, text or one JSON object a line, and an optional
    # rotating file beside stderr.
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_file: Path | None = None
    log_file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_file_backups: int = Field(default=5, ge=0, le=100)

    # Metrics (bot/metrics.py): a Prometheus endpoint, off unless METRICS_PORT is set;
    # loopback only unless METRICS_ALLOW_PUBLIC says otherwise.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_allow_public: bool = False

    # For tests only (the chaos run's store faults): the share of the running bot's
    # database writes that fail with an I/O error (nothing written), drawn from a
    # generator seeded with CHAOS_STORE_FAULT_SEED. Leave it 0 in production.
    chaos_store_fault_rate: float = Field(default=0.0, ge=0.0, le=0.5)
    chaos_store_fault_seed: int = 0

    @field_validator("astria_idempotency", mode="before")
    @classmethod
    def _idempotency(cls, value: object) -> bool | str:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word == "auto":
            return "auto"
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
        raise ValueError("must be auto, true or false, like ASTRIA_IDEMPOTENCY=auto")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_host")
    @classmethod
    def _metrics_host(cls, value: str) -> str:
        host = value.strip().strip("[]")
        if not host:
            raise ValueError("must be an address to listen on, like METRICS_HOST=127.0.0.1")
        return host

    @model_validator(mode="after")
    def _metrics_loopback(self) -> Settings:
        if self.metrics_allow_public or _is_loopback(self.metrics_host):
            return self
        raise ValueError(
            f"METRICS_HOST={self.metrics_host} is not a loopback address: the metrics show "
            "every server's spend and jobs, so they are served on 127.0.0.1 by default. Put "
            "a proxy with access control in front, or set METRICS_ALLOW_PUBLIC=true to "
            "serve them there anyway (for example METRICS_HOST=0.0.0.0 with "
            "METRICS_ALLOW_PUBLIC=true inside a container)"
        )

    @field_validator("astria_base_url")
    @classmethod
    def _astria_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be a URL like https://api.astria.ai")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("plain http is allowed only for a local emulator (127.0.0.1)")
        return value.rstrip("/")

    @field_validator("discord_api_base", "discord_gateway_url")
    @classmethod
    def _loopback_only(cls, value: str | None) -> str | None:
        # The token would follow this URL: only a local fake may replace Discord.
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if not _is_loopback(parts.hostname):
            raise ValueError("may only point at a local Discord fake on 127.0.0.1 or ::1")
        return value.rstrip("/")

    @field_validator("public_callback_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" and not _is_loopback(parts.hostname):
            raise ValueError("must be a public https URL (Astria does not follow redirects)")
        return value.rstrip("/")

    @field_validator("callback_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, like 127.0.0.1:8080")
        return value

    @field_validator("callback_signing_key")
    @classmethod
    def _signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        problem = signing_key_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(f"{problem}; {_key_example()}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a PostgreSQL URL, like postgresql://bot:secret@127.0.0.1:5432/bot "
                "(leave it unset to use the SQLite file at DATABASE_PATH)"
            )
        return value

    @property
    def database_location(self) -> Path | SecretStr:
        """Where the store lives: the PostgreSQL URL when set, else the SQLite file."""
        return self.database_url if self.database_url is not None else self.database_path

    @field_validator("budget_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as UTC or Europe/Paris") from None
        return value

    @field_validator(
        "tune_price_mc", "image_price_mc", "upscale_price_mc", "high_resolution_price_mc"
    )
    @classmethod
    def _prices(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        unknown = sorted(set(value) - set(BRANCHES))
        if unknown:
            raise ValueError(
                f"unknown branch {', '.join(unknown)}; branches: {', '.join(BRANCHES)}"
            )
        if any(v < 0 for v in value.values()):
            raise ValueError("prices cannot be negative")
        defaults = {
            "tune_price_mc": DEFAULT_TUNE_PRICE_MC,
            "image_price_mc": DEFAULT_IMAGE_PRICE_MC,
            "upscale_price_mc": DEFAULT_UPSCALE_PRICE_MC,
            "high_resolution_price_mc": DEFAULT_HIGH_RESOLUTION_PRICE_MC,
        }[str(info.field_name)]
        merged = {**defaults, **value}
        merged["fast"] = 0  # Astria's fast branch is free whatever the table says
        return merged

    @field_validator("shard_ids")
    @classmethod
    def _shard_id_list(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if any(not p.isdigit() for p in parts):
            raise ValueError("must be shard numbers, comma-separated, like SHARD_IDS=0,1")
        return ",".join(str(int(p)) for p in parts)

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        ids = self.shards_held
        if not ids:
            return self
        if self.shard_count is None:
            raise ValueError(
                f"SHARD_IDS needs SHARD_COUNT (the shards of all processes together), "
                f"like SHARD_COUNT={max(ids) + 1} with SHARD_IDS={self.shard_ids}"
            )
        outside = [i for i in ids if i >= self.shard_count]
        if outside or len(set(ids)) != len(ids):
            raise ValueError(
                f"SHARD_IDS must be different numbers from 0 to {self.shard_count - 1} "
                f"(SHARD_COUNT={self.shard_count}), like SHARD_IDS=0"
            )
        return self

    @property
    def shards_held(self) -> tuple[int, ...]:
        """The shards this process connects (empty: all of SHARD_COUNT, or no sharding)."""
        return tuple(int(p) for p in self.shard_ids.split(",") if p)

    @model_validator(mode="after")
    def _callback_needs_key(self) -> Settings:
        if self.public_callback_url and self.callback_signing_key is None:
            raise ValueError(
                f"PUBLIC_CALLBACK_URL needs CALLBACK_SIGNING_KEY: set it to a long random "
                f"string, {_key_example()}"
            )
        return self

    @model_validator(mode="after")
    def _branch_fits_profile(self) -> Settings:
        if self.astria_branch in PROFILE_BRANCHES[self.model_profile]:
            return self
        pairs = "; ".join(f"{p}: {', '.join(b)}" for p, b in PROFILE_BRANCHES.items())
        why = (
            " No profile trains SDXL tunes, so sdxl1 is not offered."
            if self.astria_branch == "sdxl1"
            else ""
        )
        raise ValueError(
            f"ASTRIA_BRANCH={self.astria_branch} does not go with "
            f"MODEL_PROFILE={self.model_profile}.{why} Valid pairs: {pairs} "
            "(for example MODEL_PROFILE=flux-lora with ASTRIA_BRANCH=flux1)"
        )

    @property
    def profile(self) -> ModelProfile:
        return self.profile_named(self.model_profile)

    def profile_named(self, name: ProfileName) -> ModelProfile:
        """The settings of one model profile (tunes keep the profile they were trained on)."""
        if name == "flux-lora":
            preset = self.flux_training_preset
            return ModelProfile(
                "flux-lora",
                "lora",
                self.flux_base_tune_id,
                self.flux_token,
                self.flux_prompt_seconds,
                training_preset=None if preset == "none" else preset,
                takes_negative_prompt=False,
            )
        if name == "sd15-checkpoint":
            return ModelProfile(
                "sd15-checkpoint",
                None,
                self.sd15_base_tune_id,
                self.sd15_token,
                self.sd15_prompt_seconds,
            )
        return ModelProfile(
            "faceid",
            "faceid",
            self.faceid_base_tune_id,
            "",
            self.faceid_prompt_seconds,
            cfg_scale=FACEID_CFG_SCALE,
        )

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.budget_timezone)

    def tune_price(self) -> int:
        """Millicents reserved for one fine-tune on the configured branch."""
        return self.tune_price_mc[self.astria_branch]

    def image_price(self) -> int:
        """Millicents reserved per generated image on the configured branch."""
        return self.image_price_mc[self.astria_branch]

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed setting that is not set."""
        missing = [n for n in names if getattr(self, n) in (None, "")]
        if missing:
            lines = [
                f"{n.upper()} is not set: {_HOW_TO_SET.get(n, 'set it in .env')}" for n in missing
            ]
            raise ConfigError("\n".join(lines))


_HOW_TO_SET: dict[str, str] = {
    "discord_token": (
        "create a bot at https://discord.com/developers/applications, copy its token "
        "(Bot > Reset Token) into .env as DISCORD_TOKEN=..."
    ),
    "astria_api_key": f"put your Astria key in .env as ASTRIA_API_KEY=sd_... ({ASTRIA_KEY_HELP})",
}


# Examples for the settings whose default is no value (the others show their default).
_EXAMPLES: dict[str, str] = {
    "discord_token": "...",
    "astria_api_key": "sd_...",
    "dev_guild_id": "123456789012345678",
    "shard_count": "2",
    "shard_ids": "0,1",
    "discord_api_base": "http://127.0.0.1:8766/api/v10",
    "discord_gateway_url": "ws://127.0.0.1:8766/gateway",
    "public_callback_url": "https://bot.example.org/astria",
    "database_url": "postgresql://bot:secret@127.0.0.1:5432/bot",
    "tune_price_mc": '{"flux1": 150000}',
    "log_file": "data/bot.log",
    "metrics_port": "9108",
    "image_price_mc": '{"flux1": 3000}',
    "upscale_price_mc": '{"flux1": 6000}',
    "high_resolution_price_mc": '{"flux1": 4500}',
}
# Pydantic's words for a wrong type, in the operator's terms.
_KINDS: dict[str, str] = {
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "dict_type": "must be JSON",
    "path_type": "must be a file path",
    "string_type": "must be text",
}
_HAS_EXAMPLE = ("like ", "for example", "such as")


def setting_example(name: str) -> str | None:
    """A valid value of the setting `name` (its field name), as it is written in `.env`."""
    if name in _EXAMPLES:
        return _EXAMPLES[name]
    field = Settings.model_fields.get(name)
    if field is None:
        return None
    value = field.get_default(call_default_factory=True)
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, SecretStr):
        return None
    return str(value)


def _describe(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    msg = str(error.get("msg", "is not valid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    kind = str(error.get("type", ""))
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        msg = f"must be one of {expected}"
    elif kind in _KINDS:
        msg = _KINDS[kind]
    msg = msg.replace("Input should be", "must be")
    if not loc:
        return msg  # a rule across settings: its message names them
    name = loc[0]
    example = setting_example(name)
    if example is not None and not any(words in msg for words in _HAS_EXAMPLE):
        joiner = " " if msg.endswith("JSON") else "; " if ";" in msg else ", "
        msg = f"{msg}{joiner}like {name.upper()}={example}"
    if len(loc) > 1:
        msg = f"{'.'.join(loc[1:])}: {msg}"
    return f"{name.upper()}: {msg}"


def env_file_used() -> Path | None:
    """The `.env` the settings read (the current folder's), as an absolute path; None when
    there is none, so only the environment and the defaults apply."""
    env_file = Settings.model_config.get("env_file")
    if not isinstance(env_file, str | Path):
        return None
    path = Path(env_file)
    return path.resolve() if path.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning every validation problem into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors(include_url=False, include_input=False)]
        raise ConfigError(
            "Some settings are not valid (fix them in .env or the environment):\n  "
            + "\n  ".join(problems)
        ) from None
    except SettingsError as exc:
        # pydantic-settings raises this when a JSON-valued variable does not parse.
        field = str(exc).split('"')[1] if '"' in str(exc) else "a setting"
        example = setting_example(field) or _EXAMPLES["tune_price_mc"]
        raise ConfigError(
            f"{field.upper()}: could not be read; it must be JSON, like {field.upper()}={example}"
        ) from None


def offline_postgres_url() -> SecretStr | None:
    """The PostgreSQL the offline tools' several-process modes use (`make chaos PROCS=2`):
    DATABASE_URL, else TEST_DATABASE_URL, from the environment (not `.env`); None when
    neither is set or neither is a PostgreSQL URL."""
    for name in ("DATABASE_URL", "TEST_DATABASE_URL"):
        value = os.environ.get(name, "").strip()
        if value.partition("://")[0] in ("postgresql", "postgres"):
            return SecretStr(value)
    return None
