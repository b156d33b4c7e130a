"""The edit options the API takes, their ranges, and their server-side checks."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, fields

from bot.errors import BadInput

PROMPT_MAX_CHARS = 1000
SEED_MAX = 2**32 - 1
GUIDANCE_RANGE = (0.0, 10.0)
STEPS_RANGE = (4, 50)
QUALITY_RANGE = (0, 100)
ASPECT_RATIOS = (
    "match_input_image",
    "1:1",
    "16:9",
    "9:16",
    "4:3",
    "3:4",
    "3:2",
    "2:3",
    "4:5",
    "5:4",
    "21:9",
    "9:21",
    "2:1",
    "1:2",
)
OUTPUT_FORMATS = ("png", "jpg", "webp")


@dataclass(frozen=True, slots=True)
class EditParams:
    """One edit's options, validated; `seed` is always concrete so results reproduce."""

    prompt: str
    seed: int
    guidance: float = 7.0
    steps: int = 35
    aspect_ratio: str = "match_input_image"
    output_format: str = "png"
    quality: int = 90

    def non_defaults(self) -> dict[str, object]:
        """Options that differ from the API's defaults (prompt and seed excluded)."""
        out: dict[str, object] = {}
        for f in fields(self):
            if f.name in ("prompt", "seed"):
                continue
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        return out


def random_seed() -> int:
    return secrets.randbelow(SEED_MAX + 1)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise BadInput(f"`{name}` must be between {low:g} and {high:g} (you gave {value:g}).")


def clean_prompt(prompt: str | None) -> str:
    """Strip control characters and surrounding space; refuse empty or overlong prompts."""
    text = "".join(
        ch for ch in (prompt or "") if ch in "\n\t" or (ch.isprintable() and ch != "\u200b")
    )
    text = text.strip()
    if not text:
        raise BadInput("Please describe the edit: the prompt is empty.")
    if len(text) > PROMPT_MAX_CHARS:
        raise BadInput(
            f"The prompt is {len(text):,} characters; the limit is {PROMPT_MAX_CHARS:,}."
        )
    return text


def build_params(
    prompt: str | None,
    *,
    seed: int | None = None,
    guidance: float | None = None,
    steps: int | None = None,
    aspect_ratio: str | None = None,
    output_format: str | None = None,
    quality: int | None = None,
) -> EditParams:
    """Validate raw options (again: Discord's checks are not trusted) and fill defaults."""
    text = clean_prompt(prompt)
    if seed is None or seed == -1:
        seed = random_seed()
    _check_range("seed", seed, 0, SEED_MAX)
    if guidance is not None:
        _check_range("guidance", guidance, *GUIDANCE_RANGE)
    if steps is not None:
        _check_range("steps", steps, *STEPS_RANGE)
    if quality is not None:
        _check_range("quality", quality, *QUALITY_RANGE)
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise BadInput(f"`aspect_ratio` must be one of: {', '.join(ASPECT_RATIOS)}.")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise BadInput(f"`output_format` must be one of: {', '.join(OUTPUT_FORMATS)}.")
    given = {
        "guidance": None if guidance is None else float(guidance),
        "steps": steps,
        "aspect_ratio": aspect_ratio,
        "output_format": output_format,
        "quality": quality,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    return EditParams(prompt=text, seed=int(seed), **chosen)


# Options a reply may change inline: "make it night --seed 7 --ar 16:9".
_INLINE = {
    "seed": ("seed", int),
    "guidance": ("guidance", float),
    "steps": ("steps", int),
    "ar": ("aspect_ratio", str),
    "aspect": ("aspect_ratio", str),
    "aspect-ratio": ("aspect_ratio", str),
    "format": ("output_format", str),
    "quality": ("quality", int),
}
_INLINE_RE = re.compile(r"(?:^|\s)--([a-z-]+)\s+(\S+)")


def split_inline_options(text: str) -> tuple[str, dict[str, object]]:
    """Pull `--name value` options out of a message; returns (prompt, options)."""
    options: dict[str, object] = {}

    def take(match: re.Match[str]) -> str:
        name, raw = match.group(1), match.group(2)
        if name not in _INLINE:
            raise BadInput(
                f"I don't know the option `--{name}`. Try --seed, --guidance, --steps, "
                "--ar, --format or --quality."
            )
        field, kind = _INLINE[name]
        try:
            options[field] = kind(raw)
        except ValueError:
            raise BadInput(f"`--{name}` needs a {kind.__name__}, not `{raw[:20]}`.") from None
        return " "

    prompt = _INLINE_RE.sub(take, text)
    return prompt.strip(), options


def next_step_params(
    parent: EditParams, parent_seed_explicit: bool, prompt: str, changes: dict[str, object]
) -> tuple[EditParams, bool]:
    """Parameters for the next step of a chain: the parent's, with the member's changes.

    A fresh random seed, unless the parent's seed was chosen on purpose (then it carries on).
    Returns (params, seed_explicit).
    """
    seed = changes.get("seed")
    seed_explicit = seed is not None or parent_seed_explicit
    if seed is None and parent_seed_explicit:
        seed = parent.seed
    merged = {
        "guidance": parent.guidance,
        "steps": parent.steps,
        "aspect_ratio": parent.aspect_ratio,
        "output_format": parent.output_format,
        "quality": parent.quality,
        **{k: v for k, v in changes.items() if k != "seed"},
    }
    params = build_params(prompt, seed=seed, **merged)  # type: ignore[arg-type]
    return params, seed_explicit
