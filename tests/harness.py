"""The whole bot against both stand-ins: a `Harness` (what members do and see, what the
bot recorded; admins' and the operator's commands come from ServerActions). The fixtures
that build it are in conftest.py; the server's ids are in tests/world.py."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from bot.client import KontextBot
from bot.config import Settings
from bot.db import charges, generations, jobs, messages
from tests.fake_discord import FLAG_EPHEMERAL, FLAG_LOADING, FakeDiscord
from tests.fake_segmind import FakeSegmind
from tests.helpers import make_image
from tests.server_actions import ServerActions
from tests.world import BOT_TOKEN, CHANNEL_ID, GUILD_ID, MEMBER_ID


@dataclass
class Harness(ServerActions):
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

    def channel_messages(self, channel_id: int = CHANNEL_ID) -> list[dict[str, Any]]:
        """Non-ephemeral messages in a channel, oldest first."""
        return [
            m
            for m in self.discord.messages.values()
            if int(m["channel_id"]) == channel_id and not m.get("flags", 0) & FLAG_EPHEMERAL
        ]


def fields(message: dict[str, Any]) -> dict[str, str]:
    """The fields of a message's one embed, by name."""
    [embed] = message["embeds"]
    return {f["name"]: f["value"] for f in embed["fields"]}


# -- what members see and press ---------------------------------------------------------


def deliver_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for c in FakeDiscord.components_of(message)
        if str(c.get("label", "")).startswith("Deliver")
    ]
