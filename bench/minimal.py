"""The least a Discord bot can do for an edit, to measure the bot against:
`python -m bench.minimal` (pointed at a Discord stand-in by a sitecustomize).

`/edit image prompt`: defer, call the API with the attachment's URL, upload the answer as
a followup. No checks, no queue, no database, no money: everything the real bot adds on
top of this is its overhead. Reads MINIMAL_TOKEN, MINIMAL_GUILD_ID, SEGMIND_URL and
SEGMIND_KEY from the environment.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os

import aiohttp
import discord
from discord import app_commands


class MinimalBot(discord.Client):
    def __init__(self, guild_id: int, api_url: str, api_key: str) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.guild = discord.Object(guild_id)
        self.api_url, self.api_key = api_url, api_key
        self.session: aiohttp.ClientSession | None = None
        self.tree.add_command(
            app_commands.Command(name="edit", description="Edit", callback=self.edit)
        )

    async def setup_hook(self) -> None:
        self.session = aiohttp.ClientSession()
        self.tree.copy_global_to(guild=self.guild)
        await self.tree.sync(guild=self.guild)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        await super().close()

    async def edit(
        self, interaction: discord.Interaction, image: discord.Attachment, prompt: str
    ) -> None:
        await interaction.response.defer(thinking=True)
        assert self.session is not None
        body = {"prompt": prompt, "input_image": image.url, "seed": -1}
        async with self.session.post(
            self.api_url, json=body, headers={"x-api-key": self.api_key}
        ) as resp:
            data = await resp.read()
        await interaction.followup.send(file=discord.File(io.BytesIO(data), "result.png"))


async def main() -> None:
    bot = MinimalBot(
        int(os.environ["MINIMAL_GUILD_ID"]), os.environ["SEGMIND_URL"], os.environ["SEGMIND_KEY"]
    )
    async with bot:
        await bot.start(os.environ["MINIMAL_TOKEN"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
