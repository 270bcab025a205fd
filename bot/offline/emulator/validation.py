"""Checks tune and prompt params the way Astria's Rails models do, into typed requests."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.offline.emulator.config import BRANCHES
from bot.offline.emulator.errors import ApiError, bad_request, invalid
from bot.offline.emulator.forms import Upload

MODEL_TYPES = ("lora", "pti", "faceid")
PRESETS = ("flux-lora-portrait", "flux-lora-focus", "flux-lora-fast")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "21:9", "9:21", "3:2", "2:3", "5:4", "4:5", "4:3", "3:4")
RESOLUTIONS = ("1K", "2K", "4K")
SCHEDULERS = (
    "euler",
    "euler_a",
    "dpm++2m_karras",
    "dpm++sde_karras",
    "dpm++2m",
    "dpm++sde",
    "lcm",
    "tcd",
)
CONTROLNETS = (
    "composition",
    "reference",
    "segroom",
    "ipadapter",
    "lineart",
    "canny",
    "depth",
    "mlsd",
    "hed",
    "pose",
    "tile",
    "qr",
)
# The prompt styles Astria's prompt form offers (its docs name the field, not the values):
# any other value is refused, as a Rails inclusion check would.
STYLES = (
    "Cinematic",
    "Animated",
    "Digital Art",
    "Photographic",
    "Fantasy art",
    "Neonpunk",
    "Enhance",
    "Comic book",
    "Lowpoly",
    "Line art",
)
MAX_SEED = 2**32
# Rails' boolean cast: these are false, blank is nil, anything else is true.
_FALSE = {"0", "f", "false", "off", "no", "n"}

Errors = dict[str, list[str]]


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid("must be a string")
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Invalid("is not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Invalid("is not a number") from None
    else:
        raise _Invalid("is not a number")
    if not math.isfinite(number):
        raise _Invalid("is not a number")
    return number


def _integer(value: Any) -> int:
    number = _number(value)
    if not number.is_integer():
        raise _Invalid("must be an integer")
    return int(number)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    raise _Invalid("must be true or false")


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _in_range(low: float | None, high: float | None) -> Callable[[float], None]:
    def check(number: float) -> None:
        if low is not None and number < low:
            raise _Invalid(f"must be greater than or equal to {_show(low)}")
        if high is not None and number > high:
            raise _Invalid(f"must be less than or equal to {_show(high)}")

    return check


def _int_field(low: int | None, high: int | None) -> Callable[[Any], int]:
    check = _in_range(low, high)

    def parse(value: Any) -> int:
        number = _integer(value)
        check(number)
        return number

    return parse


def _float_field(low: float | None, high: float | None) -> Callable[[Any], float]:
    check = _in_range(low, high)

    def parse(value: Any) -> float:
        number = _number(value)
        check(number)
        return number

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _string(value).strip()
        if text not in options:
            raise _Invalid("is not included in the list")
        return text

    return parse


def _upload(value: Any) -> Upload:
    if not isinstance(value, Upload):
        raise _Invalid("must be uploaded as a multipart file (send input_image_url with JSON)")
    if value.too_large:
        raise _Invalid("is too large")
    if not value.valid:
        raise _Invalid("is not a valid image file")
    return value


def _multiple_of_8(value: Any) -> int:
    number = _integer(value)
    if number <= 0 or number % 8:
        raise _Invalid("must be a positive multiple of 8")
    return number


# Every prompt attribute the emulator understands, with its parser. Unknown attributes are
# dropped silently, as Rails strong parameters do.
_PROMPT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "text": _string,
    "negative_prompt": _string,
    "num_images": _int_field(1, 8),
    "seed": _int_field(0, MAX_SEED),
    "callback": _string,
    "cfg_scale": _float_field(0, 15),
    "steps": _int_field(0, 50),
    "w": _multiple_of_8,
    "h": _multiple_of_8,
    "ar": _choice(ASPECT_RATIOS),
    "aspect_ratio": _choice(ASPECT_RATIOS),
    "resolution": _choice(RESOLUTIONS),
    "scheduler": _choice(SCHEDULERS),
    "controlnet": _choice(CONTROLNETS),
    "denoising_strength": _float_field(0, 1),
    "controlnet_conditioning_scale": _float_field(0, None),
    "controlnet_txt2img": _boolean,
    "super_resolution": _boolean,
    "inpaint_faces": _boolean,
    "hires_fix": _boolean,
    "face_correct": _boolean,
    "face_swap": _boolean,
    "film_grain": _boolean,
    "use_lpw": _boolean,
    "backend_version": _string,
    "style": _choice(STYLES),
    "color_grading": _string,
    "input_image_url": _string,
    "input_image": _upload,
    "mask_image_url": _string,
    "workspace_id": _string,
    "lora_scale": _float_field(0, None),
}
_BOOLEAN_FIELDS = {name for name, parse in _PROMPT_FIELDS.items() if parse is _boolean}


@dataclass
class PromptRequest:
    """A valid prompt: `values` holds every known attribute, None (or False) when unset."""

    text: str
    num_images: int
    seed: int | None
    callback: str | None
    values: dict[str, Any]

    def match_value(self, name: str) -> Any:
        """The value idempotency compares for one attribute."""
        if name == "ar":
            return self.values["ar"] or self.values["aspect_ratio"] or "1:1"
        return self.values.get(name)


@dataclass
class TuneRequest:
    """A valid tune: its fields, its checked uploads, and the URLs still to fetch."""

    title: str
    name: str
    branch: str | None
    base_tune_id: int | None
    model_type: str | None
    token: str | None
    callback: str | None
    steps: int | None
    preset: str | None
    face_crop: bool
    training_face_correct: bool
    auto_extend: bool
    uploads: list[Upload]
    image_urls: list[str]
    prompts: list[PromptRequest] = field(default_factory=list)


def root(params: dict[str, Any], name: str) -> dict[str, Any]:
    """The `tune` or `prompt` hash, as Rails' `params.require` would demand it."""
    value = params.get(name)
    if not isinstance(value, dict) or not value:
        raise bad_request(f"param is missing or the value is empty: {name}")
    return value


def blank_prompt_values() -> dict[str, Any]:
    """Every known prompt attribute at its unset value."""
    return {name: False if name in _BOOLEAN_FIELDS else None for name in _PROMPT_FIELDS}


def _parse_prompt(raw: dict[str, Any], errors: Errors, prefix: str, nested: bool) -> PromptRequest:
    values = blank_prompt_values()
    for name, parse in _PROMPT_FIELDS.items():
        value = raw.get(name)
        if _blank(value):
            continue
        try:
            values[name] = parse(value)
        except _Invalid as problem:
            errors.setdefault(prefix + name, []).append(problem.message)
    if _blank(raw.get("text")):
        errors.setdefault(prefix + "text", []).append("can't be blank")
    if values["lora_scale"] is not None and not nested:
        errors.setdefault(prefix + "lora_scale", []).append(
            "is only allowed in a tune's prompts_attributes"
        )
    for needs_sr in ("inpaint_faces", "hires_fix"):
        # Astria's docs: both work only together with super_resolution.
        if values[needs_sr] and not values["super_resolution"]:
            errors.setdefault(prefix + needs_sr, []).append("requires super_resolution")
    source = values["input_image_url"]
    if source is not None and not source.strip().lower().startswith(("http://", "https://")):
        errors.setdefault(prefix + "input_image_url", []).append("is not a valid URL")
    if values["num_images"] is None:
        values["num_images"] = 1
    return PromptRequest(
        text=values["text"] or "",
        num_images=values["num_images"],
        seed=values["seed"],
        callback=values["callback"],
        values=values,
    )


def parse_prompt(params: dict[str, Any]) -> PromptRequest:
    """A prompt from a request's params, or a 400/422 ApiError."""
    errors: Errors = {}
    prompt = _parse_prompt(root(params, "prompt"), errors, "", nested=False)
    if errors:
        raise invalid(errors)
    return prompt


def _optional(raw: dict[str, Any], name: str, parse: Callable[[Any], Any], errors: Errors) -> Any:
    value = raw.get(name)
    if _blank(value):
        return None
    try:
        return parse(value)
    except _Invalid as problem:
        errors.setdefault(name, []).append(problem.message)
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _check_images(
    raw: dict[str, Any], max_bytes: int, errors: Errors
) -> tuple[list[Upload], list[str]]:
    uploads: list[Upload] = []
    for item in _as_list(raw.get("images")):
        if isinstance(item, Upload):
            uploads.append(item)
        elif not _blank(item):
            errors.setdefault("images", []).append(
                "must be uploaded as multipart files (send image_urls with JSON)"
            )
            break
    for upload in uploads:
        label = f"image at index {upload.index}" + (
            f" ({upload.filename!r})" if upload.filename else ""
        )
        if upload.too_large:
            errors.setdefault("images", []).append(
                f"{label} is larger than {max_bytes // (1024 * 1024)} MB"
            )
        elif not upload.valid:
            errors.setdefault("images", []).append(f"{label} is not a valid image file")
    urls: list[str] = []
    for item in _as_list(raw.get("image_urls")):
        if _blank(item):
            continue
        if not isinstance(item, str):
            errors.setdefault("image_urls", []).append("must be a list of URLs")
            break
        urls.append(item.strip())
    if not uploads and not urls and "images" not in errors:
        errors.setdefault("images", []).append("must contain at least one image")
    return uploads, urls


def parse_tune(params: dict[str, Any], max_bytes: int) -> TuneRequest:
    """A tune from a request's params, or a 400/422 ApiError. image_urls are not fetched."""
    raw = root(params, "tune")
    errors: Errors = {}
    for name in ("title", "name"):
        if _blank(raw.get(name)):
            errors.setdefault(name, []).append("can't be blank")
    title = _optional(raw, "title", _string, errors)
    name = _optional(raw, "name", _string, errors)
    branch = _optional(raw, "branch", _choice(BRANCHES), errors)
    base_tune_id = _optional(raw, "base_tune_id", _int_field(1, None), errors)
    model_type = _optional(raw, "model_type", _choice(MODEL_TYPES), errors)
    token = _optional(raw, "token", _string, errors)
    callback = _optional(raw, "callback", _string, errors)
    steps = _optional(raw, "steps", _int_field(0, None), errors)
    preset = _optional(raw, "preset", _choice(PRESETS), errors)
    flags = {
        flag: bool(_optional(raw, flag, _boolean, errors))
        for flag in ("face_crop", "training_face_correct", "auto_extend")
    }
    uploads, urls = _check_images(raw, max_bytes, errors)
    prompts: list[PromptRequest] = []
    for item in _as_list(raw.get("prompts_attributes")):
        if not isinstance(item, dict):
            errors.setdefault("prompts", []).append("must be a list of prompt attributes")
            break
        prompts.append(_parse_prompt(item, errors, "prompts.", nested=True))
    if errors:
        raise invalid(errors)
    return TuneRequest(
        title=title,
        name=name,
        branch=branch,
        base_tune_id=base_tune_id,
        model_type=model_type,
        token=token,
        callback=callback,
        steps=steps,
        preset=preset,
        face_crop=flags["face_crop"],
        training_face_correct=flags["training_face_correct"],
        auto_extend=flags["auto_extend"],
        uploads=uploads,
        image_urls=urls,
        prompts=prompts,
    )


def image_url_error(url: str, reason: str) -> ApiError:
    return invalid({"image_urls": [f"{url} {reason}"]})
