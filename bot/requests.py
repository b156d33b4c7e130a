"""What one edit is asked to do, and what it produced."""

from __future__ import annotations

from dataclasses import dataclass

from bot import images
from bot.credits import Cost
from bot.images import InputImage
from bot.params import EditParams


@dataclass(frozen=True, slots=True)
class EditRequest:
    """Everything one edit needs, already parsed from Discord."""

    user_id: int
    guild_id: int | None
    channel_id: int
    source: str  # slash, reply, mention, button, context
    image: InputImage
    params: EditParams
    seed_explicit: bool
    upload_limit: int = images.DISCORD_UPLOAD_LIMIT
    parent_id: int | None = None
    interaction_id: int | None = None
    role_ids: tuple[int, ...] = ()
    job_id: int | None = None
    # Discord marks the channel (a thread: its parent) age-restricted.
    channel_nsfw: bool = False


@dataclass(frozen=True)
class EditOutcome:
    generation_id: int
    image: bytes
    filename: str
    params: EditParams
    elapsed_s: float
    cost: Cost
    remaining_credits: float | None
    reencoded: bool
    quota_left: float | None = None
    converted_from: str | None = None  # e.g. "HEIC": the input was converted for the API
