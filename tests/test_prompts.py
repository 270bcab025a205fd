"""Prompt building and cleaning: what Astria receives for what a member typed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ModelProfile, ProfileName
from bot.rules.prompts import (
    BuiltPrompt,
    PromptOptions,
    PromptRefusal,
    PromptRules,
    TuneRef,
    build_prompt,
    clean_negative,
    display_text,
    prompt_options,
)

FLUX = ModelProfile("flux-lora", "lora", 1504944, "ohwx", 30.0, takes_negative_prompt=False)
SD15 = ModelProfile("sd15-checkpoint", None, 690204, "sks", 20.0)
FACEID = ModelProfile("faceid", "faceid", 690204, "", 20.0)
PROFILES = {p.name: p for p in (FLUX, SD15, FACEID)}

FLUX_TUNE = TuneRef(1, 111, "man", "flux-lora", "flux1", "ohwx")
SD15_TUNE = TuneRef(2, 222, "man", "sd15-checkpoint", "sd15", "sks")
FACEID_TUNE = TuneRef(3, 333, "woman", "faceid", "sd15", "")
RULES = PromptRules()


def built(result: BuiltPrompt | PromptRefusal) -> BuiltPrompt:
    assert isinstance(result, BuiltPrompt), result
    return result


def refused(result: BuiltPrompt | PromptRefusal | PromptOptions | str) -> str:
    assert isinstance(result, PromptRefusal), result
    return result.reason


def build(text: str, tune: TuneRef = FLUX_TUNE, rules: PromptRules = RULES, usable=()):
    return build_prompt(text, tune, PROFILES[tune.profile], rules, usable_astria_ids=usable)


# Each profile's text and target.


def test_checkpoint_prompt_is_token_class_text_on_the_tune() -> None:
    result = built(build("on a beach at sunset", SD15_TUNE))
    assert result.final_text == "sks man on a beach at sunset"
    assert (result.post_to, result.target_tune_id) == ("tune", 222)
    assert result.user_text == "on a beach at sunset"


def test_lora_prompt_has_one_tag_then_token_and_class_on_the_base() -> None:
    result = built(build("on a beach at sunset", FLUX_TUNE))
    assert result.final_text == "<lora:111:1> ohwx man on a beach at sunset"
    assert (result.post_to, result.target_tune_id) == ("base", 1504944)


def test_faceid_prompt_has_the_class_right_after_the_tag() -> None:
    result = built(build("in a leather jacket", FACEID_TUNE))
    assert result.final_text == "<faceid:333:1> woman in a leather jacket"
    assert (result.post_to, result.target_tune_id) == ("base", 690204)


@pytest.mark.parametrize("profile", ["flux-lora", "sd15-checkpoint"])
def test_fast_branch_is_prompted_as_a_checkpoint_on_the_tune(profile: ProfileName) -> None:
    tune = TuneRef(4, 444, "dog", profile, "fast", "ohwx")
    result = built(build("in the snow", tune))
    assert result.final_text == "ohwx dog in the snow"
    assert (result.post_to, result.target_tune_id) == ("tune", 444)


def test_fast_tune_without_a_token_starts_with_its_class() -> None:
    tune = TuneRef(5, 555, "woman", "faceid", "fast", "")
    assert built(build("smiling", tune)).final_text == "woman smiling"


def test_a_tune_from_another_profile_on_a_paid_branch_is_refused() -> None:
    reason = refused(build_prompt("a cat", SD15_TUNE, FLUX, RULES, usable_astria_ids=()))
    assert "sd15-checkpoint" in reason and "flux-lora" in reason


# Tags typed by the member.


def test_a_tag_naming_someone_elses_tune_is_refused() -> None:
    reason = refused(build("<lora:999:1> on a beach", usable={111, 123}))
    assert "999" in reason and "not yours" in reason


def test_a_tag_naming_a_usable_tune_is_replaced_by_the_bots_single_tag() -> None:
    result = built(build("<lora:123:0.7> on a beach <faceid:111:1>", usable={123}))
    assert result.final_text == "<lora:111:1> ohwx man on a beach"
    assert result.user_text == "on a beach"


@pytest.mark.parametrize(
    "tag",
    ["< LoRA : 12 : 0.8 >", "<LORA:12:1>", "<lora:12>", "<FaceID:12:0.5>", "<lora :12: -1 >"],
)
def test_tags_are_found_whatever_their_case_spacing_or_weight(tag: str) -> None:
    assert "12" in refused(build(f"a portrait {tag} in oil"))
    result = built(build(f"a portrait {tag} in oil", usable={12}))
    assert result.final_text == "<lora:111:1> ohwx man a portrait in oil"


def test_full_width_tags_are_found_too() -> None:
    assert "12" in refused(build("＜ｌｏｒａ：１２：１＞ a cat"))


def test_a_tag_with_no_tune_id_is_refused() -> None:
    assert "does not name a tune" in refused(build("<lora:my-style:1> a cat"))


def test_a_tag_hidden_by_removing_another_is_still_checked() -> None:
    assert "999" in refused(build("<lo<lora:12:1>ra:999:1> a cat", usable={12}))


def test_stray_angle_brackets_never_reach_astria() -> None:
    result = built(build("i <3 cats > dogs", SD15_TUNE))
    assert result.final_text == "sks man i 3 cats dogs"


def test_text_of_only_tags_is_refused() -> None:
    assert "only tags" in refused(build("<lora:111:1>"))


# Flags, length, empty, invisible characters, banned words.


@pytest.mark.parametrize("flag", ["--remove_background", "--improve_similarity 0.5", "--AR 16:9"])
def test_inline_flags_are_refused_by_name(flag: str) -> None:
    reason = refused(build(f"a cat {flag}"))
    assert flag.split()[0] in reason


def test_dashes_inside_words_are_not_flags() -> None:
    assert built(build("a well-known cat--sleeping", SD15_TUNE)).user_text == (
        "a well-known cat--sleeping"
    )


def test_over_length_is_refused_with_the_length_and_the_limit() -> None:
    reason = refused(build("a" * 601))
    assert "601" in reason and "600" in reason
    assert isinstance(build("a" * 600), BuiltPrompt)


def test_length_is_counted_after_whitespace_is_squeezed() -> None:
    assert built(build("a" + " " * 1000 + "b", SD15_TUNE)).user_text == "a b"


@pytest.mark.parametrize("text", ["", "   ", "\n\t \u200b ", "\x00\x07"])
def test_empty_or_blank_text_is_refused(text: str) -> None:
    assert "empty" in refused(build(text))


def test_control_and_zero_width_characters_are_removed() -> None:
    text = "a\x00 cat\u200b on\u200d a\ufeff\u202e mat\r\nat\tnight\x1b"
    assert built(build(text, SD15_TUNE)).user_text == "a cat on a mat at night"


BAN = PromptRules(banned_words=frozenset({"ass", "Bad Phrase"}))


@pytest.mark.parametrize(
    "text", ["an ASS", "Ass.", "the a\u200bss", "ÄSS here", "a bad   PHRASE", "(ass)"]
)
def test_banned_words_are_refused_without_echoing_them(text: str) -> None:
    reason = refused(build(text, rules=BAN))
    assert reason == "Your prompt has a word this server does not allow."


@pytest.mark.parametrize(
    "text",
    ["a class photo", "my passport", "Bassist", "a b c d", "bad-phrasebook", "a sassy cat"],
)
def test_banned_words_inside_other_words_are_fine(text: str) -> None:
    assert isinstance(build(text, rules=BAN), BuiltPrompt)


EVADED = PromptRules(banned_words=frozenset({"nude", "sex", "pussy", "ass", "bad phrase"}))


@pytest.mark.parametrize(
    "text",
    [
        "a n.u.d.e photo",  # separators
        "a n u d e woman",  # spaced letters, after a one-letter word
        "n-u-d-e",
        "n_u_d_e",
        "nu.de art",  # a mark inside the word
        "nu*de",
        "nudes on a beach",  # plurals
        "two pussies",
        "asses",
        "bad phrases",
        "a nud\u0435 girl",  # Cyrillic е
        "\u0455\u0435\u0445",  # Cyrillic ѕех
        "\u0430\u0455\u0455",  # Cyrillic а and ѕ
        "\U0001d427\U0001d42e\U0001d41d\U0001d41e",  # mathematical bold
        "ｎｕｄｅ",  # full width
        "N Ú D É",  # accents, capitals, spaced
    ],
)
def test_the_usual_evasions_of_a_banned_word_are_refused(text: str) -> None:
    assert refused(build(text, rules=EVADED)) == (
        "Your prompt has a word this server does not allow."
    )


@pytest.mark.parametrize(
    "text",
    ["a nudist beach", "sussex downs", "a sunset at sea", "i a m here", "assassin's creed"],
)
def test_screening_for_evasions_leaves_ordinary_words_alone(text: str) -> None:
    assert isinstance(build(text, rules=EVADED), BuiltPrompt)


@given(
    word=st.sampled_from(sorted(EVADED.banned_words - {"bad phrase"})),
    separator=st.sampled_from([".", " ", "-", "_", "*", ". ", " . "]),
)
def test_any_banned_word_spelled_out_with_one_separator_is_refused(
    word: str, separator: str
) -> None:
    assert refused(build(f"a photo of {separator.join(word)}", rules=EVADED))


# Negative prompts.


def test_negative_prompt_is_cleaned_and_may_be_empty() -> None:
    assert clean_negative("  blurry,\n\u200blow  quality ", RULES) == "blurry, low quality"
    assert clean_negative("   ", RULES) == ""


def test_negative_prompt_keeps_words_the_server_bans_in_prompts() -> None:
    assert clean_negative("ass", BAN) == "ass"


def test_negative_prompt_over_length_is_refused_with_the_numbers() -> None:
    reason = refused(clean_negative("x" * 301, RULES))
    assert "301" in reason and "300" in reason


@pytest.mark.parametrize("text", ["<lora:1:1> blurry", "blurry --upscale_v4"])
def test_negative_prompt_refuses_tags_and_flags(text: str) -> None:
    refused(clean_negative(text, RULES))


def test_flux_refuses_a_negative_prompt_saying_flux_ignores_it() -> None:
    reason = refused(prompt_options(PromptOptions("1:1", "blurry"), FLUX, RULES))
    assert "Flux" in reason and "ignores negative prompts" in reason


@pytest.mark.parametrize("profile", [SD15, FACEID])
def test_sd15_and_faceid_take_the_cleaned_negative_prompt(profile: ModelProfile) -> None:
    options = prompt_options(PromptOptions("16:9", "  blurry,  low quality "), profile, RULES)
    assert options == PromptOptions("16:9", "blurry, low quality")


@pytest.mark.parametrize("negative", [None, "", "   \u200b "])
def test_no_negative_is_fine_on_every_profile(negative: str | None) -> None:
    for profile in (FLUX, SD15, FACEID):
        assert prompt_options(PromptOptions("1:1", negative), profile, RULES) == (
            PromptOptions("1:1", None)
        )


# Showing the text back in Discord.


def test_display_text_neutralises_mentions() -> None:
    shown = display_text("hi @everyone and @here and <@123> <@!4> <@&5>")
    for ping in ("@everyone", "@here", "<@123>", "<@!4>", "<@&5>"):
        assert ping not in shown


def test_display_text_escapes_backticks_and_markdown() -> None:
    shown = display_text("```code``` **bold** ||spoiler|| [x](https://e.com)")
    assert re.search(r"(?<!\\)[`*|\[]", shown) is None


def test_display_text_is_capped_without_splitting_an_escape() -> None:
    shown = display_text("*" * 500, limit=100)
    assert len(shown) <= 100 and shown.endswith("…")
    assert shown[:-1] == "\\*" * 49
    assert display_text("short", limit=100) == "short"


# Properties over arbitrary text.

TAG_LIKE = st.lists(
    st.one_of(
        st.sampled_from(
            ["<", ">", ":", "lora", "LoRA", "faceid", " ", "1", "111", "999", "0.8", "--", "@"]
        ),
        st.text(max_size=5),
    ),
    max_size=40,
).map("".join)
TUNES = st.sampled_from(
    [FLUX_TUNE, SD15_TUNE, FACEID_TUNE, TuneRef(4, 444, "dog", "flux-lora", "fast", "ohwx")]
)
OWN_TAG = re.compile(r"<(lora|faceid):(111|333):1>")


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(max_size=700), TAG_LIKE),
    tune=TUNES,
    usable=st.sets(st.sampled_from([1, 12, 111, 999])),
    limit=st.integers(min_value=1, max_value=700),
)
def test_built_text_holds_only_the_bots_tag_and_stays_within_the_limit(
    text: str, tune: TuneRef, usable: set[int], limit: int
) -> None:
    rules = PromptRules(max_length=limit, banned_words=frozenset({"ass"}))
    result = build(text, tune, rules, usable)
    if isinstance(result, PromptRefusal):
        assert result.reason
        return
    prefix = result.final_text[: len(result.final_text) - len(result.user_text)]
    assert result.final_text == prefix + result.user_text
    assert len(result.final_text) <= len(prefix) + limit
    assert "<" not in result.user_text and ">" not in result.user_text
    assert len(OWN_TAG.findall(result.final_text)) == result.final_text.count("<")
    assert result.final_text.count("<") == (result.post_to == "base")


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=400), TAG_LIKE), limit=st.integers(1, 400))
def test_negative_and_display_never_raise(text: str, limit: int) -> None:
    result = clean_negative(text, RULES)
    assert isinstance(result, str | PromptRefusal)
    shown = display_text(text, limit=limit)
    assert len(shown) <= limit
    assert "@everyone" not in shown
