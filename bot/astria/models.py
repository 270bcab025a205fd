"""Typed views of Astria's objects and of what we send it.

Responses are read leniently: unknown fields are ignored and the known quirks (a string
`cfg_scale`, `images` as objects, callback bodies wrapped in `tune`/`prompt`) are absorbed
here, so the rest of the bot sees one clean shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Tune(_Lenient):
    """A fine-tune. Done when `trained_at` is set; Astria has no failure field for tunes."""

    id: int
    title: str | None = None
    name: str | None = None
    token: str | None = None
    branch: str | None = None
    model_type: str | None = None
    base_tune_id: int | None = None
    eta: datetime | None = None
    started_training_at: datetime | None = None
    trained_at: datetime | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None
    cost_mc: int | None = None
    callback: str | None = None
    orig_images: list[str] = Field(default_factory=list)

    @field_validator("orig_images", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def is_trained(self) -> bool:
        return self.trained_at is not None


class Prompt(_Lenient):
    """A generation request. Done when `images` is non-empty; failed when `user_error` is set."""

    id: int
    tune_id: int | None = None
    text: str = ""
    negative_prompt: str | None = None
    seed: int | None = None
    cfg_scale: float | None = None  # Astria sends it as a string ("3.0"); pydantic parses it
    steps: int | None = None
    num_images: int | None = None
    callback: str | None = None
    images: list[str] = Field(default_factory=list)
    user_error: str | None = None
    cost_mc: int | None = None
    trained_at: datetime | None = None
    created_at: datetime | None = None
    pack_id: int | None = None  # made by a pack run

    @field_validator("images", mode="before")
    @classmethod
    def _image_urls(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            # Some responses carry image objects instead of bare URLs.
            return [v.get("url") if isinstance(v, dict) else v for v in value]
        return value

    @field_validator("user_error", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value in ("", [], {}) else value

    @property
    def is_done(self) -> bool:
        return bool(self.images)

    @property
    def is_failed(self) -> bool:
        return not self.images and bool(self.user_error)


class Pack(_Lenient):
    """A gallery pack: prompts made for a subject class, priced per class. `costs` maps
    a class to its price in millicents (read from `costs.{class}.cost_mc`, else the
    older `cost_mc_hash`)."""

    id: int
    title: str = ""
    slug: str | None = None
    costs: dict[str, int] = Field(default_factory=dict)
    images: dict[str, int] = Field(default_factory=dict)  # class -> images it makes

    @classmethod
    def from_json(cls, data: Any) -> Pack:
        if not isinstance(data, dict):
            raise ValueError("a pack is an object")
        costs: dict[str, int] = {}
        images: dict[str, int] = {}
        hashed = data.get("cost_mc_hash")
        if isinstance(hashed, dict):
            costs.update({str(k): int(v) for k, v in hashed.items() if isinstance(v, int)})
        detailed = data.get("costs")
        if isinstance(detailed, dict):
            for name, item in detailed.items():
                if isinstance(item, dict) and isinstance(item.get("cost_mc"), int):
                    costs[str(name)] = int(item["cost_mc"])
                if isinstance(item, dict) and isinstance(item.get("num_images"), int):
                    images[str(name)] = int(item["num_images"])
        return cls(
            id=data["id"],
            title=str(data.get("title") or data.get("slug") or data["id"]),
            slug=data.get("slug"),
            costs=costs,
            images=images,
        )


class User(_Lenient):
    """The account behind the key; `usd_balance_mc` is in millicents (100,000 = $1)."""

    id: int
    name: str | None = None
    email: str | None = None
    usd_balance_mc: int = 0
    auto_extend_tunes: bool = False  # Astria keeps tunes past 30 days, for a fee


@dataclass(frozen=True)
class PromptRequest:
    """What we ask Astria to generate. `seed` is always set by the bot (random unless the
    member chose one), so Astria's prompt idempotency never merges two members' prompts."""

    text: str
    num_images: int = 1
    seed: int | None = None
    negative_prompt: str | None = None
    aspect_ratio: str | None = None
    cfg_scale: float | None = None
    steps: int | None = None
    callback: str | None = None
    super_resolution: bool | None = None
    inpaint_faces: bool | None = None
    input_image_url: str | None = None
    denoising_strength: float | None = None
    style: str | None = None
    resolution: str | None = None
    # A member's own picture for image-to-image: sent as the bytes of `input_image`
    # (multipart), read again on each attempt, so a retry never needs a Discord URL.
    input_image: Path | bytes | None = None

    def form(self) -> dict[str, Any]:
        """The prompt's fields without the unset ones, as Astria names them."""
        values: dict[str, Any] = {
            "text": self.text,
            "num_images": self.num_images,
            "seed": self.seed,
            "negative_prompt": self.negative_prompt,
            "aspect_ratio": self.aspect_ratio,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "callback": self.callback,
            "super_resolution": self.super_resolution,
            "inpaint_faces": self.inpaint_faces,
            "input_image_url": self.input_image_url,
            "denoising_strength": self.denoising_strength,
            "style": self.style,
            "resolution": self.resolution,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class TuneRequest:
    """A fine-tune to create. `title` is a fresh UUID per member action: Astria's idempotency
    key, and what a lookup after a lost create searches for. Photos are files on disk or
    bytes; each attempt reads them again, so a retry never depends on a Discord URL."""

    title: str
    name: str
    images: Sequence[Path | bytes] = ()
    image_urls: Sequence[str] = ()
    branch: str | None = None
    base_tune_id: int | None = None
    model_type: str | None = None
    token: str | None = None
    callback: str | None = None
    prompts: Sequence[PromptRequest] = field(default_factory=tuple)
    preset: str | None = None  # a Flux training preset; None is Astria's "high" one

    def fields(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "title": self.title,
            "name": self.name,
            "branch": self.branch,
            "base_tune_id": self.base_tune_id,
            "model_type": self.model_type,
            "token": self.token,
            "callback": self.callback,
            "preset": self.preset,
        }
        return {k: v for k, v in values.items() if v is not None}


def unwrap(body: Any, key: str) -> Any:
    """Astria wraps some bodies (`{"tune": {...}}` in callbacks) and answers some POSTs with
    a one-element array; return the object inside either."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get(key), dict):
        return body[key]
    return body


def parse_callback(body: Any) -> Tune | Prompt | None:
    """Read a callback body (`{"tune": ...}`, `{"prompt": ...}` or bare). Only its id is
    to be trusted: the tracker re-fetches the object before acting on it."""
    if isinstance(body, dict):
        if isinstance(body.get("prompt"), dict):
            return Prompt.model_validate(body["prompt"])
        if isinstance(body.get("tune"), dict):
            return Tune.model_validate(body["tune"])
        if "images" in body or "tune_id" in body:
            return Prompt.model_validate(body)
        if "id" in body:
            return Tune.model_validate(body)
    return None
