"""Constants, records and small helpers shared by the stand-in's parts."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

log = logging.getLogger("fake_discord")

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
TOKEN_LIFETIME_S = 15 * 60
CALLBACK_DEADLINE_S = 3.0
CDN_URL_LIFETIME_S = 24 * 60 * 60
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

# Environment variables read by point_discord_at_from_env() / write_sitecustomize().
ENV_REST_BASE = "FAKE_DISCORD_REST_BASE"
ENV_GATEWAY_URL = "FAKE_DISCORD_GATEWAY_URL"
ENV_CDN_BASE = "FAKE_DISCORD_CDN_BASE"

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
ADMINISTRATOR = 1 << 3
DEFAULT_MEMBER_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)
BOT_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | MANAGE_MESSAGES
ALL_PERMISSIONS = (1 << 53) - 1

# Gateway intents that matter to what the stand-in sends.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_VOICE_MESSAGE = 1 << 13
FLAG_COMPONENTS_V2 = 1 << 15
_CHANNEL_FLAGS = (
    FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_VOICE_MESSAGE | FLAG_COMPONENTS_V2
)
_INTERACTION_FLAGS = _CHANNEL_FLAGS | FLAG_EPHEMERAL

# Which callback types Discord accepts for each interaction type.
_ALLOWED_CALLBACKS = {
    1: {1},  # ping -> pong
    2: {4, 5, 9},  # application command
    3: {4, 5, 6, 7, 9},  # component
    4: {8},  # autocomplete
    5: {4, 5, 6, 7},  # modal submit (6/7 only if it came from a message)
}

_EMBED_LIMITS = {"title": 256, "description": 4096}
_CMD_NAME_RE = re.compile(r"^[-_'\w]{1,32}$")

# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class Recorded:
    """One HTTP request the stand-in received (REST or CDN)."""

    method: str
    path: str  # REST: without the /api/v10 prefix; CDN: the full path
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # parsed JSON body, or payload_json for multipart; None if no body
    files: list[tuple[str, str | None, str | None, bytes]]  # (field, filename, type, data)
    at: float  # time.monotonic() when received
    status: int = 0  # the status answered
    response: Any = None  # the JSON answered, if any

    def __repr__(self) -> str:
        return f"<Recorded {self.method} {self.path} -> {self.status}>"


@dataclass
class InteractionState:
    """What the stand-in knows about one interaction it issued."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: int
    guild_id: int | None
    created: float  # fake clock (seconds) when issued / dispatched
    dispatched_at: float | None = None  # time.monotonic() of the dispatch
    response_type: int | None = None
    original_id: int | None = None
    loading: bool = False  # a type 5 defer whose loading message is still showing
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None

    @property
    def size_limit(self) -> int:
        return int(self.payload.get("attachment_size_limit", DEFAULT_UPLOAD_LIMIT))


_REC = web.RequestKey("rec", Recorded)


class _ApiError(Exception):
    """Raised inside handlers; turned into Discord's JSON error shape."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors
        self.headers = headers or {}

    def response(self) -> web.Response:
        return _json_response(self.body, status=self.status, headers=self.headers)


def _form_error(path: Sequence[str | int], code: str, message: str) -> _ApiError:
    """400 Invalid Form Body with Discord's nested `errors` object."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(list(path)):
        errors = {str(part): errors}
    return _ApiError(400, 50035, "Invalid Form Body", errors)


def _unknown(what: str, code: int) -> _ApiError:
    return _ApiError(404, code, f"Unknown {what}")


def _json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON the way Discord sends it: discord.py only parses an exact application/json."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _sanitize_filename(name: str) -> str:
    # Discord replaces spaces and most punctuation in uploaded file names.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()) or "unknown"
    return cleaned[:1024]


def _image_info(data: bytes) -> tuple[int, int, str | None] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height, Image.MIME.get(img.format or "")
    except Exception:  # not an image (or Pillow missing): no width/height, like Discord
        return None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")
