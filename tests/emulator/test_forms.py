"""Rails-style form keys: the nesting rules the multipart parser relies on."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot.offline.emulator.forms import indexed_to_lists, put, split_key


def parse(pairs: list[tuple[str, Any]]) -> Any:
    params: dict[str, Any] = {}
    for key, value in pairs:
        put(params, split_key(key), value)
    return indexed_to_lists(params)


def test_split_key() -> None:
    assert split_key("tune[title]") == ["tune", "title"]
    assert split_key("tune[images][]") == ["tune", "images", ""]
    assert split_key("tune[prompts_attributes][][text]") == [
        "tune",
        "prompts_attributes",
        "",
        "text",
    ]
    assert split_key("plain") == ["plain"]
    assert split_key("broken[") == ["broken["]


def test_arrays_of_hashes_start_a_new_hash_when_a_key_repeats() -> None:
    parsed = parse(
        [
            ("tune[title]", "t"),
            ("tune[image_urls][]", "a"),
            ("tune[image_urls][]", "b"),
            ("tune[prompts_attributes][][text]", "one"),
            ("tune[prompts_attributes][][num_images]", "2"),
            ("tune[prompts_attributes][][text]", "two"),
        ]
    )
    assert parsed == {
        "tune": {
            "title": "t",
            "image_urls": ["a", "b"],
            "prompts_attributes": [{"text": "one", "num_images": "2"}, {"text": "two"}],
        }
    }


def test_indexed_arrays_become_lists() -> None:
    parsed = parse(
        [
            ("tune[prompts_attributes][1][text]", "second"),
            ("tune[prompts_attributes][0][text]", "first"),
        ]
    )
    assert parsed == {"tune": {"prompts_attributes": [{"text": "first"}, {"text": "second"}]}}


prompt_lists = st.lists(
    st.fixed_dictionaries(
        {"text": st.text(min_size=1, max_size=20)},
        optional={"num_images": st.integers(1, 8).map(str), "seed": st.integers(0, 99).map(str)},
    ),
    max_size=6,
)


@given(prompt_lists)
def test_prompts_attributes_round_trip_when_each_starts_with_text(
    prompts: list[dict[str, str]],
) -> None:
    # As in Rack, a key the current hash lacks joins it, so each hash must lead with `text`.
    pairs = [
        (f"tune[prompts_attributes][][{name}]", prompt[name])
        for prompt in prompts
        for name in ["text", *sorted(set(prompt) - {"text"})]
    ]
    parsed = parse([("tune[title]", "t"), *pairs])
    assert parsed["tune"].get("prompts_attributes", []) == prompts
