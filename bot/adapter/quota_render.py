"""How quotas, usage, spend and the audit log look in Discord."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import discord

from bot.core import QuotaView
from bot.db.audit import AuditEntry
from bot.ledger import QuotaExceeded
from bot.reports import PERIOD_LABELS, SpendReport, UsageReport

QUOTA_COLOUR = discord.Colour.from_rgb(87, 242, 135)
ADMIN_COLOUR = discord.Colour.from_rgb(254, 231, 92)
WARNING_COLOUR = discord.Colour.from_rgb(237, 66, 69)
USAGE_TOP = 10
AUDIT_LINES = 15
BAR_WIDTH = 16
_SOURCES = {
    "default": "the bot's default allowance",
    "server": "this server's default allowance",
    "role": "the allowance of one of {whose} roles",
    "member": "an allowance an admin set for {whom}",
}
_REF = re.compile(r"^(member|role|channel):(\d+)$")


def money(amount: float) -> str:
    """Credits as people read them: 0.04, 12.50 (tiny non-zero amounts keep 4 places)."""
    if 0 < abs(amount) < 0.005:
        return f"{amount:.4f}"
    return f"{amount:.2f}"


def when(ts: float) -> str:
    return f"<t:{int(ts)}:R>"


def paused_text(reason: str) -> str:
    return f"Editing is paused for everyone right now ({reason}); the admins have been told."


def out_of_edits_text(exc: QuotaExceeded) -> str:
    if exc.resets_at is None:
        return (
            f"{exc.message} This is a fixed allowance that does not reset; ask an admin for more."
        )
    return f"{exc.message} It resets {when(exc.resets_at)}."


def quota_embed(view: QuotaView, *, member_id: int | None = None) -> discord.Embed:
    """A member's allowance; `member_id` set = an admin looking at someone else."""
    status, cost, halted_reason = view.status, view.cost, view.halted_reason
    you = member_id is None
    label = PERIOD_LABELS[status.allowance.period]
    embed = discord.Embed(
        title="Your editing allowance" if you else "Editing allowance",
        colour=QUOTA_COLOUR,
    )
    notes = [] if you else [f"<@{member_id}>"]
    if view.blocked:
        why = f" Reason: {view.blocked_reason}" if view.blocked_reason else ""
        notes.append(
            ("You are" if you else "They are") + f" blocked from editing by the admins.{why}"
        )
    if halted_reason:
        notes.append(paused_text(halted_reason))
    if notes:
        embed.description = "\n".join(notes)
    embed.add_field(
        name=f"Used {label}",
        value=f"{money(status.used)} of {money(status.allowance.credits)} credits",
    )
    edits = status.edits_left(cost)
    embed.add_field(
        name="Left",
        value=f"{money(status.left)} credits\nabout {edits} edit{'s' if edits != 1 else ''}",
    )
    resets = status.window.resets_at
    embed.add_field(name="Resets", value=when(resets) if resets else "never (a fixed allowance)")
    if status.held > 0:
        embed.add_field(
            name="In progress", value=f"{money(status.held)} held for edits still running"
        )
    source = _SOURCES[status.allowance.source].format(
        whose="your" if you else "their", whom="you" if you else "them"
    )
    embed.set_footer(text=f"From {source} · an edit costs about {money(cost)} credits")
    return embed


def usage_embed(report: UsageReport) -> discord.Embed:
    lines = []
    for rank, m in enumerate(report.members[:USAGE_TOP], start=1):
        line = (
            f"**{rank}.** <@{m.user_id}> · {m.edits} edit{'s' if m.edits != 1 else ''}"
            f" · {money(m.credits)} credits"
        )
        if m.failed:
            line += f" · {m.failed} failed"
        lines.append(line)
    more = len(report.members) - USAGE_TOP
    if more > 0:
        lines.append(f"…and {more} more: add `export:True` for everyone as CSV.")
    embed = discord.Embed(
        title=f"Usage {report.label}",
        description="\n".join(lines) or f"No edits {report.label}.",
        colour=ADMIN_COLOUR,
    )
    embed.add_field(name="Members", value=str(len(report.members)))
    embed.add_field(name="Edits", value=str(report.edits))
    embed.add_field(name="Credits", value=money(report.credits))
    embed.add_field(name="Failed (not charged)", value=str(report.failed))
    if report.window.resets_at is not None:
        embed.set_footer(text="Periods follow the UTC calendar")
    return embed


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


def _ref(text: str | None) -> str:
    """`member:1` -> a mention (embeds never ping), so the log reads naturally."""
    if text is None:
        return "-"
    match = _REF.match(text)
    if match is None:
        return discord.utils.escape_markdown(text)
    kind, number = match.groups()
    return {"member": f"<@{number}>", "role": f"<@&{number}>", "channel": f"<#{number}>"}[kind]


def audit_embed(entries: list[AuditEntry]) -> discord.Embed:
    lines = [
        f"{when(e.at)} <@{e.actor_id}> **{e.action}** {_ref(e.target)}: "
        f"{_ref(e.before)} → {_ref(e.after)}"
        for e in entries
    ]
    return discord.Embed(
        title="Latest admin changes",
        description="\n".join(lines) or "No admin changes yet.",
        colour=ADMIN_COLOUR,
    )
