"""A public bot: the operator's tier, server budgets, which servers are served, where
account alerts go, and the safety filter (issue 11), against the stand-ins."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot import db, jobs
from bot.db import servers as server_rows
from bot.db.connection import migrate, migrations_dir
from bot.ledger import Ledger
from tests.fake_discord import FLAG_EPHEMERAL
from tests.harness import Harness
from tests.helpers import make_image
from tests.server_actions import channel_opt, user_opt
from tests.world import (
    ADMIN_ID,
    ALERTS_CHANNEL_ID,
    CHANNEL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    MEMBER_ID,
    NO_PERMISSION,
    OPERATOR_ID,
)

pytestmark = pytest.mark.settings(quota_default_credits=0.40, alert_below_credits=0)

NOT_SERVED = "Kontext is not enabled on this server."
ADMINISTRATOR = 1 << 3
NSFW_CHANNEL_ID = 4250


async def audit_rows(h: Harness) -> list[tuple[Any, ...]]:
    return [
        (e.actor_id, e.action, e.before, e.after)
        for e in reversed(await h.bot.core.admin.audit_log(GUILD_ID, 50))
    ]


async def edit_in(h: Harness, channel_id: int, prompt: str) -> dict[str, Any]:
    """`/edit` in another channel of the test server; returns the bot's answer."""
    attachment = h.discord.add_attachment(
        make_image(), "photo.png", "image/png", channel_id=channel_id
    )
    payload = h.discord.slash_command(
        "edit", {"prompt": prompt}, user_id=MEMBER_ID, guild_id=GUILD_ID,
        channel_id=channel_id, attachments={"image": attachment},
    )  # fmt: skip
    await h.discord.send_interaction(payload)
    return await h.answer(int(payload["id"]))


# -- the operator's tier ---------------------------------------------------------------

EVERY_OPERATOR_COMMAND: list[tuple[list[str], dict[str, Any]]] = [
    (["servers"], {}),
    (["budget"], {"server_id": str(GUILD_ID), "credits": 999.0}),
    (["allow"], {"server_id": str(GUILD_ID)}),
    (["deny"], {"server_id": str(GUILD_ID)}),
    (["credits"], {}),
    (["check"], {}),
    (["resume"], {}),
    (["pause"], {"reason": "mine now"}),
]


async def test_a_server_admin_is_refused_every_operator_command_even_invoked_directly(
    h: Harness,
) -> None:
    await h.answer(await h.edit("one"))  # a balance exists that must not be shown
    h.segmind.credits = 0
    await h.answer(await h.edit("two"))  # 406: edits halt for everyone
    calls = len(h.api_calls())
    [command] = [c for c in h.discord.commands[GUILD_ID] if c["name"] == "operator"]
    assert int(command["default_member_permissions"]) == ADMINISTRATOR
    for subcommand, options in EVERY_OPERATOR_COMMAND:
        answer = await h.run_command("operator", options, subcommand=subcommand, user_id=ADMIN_ID,
            permissions=MANAGE_GUILD | ADMINISTRATOR,
        )  # fmt: skip
        assert answer["flags"] & FLAG_EPHEMERAL, subcommand
        assert answer["content"] == NO_PERMISSION, subcommand
        assert not answer["embeds"], subcommand  # no balance, no servers
    assert len(h.api_calls()) == calls  # /operator check sent nothing
    assert h.bot.core.health.halted is not None  # the halt was not cleared
    assert h.bot.core.servers.allowed(GUILD_ID)
    assert (await h.bot.core.ledger.budget(GUILD_ID)).source == "default"
    assert await h.bot.core.admin.audit_log(0, 10) == []


@pytest.mark.settings(operator_ids=(ADMIN_ID,))
async def test_operator_ids_name_the_operators_instead_of_the_owner(h: Harness) -> None:
    refused = await h.operator("servers")  # the application's owner, not listed
    assert refused["content"] == NO_PERMISSION
    answer = await h.operator("servers", user_id=ADMIN_ID)
    assert f"`{GUILD_ID}` · allowed" in answer["embeds"][0]["description"]


async def test_a_teams_operators_are_its_owner_and_admins_not_developers_or_read_only(
    h: Harness,
) -> None:
    """Without OPERATOR_IDS, the bot's money is run by whoever runs the application: the
    team's owner and its admins who accepted, not a read-only member or a developer."""
    owner, admin, developer, read_only, invited = 7001, 7002, 7003, 7004, 7005
    h.discord.set_team(
        owner,
        {
            owner: ("admin", True),
            admin: ("admin", True),
            developer: ("developer", True),
            read_only: ("read_only", True),
            invited: ("admin", False),
        },
    )
    await h.restart()
    assert h.bot.core.operator.operator_ids == {owner, admin}
    for refused in (developer, read_only, invited):
        assert (await h.operator("servers", user_id=refused))["content"] == NO_PERMISSION
    answer = await h.operator("servers", user_id=admin)
    assert f"`{GUILD_ID}` · allowed" in answer["embeds"][0]["description"]


async def test_pause_stops_every_edit_until_resume_and_survives_a_restart(h: Harness) -> None:
    paused = await h.operator("pause", reason="maintenance")
    assert paused["content"].startswith("Every new edit is paused")
    assert "can't edit images right now" in (await h.answer(await h.edit("one")))["content"]
    await h.restart()
    assert "can't edit images right now" in (await h.answer(await h.edit("two")))["content"]
    assert h.api_calls() == []
    resumed = await h.operator("resume")
    assert resumed["content"].startswith("Edits can run again")
    assert (await h.answer(await h.edit("three")))["attachments"]
    actions = [e.action for e in reversed(await h.bot.core.admin.audit_log(0, 10))]
    assert actions == ["api.pause", "api.resume"]


# -- server budgets --------------------------------------------------------------------


async def test_the_edit_that_would_pass_the_budget_is_refused_and_the_next_period_renews_it(
    h: Harness,
) -> None:
    answer = await h.operator("budget", server_id=str(GUILD_ID), credits=0.10)
    assert f"(`{GUILD_ID}`) may now spend 0.10 credits" in answer["content"]
    await h.answer(await h.edit("one"))  # 0.04
    await h.answer(await h.edit("two"))  # 0.08
    refused = await h.answer(await h.edit("three"))  # 0.12 would pass 0.10
    assert refused["flags"] & FLAG_EPHEMERAL
    assert refused["content"].startswith("This server has used its editing budget for now")
    assert "It renews <t:" in refused["content"]
    assert len(h.api_calls()) == 2
    status = await h.bot.core.ledger.status(GUILD_ID, MEMBER_ID, ())
    assert (status.used, status.held) == (pytest.approx(0.08), 0)  # the member's own is untouched
    assert [a[1:3] for a in await audit_rows(h)] == [("server.budget", "1000.00 (default)")]

    clock = h.bot.core.ledger.clock
    h.bot.core.ledger.clock = lambda: clock() + 86400  # the next day (QUOTA_PERIOD=day)
    assert (await h.answer(await h.edit("four")))["attachments"]
    assert len(h.api_calls()) == 3
    shown = await h.admin("credits")
    assert shown["embeds"][0]["title"] == "This server's editing budget"
    assert "Segmind" not in str(shown["embeds"])  # admins see their server only


@pytest.mark.settings(server_budget_credits=0)
async def test_a_budget_of_zero_means_a_new_server_cannot_edit_until_the_operator_gives_one(
    h: Harness,
) -> None:
    refused = await h.answer(await h.edit("one"))
    assert refused["content"].startswith("This server has used its editing budget")
    assert h.api_calls() == []
    assert h.discord.cdn_requests == []  # refused before its image was even fetched
    await h.operator("budget", server_id=str(GUILD_ID), credits=1.0)
    assert (await h.answer(await h.edit("two")))["attachments"]
    await h.operator("budget", server_id=str(GUILD_ID), default=True)
    assert (await h.bot.core.ledger.budget(GUILD_ID)).credits == 0


@pytest.mark.settings(server_budget_credits=2)
async def test_an_admin_cannot_give_an_allowance_above_the_servers_budget(h: Harness) -> None:
    for subcommand, options in (
        (["quota", "set"], {"member": user_opt(MEMBER_ID), "credits": 5.0}),
        (["quota", "default"], {"credits": 5.0}),
    ):
        answer = await h.admin(*subcommand, **options)
        assert answer["content"].startswith("That is more than this server's whole budget of 2.00")
    assert await h.bot.core.admin.audit_log(GUILD_ID, 10) == []
    ok = await h.admin("quota", "set", member=user_opt(MEMBER_ID), credits=2.0)
    assert ok["content"].startswith(f"<@{MEMBER_ID}> can now spend 2.00 credits")


async def test_a_server_is_alerted_at_80_and_100_percent_of_its_budget(h: Harness) -> None:
    await h.choose_alerts_channel()
    await h.operator("budget", server_id=str(GUILD_ID), credits=0.10)
    await h.answer(await h.edit("one"))  # 40 %
    await h.answer(await h.edit("two"))  # 80 %
    await h.operator("budget", server_id=str(GUILD_ID), credits=0.12)
    await h.answer(await h.edit("three"))  # 100 %
    await h.bot.core.alerts.drain()
    texts = [m["content"] for m in h.channel_messages(ALERTS_CHANNEL_ID)]
    assert len(texts) == 2
    assert "used 80 % of its editing budget (0.08 of 0.10 credits used)" in texts[0]
    assert "used its whole editing budget (0.12 of 0.12 credits used)" in texts[1]
    assert h.direct_messages() == []  # a server's alert is not the operator's


# -- which servers are served -------------------------------------------------------------


async def test_a_denied_server_gets_one_private_answer_everywhere_and_no_api_call(
    h: Harness,
) -> None:
    result = await h.answer(await h.edit("while allowed"))
    denied = await h.operator("deny", server_id=str(GUILD_ID))
    assert denied["content"].endswith(f"(`{GUILD_ID}`) is no longer served. (before: allowed)")

    answer = await h.answer(await h.edit("slash"))
    assert answer["flags"] & FLAG_EPHEMERAL and answer["content"] == NOT_SERVED
    press = await h.answer(await h.click(result, "reroll"))
    assert press["flags"] & FLAG_EPHEMERAL and press["content"] == NOT_SERVED
    menu = h.discord.context_menu(
        "Edit image", result, user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID
    )
    await h.discord.send_interaction(menu)
    answer = await h.answer(int(menu["id"]))
    assert answer["flags"] & FLAG_EPHEMERAL and answer["content"] == NOT_SERVED
    mention = await h.reply(result, "make it night")
    reply = await h.reply_answer(mention)
    assert reply["content"] == NOT_SERVED
    assert len(h.api_calls()) == 1  # only the edit made while the server was served

    listing = await h.operator("servers")
    assert f"`{GUILD_ID}` · **denied**" in listing["embeds"][0]["description"]
    await h.operator("allow", server_id=str(GUILD_ID))
    assert (await h.answer(await h.edit("allowed again")))["attachments"]


@pytest.mark.settings(allowed_guild_ids=(77,))
async def test_allowed_guild_ids_without_this_server_serves_nothing_here(h: Harness) -> None:
    answer = await h.answer(await h.edit("slash"))
    assert answer["content"] == NOT_SERVED
    upload = h.discord.make_message(CHANNEL_ID, author_id=MEMBER_ID, attachments=[h.upload()])
    menu = h.discord.context_menu(
        "Edit image", upload, user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID
    )
    await h.discord.send_interaction(menu)
    assert (await h.answer(int(menu["id"])))["content"] == NOT_SERVED
    mention = h.discord.make_message(
        CHANNEL_ID, author_id=MEMBER_ID, content=f"<@{h.discord.bot_user_id}> make it night",
        mentions=[h.discord.bot_user_id], attachments=[h.upload()],
    )  # fmt: skip
    await h.discord.dispatch("MESSAGE_CREATE", mention)
    assert (await h.reply_answer(mention))["content"] == NOT_SERVED
    assert h.api_calls() == []
    assert await jobs.unfinished(h.bot.core.database) == []  # nothing queued
    assert await server_rows.access(h.bot.core.database) == {}
    listing = await h.operator("servers")  # the operator sees it, and can still act
    assert f"`{GUILD_ID}` · **denied**" in listing["embeds"][0]["description"]


# -- alerts and the safety filter ---------------------------------------------------------


@pytest.mark.settings(operator_alert_channel_id=4251)
async def test_account_alerts_go_to_the_operators_channel_and_no_server_channel(
    h: Harness,
) -> None:
    await h.add_text_channel()
    await h.add_text_channel(4251)
    await h.admin("alerts", channel=channel_opt(ALERTS_CHANNEL_ID))
    h.segmind.credits = 0
    await h.answer(await h.edit("one"))  # 406: out of credits
    await h.bot.core.alerts.drain()
    [alert] = h.channel_messages(4251)
    assert "out of credits" in alert["content"]
    assert h.channel_messages(ALERTS_CHANNEL_ID) == [] and h.direct_messages() == []


async def safety_flags(h: Harness) -> list[bool]:
    return [r.json["disable_safety_checker"] for r in h.api_calls()]


@pytest.mark.settings(segmind_disable_safety_checker=True)
async def test_the_filter_is_off_only_in_age_restricted_channels_of_servers_that_chose_it(
    h: Harness,
) -> None:
    await h.add_text_channel(NSFW_CHANNEL_ID, nsfw=True)
    await edit_in(h, NSFW_CHANNEL_ID, "before the admins chose")
    answer = await h.admin("safety", filter_off=True)
    assert answer["content"].startswith("The safety filter is now off in this server's age-")
    await edit_in(h, CHANNEL_ID, "an ordinary channel")
    await edit_in(h, NSFW_CHANNEL_ID, "an age-restricted channel")
    await h.admin("safety", filter_off=False)
    await edit_in(h, NSFW_CHANNEL_ID, "after the admins turned it back on")
    assert await safety_flags(h) == [False, False, True, False]
    assert [a[1:] for a in await audit_rows(h)] == [
        ("safety", "filter on", "filter off in age-restricted channels"),
        ("safety", "filter off in age-restricted channels", "filter on"),
    ]


async def test_without_the_operators_switch_the_filter_stays_on_everywhere(h: Harness) -> None:
    await h.add_text_channel(NSFW_CHANNEL_ID, nsfw=True)
    refused = await h.admin("safety", filter_off=True)
    assert refused["content"].startswith("The bot's operator has not allowed")
    await h.bot.core.admin.set_safety_filter_off(GUILD_ID, ADMIN_ID, True)  # even if set
    await edit_in(h, NSFW_CHANNEL_ID, "age-restricted")
    assert await safety_flags(h) == [False]
    assert OPERATOR_ID not in (MEMBER_ID, ADMIN_ID)


async def test_an_existing_database_upgrades_in_place_and_its_servers_get_the_default_budget(
    tmp_path: Path,
) -> None:
    """A database from before budgets (schema 6) with a server's spend on it."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(migrations_dir().glob("*.sql"))[:6]:
        (older / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    path = tmp_path / "kontext.db"
    raw = await aiosqlite.connect(path, isolation_level=None)
    assert await migrate(raw, older) == 6
    # Written in schema 6, which today's queries no longer speak: raw SQL on purpose.
    await raw.execute(
        "INSERT INTO charges (guild_id, user_id, state, reserved, amount, created_at) "
        "VALUES (?, ?, 'committed', 0.04, 0.04, ?)",
        (GUILD_ID, MEMBER_ID, time.time()),
    )
    await raw.close()

    database = await db.connect(path)  # what start-up does
    try:
        ledger = Ledger(database, default_credits=1.0, default_period="day", server_budget=5.0)
        budget = await ledger.budget(GUILD_ID)
        assert (budget.credits, budget.source, budget.spent) == (5.0, "default", 0.04)
        assert await server_rows.access(database) == {}
    finally:
        await database.close()
