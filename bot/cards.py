"""What a result message shows, as data; the Discord side draws it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.db.generations import Generation
from bot.params import EditParams
from bot.requests import EditOutcome

REENCODED = "re-encoded as JPEG to fit this server's upload limit"


@dataclass(frozen=True)
class ResultCard:
    """A result, fresh from the API or re-posted (Undo, a kept result, after a restart).
    `ping`: mention the member (a late result; they may have stopped watching)."""

    generation_id: int
    params: EditParams
    requester_id: int
    step: int
    filename: str
    elapsed_s: float | None
    cost: float | None
    cost_estimated: bool = False
    quota_left: float | None = None
    note: str | None = None
    ping: bool = False

    @classmethod
    def from_outcome(
        cls,
        outcome: EditOutcome,
        *,
        requester_id: int,
        step: int,
        note: str | None = None,
        ping: bool = False,
    ) -> ResultCard:
        return cls(
            generation_id=outcome.generation_id,
            params=outcome.params,
            requester_id=requester_id,
            step=step,
            filename=outcome.filename,
            elapsed_s=outcome.elapsed_s,
            cost=outcome.cost.amount,
            cost_estimated=outcome.cost.source == "estimate",
            quota_left=outcome.quota_left,
            note=_notes(note, outcome.converted_from, outcome.reencoded),
            ping=ping,
        )

    @classmethod
    def from_generation(
        cls, gen: Generation, *, step: int, filename: str, note: str | None, ping: bool
    ) -> ResultCard:
        return cls(
            generation_id=gen.id,
            params=gen.params,
            requester_id=gen.user_id,
            step=step,
            filename=filename,
            elapsed_s=gen.api_time_s,
            cost=gen.cost,
            cost_estimated=gen.cost_source == "estimate",
            note=_notes(note, gen.input_converted_from, bool(gen.result_reencoded)),
            ping=ping,
        )


def _notes(note: str | None, converted_from: str | None, reencoded: bool) -> str | None:
    """The footer's notes: the caller's, then what the bot did to the input and result."""
    converted = converted_from and f"converted from {converted_from}"
    return " · ".join(n for n in (note, converted, reencoded and REENCODED) if n) or None
