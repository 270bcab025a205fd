"""The emulated account's state (tunes, prompts, money), derived from the clock, no HTTP."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bot.offline.emulator.config import EmulatorConfig
from bot.offline.emulator.errors import ApiError, invalid
from bot.offline.emulator.packs import Pack, shares
from bot.offline.emulator.validation import PromptRequest, TuneRequest, blank_prompt_values

DAY = 86_400.0
STORAGE_SECONDS = 30 * DAY
# Gallery base tunes: id -> (title, branch). Everyone can prompt them; nobody owns them.
GALLERY: dict[int, tuple[str, str]] = {
    1504944: ("Flux1.dev", "flux1"),
    690204: ("Realistic Vision v5.1", "sd15"),
    666678: ("SDXL 1.0", "sdxl1"),
}
GALLERY_TRAINED_AT = 1_690_848_000.0  # 2023-08-01, long before anything the tests create
FAIL_MARKER = "EMULATOR_FAIL"
FAIL_MESSAGE = "We could not generate images for this prompt. Please try a different prompt."
LORA_ON_LORA = "model_type=lora is not supported. Use a checkpoint instead"
_TAG = re.compile(r"<(lora|faceid):(\d+):[^>]*>")

Origin = Literal["ours", "foreign", "gallery"]
PromptState = Literal["pending", "done", "failed"]


def iso(moment: float | None) -> str | None:
    """ISO-8601 in UTC with milliseconds and a `Z`, as Astria writes timestamps."""
    if moment is None:
        return None
    stamp = datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def ms(moment: float) -> float:
    """A time on a whole millisecond, the precision Astria's timestamps have."""
    return round(moment, 3)


def usd(millicents: int) -> str:
    return f"${millicents / 100_000:,.2f}"


@dataclass(frozen=True)
class Charge:
    """Money taken from (or, when negative, given back to) the account."""

    kind: Literal["tune", "prompt", "extension", "pack"]
    object_id: int  # a pack's charge names the tune it was run on
    cost_mc: int


@dataclass
class Tune:
    """A tune as stored; what a client sees at a moment comes from `Account.tune_json`."""

    id: int
    title: str
    name: str | None
    branch: str
    base_tune_id: int | None
    model_type: str | None
    token: str | None
    callback: str | None
    steps: int | None
    face_crop: bool
    training_face_correct: bool
    image_count: int
    created_at: float
    eta_at: float
    finish_at: float | None  # None: stalled, it never finishes
    cost_mc: int
    origin: Origin
    deleted: bool = False
    callback_sent: bool = False
    extended_to: float | None = None  # auto-extend moved `expires_at` here
    preset: str | None = None  # the training preset asked for; None is Astria's "high"

    def trained_at(self, now: float) -> float | None:
        if self.finish_at is not None and self.finish_at <= now:
            return self.finish_at
        return None

    def expires_at(self, now: float) -> float | None:
        trained = self.trained_at(now)
        if trained is None or self.origin == "gallery":
            return None
        if self.extended_to is not None:
            return self.extended_to
        return ms(trained + STORAGE_SECONDS)

    def gone(self, now: float) -> bool:
        expires = self.expires_at(now)
        return self.deleted or (expires is not None and now >= expires)


@dataclass
class Prompt:
    """A prompt as stored; its state at a moment is derived from its tune and the clock."""

    id: int
    tune_id: int
    request: PromptRequest
    created_at: float
    duration: float
    cost_mc: int
    mock: bool
    origin: Literal["ours", "foreign"]
    fails: bool  # its text asked for a failure (FAIL_MARKER)
    stalled: bool = False
    resumed_at: float | None = None  # a stalled prompt that Astria finished late
    failed_at: float | None = None
    user_error: str | None = None
    deleted: bool = False
    callback_sent: bool = False
    refunded: bool = False
    pack_id: int | None = None  # made by a pack run (POST /p/:pack_id/tunes)
    billed: bool = True  # False: a pack prompt whose share is charged when it ends


@dataclass(frozen=True)
class Callback:
    """A callback that has come due: when it was due, where to, and the body."""

    at: float
    url: str
    body: dict[str, Any]


def page(items: list[Any], *, before_id: int | None, offset: int, limit: int) -> list[Any]:
    """Newest first, then the keyset cursor, then the offset, then the limit."""
    ordered = sorted(items, key=lambda item: item.id, reverse=True)
    if before_id is not None:
        ordered = [item for item in ordered if item.id < before_id]
    return ordered[offset : offset + limit]


class Account:
    """Everything Astria knows about one API key. Every method takes `now` explicitly."""

    def __init__(self, config: EmulatorConfig, now: float) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self.balance_mc = config.balance_mc
        self.charges: list[Charge] = []
        self.tunes: dict[int, Tune] = {}
        self.prompts: dict[int, Prompt] = {}
        # Real ids are far above the gallery's; tunes and prompts use separate ranges.
        self._next_tune_id = 2_000_001
        self._next_prompt_id = 30_000_001
        for tune_id, (title, branch) in GALLERY.items():
            self.tunes[tune_id] = Tune(
                id=tune_id,
                title=title,
                name=None,
                branch=branch,
                base_tune_id=None,
                model_type=None,
                token=None,
                callback=None,
                steps=None,
                face_crop=False,
                training_face_correct=False,
                image_count=0,
                created_at=GALLERY_TRAINED_AT,
                eta_at=GALLERY_TRAINED_AT,
                finish_at=GALLERY_TRAINED_AT,
                cost_mc=0,
                origin="gallery",
            )
        self._add_foreign(now)

    # -- time ---------------------------------------------------------------------------

    def _jittered(self, base: float) -> float:
        jitter = self.config.jitter
        return base * (1 + self._rng.uniform(-jitter, jitter))

    def _training_finish(self, created: float) -> float:
        eta = ms(created + self.config.train_seconds)
        finish = ms(created + self._jittered(self.config.train_seconds))
        # Never exactly on eta: clients must not rely on it.
        return ms(finish + 0.001) if finish == eta else finish

    def prompt_start(self, prompt: Prompt) -> float | None:
        tune_finish = self.tunes[prompt.tune_id].finish_at
        if prompt.stalled or tune_finish is None:
            return None
        return max(prompt.created_at, tune_finish, prompt.resumed_at or 0.0)

    def prompt_finish(self, prompt: Prompt) -> float | None:
        start = self.prompt_start(prompt)
        return None if start is None else ms(start + prompt.duration)

    def prompt_state(self, prompt: Prompt, now: float) -> PromptState:
        if prompt.failed_at is not None and prompt.failed_at <= now:
            return "failed"
        finish = self.prompt_finish(prompt)
        if finish is None or finish > now:
            return "pending"
        return "failed" if prompt.fails else "done"

    def prompt_ended(self, prompt: Prompt, now: float) -> float | None:
        state = self.prompt_state(prompt, now)
        if state == "pending":
            return None
        if prompt.failed_at is not None:
            return prompt.failed_at
        return self.prompt_finish(prompt)

    def prompt_gone(self, prompt: Prompt, now: float) -> bool:
        tune = self.tunes[prompt.tune_id]
        if prompt.deleted or tune.gone(now):
            return True
        if tune.origin == "gallery":
            # Prompts on a base tune have no tune of ours to expire with; they keep the
            # same 30 days from their own finish.
            ended = self.prompt_ended(prompt, now)
            return ended is not None and now >= ms(ended + STORAGE_SECONDS)
        return False

    def catch_up(self, now: float) -> None:
        """Apply what time has done since the last call: refunds for failed prompts and,
        with auto-extend on, storage extensions."""
        if self.config.auto_extend:
            self._extend(now)
        for prompt in self.prompts.values():
            if not prompt.billed and (prompt.deleted or self.prompt_ended(prompt, now)):
                # Billing reading "finish": a pack prompt is charged its share as it ends
                # (or is deleted first: the share it reported is what it costs).
                prompt.billed = True
                self._charge("prompt", prompt.id, prompt.cost_mc)
            if (
                prompt.billed
                and self.config.refund_failed_prompts
                and not prompt.refunded
                and not prompt.deleted
                and prompt.cost_mc
                and self.prompt_state(prompt, now) == "failed"
            ):
                prompt.refunded = True
                self.balance_mc += prompt.cost_mc
                self.charges.append(Charge("prompt", prompt.id, -prompt.cost_mc))

    def _extend(self, now: float) -> None:
        """Each tune whose `expires_at` has passed gets 30 more days from that date, for
        `auto_extend_price_mc` a period, while the balance pays for it; a tune the balance
        cannot extend is deleted at its date, as without auto-extend."""
        price = self.config.auto_extend_price_mc
        for tune in self.tunes.values():
            if tune.origin == "gallery" or tune.deleted:
                continue
            expires = tune.expires_at(now)
            while expires is not None and now >= expires and price <= self.balance_mc:
                expires = ms(expires + STORAGE_SECONDS)
                tune.extended_to = expires
                self._charge("extension", tune.id, price)
            if expires is not None and now >= expires:
                self.delete_tune(tune)  # lapsed: a later top-up does not bring it back

    # -- lookups --------------------------------------------------------------------------

    def tune(self, tune_id: int, now: float) -> Tune | None:
        tune = self.tunes.get(tune_id)
        return None if tune is None or tune.gone(now) else tune

    def prompt(self, prompt_id: int, now: float) -> Prompt | None:
        prompt = self.prompts.get(prompt_id)
        return None if prompt is None or self.prompt_gone(prompt, now) else prompt

    def list_tunes(
        self,
        now: float,
        *,
        title: str | None = None,
        branch: str | None = None,
        model_type: str | None = None,
        names: Iterable[str] = (),
    ) -> list[Tune]:
        wanted_names = set(names)
        return [
            tune
            for tune in self.tunes.values()
            if tune.origin != "gallery"
            and not tune.gone(now)
            and (title is None or tune.title == title)
            and (branch is None or tune.branch == branch)
            and (model_type is None or tune.model_type == model_type)
            and (not wanted_names or tune.name in wanted_names)
        ]

    def list_prompts(
        self, now: float, *, tune_id: int | None = None, text: str | None = None
    ) -> list[Prompt]:
        return [
            prompt
            for prompt in self.prompts.values()
            if not self.prompt_gone(prompt, now)
            and (tune_id is None or prompt.tune_id == tune_id)
            and (text is None or prompt.request.text == text)
        ]

    # -- creation -------------------------------------------------------------------------

    def _require_funds(self, cost_mc: int) -> None:
        if cost_mc > self.balance_mc:
            # Astria does not document this refusal: each reading is played (config).
            words = (
                f"Insufficient balance: this costs {usd(cost_mc)} and the account has "
                f"{usd(self.balance_mc)}. Add credits or enable auto top-off."
            )
            if self.config.low_balance_status == 422:
                raise ApiError(422, {"base": [words]})
            raise ApiError(402, {"error": words})

    def _charge(
        self, kind: Literal["tune", "prompt", "extension", "pack"], object_id: int, cost_mc: int
    ) -> None:
        if cost_mc:
            self.balance_mc -= cost_mc
            self.charges.append(Charge(kind, object_id, cost_mc))

    def image_price(self, tune: Tune, num_images: int) -> int:
        return self.config.image_price_mc.get(tune.branch, 0) * num_images

    def prompt_price(self, tune: Tune, request: PromptRequest) -> int:
        """What a prompt costs: its images, and super-resolution or a 2K/4K resolution on
        each when asked."""
        extra = 0
        if request.values.get("super_resolution"):
            extra = self.config.super_resolution_price_mc.get(tune.branch, 0)
        resolution = request.values.get("resolution")
        if resolution in ("2K", "4K"):
            per_2k = self.config.resolution_price_mc.get(tune.branch, 0)
            extra += per_2k if resolution == "2K" else 3 * per_2k
        return self.image_price(tune, request.num_images) + extra * request.num_images

    def tune_titled(self, title: str, now: float) -> Tune | None:
        """The oldest live tune on the account with this title (the idempotency match)."""
        for tune in sorted(self.tunes.values(), key=lambda item: item.id):
            if tune.origin != "gallery" and tune.title == title and not tune.gone(now):
                return tune
        return None

    def create_tune(self, request: TuneRequest, now: float) -> tuple[Tune, bool]:
        """The new tune (and True), or with idempotency an existing one of that title."""
        if self.config.idempotency:
            existing = self.tune_titled(request.title, now)
            if existing is not None:
                return existing, False
        base = None
        if request.base_tune_id is not None:
            base = self.tune(request.base_tune_id, now)
            if base is None:
                raise invalid({"base_tune_id": ["does not exist"]})
        branch = request.branch or (base.branch if base is not None else "sd15")
        model_type = request.model_type
        if branch == "sdxl1" and model_type is None:
            model_type = "pti"  # "SDXL forces pti"
        family = branch if branch != "fast" else (base.branch if base is not None else "sd15")
        token = request.token or ("ohwx" if family in ("flux1", "sdxl1") else "sks")
        tune_cost = self.config.tune_price_mc.get(branch, 0)
        image_price = self.config.image_price_mc.get(branch, 0)
        prompts_cost = sum(image_price * prompt.num_images for prompt in request.prompts)
        self._require_funds(tune_cost + prompts_cost)

        tune_id = self._next_tune_id
        self._next_tune_id += 1
        # FaceID needs no training: it is done the moment it is created.
        finish = now if model_type == "faceid" else self._training_finish(now)
        tune = Tune(
            id=tune_id,
            title=request.title,
            name=request.name,
            branch=branch,
            base_tune_id=base.id if base is not None else None,
            model_type=model_type,
            token=token,
            callback=request.callback,
            steps=request.steps,
            preset=request.preset,
            face_crop=request.face_crop,
            training_face_correct=request.training_face_correct,
            image_count=len(request.uploads) + len(request.image_urls),
            created_at=now,
            eta_at=ms(now + self.config.train_seconds),
            finish_at=finish,
            cost_mc=tune_cost,
            origin="ours",
        )
        self.tunes[tune_id] = tune
        self._charge("tune", tune_id, tune_cost)
        for prompt_request in request.prompts:
            self._add_prompt(tune, prompt_request, now, "ours")
        return tune, True

    def pack_price(self, pack: Pack, tune: Tune) -> int:
        """What running `pack` on `tune` costs: the price for the tune's class (nothing on
        the free mock branch, as every fast call)."""
        if tune.name not in pack.costs:
            raise invalid({"name": [f"{tune.name} is not a class this pack supports"]})
        return 0 if tune.branch == "fast" else pack.costs[tune.name]

    def run_pack(self, pack: Pack, tune: Tune, callback: str | None, now: float) -> list[Prompt]:
        """The pack's prompts, made on `tune` and run like any prompt (after its training).
        Never idempotent: each POST makes the pack again. Billed at once ("create") or
        prompt by prompt as each ends ("finish"); the shares add up to the price."""
        price = self.pack_price(pack, tune)
        self._require_funds(price)
        billed_now = self.config.pack_billing == "create"
        subject = f"{tune.token} {tune.name}"
        made: list[Prompt] = []
        for item, share in zip(pack.prompts, shares(price, len(pack.prompts)), strict=True):
            text = item.text.replace("{subject}", subject)
            values = blank_prompt_values()
            values.update(text=text, num_images=item.num_images, callback=callback)
            request = PromptRequest(
                text=text, num_images=item.num_images, seed=None, callback=callback, values=values
            )
            prompt_id = self._next_prompt_id
            self._next_prompt_id += 1
            prompt = Prompt(
                id=prompt_id,
                tune_id=tune.id,
                request=request,
                created_at=now,
                duration=self._jittered(self.config.prompt_seconds),
                cost_mc=share,
                mock=tune.branch == "fast",
                origin="ours",
                fails=FAIL_MARKER in text,
                pack_id=pack.id,
                billed=billed_now or share == 0,
            )
            self.prompts[prompt_id] = prompt
            made.append(prompt)
        if billed_now:
            self._charge("pack", tune.id, price)
        return made

    def _check_tags(self, text: str, now: float) -> None:
        problems = []
        for match in _TAG.finditer(text):
            target = self.tune(int(match.group(2)), now)
            if target is None or target.origin == "gallery" or target.trained_at(now) is None:
                problems.append(
                    f"{match.group(0)} names tune {match.group(2)}, which does not exist "
                    "on this account or has not finished training"
                )
        if problems:
            raise invalid({"text": problems})

    def _matching_prompt(self, tune: Tune, request: PromptRequest, now: float) -> Prompt | None:
        fields = [name for name in self.config.prompt_match if name != "tune_id"]
        for prompt in sorted(self.prompts.values(), key=lambda item: item.id):
            if (
                prompt.tune_id == tune.id
                and prompt.origin == "ours"
                and not self.prompt_gone(prompt, now)
                and all(
                    prompt.request.match_value(name) == request.match_value(name) for name in fields
                )
            ):
                return prompt
        return None

    def create_prompt(self, tune: Tune, request: PromptRequest, now: float) -> tuple[Prompt, bool]:
        """The new prompt (and True), or with idempotency a matching existing one."""
        if tune.model_type == "lora" and tune.origin != "gallery":
            raise invalid({"base": [LORA_ON_LORA]})
        if tune.origin == "gallery":
            self._check_tags(request.text, now)
        if self.config.idempotency:
            existing = self._matching_prompt(tune, request, now)
            if existing is not None:
                return existing, False
        self._require_funds(self.prompt_price(tune, request))
        return self._add_prompt(tune, request, now, "ours"), True

    def _add_prompt(
        self,
        tune: Tune,
        request: PromptRequest,
        now: float,
        origin: Literal["ours", "foreign"],
        duration: float | None = None,
    ) -> Prompt:
        prompt_id = self._next_prompt_id
        self._next_prompt_id += 1
        cost = self.prompt_price(tune, request) if origin == "ours" else 0
        prompt = Prompt(
            id=prompt_id,
            tune_id=tune.id,
            request=request,
            created_at=now,
            duration=self._jittered(self.config.prompt_seconds) if duration is None else duration,
            cost_mc=cost,
            mock=tune.branch == "fast",
            origin=origin,
            fails=FAIL_MARKER in request.text,
        )
        self.prompts[prompt_id] = prompt
        self._charge("prompt", prompt_id, cost)
        return prompt

    def _add_foreign(self, now: float) -> None:
        """History that is not ours, older than anything created later, all finished."""
        config = self.config
        count = config.foreign_tunes
        spacing = min(3600.0, 20 * DAY / max(count, 1))
        kinds = [("sd15", None, 690204), ("flux1", "lora", 1504944), ("sdxl1", "pti", 666678)]
        names = ["man", "woman", "dog"]
        foreign_tunes: list[Tune] = []
        for index in range(count):
            branch, model_type, base_id = kinds[index % len(kinds)]
            created = ms(now - 2 * DAY - (count - index) * spacing)
            tune = Tune(
                id=self._next_tune_id,
                title=f"not-ours-{index + 1:04d}",
                name=names[index % len(names)],
                branch=branch,
                base_tune_id=base_id,
                model_type=model_type,
                token="sks" if branch == "sd15" else "ohwx",
                callback=None,
                steps=None,
                face_crop=False,
                training_face_correct=False,
                image_count=8,
                created_at=created,
                eta_at=ms(created + config.train_seconds),
                finish_at=self._training_finish(created),
                cost_mc=config.tune_price_mc.get(branch, 0),
                origin="foreign",
            )
            self._next_tune_id += 1
            self.tunes[tune.id] = tune
            foreign_tunes.append(tune)
        count = config.foreign_prompts
        spacing = min(60.0, 20 * 3600.0 / max(count, 1))
        for index in range(count):
            created = ms(now - 3600.0 - (count - index) * spacing)
            if foreign_tunes:
                owner = foreign_tunes[index % len(foreign_tunes)]
                if owner.model_type == "lora":
                    target = self.tunes[owner.base_tune_id or 1504944]
                    text = f"<lora:{owner.id}:1> ohwx {owner.name}, portrait {index + 1}"
                else:
                    target = owner
                    text = f"{owner.token} {owner.name}, portrait {index + 1}"
            else:
                target = self.tunes[690204]
                text = f"a lighthouse at dusk, take {index + 1}"
            request = PromptRequest(
                text=text,
                num_images=4,
                seed=None,
                callback=None,
                values=_foreign_values(text),
            )
            self._add_prompt(target, request, created, "foreign", duration=min(30.0, spacing))

    # -- changes --------------------------------------------------------------------------

    def delete_tune(self, tune: Tune) -> None:
        tune.deleted = True
        for prompt in self.prompts.values():
            if prompt.tune_id == tune.id:
                prompt.deleted = True

    def fail_prompt(self, prompt: Prompt, message: str, now: float) -> None:
        if self.prompt_state(prompt, now) != "pending":
            raise ValueError(f"prompt {prompt.id} has already finished")
        prompt.failed_at = now
        prompt.user_error = message
        self.catch_up(now)

    def stall_tune(self, tune: Tune, now: float) -> None:
        if tune.trained_at(now) is not None:
            raise ValueError(f"tune {tune.id} has already finished training")
        tune.finish_at = None

    def stall_prompt(self, prompt: Prompt, now: float) -> None:
        if self.prompt_state(prompt, now) != "pending":
            raise ValueError(f"prompt {prompt.id} has already finished")
        prompt.stalled = True

    def resume_tune(self, tune: Tune, now: float) -> None:
        """A stalled tune finishes after all, a training time from now."""
        if tune.finish_at is not None:
            raise ValueError(f"tune {tune.id} is not stalled")
        tune.finish_at = ms(now + self._jittered(self.config.train_seconds))

    def resume_prompt(self, prompt: Prompt, now: float) -> None:
        """A stalled prompt finishes after all, its duration from now."""
        if not prompt.stalled:
            raise ValueError(f"prompt {prompt.id} is not stalled")
        prompt.stalled = False
        prompt.resumed_at = now

    def due_callbacks(self, now: float, base: str) -> list[Callback]:
        """Callbacks that have come due since the last call, oldest first; each only once."""
        due: list[Callback] = []
        for tune in self.tunes.values():
            trained = tune.trained_at(now)
            if (
                tune.origin == "ours"
                and tune.callback
                and not tune.callback_sent
                and not tune.deleted
                and tune.model_type != "faceid"
                and trained is not None
            ):
                tune.callback_sent = True
                due.append(
                    Callback(trained, tune.callback, {"tune": self.tune_json(tune, trained, base)})
                )
        for prompt in self.prompts.values():
            ended = self.prompt_ended(prompt, now)
            callback = prompt.request.callback
            if (
                prompt.origin == "ours"
                and callback
                and not prompt.callback_sent
                and not prompt.deleted
                and ended is not None
            ):
                prompt.callback_sent = True
                due.append(
                    Callback(ended, callback, {"prompt": self.prompt_json(prompt, ended, base)})
                )
        due.sort(key=lambda item: item.at)
        return due

    # -- JSON -----------------------------------------------------------------------------

    def tune_json(self, tune: Tune, now: float, base: str) -> dict[str, Any]:
        trained = tune.trained_at(now)
        mock = tune.branch == "fast"
        ckpt_url = f"{base}/files/mock" if mock and trained is not None else None
        folder = "files/mock/tunes" if mock else "files/tunes"
        return {
            "id": tune.id,
            "title": tune.title,
            "name": tune.name,
            "is_api": tune.origin == "ours",
            "token": tune.token,
            "eta": iso(tune.eta_at),
            "callback": tune.callback,
            "trained_at": iso(trained),
            "started_training_at": iso(tune.created_at),
            "expires_at": iso(tune.expires_at(now)),
            "created_at": iso(tune.created_at),
            "updated_at": iso(trained if trained is not None else tune.created_at),
            "model_type": tune.model_type,
            "base_tune_id": tune.base_tune_id,
            "branch": tune.branch,
            "args": None,
            "steps": tune.steps,
            "preset": tune.preset,
            "face_crop": tune.face_crop,
            "training_face_correct": tune.training_face_correct,
            "ckpt_url": ckpt_url,
            "ckpt_urls": [ckpt_url] if ckpt_url else [],
            "url": f"{base}/tunes/{tune.id}.json",
            "orig_images": [f"{base}/{folder}/{tune.id}/{n}.png" for n in range(tune.image_count)],
            "cost_mc": tune.cost_mc,
        }

    def image_urls(self, prompt: Prompt, base: str) -> list[str]:
        folder = "files/mock/prompts" if prompt.mock else "files/prompts"
        return [f"{base}/{folder}/{prompt.id}/{n}.png" for n in range(prompt.request.num_images)]

    def prompt_json(self, prompt: Prompt, now: float, base: str) -> dict[str, Any]:
        state = self.prompt_state(prompt, now)
        start = self.prompt_start(prompt)
        ended = self.prompt_ended(prompt, now)
        values = prompt.request.values
        cfg_scale = values["cfg_scale"]
        body: dict[str, Any] = {"id": prompt.id, "tune_id": prompt.tune_id}
        body.update({name: value for name, value in values.items() if name != "lora_scale"})
        body.update(
            {
                # Astria sends cfg_scale as a decimal string ("3.0"); clients must cope.
                "cfg_scale": None if cfg_scale is None else str(float(cfg_scale)),
                "ar": prompt.request.match_value("ar"),
                # Astria answers with a link to the stored upload; the emulator keeps only
                # the upload's facts, so the link names it but serves nothing.
                "input_image": (
                    f"{base}/files/inputs/{values['input_image'].sha256}"
                    if values["input_image"] is not None
                    else None
                ),
                "trained_at": iso(ended) if state == "done" else None,
                "started_training_at": iso(start) if start is not None and start <= now else None,
                "created_at": iso(prompt.created_at),
                "updated_at": iso(ended if ended is not None else prompt.created_at),
                "url": f"{base}/tunes/{prompt.tune_id}/prompts/{prompt.id}.json",
                "images": self.image_urls(prompt, base) if state == "done" else [],
                "user_error": (prompt.user_error or FAIL_MESSAGE) if state == "failed" else None,
                "cost_mc": (
                    0
                    if state == "failed" and self.config.failed_prompt_cost == "zeroed"
                    else prompt.cost_mc
                ),
                "pack_id": prompt.pack_id,
            }
        )
        return body


def _foreign_values(text: str) -> dict[str, Any]:
    values = blank_prompt_values()
    values.update(text=text, num_images=4)
    return values
