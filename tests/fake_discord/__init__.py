"""A local stand-in for Discord's REST API, gateway and attachment CDN.

One aiohttp server on 127.0.0.1 serves:

* REST under ``/api/v10/...`` (the routes discord.py 2.7 uses for a bot that answers
  slash commands, context menus, components and modals, and posts channel messages),
* the gateway websocket at ``/gateway`` (HELLO, IDENTIFY -> READY + GUILD_CREATE,
  heartbeats, RESUME, scripted disconnects),
* a CDN at ``/attachments/<channel>/<id>/<filename>?ex=..&is=..&hm=..`` with signed,
  expiring URLs like the real one.

Tests drive the bot with real gateway dispatches (``send_interaction``, ``dispatch``)
and then inspect what it did (``requests``, ``messages``, ``callbacks``,
``original_response`` ...). discord.py itself is pointed here by ``patch_discord()``
(in-process) or ``point_discord_at()`` / ``write_sitecustomize()`` (subprocess).

Minimal use::

    async with FakeDiscord() as fake, fake.running(client):   # see running()
        ...

Behaviour mirrors Discord where a bot could get it wrong: one callback per
interaction (40060), a 3 s deadline for it (10062), 15-minute interaction tokens
(50027), the first followup after a "thinking" defer replacing the loading
message, ephemeral messages invisible to channel endpoints, message limits (2000
characters, 10 embeds / 6000 embed characters, 10 files, upload size), content
stripped from MESSAGE_CREATE without the MESSAGE_CONTENT intent.

The package is split by surface; ``FakeDiscord`` (server.py) is one class composed
of one mixin per part: state.py (clock, snowflakes, users, guilds, channels), cdn.py
(attachment blobs and the CDN route), plumbing.py (routes, recording middleware,
scripted faults), rest.py (users, application, channels, messages, reactions,
guilds), commands.py (application commands), messages.py (building and validating
messages), webhooks.py (interaction callbacks, followups, webhook messages),
gateway.py (the websocket) and interactions.py (payloads tests dispatch).
common.py holds the constants and shared helpers, patching.py the discord.py pointers.
"""

from tests.fake_discord.common import (
    ADD_REACTIONS,
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    API_PREFIX,
    ATTACH_FILES,
    BOT_PERMISSIONS,
    CALLBACK_DEADLINE_S,
    CDN_URL_LIFETIME_S,
    DEFAULT_MEMBER_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    DISCORD_EPOCH_MS,
    EMBED_LINKS,
    ENV_CDN_BASE,
    ENV_GATEWAY_URL,
    ENV_REST_BASE,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    FLAG_VOICE_MESSAGE,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_MESSAGE_CONTENT,
    MANAGE_MESSAGES,
    PRIVILEGED_INTENTS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    TOKEN_LIFETIME_S,
    USE_APPLICATION_COMMANDS,
    USE_EXTERNAL_EMOJIS,
    VIEW_CHANNEL,
    InteractionState,
    Recorded,
    log,
)
from tests.fake_discord.patching import (
    apply_patch,
    point_discord_at,
    point_discord_at_from_env,
    write_sitecustomize,
)
from tests.fake_discord.server import FakeDiscord

__all__ = [
    "ADD_REACTIONS",
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "API_PREFIX",
    "ATTACH_FILES",
    "BOT_PERMISSIONS",
    "CALLBACK_DEADLINE_S",
    "CDN_URL_LIFETIME_S",
    "DEFAULT_MEMBER_PERMISSIONS",
    "DEFAULT_UPLOAD_LIMIT",
    "DISCORD_EPOCH_MS",
    "EMBED_LINKS",
    "ENV_CDN_BASE",
    "ENV_GATEWAY_URL",
    "ENV_REST_BASE",
    "FLAG_COMPONENTS_V2",
    "FLAG_EPHEMERAL",
    "FLAG_LOADING",
    "FLAG_SUPPRESS_EMBEDS",
    "FLAG_SUPPRESS_NOTIFICATIONS",
    "FLAG_VOICE_MESSAGE",
    "INTENT_DIRECT_MESSAGES",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "MANAGE_MESSAGES",
    "PRIVILEGED_INTENTS",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "TOKEN_LIFETIME_S",
    "USE_APPLICATION_COMMANDS",
    "USE_EXTERNAL_EMOJIS",
    "VIEW_CHANNEL",
    "FakeDiscord",
    "InteractionState",
    "Recorded",
    "apply_patch",
    "log",
    "point_discord_at",
    "point_discord_at_from_env",
    "write_sitecustomize",
]
