"""How an operator incident reads in Discord."""

from __future__ import annotations

from bot.health import Incident, IncidentKind


def alert_text(incident: Incident) -> str:
    kind = incident.kind
    if kind == IncidentKind.KEY_REJECTED:
        return (
            "Segmind rejected the bot's API key, so no edits are being sent. Fix the key "
            "(SEGMIND_API_KEY, then restart), or run `/operator check` once it works again."
        )
    if kind == IncidentKind.OUT_OF_CREDITS:
        return (
            "The Segmind account is out of credits, so edits are paused. Top up at "
            "segmind.com, then run `/operator check` (the bot also retries one edit every "
            "5 minutes)."
        )
    if kind == IncidentKind.ACCOUNT_FLOOR:
        return (
            f"New edits are paused: the {incident.detail} set by ACCOUNT_RESERVE_CREDITS. "
            "Top up at segmind.com, then run `/operator check`."
        )
    if kind == IncidentKind.LOW_BALANCE:
        return (
            f"The Segmind balance is down to {incident.balance or 0:.2f} credits "
            f"(alert level {incident.threshold or 0:.2f}). "
            "Top up at segmind.com before it runs out."
        )
    if kind == IncidentKind.API_FAILURES:
        return (
            f"{incident.detail} Members are told to try again later; nothing was charged to them."
        )
    if kind == IncidentKind.PAUSED:
        return f"Edits are paused by the operator: {incident.detail}. `/operator resume` ends it."
    if kind in (IncidentKind.BUDGET_WARNING, IncidentKind.BUDGET_SPENT):
        renews = f" It renews <t:{int(incident.resets_at)}:R>." if incident.resets_at else ""
        if kind == IncidentKind.BUDGET_SPENT:
            return (
                f"This server has used its whole editing budget ({incident.detail}), so "
                f"members' edits are refused for now.{renews} The bot's operator sets the budget."
            )
        return f"This server has used 80 % of its editing budget ({incident.detail}).{renews}"
    return f"Edits are paused: {incident.detail}."
