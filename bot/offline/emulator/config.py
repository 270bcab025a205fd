"""Settings for one emulated Astria account: key, money, timings and switches."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from bot.offline.emulator.packs import Pack, default_packs

BRANCHES = ("fast", "flux1", "sd15", "sdxl1")

# The overview (the authoritative text) says prompts match "with the same text and seed";
# the longer API notes list more attributes (docs/emulator.md). The overview wins, so
# that is the default; DOCUMENTED_PROMPT_MATCH is there for runs that want the longer one.
OVERVIEW_PROMPT_MATCH: tuple[str, ...] = ("text", "seed")
DOCUMENTED_PROMPT_MATCH: tuple[str, ...] = (
    "text",
    "tune_id",
    "cfg_scale",
    "steps",
    "seed",
    "callback",
    "negative_prompt",
    "super_resolution",
    "face_correct",
    "ar",
    "num_images",
    "controlnet",
    "denoising_strength",
    "use_lpw",
    "controlnet_conditioning_scale",
    "w",
    "h",
    "hires_fix",
    "scheduler",
    "controlnet_txt2img",
    "inpaint_faces",
)


def _default_tune_prices() -> dict[str, int]:
    return {"fast": 0, "flux1": 150_000, "sd15": 150_000, "sdxl1": 150_000}


def _default_image_prices() -> dict[str, int]:
    return {"fast": 0, "flux1": 3_000, "sd15": 2_000, "sdxl1": 2_500}


def _default_super_resolution_prices() -> dict[str, int]:
    # Astria bills super-resolution on top of the image and publishes no figure: played
    # here as one more image's price, per image (the bot's UPSCALE_PRICE_MC default).
    return {"fast": 0, "flux1": 3_000, "sd15": 2_000, "sdxl1": 2_500}


def _default_resolution_prices() -> dict[str, int]:
    # `resolution` 2K and 4K are billed on top of each image, with no published figure:
    # played as half an image more for 2K and one and a half for 4K (the bot's
    # HIGH_RESOLUTION_PRICE_MC default is the image plus the 2K extra).
    return {"fast": 0, "flux1": 1_500, "sd15": 1_000, "sdxl1": 1_250}


@dataclass
class EmulatorConfig:
    """Everything that differs between emulated accounts; money is in millicents."""

    api_key: str = "sd_emulator_key"
    idempotency: bool = False
    balance_mc: int = 5_000_000
    tune_price_mc: dict[str, int] = field(default_factory=_default_tune_prices)
    image_price_mc: dict[str, int] = field(default_factory=_default_image_prices)
    super_resolution_price_mc: dict[str, int] = field(
        default_factory=_default_super_resolution_prices
    )
    # The extra per image of `resolution=2K`; 4K costs three times that.
    resolution_price_mc: dict[str, int] = field(default_factory=_default_resolution_prices)
    train_seconds: float = 60.0
    prompt_seconds: float = 15.0
    jitter: float = 0.2
    seed: int = 0
    foreign_tunes: int = 0
    foreign_prompts: int = 0
    image_size: tuple[int, int] = (512, 512)
    tick_interval: float = 0.05
    # Extensions beyond the agreed interface, all with defaults.
    prompt_match: tuple[str, ...] = OVERVIEW_PROMPT_MATCH
    max_upload_bytes: int = 10 * 1024 * 1024
    callback_timeout: float = 5.0
    fetch_timeout: float = 5.0
    # Readings of what Astria does not document (docs/emulator.md, "Readings"): whether a
    # failed prompt still reports its `cost_mc`, and whether its cost goes back to the
    # account's balance.
    failed_prompt_cost: Literal["zeroed", "kept"] = "zeroed"
    refund_failed_prompts: bool = True
    # How a create the balance cannot pay for is refused (a 402 with a JSON body, or a 422
    # on a field), how an idempotent replay answers (200 or 201), and how POST prompts
    # answers (an object, a one-element array, or each by turns).
    low_balance_status: Literal[402, 422] = 402
    replay_status: Literal[200, 201] = 201
    prompt_response: Literal["object", "array", "mixed"] = "mixed"
    # Whether the account auto-extends its tunes' storage (`auto_extend_tunes` on GET
    # /users): off, a tune is deleted at its `expires_at`; on, each time `expires_at`
    # passes while the balance covers `auto_extend_price_mc`, that price is charged and
    # `expires_at` moves 30 days on, and the tune stays servable.
    auto_extend: bool = False
    auto_extend_price_mc: int = 50_000  # "$0.5 per model per month" (Astria's FAQ)
    # Gallery packs (`GET /packs`, `POST /p/:pack_id/tunes`), and when a pack is billed:
    # "create": its whole price at the POST; "finish": each prompt its share as it ends.
    # Either way a failed prompt's share goes back when `refund_failed_prompts` says so.
    packs: dict[int, Pack] = field(default_factory=default_packs)
    pack_billing: Literal["create", "finish"] = "create"

    def __repr__(self) -> str:
        # The key is a secret in spirit even here: keep it out of logs and test output.
        return (
            f"EmulatorConfig(idempotency={self.idempotency}, balance_mc={self.balance_mc}, "
            f"train_seconds={self.train_seconds}, prompt_seconds={self.prompt_seconds}, "
            f"seed={self.seed}, failed_prompt_cost={self.failed_prompt_cost}, "
            f"refund_failed_prompts={self.refund_failed_prompts}, "
            f"low_balance_status={self.low_balance_status}, "
            f"replay_status={self.replay_status}, prompt_response={self.prompt_response}, "
            f"auto_extend={self.auto_extend}, pack_billing={self.pack_billing})"
        )


@dataclass(frozen=True)
class Reading:
    """One way Astria may behave where its docs are silent and money or flow depends on it
    (docs/emulator.md, "Readings"). The bot must be right under every one."""

    failed_prompt_cost: Literal["zeroed", "kept"] = "zeroed"
    refund_failed_prompts: bool = True
    low_balance_status: Literal[402, 422] = 402
    replay_status: Literal[200, 201] = 201
    prompt_response: Literal["object", "array", "mixed"] = "mixed"
    pack_billing: Literal["create", "finish"] = "create"

    def apply(self, config: EmulatorConfig) -> EmulatorConfig:
        return replace(
            config,
            failed_prompt_cost=self.failed_prompt_cost,
            refund_failed_prompts=self.refund_failed_prompts,
            low_balance_status=self.low_balance_status,
            replay_status=self.replay_status,
            prompt_response=self.prompt_response,
            pack_billing=self.pack_billing,
        )


# Named readings the money tests and the chaos run are parameterised over: between them,
# every value of every switch occurs. "ours" is the emulator's default.
READINGS: dict[str, Reading] = {
    "ours": Reading(),
    "kept-refunded": Reading("kept", True, 422, 200, "array", "finish"),
    "kept-not-refunded": Reading("kept", False, 402, 200, "object"),
    "zeroed-not-refunded": Reading("zeroed", False, 422, 201, "array", "finish"),
}
