"""Astria's gallery packs, as the emulator plays them: a pack is a set of prompts made for
one subject class, priced per class (`costs.{class}.cost_mc`), run on a tune with
`POST /p/:pack_id/tunes` (`tune_ids[]`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PackPrompt:
    """One prompt of a pack; `{subject}` becomes the tune's token and class ("ohwx man")."""

    text: str
    num_images: int


@dataclass(frozen=True)
class Pack:
    id: int
    slug: str
    title: str
    costs: dict[str, int]  # class -> price of the whole pack, in millicents
    prompts: tuple[PackPrompt, ...]

    def num_images(self) -> int:
        return sum(prompt.num_images for prompt in self.prompts)

    def json(self, base: str) -> dict[str, Any]:
        images = self.num_images()
        return {
            "id": self.id,
            "slug": self.slug,
            "title": self.title,
            "cost_mc_hash": dict(self.costs),
            "costs": {
                name: {"cost_mc": cost, "cost": cost / 100_000, "num_images": images}
                for name, cost in self.costs.items()
            },
            "prompts_count": len(self.prompts),
            "url": f"{base}/p/{self.id}.json",
        }


def shares(total_mc: int, count: int) -> list[int]:
    """The pack's price split over its prompts, the remainder on the first ones, so the
    shares always add up to the price."""
    if count <= 0:
        return []
    base, extra = divmod(total_mc, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def default_packs() -> dict[int, Pack]:
    packs = [
        Pack(
            260,
            "corporate-headshots",
            "Corporate Headshots",
            {"man": 60_000, "woman": 60_000},
            (
                PackPrompt("{subject} in a navy suit, office background, soft light", 2),
                PackPrompt("{subject} in a white shirt, studio grey backdrop", 2),
                PackPrompt("{subject} smiling, glass building behind, golden hour", 2),
            ),
        ),
        Pack(
            261,
            "pet-portraits",
            "Pet Portraits",
            {"dog": 30_000, "cat": 30_000},
            (
                PackPrompt("{subject} on a velvet cushion, oil painting", 2),
                PackPrompt("{subject} in a sunflower field", 2),
            ),
        ),
        Pack(
            262,
            "fantasy-worlds",
            "Fantasy Worlds",
            {"man": 90_001, "woman": 90_001, "dog": 45_000},
            (
                PackPrompt("{subject} as a knight, castle at dusk", 2),
                PackPrompt("{subject} as a wizard, glowing runes", 1),
                PackPrompt("{subject} on a dragon's back above the clouds", 3),
            ),
        ),
    ]
    return {pack.id: pack for pack in packs}
