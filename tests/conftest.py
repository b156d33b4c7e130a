"""Shared fixtures: real stand-ins on 127.0.0.1 and a real SQLite file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import db
from bot.client import KontextBot
from bot.config import Settings
from bot.db import charges, generations, jobs, messages
from tests.clock import StoppedClock
from tests.fake_discord import FLAG_EPHEMERAL, FLAG_LOADING, FakeDiscord
from tests.fake_segmind import FakeSegmind
from tests.helpers import LocalServer, make_image

API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture
async def segmind() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def clock() -> StoppedClock:
    """A clock that stands still until the test moves it (a file may bring its own)."""
    return StoppedClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "kontext.db"


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[db.Database]:
    """The real schema in a real SQLite file, behind the bot's own Database wrapper."""
    connection = await db.connect(db_path)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    """A running 127.0.0.1 server; tests add routes with `route`/`serve_bytes`."""
    async with LocalServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for code that takes one (trust_env off: loopback only)."""
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        yield client


# -- the whole bot against both stand-ins ------------------------------------------------

GUILD_ID = 4242
CHANNEL_ID = 4243
MEMBER_ID = 5001
OTHER_MEMBER_ID = 5002
ADMIN_ID = 5003
OPERATOR_ID = 1  # the stand-in application's owner: the operator unless OPERATOR_IDS says
BOT_TOKEN = "Bot.token-that-must-never-leak"
MANAGE_GUILD = 1 << 5
NO_PERMISSION = "You don't have permission to use this command."
ALERTS_CHANNEL_ID = 4244


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Real Settings, built from keyword arguments only (no .env, no environment surprises)."""
    values: dict[str, object] = {
        "discord_token": BOT_TOKEN,
        "segmind_api_key": API_KEY,
        "database_path": tmp_path / "data" / "kontext.db",
        "results_dir": tmp_path / "data" / "results",
        "discord_guild_ids": (GUILD_ID,),
        "segmind_max_retries": 1,
        "segmind_timeout_s": 5,
        # Far above what tests spend: tests of server budgets set their own.
        "server_budget_credits": 1000.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@dataclass
class Harness:
    """A KontextBot connected to FakeDiscord and calling FakeSegmind."""

    discord: FakeDiscord
    segmind: FakeSegmind
    bot: KontextBot
    settings: Settings
    _stack: contextlib.AsyncExitStack

    def upload(
        self,
        data: bytes | None = None,
        filename: str = "photo.png",
        content_type: str | None = "image/png",
        **extra: Any,
    ) -> dict[str, Any]:
        """An attachment as a member's upload would carry it, served by the fake CDN."""
        return self.discord.add_attachment(
            make_image() if data is None else data,
            filename,
            content_type,
            channel_id=CHANNEL_ID,
            **extra,
        )

    async def edit(
        self,
        prompt: str,
        attachment: dict[str, Any] | None = None,
        *,
        user_id: int = MEMBER_ID,
        **options: Any,
    ) -> int:
        """Send `/edit` as a member would; returns the interaction id."""
        payload = self.discord.slash_command(
            "edit",
            {"prompt": prompt, **options},
            user_id=user_id,
            guild_id=GUILD_ID,
            channel_id=CHANNEL_ID,
            attachments={"image": attachment if attachment is not None else self.upload()},
        )
        await self.discord.send_interaction(payload)
        return int(payload["id"])

    async def answer(self, interaction_id: int, wait_s: float = 10.0) -> dict[str, Any]:
        """The bot's final visible answer to an interaction: the result message it posted
        in the channel, or a message sent through the interaction (an ephemeral error)."""

        async def final() -> dict[str, Any] | None:
            message_id = await generations.result_message_of_interaction(
                self.bot.core.database, interaction_id
            )
            if message_id in self.discord.messages:
                return self.discord.messages[message_id]
            for message in reversed(self.discord.followups(interaction_id)):
                if not message.get("flags", 0) & FLAG_LOADING:
                    return message
            original = self.discord.original_response(interaction_id)
            if original and not original.get("flags", 0) & FLAG_LOADING:
                return original
            return None

        found = await self.discord.wait_for(final, wait_s, message="the bot's answer")
        return await self.settled(found)  # type: ignore[arg-type]

    async def reply(
        self,
        to: dict[str, Any],
        content: str,
        *,
        user_id: int = MEMBER_ID,
        ping: bool = True,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A member's reply to a message; `ping` keeps the @ on (Discord then mentions
        the replied-to author, here the bot)."""
        message = self.discord.make_message(
            CHANNEL_ID,
            author_id=user_id,
            content=content,
            reference_message_id=int(to["id"]),
            mentions=[self.discord.bot_user_id] if ping else [],
            attachments=attachments or [],
        )
        await self.discord.dispatch("MESSAGE_CREATE", message)
        return message

    async def reply_answer(self, message: dict[str, Any], wait_s: float = 10.0) -> dict[str, Any]:
        """The bot's message replying to `message` (a result, or a short error)."""

        def find() -> dict[str, Any] | None:
            for m in self.discord.messages.values():
                ref = m.get("message_reference") or {}
                if ref.get("message_id") == message["id"] and m["author"]["id"] == str(
                    self.discord.bot_user_id
                ):
                    return m
            return None

        found = await self.discord.wait_for(find, wait_s, message="the bot's reply")
        return await self.settled(found)  # type: ignore[arg-type]

    async def settled(self, message: dict[str, Any]) -> dict[str, Any]:
        """Wait until a result message is fully recorded (the bot writes it down right after
        Discord accepts it), so the next step of a test sees what a member later would."""
        if not any(
            c.get("custom_id", "").startswith("kontext:")
            and not c["custom_id"].startswith("kontext:cancel:")
            for c in self.discord.components_of(message)
        ):
            return message
        await self.discord.wait_for(
            lambda: messages.result_message(self.bot.core.database, int(message["id"])),
            message="the result to be recorded",
        )
        return message

    async def click(
        self, message: dict[str, Any], action: str, *, user_id: int = MEMBER_ID, **extra: Any
    ) -> int:
        """Press one of the result buttons on `message`; returns the interaction id."""
        [custom_id] = [
            c["custom_id"]
            for c in self.discord.components_of(message)
            if c.get("custom_id", "").startswith(f"kontext:{action}:")
        ]
        payload = self.discord.component_interaction(
            custom_id, message=message, user_id=user_id, guild_id=GUILD_ID,
            channel_id=CHANNEL_ID, **extra,
        )  # fmt: skip
        await self.discord.send_interaction(payload)
        return int(payload["id"])

    async def restart(self) -> None:
        """Stop the bot and start a new one on the same database (buttons must survive)."""
        await self.bot.close()
        self.bot = KontextBot(self.settings, guild_ready_timeout=0.05)
        await self._stack.enter_async_context(self.discord.running(self.bot, BOT_TOKEN))

    async def edits(self, user_id: int | None = None) -> list[generations.Generation]:
        """Every edit made in the test server (or by one member there), oldest first."""
        found = await generations.of_server(self.bot.core.database, GUILD_ID)
        return [g for g in found if user_id is None or g.user_id == user_id]

    async def jobs(self, user_id: int | None = None) -> list[jobs.JobState]:
        """Every job (or one member's), oldest first."""
        found = await jobs.states(self.bot.core.database)
        return [j for j in found if user_id is None or j.user_id == user_id]

    def refuse_uploads(
        self, status: int = 503, *, times: int | None = None, body: dict[str, Any] | None = None
    ) -> None:
        """The members' channel refuses the bot's next posts: by default every try of one
        delivery, retried without waiting."""
        self.bot.core.delivery.backoff_s = 0.01
        self.discord.fail_next(
            "POST", rf"^/channels/{CHANNEL_ID}/messages$", status, body=body,
            times=times or self.bot.core.delivery.attempts,
        )  # fmt: skip

    async def server_charges(self) -> list[charges.Charge]:
        """Every charge made in the test server, oldest first."""
        return await charges.of_server(self.bot.core.database, GUILD_ID)

    async def charges(self, user_id: int = MEMBER_ID) -> list[charges.Charge]:
        """A member's charges in the test server, oldest first."""
        return await charges.of_member(self.bot.core.database, GUILD_ID, user_id)

    async def wait_job_ended(self, state: str) -> None:
        """Wait until a job has ended in `state`: the bot marks it just after posting."""

        async def ended() -> bool:
            return state in await jobs.count_by_state(self.bot.core.database)

        await self.discord.wait_for(ended, message=f"a job to end {state}")

    def api_calls(self) -> list[Any]:
        """The edit calls the bot sent to the API, oldest first."""
        return [r for r in self.segmind.requests if r.method == "POST"]

    async def open_history(self) -> dict[str, Any]:
        payload = self.discord.slash_command(
            "history", user_id=MEMBER_ID, guild_id=GUILD_ID, channel_id=CHANNEL_ID
        )
        await self.discord.send_interaction(payload)
        return await self.answer(int(payload["id"]))

    async def press(
        self, custom_id: str, message: dict[str, Any], *, user_id: int = MEMBER_ID
    ) -> int:
        """Press the component `custom_id` on `message`; returns the interaction id."""
        payload = self.discord.component_interaction(
            custom_id, message=message, user_id=user_id, guild_id=GUILD_ID, channel_id=CHANNEL_ID
        )
        await self.discord.send_interaction(payload)
        return int(payload["id"])

    async def wait_followup(self, interaction_id: int, text: str) -> dict[str, Any]:
        """A message the bot sent through the interaction's webhook containing `text`."""

        def find() -> dict[str, Any] | None:
            return next(
                (
                    m
                    for m in self.discord.followups(interaction_id)
                    if text in (m.get("content") or "")
                ),
                None,
            )

        return await self.discord.wait_for(find, message=f"a followup {text!r}")  # type: ignore[return-value]

    async def run_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: list[str] | None = None,
        user_id: int = MEMBER_ID,
        permissions: int | None = None,
        member_roles: tuple[int, ...] = (),
    ) -> dict[str, Any]:
        """Send a slash command as Discord would deliver it; returns the bot's answer.

        `options` values are plain, or `user_opt(...)`-style dicts for typed options."""
        opts = [
            {"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v}
            for k, v in (options or {}).items()
        ]
        payload = self.discord.slash_command(
            name,
            opts,
            user_id=user_id,
            guild_id=GUILD_ID,
            channel_id=CHANNEL_ID,
            subcommand=subcommand,
            permissions=permissions,
            member_roles=member_roles,
        )
        await self.discord.send_interaction(payload)
        return await self.answer(int(payload["id"]))

    async def admin(
        self,
        *subcommand: str,
        user_id: int = ADMIN_ID,
        permissions: int | None = MANAGE_GUILD,
        member_roles: tuple[int, ...] = (),
        **options: Any,
    ) -> dict[str, Any]:
        """`/admin <subcommand...> options` from a member with Manage Server (by default)."""
        return await self.run_command(
            "admin",
            options,
            subcommand=list(subcommand),
            user_id=user_id,
            permissions=permissions,
            member_roles=member_roles,
        )

    def _fake_member(self, user_id: int) -> dict[str, Any]:
        return next(
            m for m in self.discord.guilds[GUILD_ID]["members"] if m["user"]["id"] == str(user_id)
        )

    async def add_role(
        self, role_id: int, name: str, *, members: tuple[int, ...] = (), permissions: int = 0
    ) -> None:
        """Create a role while the bot runs (GUILD_ROLE_CREATE) and give it to `members`."""
        guild = self.discord.guilds[GUILD_ID]
        role = {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": len(guild["roles"]),
            "permissions": str(permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        guild["roles"].append(role)
        for user_id in members:
            self._fake_member(user_id)["roles"].append(str(role_id))
        await self.discord.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(GUILD_ID), "role": role})
        await self.discord.wait_for(
            lambda: self.bot.get_guild(GUILD_ID).get_role(role_id),  # type: ignore[union-attr]
            message=f"role {role_id} in the bot's cache",
        )

    async def add_text_channel(
        self,
        channel_id: int = ALERTS_CHANNEL_ID,
        *,
        overwrites: list[dict] | None = None,
        nsfw: bool = False,
    ) -> None:
        """Create a text channel while the bot runs (CHANNEL_CREATE)."""
        guild = self.discord.guilds[GUILD_ID]
        channel = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(GUILD_ID),
            "name": f"channel-{channel_id}",
            "position": len(guild["channels"]),
            "permission_overwrites": overwrites or [],
            "nsfw": nsfw,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self.discord.channels[channel_id] = channel
        guild["channels"].append(channel)
        await self.discord.dispatch("CHANNEL_CREATE", channel)
        await self.discord.wait_for(
            lambda: self.bot.get_channel(channel_id),
            message=f"channel {channel_id} in the bot's cache",
        )

    async def choose_alerts_channel(self) -> None:
        """An admin creates the alerts channel and has the server's alerts sent there."""
        await self.add_text_channel()
        await self.admin("alerts", channel=channel_opt(ALERTS_CHANNEL_ID))

    async def operator(
        self, *subcommand: str, user_id: int = OPERATOR_ID, **options: Any
    ) -> dict[str, Any]:
        """`/operator <subcommand> options`, by the operator unless `user_id` says otherwise."""
        return await self.run_command(
            "operator", options, subcommand=list(subcommand), user_id=user_id, permissions=None
        )

    def direct_messages(self, user_id: int = OPERATOR_ID) -> list[dict[str, Any]]:
        """What the bot sent to `user_id` in a DM, oldest first."""
        dm = self.discord.add_dm_channel(user_id)
        return self.channel_messages(int(dm["id"]))

    def channel_messages(self, channel_id: int = CHANNEL_ID) -> list[dict[str, Any]]:
        """Non-ephemeral messages in a channel, oldest first."""
        return [
            m
            for m in self.discord.messages.values()
            if int(m["channel_id"]) == channel_id and not m.get("flags", 0) & FLAG_EPHEMERAL
        ]


@pytest.fixture
async def harness(
    tmp_path: Path, segmind: FakeSegmind, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """Overrides come from `settings` marks: the module's (`pytestmark`), then the test's."""
    overrides: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        overrides.update(marker.kwargs)
    async with FakeDiscord() as discord:
        discord.add_guild(
            GUILD_ID,
            channels=[CHANNEL_ID],
            members=[{"id": MEMBER_ID}, {"id": OTHER_MEMBER_ID}, {"id": ADMIN_ID}],
        )
        settings = make_settings(
            tmp_path,
            segmind_base_url=segmind.base_url,
            discord_cdn_hosts=(discord.cdn_host,),
            **overrides,
        )
        bot = KontextBot(settings, guild_ready_timeout=0.05)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(discord.running(bot, BOT_TOKEN))
            yield Harness(discord, segmind, bot, settings, stack)


@pytest.fixture
def h(harness: Harness) -> Harness:
    """The harness under its short name (a file that tunes it defines its own)."""
    return harness


def fields(message: dict[str, Any]) -> dict[str, str]:
    """The fields of a message's one embed, by name."""
    [embed] = message["embeds"]
    return {f["name"]: f["value"] for f in embed["fields"]}


@pytest.fixture
async def world(segmind: FakeSegmind) -> AsyncIterator[tuple[FakeDiscord, FakeSegmind]]:
    """Both stand-ins, for a bot run as a real process (tests/test_process.py)."""
    async with FakeDiscord() as discord:
        discord.add_guild(
            GUILD_ID, channels=[CHANNEL_ID], members=[{"id": MEMBER_ID}, {"id": OTHER_MEMBER_ID}]
        )
        yield discord, segmind


# -- what members see and press ---------------------------------------------------------


def deliver_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for c in FakeDiscord.components_of(message)
        if str(c.get("label", "")).startswith("Deliver")
    ]


# -- quotas and admin commands -----------------------------------------------------------


def user_opt(user_id: int) -> dict[str, Any]:
    """A member/user option value (the stand-in guesses int options are integers)."""
    return {"type": 6, "value": user_id}


def channel_opt(channel_id: int) -> dict[str, Any]:
    return {"type": 7, "value": channel_id}


def role_opt(role_id: int) -> dict[str, Any]:
    return {"type": 8, "value": role_id}


def mentionable_opt(target_id: int) -> dict[str, Any]:
    return {"type": 9, "value": target_id}
