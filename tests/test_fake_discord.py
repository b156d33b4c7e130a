"""The Discord stand-in, driven by discord.py's own Client, CommandTree and HTTP code.

These use a bare discord.Client (not the project's bot) so they prove the stand-in's
wire format, not the bot's behaviour.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import discord
import discord.asset
import discord.gateway
import discord.http
import pytest
import pytest_asyncio
from discord import app_commands
from PIL import Image

from tests.fake_discord import FakeDiscord, point_discord_at, write_sitecustomize

pytestmark = pytest.mark.asyncio

GUILD = 900_000_000_000_000_001
CHANNEL = 900_000_000_000_000_002
OWNER = 77
USER = 42


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@dataclass
class Probe:
    """What the bare bot saw, for assertions."""

    interactions: dict[int, discord.Interaction] = field(default_factory=dict)
    messages: list[discord.Message] = field(default_factory=list)
    modal_values: list[str] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Bot:
    client: discord.Client
    tree: app_commands.CommandTree
    probe: Probe


class PromptForm(discord.ui.Modal, title="Prompt"):
    prompt: discord.ui.TextInput = discord.ui.TextInput(label="Prompt", custom_id="prompt")

    def __init__(self, probe: Probe) -> None:
        super().__init__(custom_id="prompt-form")
        self.probe = probe

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.probe.modal_values.append(self.prompt.value)
        await interaction.response.send_message(f"got {self.prompt.value}", ephemeral=True)


class Picker(discord.ui.View):
    @discord.ui.button(label="Again", custom_id="again")
    async def again(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="picked again", view=None)


def build_client(probe: Probe, intents: discord.Intents | None = None) -> Bot:
    if intents is None:
        intents = discord.Intents.default()
        intents.message_content = True
    # A small guild_ready_timeout: on_ready otherwise waits 2 s after the last GUILD_CREATE.
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)
    guild = discord.Object(GUILD)

    @tree.command(name="edit", description="Edit an image", guild=guild)
    async def edit(
        interaction: discord.Interaction, image: discord.Attachment, prompt: str = "none"
    ) -> None:
        probe.interactions[interaction.id] = interaction
        await interaction.response.defer(thinking=True)
        data = await image.read()  # through the CDN, with discord.py's own session
        await interaction.followup.send(
            f"edited: {prompt}", file=discord.File(io.BytesIO(data), "edited.png")
        )

    @tree.command(name="secret", description="Answer only the caller", guild=guild)
    async def secret(interaction: discord.Interaction) -> None:
        probe.interactions[interaction.id] = interaction
        await interaction.response.send_message("only you", ephemeral=True)

    @tree.command(name="hold", description="Answer when the test says so", guild=guild)
    async def hold(interaction: discord.Interaction) -> None:
        probe.interactions[interaction.id] = interaction
        await probe.gate.wait()
        try:
            await interaction.response.send_message("finally")
        except discord.HTTPException as exc:
            probe.errors.append(exc)

    @tree.command(name="later", description="Think, edit, follow up", guild=guild)
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.edit_original_response(content="done")
        await interaction.followup.send("extra", ephemeral=True)

    @tree.command(name="form", description="Ask for a prompt", guild=guild)
    async def form(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PromptForm(probe))

    @tree.command(name="pick", description="Show a button", guild=guild)
    async def pick(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pick one", view=Picker())

    @tree.context_menu(name="Describe", guild=guild)
    async def describe(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"{message.author.id}: {message.content}")

    @client.event
    async def on_message(message: discord.Message) -> None:
        probe.messages.append(message)

    return Bot(client, tree, probe)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_user(USER, "alice")
        server.add_guild(GUILD, channels=[CHANNEL], owner_id=OWNER, members=[{"id": USER}])
        yield server


@pytest_asyncio.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Bot]:
    built = build_client(Probe())
    async with fake.running(built.client):
        await built.tree.sync(guild=discord.Object(GUILD))
        yield built


def cmd(fake: FakeDiscord, name: str, **kwargs: object) -> dict:
    return fake.slash_command(name, user_id=USER, guild_id=GUILD, channel_id=CHANNEL, **kwargs)


async def test_login_gateway_handshake_and_sync(fake: FakeDiscord, bot: Bot) -> None:
    paths = [(r.method, r.path) for r in fake.requests]
    assert paths[:2] == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    assert ("PUT", f"/applications/1000/guilds/{GUILD}/commands") in paths
    assert fake.requests[0].headers["Authorization"] == "Bot fake-bot-token"

    assert fake.sent_gateway[0]["op"] == 10
    assert fake.intents == bot.client.intents.value
    await fake.wait_for(lambda: any(f["op"] == 11 for f in fake.sent_gateway))
    assert [f["t"] for f in fake.sent_gateway if f["op"] == 0][:2] == ["READY", "GUILD_CREATE"]

    assert bot.client.user is not None and bot.client.user.id == 1000
    guild = bot.client.get_guild(GUILD)
    assert guild is not None and guild.me is not None
    assert guild.get_channel(CHANNEL) is not None
    synced = {c["name"]: c for c in fake.commands[GUILD]}
    assert set(synced) == {"edit", "secret", "hold", "later", "form", "pick", "Describe"}
    assert synced["edit"]["options"][0]["type"] == 11  # the attachment option
    assert synced["Describe"]["type"] == 3


async def test_slash_command_defer_then_followup_with_file(fake: FakeDiscord, bot: Bot) -> None:
    image = png(64, 48)
    att = fake.add_attachment(image, "cat photo.png", "image/png")
    assert (att["width"], att["height"], att["size"]) == (64, 48, len(image))
    payload = cmd(fake, "edit", options={"prompt": "add a hat"}, attachments={"image": att})
    iid = int(payload["id"])

    await fake.send_interaction(payload)
    follow = await fake.wait_for(lambda: fake.followups(iid))

    callbacks = fake.callbacks[iid]
    assert [c["type"] for c in callbacks] == [5]
    assert 0 <= callbacks[0]["after"] < 3  # answered within Discord's deadline
    message = follow[0]
    assert message["content"] == "edited: add a hat"
    sent = message["attachments"][0]
    assert sent["filename"] == "edited.png"
    assert (sent["content_type"], sent["width"], sent["height"]) == ("image/png", 64, 48)
    assert fake.attachment_bytes(sent) == image
    assert await bot.client.http.get_from_cdn(sent["url"]) == image
    # The first followup after a "thinking" defer replaces the loading message.
    original = fake.original_response(iid)
    assert original is not None and original["id"] == message["id"]
    assert original["flags"] & 128 == 0
    assert original["interaction_metadata"]["id"] == str(iid)
    # The bot fetched the user's upload from the CDN.
    assert att["filename"] == "cat_photo.png"
    assert fake.cdn_requests[0].path == f"/attachments/0/{att['id']}/cat_photo.png"


async def test_defer_edit_original_then_ephemeral_followup(fake: FakeDiscord, bot: Bot) -> None:
    payload = cmd(fake, "later")
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    follow = await fake.wait_for(lambda: fake.followups(iid))

    assert [(c["type"], c["data"]["flags"]) for c in fake.callbacks[iid]] == [(5, 64)]
    original = fake.original_response(iid)
    assert original is not None and original["content"] == "done"
    assert original["flags"] & 64 and not original["flags"] & 128  # no longer "thinking"
    assert [(m["content"], m["flags"] & 64) for m in follow] == [("extra", 64)]
    assert follow[0]["id"] != original["id"]  # the original was edited, so this is new
    patch = fake.requests_to("PATCH", r"/messages/@original$")[0]
    assert patch.json["content"] == "done" and patch.status == 200


async def test_second_callback_is_rejected(fake: FakeDiscord, bot: Bot) -> None:
    payload = cmd(fake, "secret")
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    await fake.wait_for(lambda: fake.callbacks.get(iid))

    interaction = bot.probe.interactions[iid]
    interaction.response._response_type = None  # get past discord.py's own guard
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.response.send_message("again")
    assert (caught.value.status, caught.value.code) == (400, 40060)
    assert len(fake.callbacks[iid]) == 1


async def test_ephemeral_response_keeps_flag_64(fake: FakeDiscord, bot: Bot) -> None:
    payload = cmd(fake, "secret")
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    original = await fake.wait_for(lambda: fake.original_response(iid))

    assert original["content"] == "only you"
    assert original["flags"] & 64
    assert fake.callbacks[iid][0]["data"]["flags"] & 64
    # Ephemeral messages are not visible through the channel.
    channel = bot.client.get_channel(CHANNEL)
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(int(original["id"]))
    # ... but through the interaction's webhook they are.
    fetched = await bot.probe.interactions[iid].original_response()
    assert fetched.flags.ephemeral and fetched.content == "only you"


async def test_channel_message_with_file_and_reply(fake: FakeDiscord, bot: Bot) -> None:
    image = png(20, 10)
    channel = bot.client.get_channel(CHANNEL)
    sent = await channel.send("here", file=discord.File(io.BytesIO(image), "out image.png"))

    stored = fake.messages[sent.id]
    att = stored["attachments"][0]
    assert stored["author"]["id"] == "1000" and stored["content"] == "here"
    assert att["filename"] == "out_image.png"  # Discord's filename clean-up
    assert (att["content_type"], att["width"], att["height"]) == ("image/png", 20, 10)
    assert fake.attachment_bytes(att) == image
    assert sent.attachments[0].url.startswith(f"http://{fake.cdn_host}/attachments/{CHANNEL}/")
    assert await sent.attachments[0].read() == image

    request = fake.requests_to("POST", rf"^/channels/{CHANNEL}/messages$")[0]
    assert request.json["attachments"] == [{"id": 0, "filename": "out image.png"}]
    assert request.files[0][0] == "files[0]" and request.files[0][3] == image

    reply = await sent.reply("and a reply")
    assert fake.messages[reply.id]["type"] == 19
    assert reply.reference is not None and reply.reference.message_id == sent.id
    # Discord echoes the bot's own messages back over the gateway.
    await fake.wait_for(lambda: {m.id for m in bot.probe.messages} >= {sent.id, reply.id})


async def test_server_error_then_success_via_clients_retry(fake: FakeDiscord, bot: Bot) -> None:
    fake.fail_next("POST", rf"^/channels/{CHANNEL}/messages$", 500)
    channel = bot.client.get_channel(CHANNEL)
    sent = await channel.send("retried")  # discord.py retries a 500 after 1 s

    statuses = [r.status for r in fake.requests_to("POST", r"^/channels/\d+/messages$")]
    assert statuses == [500, 200]
    assert fake.messages[sent.id]["content"] == "retried"


async def test_rate_limit_with_via_header_is_retried(fake: FakeDiscord, bot: Bot) -> None:
    fake.fail_next("POST", r"/messages$", 429)
    fake.fail_next("POST", r"/typing$", 403, body={"message": "Missing Permissions", "code": 50013})
    channel = bot.client.get_channel(CHANNEL)
    await channel.send("after a 429")
    assert [r.status for r in fake.requests_to("POST", r"/messages$")] == [429, 200]
    with pytest.raises(discord.Forbidden) as caught:
        await channel.typing()
    assert caught.value.code == 50013


async def test_expired_interaction_token(fake: FakeDiscord, bot: Bot) -> None:
    att = fake.add_attachment(png(), "a.png", "image/png")
    payload = cmd(fake, "edit", attachments={"image": att})
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    await fake.wait_for(lambda: fake.followups(iid))

    fake.advance(16 * 60)
    interaction = bot.probe.interactions[iid]
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.followup.send("too late")
    assert (caught.value.status, caught.value.code) == (401, 50027)
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.edit_original_response(content="too late")
    assert caught.value.code == 50027


async def test_callback_after_three_seconds_is_unknown_interaction(
    fake: FakeDiscord, bot: Bot
) -> None:
    payload = cmd(fake, "hold")
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    await fake.wait_for(lambda: iid in bot.probe.interactions)
    fake.advance(3.5)
    bot.probe.gate.set()
    await fake.wait_for(lambda: bot.probe.errors)
    error = bot.probe.errors[0]
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert iid not in fake.callbacks


async def test_message_create_reaches_on_message(fake: FakeDiscord, bot: Bot) -> None:
    att = fake.add_attachment(png(), "in.png", "image/png", channel_id=CHANNEL)
    msg = fake.make_message(CHANNEL, author_id=USER, content="hello bot", attachments=[att])
    await fake.dispatch("MESSAGE_CREATE", msg)

    got = await fake.wait_for(lambda: [m for m in bot.probe.messages if m.author.id == USER])
    message = got[0]
    assert message.content == "hello bot"
    assert message.guild is not None and message.guild.id == GUILD
    assert message.channel.id == CHANNEL
    assert message.attachments[0].width == 64


async def test_message_content_needs_the_intent(fake: FakeDiscord) -> None:
    built = build_client(Probe(), discord.Intents.default())  # no message_content
    async with fake.running(built.client):
        plain = fake.make_message(CHANNEL, author_id=USER, content="secret words")
        pinged = fake.make_message(CHANNEL, author_id=USER, content="<@1000> look", mentions=[1000])
        await fake.dispatch("MESSAGE_CREATE", plain)
        await fake.dispatch("MESSAGE_CREATE", pinged)
        got = await fake.wait_for(lambda: len(built.probe.messages) == 2 and built.probe.messages)
        assert [m.content for m in got] == ["", "<@1000> look"]


async def test_disallowed_privileged_intent_fails_the_connect(fake: FakeDiscord) -> None:
    fake.allowed_privileged_intents = 0  # as if MESSAGE_CONTENT is off in the portal
    built = build_client(Probe())
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with fake.running(built.client, timeout=5):
            pass
    assert built.client.is_closed()


async def test_context_menu_reaches_its_command(fake: FakeDiscord, bot: Bot) -> None:
    target = fake.make_message(CHANNEL, author_id=USER, content="a cat on a mat")
    payload = fake.context_menu(
        "Describe", target, user_id=USER, guild_id=GUILD, channel_id=CHANNEL
    )
    assert payload["data"]["type"] == 3 and payload["data"]["guild_id"] == str(GUILD)
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    original = await fake.wait_for(lambda: fake.original_response(iid))
    assert original["content"] == f"{USER}: a cat on a mat"
    assert original["type"] == 23  # a context menu command's response


async def test_modal_submit_reaches_the_modal(fake: FakeDiscord, bot: Bot) -> None:
    payload = cmd(fake, "form")
    iid = int(payload["id"])
    await fake.send_interaction(payload)
    modal = await fake.wait_for(lambda: fake.last_modal(iid))
    assert fake.callbacks[iid][0]["type"] == 9
    inputs = [c for c in fake.components_of(modal) if c["type"] == 4]
    assert [c["custom_id"] for c in inputs] == ["prompt"]

    submit = fake.modal_submit(
        modal["custom_id"],
        {"prompt": "make it blue"},
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    await fake.send_interaction(submit)
    await fake.wait_for(lambda: bot.probe.modal_values)
    assert bot.probe.modal_values == ["make it blue"]
    answer = await fake.wait_for(lambda: fake.original_response(submit["id"]))
    assert answer["content"] == "got make it blue" and answer["flags"] & 64


async def test_button_press_updates_the_message(fake: FakeDiscord, bot: Bot) -> None:
    payload = cmd(fake, "pick")
    await fake.send_interaction(payload)
    shown = await fake.wait_for(lambda: fake.original_response(payload["id"]))
    button = next(c for c in fake.components_of(shown) if c["type"] == 2)

    press = fake.component_interaction(
        button["custom_id"], message=shown, user_id=USER, guild_id=GUILD, channel_id=CHANNEL
    )
    await fake.send_interaction(press)
    await fake.wait_for(lambda: fake.callbacks.get(int(press["id"])))
    assert fake.callbacks[int(press["id"])][0]["type"] == 7
    updated = fake.messages[int(shown["id"])]
    assert updated["content"] == "picked again" and updated["components"] == []


async def test_gateway_reconnect_resumes(fake: FakeDiscord, bot: Bot) -> None:
    await fake.close_gateway(4000)
    await fake.wait_for_ready_bot()
    assert len(fake.gateway_connections) == 2
    resume = next(f for f in fake.received_gateway if f["op"] == 6)
    ready = next(f for f in fake.sent_gateway if f["t"] == "READY")
    assert resume["d"]["session_id"] == ready["d"]["session_id"]
    assert [f["t"] for f in fake.sent_gateway if f["op"] == 0][-1] == "RESUMED"

    msg = fake.make_message(CHANNEL, author_id=USER, content="still there?")
    await fake.dispatch("MESSAGE_CREATE", msg)
    await fake.wait_for(lambda: any(m.content == "still there?" for m in bot.probe.messages))


async def test_unknown_route_and_unsigned_cdn_url(fake: FakeDiscord, bot: Bot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.client.http.request(discord.http.Route("GET", "/nowhere/{x}", x=1))
    assert fake.requests[-1].path == "/nowhere/1" and fake.requests[-1].status == 404
    assert fake.requests[-1].response == {"message": "404: Not Found", "code": 0}

    att = fake.add_attachment(b"not an image", "notes.txt", None)
    assert att["content_type"] == "text/plain" and att["width"] is None
    assert await bot.client.http.get_from_cdn(att["url"]) == b"not an image"
    with pytest.raises(discord.NotFound):
        await bot.client.http.get_from_cdn(att["url"].split("?")[0])
    fake.advance(25 * 3600)  # signed URLs expire after a day
    with pytest.raises(discord.NotFound):
        await bot.client.http.get_from_cdn(att["url"])


def discord_bases() -> tuple[str, str, str]:
    return (
        discord.http.Route.BASE,
        str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY),
        discord.asset.Asset.BASE,
    )


async def test_patch_discord_restores_and_point_discord_at(fake: FakeDiscord) -> None:
    real = discord_bases()
    with fake.patch_discord():
        patched = discord_bases()
        point_discord_at("http://127.0.0.1:1/api/v10", "ws://127.0.0.1:1/gateway")
        pointed = discord_bases()
    assert patched == (fake.rest_base, fake.gateway_url, f"http://{fake.cdn_host}")
    assert pointed == (
        "http://127.0.0.1:1/api/v10",
        "ws://127.0.0.1:1/gateway",
        "http://127.0.0.1:1",
    )
    assert discord_bases() == real
    assert real[0] == "https://discord.com/api/v10"


async def test_sitecustomize_points_a_subprocess_at_the_stand_in(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    write_sitecustomize(tmp_path)
    env = {**os.environ, **fake.subprocess_env(), "PYTHONPATH": str(tmp_path)}
    script = (
        "import discord.http, discord.gateway, discord.asset; "
        "print(discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, "
        "discord.asset.Asset.BASE)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode().split() == [fake.rest_base, fake.gateway_url, f"http://{fake.cdn_host}"]
