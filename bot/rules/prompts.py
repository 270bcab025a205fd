"""Prompt text for Astria, built from what a member typed: cleaned, checked against the
server's rules and the member's tunes, and prefixed with the tune's tag, token and class.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, get_args

from confusable_homoglyphs import confusables

from bot.config import Branch, ModelProfile, ProfileName, Settings

PostTo = Literal["tune", "base"]
AspectRatio = Literal["1:1", "3:2", "2:3", "16:9", "9:16"]
ASPECT_RATIOS: tuple[AspectRatio, ...] = get_args(AspectRatio)

# Astria's prompt `style` (astria-api.md §3.1 names the field, not its values): the values
# Astria's prompt form and docs offer, sent as written. Astria documents no profile that
# refuses them, so every profile offers them (`styles_for`); a profile that turns out not
# to read them loses them there, in one place.
Style = Literal[
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
]
STYLES: tuple[Style, ...] = get_args(Style)  # the Literal is the one list
# `/imagine quality:`: standard (Astria's default 1K), high (`resolution=2K`, priced at
# HIGH_RESOLUTION_PRICE_MC an image) or super (`super_resolution=true`, x4, priced at
# UPSCALE_PRICE_MC an image, as an Upscale is).
Quality = Literal["standard", "high", "super"]
QUALITIES: tuple[Quality, ...] = get_args(Quality)
Resolution = Literal["2K"]
HIGH_RESOLUTION: Resolution = "2K"


def styles_for(profile: ProfileName) -> tuple[Style, ...]:
    """The styles a tune of `profile` is offered (all of them: see `Style`)."""
    del profile
    return STYLES


@dataclass(frozen=True)
class PromptOptions:
    """Everything about a prompt besides its text, tune, seed and count: one typed object
    from the command to the Astria request (stored as JSON with the prompt). The image
    fields are set by the per-image tools (`bot.rules.tools`), never typed by a member."""

    aspect_ratio: AspectRatio | None = None
    negative_prompt: str | None = None
    input_image_url: str | None = None  # image-to-image from this (an Astria image link)
    denoising_strength: float | None = None
    super_resolution: bool = False
    inpaint_faces: bool = False
    style: Style | None = None  # Astria's `style`, from `/imagine style:`
    resolution: Resolution | None = None  # Astria's `resolution`, from `quality:high`
    # Image-to-image from a member's own picture: the prepared file (bot/rules/prepare.py)
    # kept in PHOTOS_DIR until Astria has it, sent as the bytes of `input_image`.
    input_image_path: str | None = None

    @property
    def quality(self) -> Quality:
        if self.super_resolution:
            return "super"
        return "high" if self.resolution == HIGH_RESOLUTION else "standard"

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {}
        if self.aspect_ratio is not None:
            data["aspect_ratio"] = self.aspect_ratio
        if self.negative_prompt:
            data["negative_prompt"] = self.negative_prompt
        if self.input_image_url:
            data["input_image_url"] = self.input_image_url
        if self.denoising_strength is not None:
            data["denoising_strength"] = self.denoising_strength
        if self.super_resolution:
            data["super_resolution"] = True
        if self.inpaint_faces:
            data["inpaint_faces"] = True
        if self.style is not None:
            data["style"] = self.style
        if self.resolution is not None:
            data["resolution"] = self.resolution
        if self.input_image_path:
            data["input_image_path"] = self.input_image_path
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PromptOptions:
        """Read back what `to_json` wrote; anything else (an older row's extra keys) is
        left out."""
        aspect = data.get("aspect_ratio")
        negative = data.get("negative_prompt")
        image = data.get("input_image_url")
        strength = data.get("denoising_strength")
        style = data.get("style")
        path = data.get("input_image_path")
        return cls(
            aspect_ratio=next((a for a in ASPECT_RATIOS if a == aspect), None),
            negative_prompt=negative if isinstance(negative, str) and negative else None,
            input_image_url=image if isinstance(image, str) and image else None,
            denoising_strength=(
                float(strength)
                if isinstance(strength, int | float) and not isinstance(strength, bool)
                else None
            ),
            super_resolution=data.get("super_resolution") is True,
            inpaint_faces=data.get("inpaint_faces") is True,
            style=next((s for s in STYLES if s == style), None),
            resolution=HIGH_RESOLUTION if data.get("resolution") == HIGH_RESOLUTION else None,
            input_image_path=path if isinstance(path, str) and path else None,
        )


# Astria's documented tag kinds (docs/architecture.md §6). Matching is looser than Astria's own
# parser is likely to be (any case, spaces anywhere, weight optional or any text), so that
# nothing Astria might read as a tag slips through as plain words.
_TAG = re.compile(
    r"<\s*(?P<kind>lora|faceid)\s*:\s*(?P<id>[^:<>]*?)\s*(?::[^<>]*)?>",
    re.IGNORECASE,
)
# ASCII digits only: int() also accepts other scripts' digits and fails past 4300 of them.
_TUNE_ID = re.compile(r"[0-9]{1,18}")
# Inline flags (`--remove_background`, `--improve_similarity 0.5`) and the Midjourney habit
# (`--ar 16:9`, `--no text`) both start a word with two hyphens and a letter.
_FLAG = re.compile(r"(?<![\w-])--(?P<name>[a-z][a-z0-9_]*)", re.IGNORECASE)
_FLAG_SHOWN_MAX = 30
# Removed from the member's words outright: zero-width and bidi characters are how a banned
# word or a tag gets past a check while still reading the same.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# Characters Discord reads as markdown; a backslash before any punctuation renders as the
# character itself, so escaping a few extra costs nothing.
_MARKDOWN = frozenset("\\*_~`|>#-[]()<:")
_ZWSP = "\u200b"

_TAG_REFUSAL_TAIL = "The bot adds your tune's tag itself, so leave tags out."

# The subject classes a member picks from when training; the class goes into every prompt.
SUBJECT_CLASSES: tuple[str, ...] = ("man", "woman", "boy", "girl", "cat", "dog", "couple", "style")
# FaceID learns one face: no pets, pairs or styles.
_FACE_CLASSES: tuple[str, ...] = ("man", "woman", "boy", "girl")


def subject_classes(profile: ProfileName) -> tuple[str, ...]:
    """What a tune on `profile` may be of."""
    return _FACE_CLASSES if profile == "faceid" else SUBJECT_CLASSES


@dataclass(frozen=True)
class PromptRules:
    """A server's limits on prompt text. `banned_words` are matched as whole words (or
    phrases), ignoring case and accents, so banning "ass" leaves "class" alone."""

    max_length: int = 600
    banned_words: frozenset[str] = frozenset()
    max_negative_length: int = 300


def rules_from(settings: Settings) -> PromptRules:
    """The operator's rules: PROMPT_MAX_LENGTH and the comma-separated PROMPT_BANNED_WORDS."""
    words = frozenset(w.strip() for w in settings.prompt_banned_words.split(",") if w.strip())
    return PromptRules(max_length=settings.prompt_max_length, banned_words=words)


@dataclass(frozen=True)
class TuneRef:
    """The facts about one tune that its prompt text depends on."""

    id: int  # the bot's own id
    astria_id: int
    subject_class: str  # "man", "woman", "dog", ...
    profile: ProfileName  # the profile the tune was trained under
    branch: Branch
    token: str  # trigger word recorded at training; may be "" (FaceID)


@dataclass(frozen=True)
class BuiltPrompt:
    """Text ready for Astria, and where to post it."""

    final_text: str
    user_text: str  # the member's words as cleaned, without tags: safe to store and re-use
    post_to: PostTo  # "tune": the tune itself; "base": the profile's base tune
    target_tune_id: int  # the Astria tune id that `post_to` names


@dataclass(frozen=True)
class PromptRefusal:
    """Why the text was not accepted, in words a member can act on."""

    reason: str


def build_prompt(
    user_text: str,
    tune: TuneRef,
    profile: ModelProfile,
    rules: PromptRules,
    *,
    usable_astria_ids: Collection[int],
) -> BuiltPrompt | PromptRefusal:
    """The text Astria receives for `user_text` on `tune`, or why it cannot be sent.

    `profile` is the one the bot runs now; `usable_astria_ids` are the Astria ids of the
    member's own tunes and those shared with the server (`tune` itself always counts).
    Checkpoint tunes, and every tune on the free `fast` branch, are prompted on the tune
    itself as "token class text"; LoRA and FaceID tunes on the base tune behind one tag.
    """
    # Fast tunes are mock checkpoints wherever they came from, and a tag prompt on a real
    # base tune may be billed (docs/architecture.md §4): the profile matters on paid ones.
    fast = tune.branch == "fast"
    if not fast and tune.profile != profile.name:
        return PromptRefusal(
            f"This tune was trained for the {tune.profile} model, but the bot now uses "
            f"{profile.name}, so it cannot make pictures with it. Train a new tune, or ask "
            "an admin."
        )

    text = _clean(user_text)
    if not text:
        return PromptRefusal("Your prompt is empty: describe the picture you want.")
    # Counted before tags are taken out, so the number matches what the member typed.
    if len(text) > rules.max_length:
        return PromptRefusal(
            f"Your prompt is {len(text)} characters long; the limit is {rules.max_length}. "
            "Shorten it and try again."
        )
    if _has_banned_word(text, rules.banned_words):
        # Never echo the word: it may be a slur, and the reply may be public.
        return PromptRefusal("Your prompt has a word this server does not allow.")
    flag = _first_flag(text)
    if flag is not None:
        return flag

    usable = {tune.astria_id, *usable_astria_ids}
    text_or_refusal = _remove_tags(text, usable)
    if isinstance(text_or_refusal, PromptRefusal):
        return text_or_refusal
    text = text_or_refusal
    if not text:
        return PromptRefusal(
            "Your prompt has only tags in it: describe the picture you want. " + _TAG_REFUSAL_TAIL
        )

    subject = " ".join(tune.subject_class.split())
    token = " ".join((tune.token or profile.token).split())
    if fast or profile.model_type is None:
        prefix = _join(token, subject)
        post_to: PostTo = "tune"
        target = tune.astria_id
    elif profile.model_type == "lora":
        prefix = _join(f"<lora:{tune.astria_id}:1>", token, subject)
        post_to, target = "base", profile.base_tune_id
    else:
        # FaceID wants the class straight after the tag and knows no token.
        prefix = _join(f"<faceid:{tune.astria_id}:1>", subject)
        post_to, target = "base", profile.base_tune_id
    return BuiltPrompt(_join(prefix, text), text, post_to, target)


def prompt_options(
    options: PromptOptions, profile: ModelProfile, rules: PromptRules
) -> PromptOptions | PromptRefusal:
    """The options as they will be sent for a tune of `profile`, or why they cannot be.

    An option the profile's model ignores is refused, not dropped: Flux ignores negative
    prompts (docs/architecture.md §6), and a member who asked for one should know it would
    change nothing, rather than pay for pictures that silently ignored it.
    """
    if options.style is not None and options.style not in styles_for(profile.name):
        return PromptRefusal(
            f"The style {options.style} does not work with this tune's model; leave `style` "
            "empty or pick another."
        )
    if options.super_resolution and options.resolution is not None:
        return PromptRefusal("Pick one quality: high resolution or super-resolution.")
    if not options.negative_prompt:
        return replace(options, negative_prompt=None)
    negative = clean_negative(options.negative_prompt, rules)
    if isinstance(negative, PromptRefusal):
        return negative
    if negative and not profile.takes_negative_prompt:
        return PromptRefusal(NO_NEGATIVES)
    return replace(options, negative_prompt=negative or None)


NO_NEGATIVES = (
    "This tune uses Flux, which ignores negative prompts, so `negative` would change "
    "nothing. Leave it empty and describe what you want instead (e.g. 'plain background')."
)


def clean_negative(text: str, rules: PromptRules) -> str | PromptRefusal:
    """The negative prompt, cleaned; "" when there is none.

    Banned words are not checked here: a negative prompt is where a member keeps unwanted
    content out ("nudity", "blood"). Whether the profile reads one is `prompt_options`'s
    question.
    """
    cleaned = _clean(text)
    if len(cleaned) > rules.max_negative_length:
        return PromptRefusal(
            f"Your negative prompt is {len(cleaned)} characters long; the limit is "
            f"{rules.max_negative_length}. Shorten it and try again."
        )
    if _TAG.search(cleaned):
        return PromptRefusal(
            "Tags like `<lora:...>` cannot go in the negative prompt. Remove them and try again."
        )
    flag = _first_flag(cleaned)
    if flag is not None:
        return flag
    return _join(*_drop_angle_brackets(cleaned).split())


NAME_MAX = 32
# Dropped from names outright: controls, formats (bidi overrides, zero-width joiners and
# spaces), surrogates, private-use and unassigned code points. What is left reads the same
# in every client, so one member's tune cannot pose as another's.
_NAME_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean_name(text: str, limit: int = NAME_MAX) -> str:
    """A name as stored and shown: NFC, no invisible or direction-changing characters,
    single spaces, at most `limit` characters (cut). May be empty."""
    text = unicodedata.normalize("NFC", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp", "Zs"):
            kept.append(" ")
        elif category not in _NAME_DROPPED:
            kept.append(char)
    return " ".join("".join(kept).split())[:limit].strip()


def tune_name(text: str) -> str | PromptRefusal:
    """The name a member gave a new tune, cleaned, or why it cannot be used."""
    name = clean_name(text, limit=10 * NAME_MAX)
    if not name:
        return PromptRefusal("Give the tune a name, like `me` or `Rex`.")
    if len(name) > NAME_MAX:
        return PromptRefusal(f"A tune name has at most {NAME_MAX} characters.")
    return name


def display_text(text: str, limit: int = 300) -> str:
    """`text` made safe to show in a Discord message: one line, markdown escaped, mentions
    unable to ping, at most `limit` characters (cut with "…")."""
    pieces = [_display_piece(char) for char in _clean(text)]
    if sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    room = max(limit, 1) - 1  # for the "…"
    for piece in pieces:
        # Whole pieces only: half an escape would unescape the next character.
        if len(piece) > room:
            break
        kept.append(piece)
        room -= len(piece)
    return "".join(kept) + "…"


def _display_piece(char: str) -> str:
    if char == "@":
        # A zero-width space after "@" is how Discord clients themselves defuse @everyone,
        # @here and <@id>; a backslash alone may still ping.
        return "@" + _ZWSP
    if char in _MARKDOWN:
        return "\\" + char
    return char


def _clean(text: str) -> str:
    # NFKC folds full-width and other look-alike forms (＜ｌｏｒａ：…＞, ｓｌｕｒ) onto the
    # plain characters the checks below look for.
    text = unicodedata.normalize("NFKC", text)
    kept = []
    for char in text:
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) not in _DROPPED_CATEGORIES:
            kept.append(char)
    return " ".join("".join(kept).split())


def _join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _first_flag(text: str) -> PromptRefusal | None:
    match = _FLAG.search(text)
    if match is None:
        return None
    name = match["name"]
    shown = f"`--{name}`" if len(name) <= _FLAG_SHOWN_MAX else "an option starting with `--`"
    # Refused rather than stripped: flags like --remove_background change the result (and
    # may change the price), and silently dropping one would surprise the member.
    return PromptRefusal(
        f"Your prompt contains {shown}. Options can't be set inside the prompt text; "
        "remove it and use the command's options instead."
    )


def _remove_tags(text: str, usable: set[int]) -> str | PromptRefusal:
    # The check runs until no tag is left, closing up the gap each time: taking one tag out
    # can join the text around it into another ("<lo<lora:1:1>ra:2:1>"), which must be
    # checked too. The text kept has a space where each tag was, so words stay apart.
    probe = text
    while found := list(_TAG.finditer(probe)):
        for match in found:
            kind = match["kind"].lower()
            raw_id = match["id"]
            if not _TUNE_ID.fullmatch(raw_id):
                return PromptRefusal(
                    f"Your prompt has a `<{kind}:...>` tag that does not name a tune. "
                    + _TAG_REFUSAL_TAIL
                )
            if int(raw_id) not in usable:
                return PromptRefusal(
                    f"Your prompt has a `<{kind}:...>` tag for tune {int(raw_id)}, which is "
                    "not yours or shared with this server. " + _TAG_REFUSAL_TAIL
                )
        probe = _TAG.sub("", probe)
    # Flux cannot combine LoRAs, so the bot's single tag replaces the member's.
    return _join(*_drop_angle_brackets(_TAG.sub(" ", text)).split())


def _drop_angle_brackets(text: str) -> str:
    # Astria reads "<" only as the start of a tag, so no member text needs one; removing
    # them guarantees the final text holds no tag but the bot's own, whatever form Astria
    # may accept that the pattern above misses.
    return text.replace("<", " ").replace(">", " ")


def _has_banned_word(text: str, banned: frozenset[str]) -> bool:
    pattern = _banned_pattern(banned)
    return pattern is not None and any(pattern.search(form) for form in screened_forms(text))


# A letter or digit (not "_"), and a word spelled out to dodge the list, one separator kind
# throughout: "n.u.d.e", "n u d e", "n-u-d-e", "n_u_d_e".
_L = r"[^\W_]"
_SPELLED_OUT = re.compile(
    rf"(?<!{_L}){_L}(?!{_L})(?P<sep>[\W_]{{1,3}}){_L}(?!{_L})(?:(?P=sep){_L}(?!{_L}))+"
)
_INNER_MARKS = re.compile(rf"(?<={_L})(?:[^\w\s]|_)+(?={_L})")
_NOT_LETTERS = re.compile(r"[\W_]+")


def screened_forms(text: str) -> set[str]:
    """The forms of a member's text that the banned words are matched against.

    Look-alike characters read as the Latin letters they imitate, by Unicode's confusables
    table (Cyrillic "е" and "ѕ", Greek "ο", full-width and mathematical letters), accents
    off, case folded; that with marks inside a word removed ("nu.de", "nu*de"); and with
    words spelled out letter by letter joined up, once whole and once leaving the first
    letter apart (a spaced "a n u d e" is "a nude")."""
    base = _latin_lookalikes(_folded(text))

    def joined(match: re.Match[str]) -> str:
        return _NOT_LETTERS.sub("", match[0])

    def joined_after_first(match: re.Match[str]) -> str:
        return match[0][0] + " " + _NOT_LETTERS.sub("", match[0][1:])

    return {
        base,
        _INNER_MARKS.sub("", base),
        _SPELLED_OUT.sub(joined, base),
        _SPELLED_OUT.sub(joined_after_first, base),
    }


def _latin_lookalikes(text: str) -> str:
    return "".join(c if c.isascii() else _lookalike(c) for c in text)


@lru_cache(maxsize=4096)
def _lookalike(char: str) -> str:
    """The ASCII character Unicode's confusables table says `char` is mistaken for (its
    security data, via confusable-homoglyphs), or `char` itself."""
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"])
    for entry in found or []:
        for glyph in entry["homoglyphs"]:
            shown = glyph["c"]
            if shown.isascii() and shown.isalnum():
                return str(shown).casefold()
    return char


@lru_cache(maxsize=16)
def _banned_pattern(banned: frozenset[str]) -> re.Pattern[str] | None:
    words = sorted(
        {w for w in (_latin_lookalikes(_folded(_clean(b))) for b in banned) if w.strip()}
    )
    if not words:
        return None
    alternatives = "|".join(_plural_too(r"\s+".join(map(re.escape, w.split()))) for w in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _plural_too(word: str) -> str:
    """The word's pattern, its English plural allowed: "nude" → "nudes", "ass" → "asses",
    "pussy" → "pussies" (a "y" after a consonant), "boob" → "boobs"."""
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return f"{word[:-1]}(?:y|ies)"
    return f"{word}(?:e?s)?"


def _folded(text: str) -> str:
    # Accents and stacked combining marks off, case folded: "Äss", "a̷ss" and "ASS" match "ass".
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
