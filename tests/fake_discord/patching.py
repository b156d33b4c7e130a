"""Pointing discord.py at the stand-in: in-process, from the environment, or by sitecustomize."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

from tests.fake_discord.common import ENV_CDN_BASE, ENV_GATEWAY_URL, ENV_REST_BASE

# ---------------------------------------------------------------------------
# Pointing discord.py at the stand-in
# ---------------------------------------------------------------------------


def _cdn_base_from(rest_base: str) -> str:
    parts = urlsplit(rest_base)
    return f"{parts.scheme}://{parts.netloc}"


def point_discord_at(rest_base: str, gateway_url: str, cdn_base: str | None = None) -> None:
    """Point discord.py's REST, gateway and asset bases at a stand-in.

    Safe to call at import time (e.g. from a sitecustomize in a bot subprocess):
    it only imports discord and assigns three class attributes.
    """
    import discord.asset
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = rest_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    discord.asset.Asset.BASE = (cdn_base or _cdn_base_from(rest_base)).rstrip("/")


apply_patch = point_discord_at  # the name a sitecustomize-style launcher may expect


def point_discord_at_from_env() -> bool:
    """Apply point_discord_at() from FAKE_DISCORD_* environment variables, if set."""
    rest = os.environ.get(ENV_REST_BASE)
    gateway = os.environ.get(ENV_GATEWAY_URL)
    if not rest or not gateway:
        return False
    point_discord_at(rest, gateway, os.environ.get(ENV_CDN_BASE))
    return True


_SITECUSTOMIZE = textwrap.dedent(
    f'''\
    # Written by tests/fake_discord: points discord.py at a local stand-in.
    import os as _os

    def _fake_discord_patch():
        rest = _os.environ.get("{ENV_REST_BASE}")
        gateway = _os.environ.get("{ENV_GATEWAY_URL}")
        if not rest or not gateway:
            return
        from urllib.parse import urlsplit
        import yarl
        import discord.asset, discord.gateway, discord.http
        parts = urlsplit(rest)
        discord.http.Route.BASE = rest.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        discord.asset.Asset.BASE = _os.environ.get(
            "{ENV_CDN_BASE}", f"{{parts.scheme}}://{{parts.netloc}}"
        )

    _fake_discord_patch()
    '''
)


def write_sitecustomize(directory: str | os.PathLike[str]) -> Path:
    """Write a self-contained sitecustomize.py into `directory`.

    Put the directory on PYTHONPATH of a subprocess together with
    FakeDiscord.subprocess_env() and discord.py in that process talks to the stand-in.
    """
    path = Path(directory) / "sitecustomize.py"
    path.write_text(_SITECUSTOMIZE)
    return path
