"""`/admin` end to end: who may use it (checked by the bot on every call), what each
subcommand shows the admin, what it changes in the database, and the audit trail."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from bot import segmind
from bot.db import audit as audit_log
from bot.db import credits as credit_readings
from bot.db import quotas, server_settings
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness, fields
from tests.server_actions import channel_opt, mentionable_opt, role_opt, user_opt
from tests.world import (
    ADMIN_ID,
    ALERTS_CHANNEL_ID,
    API_KEY,
    CHANNEL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    MEMBER_ID,
    NO_PERMISSION,
    OTHER_MEMBER_ID,
)

pytestmark = pytest.mark.settings(quota_default_credits=0.40, alert_below_credits=0)


async def private(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["flags"] & FLAG_EPHEMERAL, "admin answers must be ephemeral"
    return answer


async def audit(h: Harness) -> list[tuple[Any, ...]]:
    """Every audited change, in this server or bot-wide, oldest first."""
    entries = await audit_log.latest_everywhere(h.bot.core.database, limit=1000)
    return [(e.actor_id, e.action, e.target, e.before, e.after) for e in reversed(entries)]


async def server_rules(h: Harness) -> dict[str, object]:
    """Everything an admin can change in the test server."""
    database = h.bot.core.database
    return {
        "default": await quotas.guild_default(database, GUILD_ID),
        "members": await quotas.overrides(database, "member", GUILD_ID),
        "roles": await quotas.overrides(database, "role", GUILD_ID),
        "resets": await quotas.usage_resets(database, GUILD_ID),
        "blocks": await quotas.blocks(database, GUILD_ID),
        "settings": await server_settings.of_guild(database, GUILD_ID),
    }


EVERY_SUBCOMMAND: list[tuple[list[str], dict[str, Any]]] = [
    (["quota", "set"], {"member": user_opt(OTHER_MEMBER_ID), "credits": 50.0}),
    (["quota", "clear"], {"target": mentionable_opt(OTHER_MEMBER_ID)}),
    (["quota", "reset"], {"member": user_opt(OTHER_MEMBER_ID)}),
    (["quota", "default"], {"credits": 50.0, "period": "month"}),
    (["quota", "role"], {"role": role_opt(GUILD_ID), "credits": 50.0}),
    (["quota", "show"], {"member": user_opt(OTHER_MEMBER_ID)}),
    (["block"], {"member": user_opt(OTHER_MEMBER_ID), "reason": "x"}),
    (["unblock"], {"member": user_opt(OTHER_MEMBER_ID)}),
    (["usage"], {"export": True}),
    (["credits"], {}),
    (["alerts"], {"channel": channel_opt(CHANNEL_ID)}),
    (["audit"], {}),
    (["iteration"], {"author_only": True}),
    (["safety"], {"filter_off": True}),
]


@pytest.mark.parametrize("permissions", [0, None], ids=["permissions=0", "member-default"])
async def test_admin_commands_are_refused_to_members_even_when_invoked_directly(
    h: Harness, permissions: int | None
) -> None:
    # So that a wrongful /admin resume would show:
    h.bot.core.health.api_failed(segmind.InsufficientCredits(segmind.OUT_OF_CREDITS, status=406))
    for subcommand, options in EVERY_SUBCOMMAND:
        answer = await h.admin(*subcommand, user_id=MEMBER_ID, permissions=permissions, **options)
        assert answer["flags"] & FLAG_EPHEMERAL, subcommand
        assert answer["content"] == NO_PERMISSION, subcommand
        assert not answer["embeds"] and not answer["attachments"], subcommand
    assert await audit(h) == []
    assert await server_rules(h) == {
        "default": None, "members": {}, "roles": {}, "resets": {}, "blocks": {}, "settings": {},
    }  # fmt: skip
    assert len(h.api_calls()) == 0
    assert h.bot.core.health.halted_reason == segmind.OUT_OF_CREDITS


async def test_admin_commands_are_hidden_from_members_by_default(h: Harness) -> None:
    [command] = [c for c in h.discord.commands[GUILD_ID] if c["name"] == "admin"]
    assert int(command["default_member_permissions"]) == MANAGE_GUILD
    options = {o["name"]: o for o in command["options"]}
    assert set(options) == {
        "quota", "block", "unblock", "usage", "credits", "alerts", "audit", "iteration", "safety",
    }  # fmt: skip
    assert {o["name"] for o in options["quota"]["options"]} == {
        "set", "clear", "reset", "default", "role", "show",
    }  # fmt: skip
    usage = {o["name"]: o for o in options["usage"]["options"]}
    assert usage["export"]["type"] == 5  # `/admin usage export:True`, not a subgroup
    assert any(c["name"] == "quota" for c in h.discord.commands[GUILD_ID])  # for members


@pytest.mark.settings(admin_role_ids=(7100,))
async def test_a_role_from_admin_role_ids_grants_the_admin_commands(h: Harness) -> None:
    await h.add_role(7100, "Kontext admins", members=(OTHER_MEMBER_ID,))
    answer = await h.admin(
        "quota",
        "set",
        user_id=OTHER_MEMBER_ID,
        permissions=None,
        member_roles=(7100,),
        member=user_opt(MEMBER_ID),
        credits=2.0,
    )
    assert (await private(answer))["content"].startswith("<@5001> can now spend 2.00 credits")
    refused = await h.admin(
        "quota", "set", user_id=MEMBER_ID, permissions=None, member=user_opt(MEMBER_ID),
        credits=9.0,
    )  # fmt: skip
    assert refused["content"] == NO_PERMISSION
    assert await audit(h) == [(OTHER_MEMBER_ID, "quota.member", "member:5001", "none", "2.00")]


async def test_quota_set_show_clear_and_default(h: Harness) -> None:
    answer = await private(await h.admin("quota", "set", member=user_opt(MEMBER_ID), credits=2))
    assert answer["content"] == "<@5001> can now spend 2.00 credits a day. (before: none)"
    await h.answer(await h.edit("one"))
    shown = await private(await h.admin("quota", "show", member=user_opt(MEMBER_ID)))
    assert fields(shown)["Used today"] == "0.04 of 2.00 credits"
    assert fields(shown)["Left"] == "1.96 credits\nabout 49 edits"
    assert shown["embeds"][0]["description"] == "<@5001>"
    assert "an admin set for them" in shown["embeds"][0]["footer"]["text"]

    answer = await private(await h.admin("quota", "clear", target=mentionable_opt(MEMBER_ID)))
    assert "has no allowance of its own any more" in answer["content"]
    answer = await private(await h.admin("quota", "default", credits=1.5, period="week"))
    assert answer["content"] == "Members can now spend 1.50 credits a week. (before: 0.40/day)"
    shown = await h.admin("quota", "show", member=user_opt(MEMBER_ID))
    assert fields(shown)["Used this week"] == "0.04 of 1.50 credits"

    rules = await server_rules(h)
    assert (rules["default"], rules["members"]) == ((1.5, "week"), {})
    assert await audit(h) == [
        (ADMIN_ID, "quota.member", "member:5001", "none", "2.00"),
        (ADMIN_ID, "quota.member.clear", "member:5001", "2.00", "none"),
        (ADMIN_ID, "quota.default", "server", "0.40/day", "1.50/week"),
    ]


async def test_quota_role_and_reset(h: Harness) -> None:
    await h.add_role(7001, "Artists", members=(MEMBER_ID,))
    answer = await private(await h.admin("quota", "role", role=role_opt(7001), credits=0.08))
    assert answer["content"].startswith("Members with <@&7001> can now spend 0.08 credits a day")
    await h.answer(await h.edit("one"))
    await h.answer(await h.edit("two"))
    out = await h.run_command("quota", member_roles=(7001,))
    assert fields(out)["Left"] == "0.00 credits\nabout 0 edits"

    answer = await private(await h.admin("quota", "reset", member=user_opt(MEMBER_ID)))
    assert answer["content"] == (
        "Cleared <@5001>'s usage this period (used 0.08). They have 0.08 credits left."
    )
    assert "Cost" in fields(await h.answer(await h.edit("three")))  # editing again
    assert list(await quotas.usage_resets(h.bot.core.database, GUILD_ID)) == [MEMBER_ID]
    assert [a[1:] for a in await audit(h)] == [
        ("quota.role", "role:7001", "none", "0.08"),
        ("quota.reset", "member:5001", "used 0.08", "used 0.00"),
    ]


async def test_block_and_unblock(h: Harness) -> None:
    answer = await private(
        await h.admin("block", member=user_opt(MEMBER_ID), reason="spamming edits")
    )
    assert answer["content"] == "<@5001> can't start edits now; they'll be told so if they try."
    refused = await h.answer(await h.edit("x"))
    assert "Reason: spamming edits" in refused["content"]
    blocks = await quotas.blocks(h.bot.core.database, GUILD_ID)
    assert [(u, b.reason, b.blocked_by) for u, b in blocks.items()] == [
        (MEMBER_ID, "spamming edits", ADMIN_ID)
    ]

    answer = await private(await h.admin("unblock", member=user_opt(MEMBER_ID)))
    assert answer["content"] == "<@5001> can edit again. (before: blocked: spamming edits)"
    assert "Cost" in fields(await h.answer(await h.edit("y")))
    again = await h.admin("unblock", member=user_opt(MEMBER_ID))
    assert again["content"] == "<@5001> wasn't blocked; nothing changed."
    assert [a[1] for a in await audit(h)] == ["block", "unblock"]  # no-op not audited
    assert len(h.api_calls()) == 1


async def test_usage_shows_top_spenders_and_exports_csv(h: Harness) -> None:
    for _ in range(2):
        await h.answer(await h.edit("mine"))
    await h.answer(await h.edit("theirs", user_id=OTHER_MEMBER_ID))
    h.segmind.fail_next(422, body={"error": "no"})
    await h.answer(await h.edit("refused"))

    answer = await private(await h.admin("usage"))
    [embed] = answer["embeds"]
    assert embed["title"] == "Usage today"
    assert embed["description"].splitlines() == [
        "**1.** <@5001> · 2 edits · 0.08 credits · 1 failed",
        "**2.** <@5002> · 1 edit · 0.04 credits",
    ]
    assert fields(answer) == {
        "Members": "2",
        "Edits": "3",
        "Credits": "0.12",
        "Failed (not charged)": "1",
    }

    exported = await private(await h.admin("usage", period="month", export=True))
    [attachment] = exported["attachments"]
    assert attachment["filename"] == "usage-this-month.csv"
    rows = list(csv.DictReader(io.StringIO(h.discord.attachment_bytes(attachment).decode())))
    assert [(r["user_id"], r["edits"], r["failed"], r["credits"]) for r in rows] == [
        ("5001", "2", "1", "0.0800"),
        ("5002", "1", "0", "0.0400"),
    ]
    assert rows[0]["name"] == "user5001"


async def test_operator_credits_shows_balance_spend_and_what_no_member_paid_for(
    h: Harness,
) -> None:
    empty = fields(await private(await h.operator("credits")))
    assert empty["Balance"].startswith("not seen yet")
    assert empty["At this rate"] == "not enough spend yet to estimate"
    await h.answer(await h.edit("one"))  # 99.96
    await h.answer(await h.edit("two"))  # 99.92
    h.segmind.not_image_next()  # billed by Segmind, refunded to the member
    await h.answer(await h.edit("broken"))
    await h.answer(await h.edit("three"))  # 99.84: the drop covers the broken call too

    answer = await private(await h.operator("credits"))
    shown = fields(answer)
    assert shown["Balance"].startswith("99.84 credits, as of <t:")
    assert (shown["Spent today"], shown["This month"]) == ("0.16", "0.16")
    assert shown["This month, by who paid"].startswith(
        "charged to members: 0.12 (this server: 0.12)\nnot charged to anyone: 0.04"
    )
    assert "0.16  ████████████████" in shown["Last 7 days (UTC)"]
    assert shown["At this rate"] == "about 624 days at 0.16 a day"
    charged = [c.amount or 0 for c in await h.server_charges() if c.state == "committed"]
    assert sum(charged) == pytest.approx(0.12)


async def test_alerts_channel_is_set_checked_and_audited(h: Harness) -> None:
    muted = [{"id": str(h.discord.bot_user_id), "type": 1, "allow": "0", "deny": str(1 << 11)}]
    await h.add_text_channel(4245, overwrites=muted)
    refused = await private(await h.admin("alerts", channel=channel_opt(4245)))
    assert refused["content"].startswith("I can't post in <#4245>. Give me View Channel")
    assert await audit(h) == []

    await h.add_text_channel()
    answer = await private(await h.admin("alerts", channel=channel_opt(ALERTS_CHANNEL_ID)))
    assert answer["content"].startswith("Alerts will go to <#4244>")
    off = await private(await h.admin("alerts"))
    assert off["content"] == "Alerts are off for this server. (before: channel:4244)"
    assert (await server_rules(h))["settings"] == {
        "alerts_channel_id": None, "iterate_author_only": None, "safety_filter_off": None,
    }  # fmt: skip
    assert await h.bot.core.admin.alerts_channels() == []
    assert [a[3:] for a in await audit(h)] == [("off", "channel:4244"), ("channel:4244", "off")]

    audit_view = await private(await h.admin("audit"))
    lines = audit_view["embeds"][0]["description"].splitlines()
    assert lines[0].endswith("<@5003> **alerts.channel** server: <#4244> → off")
    assert lines[1].endswith("<@5003> **alerts.channel** server: off → <#4244>")


async def test_a_rejected_key_stops_all_calls_until_an_operator_check_succeeds(
    h: Harness,
) -> None:
    await h.choose_alerts_channel()
    h.segmind.api_key = "revoked"
    await h.answer(await h.edit("one"))
    h.bot.core.health.clock = lambda: float("inf")  # long past the probe interval
    answer = await h.answer(await h.edit("two"))
    assert "can't edit images right now" in answer["content"]
    assert len(h.api_calls()) == 1  # no probe: a rejected key does not fix itself

    failed = await private(await h.operator("check"))
    assert failed["content"].startswith("Segmind rejected the key, so edits stay stopped")
    assert len(h.api_calls()) == 2
    h.segmind.api_key = API_KEY
    passed = await private(await h.operator("check"))
    assert passed["content"] == (
        "The key works and edits are running. That check was billed about 0.04 credits. "
        "Balance: 99.96."
    )
    [check] = [r for r in h.segmind.requests if r.method == "POST"][-1:]
    assert check.json["num_inference_steps"] == 4
    assert not check.json["input_image"].startswith("http")  # a tiny PNG, sent inline
    assert "Cost" in fields(await h.answer(await h.edit("three")))

    await h.bot.core.alerts.drain()
    [alert] = h.direct_messages()  # an account alert goes to the operator
    assert "rejected the bot's API key" in alert["content"]
    assert h.channel_messages(ALERTS_CHANNEL_ID) == []  # never to a server's channel
    assert [a[1:] for a in await audit(h)][1:] == [
        ("api.check", "api", segmind.KEY_REJECTED, f"HTTP 401: {segmind.KEY_REJECTED}"),
        ("api.check", "api", segmind.KEY_REJECTED, "HTTP 200: running"),
    ]


async def test_resume_clears_the_halt_without_a_call(h: Harness) -> None:
    already = await private(await h.operator("resume"))
    assert already["content"] == "Edits are running already; nothing to resume."
    h.segmind.credits = 0
    await h.answer(await h.edit("one"))  # 406: edits halted
    h.segmind.top_up(5)
    answer = await private(await h.operator("resume"))
    assert answer["content"].startswith("Edits can run again. No request was sent")
    assert len(h.api_calls()) == 1
    assert h.bot.core.health.halted_reason is None
    assert "Cost" in fields(await h.answer(await h.edit("two")))
    assert [a[1:] for a in await audit(h)] == [
        ("api.resume", "api", segmind.OUT_OF_CREDITS, "running"),
    ]


@pytest.mark.settings(account_reserve_credits=99.95)
async def test_a_check_under_the_reserve_keeps_edits_paused_without_a_new_alert(
    h: Harness,
) -> None:
    await h.choose_alerts_channel()
    await h.answer(await h.edit("one"))  # 99.96
    await h.answer(await h.edit("two"))  # 99.92: under the reserve
    assert "can't edit" in (await h.answer(await h.edit("three")))["content"]
    answer = await private(await h.operator("check"))
    assert answer["content"] == (
        "The key works. That check was billed 0.04 credits. Balance: 99.88. But the balance "
        "is still under the reserve of 99.95, so new edits stay paused. Top up, then run "
        "`/operator check` "
        "again."
    )
    assert h.bot.core.health.halted_reason == "account balance 99.88 is under the reserve 99.95"
    assert "can't edit" in (await h.answer(await h.edit("four")))["content"]
    assert len(h.api_calls()) == 3  # two edits and the check
    await h.bot.core.alerts.drain()
    assert len(h.direct_messages()) == 1  # still the same incident


async def test_a_check_that_meets_an_empty_account_keeps_edits_paused(h: Harness) -> None:
    h.segmind.credits = 0
    answer = await private(await h.operator("check"))
    assert answer["content"].startswith("The key works, but Segmind says the account is out")
    assert h.bot.core.health.halted_reason == segmind.OUT_OF_CREDITS
    assert "can't edit" in (await h.answer(await h.edit("one")))["content"]
    readings = await credit_readings.credit_readings(h.bot.core.database)
    assert readings == [] and len(h.api_calls()) == 1
    assert [a[1:] for a in await audit(h)] == [
        ("api.check", "api", "running", f"HTTP 406: {segmind.OUT_OF_CREDITS}"),
    ]
