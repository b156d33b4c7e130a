"""How the operator's reports look in Discord: the Segmind account and every server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import discord

from bot.adapter.quota_render import ADMIN_COLOUR, BAR_WIDTH, WARNING_COLOUR, money, when
from bot.reports import SpendReport
from bot.servers import ServerSummary

SERVERS_SHOWN = 20


def credits_embed(report: SpendReport, *, halted_reason: str | None) -> discord.Embed:
    embed = discord.Embed(title="Segmind account", colour=ADMIN_COLOUR)
    if halted_reason:
        embed.colour = WARNING_COLOUR
        embed.description = f"**Edits are paused:** {halted_reason}."
    if report.balance is None:
        balance = "not seen yet: Segmind reports it with every edit"
    else:
        balance = f"{money(report.balance)} credits, as of {when(report.balance_at or 0)}"
        if report.reserve > 0:
            balance += f"\nreserve: {money(report.reserve)}"
    embed.add_field(name="Balance", value=balance, inline=False)
    embed.add_field(name="Spent today", value=money(report.today))
    embed.add_field(name="This month", value=money(report.month))
    if report.topped_up_month > 0:
        embed.add_field(name="Topped up this month", value=money(report.topped_up_month))
    embed.add_field(
        name="This month, by who paid",
        value=(
            f"charged to members: {money(report.charged_month)}"
            f" (this server: {money(report.charged_month_here)})\n"
            + (
                f"held for results not delivered yet: {money(report.held_month)}"
                " (charged when delivered, refunded if they expire)\n"
                if report.held_month > 0
                else ""
            )
            + f"not charged to anyone: {money(report.unattributed_month)}"
            " (calls that failed after billing, results never delivered, key checks, "
            "other use of the key)"
        ),
        inline=False,
    )
    embed.add_field(name="Last 7 days (UTC)", value=_trend_chart(report), inline=False)
    days = report.days_left
    if days is None:
        left = "not enough spend yet to estimate"
    else:
        until = " (down to the reserve)" if report.reserve > 0 else ""
        left = f"about {days:.0f} days{until} at {money(report.rate_per_day or 0)} a day"
    embed.add_field(name="At this rate", value=left, inline=False)
    return embed


def _trend_chart(report: SpendReport) -> str:
    top = max((d.amount for d in report.trend), default=0.0)
    rows = []
    for day in report.trend:
        label = datetime.fromtimestamp(day.start, UTC).strftime("%a %d")
        bar = "█" * round(BAR_WIDTH * day.amount / top) if top > 0 else ""
        rows.append(f"{label}  {money(day.amount):>8}  {bar}")
    return "```\n" + "\n".join(rows) + "\n```"


def operator_servers_embed(
    summaries: list[ServerSummary], name_of: Callable[[int], str]
) -> discord.Embed:
    """Every server: members who edited this period, spend against budget, access."""
    lines = []
    for s in summaries[:SERVERS_SHOWN]:
        b = s.budget
        access = "allowed" if s.allowed else "**denied**"
        lines.append(
            f"**{name_of(s.guild_id)}** `{s.guild_id}` · {access} · {s.members} member(s) · "
            f"{money(b.spent + b.held)} of {money(b.credits)}"
            + (" (default)" if b.source == "default" else "")
        )
    more = len(summaries) - SERVERS_SHOWN
    if more > 0:
        lines.append(f"…and {more} more.")
    return discord.Embed(
        title="Servers this period",
        description="\n".join(lines) or "No servers yet.",
        colour=ADMIN_COLOUR,
    )
