"""The edit options: defaults, ranges, enums and prompt cleaning, checked server-side."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bot.errors import BadInput
from bot.params import (
    ASPECT_RATIOS,
    OUTPUT_FORMATS,
    PROMPT_MAX_CHARS,
    SEED_MAX,
    EditParams,
    build_params,
    clean_prompt,
)

# What the API contract says each option defaults to.
API_DEFAULTS: dict[str, Any] = {
    "guidance": 7.0,
    "steps": 35,
    "aspect_ratio": "match_input_image",
    "output_format": "png",
    "quality": 90,
}


# ---------------------------------------------------------------------- defaults and seed


def test_defaults_match_the_api_contract() -> None:
    p = build_params("make it night", seed=7)
    assert p == EditParams(prompt="make it night", seed=7, **API_DEFAULTS)


@pytest.mark.parametrize("seed", [None, -1])
def test_missing_or_minus_one_seed_becomes_a_concrete_random_seed(seed: int | None) -> None:
    seeds = {build_params("x", seed=seed).seed for _ in range(20)}
    assert all(0 <= s <= SEED_MAX for s in seeds)
    # A concrete random seed each time, never the API's fixed default or -1.
    assert len(seeds) > 1
    assert -1 not in seeds


def test_explicit_seed_is_kept() -> None:
    assert build_params("x", seed=123456).seed == 123456


# ---------------------------------------------------------------------- ranges

ACCEPTED = [
    ("seed", 0),
    ("seed", SEED_MAX),
    ("guidance", 0.0),
    ("guidance", 10.0),
    ("guidance", 0),
    ("steps", 4),
    ("steps", 50),
    ("quality", 0),
    ("quality", 100),
]

REFUSED = [
    ("seed", -2),
    ("seed", SEED_MAX + 1),
    ("guidance", -0.01),
    ("guidance", 10.01),
    ("guidance", math.nan),
    ("guidance", math.inf),
    ("steps", 3),
    ("steps", 51),
    ("quality", -1),
    ("quality", 101),
]


@pytest.mark.parametrize(("name", "value"), ACCEPTED)
def test_range_boundaries_are_accepted(name: str, value: float) -> None:
    p = build_params("x", **{name: value})
    assert getattr(p, name) == value


@pytest.mark.parametrize(("name", "value"), REFUSED)
def test_values_just_outside_a_range_are_refused(name: str, value: float) -> None:
    with pytest.raises(BadInput) as info:
        build_params("x", **{name: value})
    # The member is told which option was wrong.
    assert f"`{name}`" in info.value.message


def test_guidance_is_stored_as_float() -> None:
    p = build_params("x", guidance=3)
    assert isinstance(p.guidance, float)
    assert p.guidance == 3.0


# ---------------------------------------------------------------------- enums


@pytest.mark.parametrize("aspect", ASPECT_RATIOS)
def test_every_documented_aspect_ratio_is_accepted(aspect: str) -> None:
    assert build_params("x", aspect_ratio=aspect).aspect_ratio == aspect


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_every_documented_output_format_is_accepted(fmt: str) -> None:
    assert build_params("x", output_format=fmt).output_format == fmt


def test_aspect_ratio_list_is_the_documented_fourteen() -> None:
    assert len(ASPECT_RATIOS) == 14
    assert ASPECT_RATIOS[0] == "match_input_image"
    assert set(OUTPUT_FORMATS) == {"png", "jpg", "webp"}


@pytest.mark.parametrize("aspect", ["3:1", "16x9", "", "MATCH_INPUT_IMAGE", "1:1 "])
def test_unknown_aspect_ratio_is_refused(aspect: str) -> None:
    with pytest.raises(BadInput, match="aspect_ratio"):
        build_params("x", aspect_ratio=aspect)


@pytest.mark.parametrize("fmt", ["jpeg", "gif", "PNG", ""])
def test_unknown_output_format_is_refused(fmt: str) -> None:
    with pytest.raises(BadInput, match="output_format"):
        build_params("x", output_format=fmt)


# ---------------------------------------------------------------------- prompt cleaning


def test_control_characters_are_stripped_but_newlines_and_tabs_kept() -> None:
    raw = "make\x00 it\x1b[31m red\x07\u200b\u202e\r\nand\tshiny"
    assert clean_prompt(raw) == "make it[31m red\nand\tshiny"


def test_surrounding_whitespace_is_trimmed() -> None:
    assert build_params("  \n make it blue \t ").prompt == "make it blue"


@pytest.mark.parametrize("prompt", [None, "", "   ", "\n\t \n", "\x00\x01", "\u200b\u200b"])
def test_empty_or_blank_prompt_is_refused(prompt: str | None) -> None:
    with pytest.raises(BadInput, match="prompt is empty"):
        build_params(prompt)


def test_prompt_at_the_limit_is_accepted() -> None:
    text = "a" * PROMPT_MAX_CHARS
    assert build_params(text).prompt == text


def test_prompt_one_over_the_limit_is_refused() -> None:
    with pytest.raises(BadInput) as info:
        build_params("a" * (PROMPT_MAX_CHARS + 1))
    assert "1,001" in info.value.message
    assert "1,000" in info.value.message


def test_limit_counts_the_cleaned_prompt() -> None:
    # Stripped control characters and padding do not count towards the limit.
    text = "  " + "a" * PROMPT_MAX_CHARS + "\x00\x00  "
    assert build_params(text).prompt == "a" * PROMPT_MAX_CHARS


def test_mentions_text_is_kept_verbatim() -> None:
    raw = "<@123456789> paint @everyone and <#42> in <@&7> colours 🎨"
    assert build_params(raw).prompt == raw


# ---------------------------------------------------------------------- non_defaults


def test_non_defaults_empty_when_nothing_changed() -> None:
    assert build_params("x", seed=5).non_defaults() == {}


def test_non_defaults_ignores_values_equal_to_defaults() -> None:
    p = build_params("x", seed=5, **(API_DEFAULTS | {"guidance": 7}))  # 7 == 7.0: a default
    assert p.non_defaults() == {}


def test_non_defaults_lists_only_changed_options_never_prompt_or_seed() -> None:
    p = build_params(
        "x", seed=99, guidance=2.5, steps=20, aspect_ratio="16:9", output_format="jpg", quality=50
    )
    assert p.non_defaults() == {
        "guidance": 2.5,
        "steps": 20,
        "aspect_ratio": "16:9",
        "output_format": "jpg",
        "quality": 50,
    }
    assert build_params("x", quality=80).non_defaults() == {"quality": 80}
