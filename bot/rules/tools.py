"""The per-image tools on a result: Upscale and Vary (subtle or strong), as Astria
requests built from one image of an earlier prompt. Pure: the numbers and the choices.

- **Upscale** is one image, image-to-image from the source with Astria's super-resolution
  (x4, `super_resolution=true`) and a low `UPSCALE_DENOISING`, so the picture stays the same
  and only gains pixels. Face inpainting (`inpaint_faces`, which Astria only takes together
  with super-resolution) is added where the tune is of a person (`FACE_CLASSES`): a pet or a
  style has no face to repair. Priced at `UPSCALE_PRICE_MC` (an image plus Astria's
  super-resolution surcharge).
- **From an image** (`/imagine image:`, the menu "Imagine from this image") is a prompt
  whose source is a member's own picture, checked and prepared as a training photo and
  sent as bytes, at `FROM_IMAGE_STRENGTH` denoising unless the member picks a strength.
- **Vary** is `VARY_IMAGES` new images, image-to-image from the source with a new seed, at
  `VARY_SUBTLE` or `VARY_STRONG` denoising (how far from the source Astria may go: 0 keeps
  it, 1 ignores it; Astria's own default is 0.8). Priced as that many images.
"""

from __future__ import annotations

from typing import Final, Literal

Tool = Literal["imagine", "reroll", "edit", "upscale", "vary"]

# Image-to-image from a member's own picture (`/imagine image:`, the message menu): how far
# Astria may move from it. 0.6 keeps the picture's layout and colours while the tune and the
# prompt restyle it; Astria's own default, 0.8, mostly ignores the source.
FROM_IMAGE_STRENGTH: Final = 0.6
MIN_STRENGTH: Final = 0.05
MAX_STRENGTH: Final = 1.0
Strength = Literal["subtle", "strong"]

# Denoising for a variation: subtle keeps the composition, pose and colours and changes
# details; strong keeps the idea and the layout loosely (Midjourney's two Vary buttons).
VARY_SUBTLE: Final = 0.35
VARY_STRONG: Final = 0.7
VARY_STRENGTHS: Final[dict[Strength, float]] = {"subtle": VARY_SUBTLE, "strong": VARY_STRONG}
# A variation makes a new set of four, as Midjourney's V buttons do.
VARY_IMAGES: Final = 4
# An upscale changes next to nothing of the picture: super-resolution does the enlarging.
UPSCALE_DENOISING: Final = 0.1
# Subject classes with a face that Astria's face inpainting can repair.
FACE_CLASSES: Final = frozenset({"man", "woman", "boy", "girl", "couple"})
# Per-image buttons fit up to this many images (a row each for Upscale, Vary subtle and
# Vary strong, at most 5 buttons a row, 4 kept for symmetry); beyond it, one select menu.
BUTTONS_UP_TO: Final = 4


def inpaints_faces(subject_class: str) -> bool:
    """Whether an upscale of a tune of `subject_class` asks Astria to repair faces."""
    return subject_class.strip().lower() in FACE_CLASSES
