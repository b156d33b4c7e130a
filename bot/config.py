"""Typed settings, read once from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")

# What to tell an operator for each setting that can be wrong.
_FIXES: dict[str, str] = {
    "DISCORD_TOKEN": "copy the bot token from the Discord developer portal (Bot > Reset Token)",
    "SEGMIND_API_KEY": "create an API key at segmind.com (Console > API Keys)",
    "DISCORD_GUILD_IDS": "use comma-separated numeric server ids, e.g. 123,456",
    "ADMIN_ROLE_IDS": "use comma-separated numeric role ids, e.g. 123,456",
    "OPERATOR_IDS": "use comma-separated numeric user ids, e.g. 123,456",
    "OPERATOR_GUILD_IDS": "use comma-separated numeric server ids, e.g. 123,456",
    "ALLOWED_GUILD_IDS": "use comma-separated numeric server ids, e.g. 123,456",
    "QUOTA_PERIOD": "use day, week, month or none",
    "LOG_FORMAT": "use text or json",
    "HTTP_PORT": "use a port number (1-65535), or leave it unset to turn the endpoint off",
}


# Every settings class reads the same sources the same way (they are combined below).
_SOURCES = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
)


class StorageSettings(BaseSettings):
    """Where the database is: all `kontext-bot backup` and `restore` need."""

    model_config = _SOURCES

    database_path: Path = Path("data/kontext.db")


class HttpSettings(BaseSettings):
    """The health and metrics endpoint: all `kontext-bot healthcheck` needs."""

    model_config = _SOURCES

    # Off unless set; 0 picks a free port (tests).
    http_port: int | None = Field(default=None, ge=0, le=65535)
    http_host: str = Field(default="127.0.0.1", min_length=1)

    @field_validator("http_port", mode="before")
    @classmethod
    def _blank_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class ApiSettings(BaseSettings):
    """Everything needed to call the Segmind API (used by the bot and by `kontext-bot edit`)."""

    model_config = _SOURCES

    segmind_api_key: SecretStr = Field(min_length=1)
    segmind_base_url: str = "https://api.segmind.com/v1"
    segmind_model: str = Field(default="flux-kontext-dev", pattern=r"^[A-Za-z0-9._-]+$")
    segmind_timeout_s: float = Field(default=120.0, gt=0, le=900)
    segmind_max_retries: int = Field(default=2, ge=0, le=5)
    segmind_input_mode: Literal["url", "base64"] = "url"
    segmind_disable_safety_checker: bool = False
    segmind_cost_estimate: float = Field(default=0.04, ge=0)
    max_input_mb: float = Field(default=20.0, gt=0, le=100)
    max_input_megapixels: float = Field(default=2.0, gt=0, le=64)
    # Larger pictures are refused before they are decoded (memory grows with pixels).
    max_input_megapixels_accepted: float = Field(default=40.0, ge=1, le=67.2)
    discord_cdn_hosts: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CDN_HOSTS
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("segmind_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("discord_cdn_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 1024 * 1024)

    @property
    def secrets(self) -> list[str]:
        """Secret values that must never be logged or shown."""
        return [self.segmind_api_key.get_secret_value()]


class Settings(ApiSettings, StorageSettings, HttpSettings):
    """The bot's settings: the API ones plus Discord, storage and the ops endpoint."""

    discord_token: SecretStr = Field(min_length=1)
    discord_guild_ids: Annotated[tuple[int, ...], NoDecode] = ()
    quota_default_credits: float = Field(default=1.0, ge=0)
    quota_period: Literal["day", "week", "month", "none"] = "day"
    account_reserve_credits: float = Field(default=0.0, ge=0)
    alert_below_credits: float = Field(default=5.0, ge=0)
    alert_cooldown_minutes: float = Field(default=60.0, ge=0)
    admin_role_ids: Annotated[tuple[int, ...], NoDecode] = ()
    # Privileged: lets the bot read any reply to its results, not only replies that ping it.
    message_content_intent: bool = False
    # When true, only the member who made a result may iterate on it (reply or buttons).
    iterate_author_only: bool = False
    segmind_max_concurrency: int = Field(default=4, ge=1, le=64)
    segmind_rpm: int = Field(default=50, ge=1, le=10_000)
    max_inflight_per_user: int = Field(default=1, ge=1, le=16)
    max_queued_per_user: int = Field(default=3, ge=0, le=100)
    max_queued_total: int = Field(default=200, ge=1, le=100_000)
    status_update_interval_s: float = Field(default=3.0, ge=1.0, le=60.0)
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=600)
    results_dir: Path = Path("data/results")
    result_retention_hours: float = Field(default=72.0, gt=0)
    # A public bot: who operates it, what each server may spend, which servers are served.
    operator_ids: Annotated[tuple[int, ...], NoDecode] = ()
    operator_guild_ids: Annotated[tuple[int, ...], NoDecode] = ()
    operator_alert_channel_id: int | None = Field(default=None, ge=1)
    server_budget_credits: float = Field(default=5.0, ge=0)
    allowed_guild_ids: Annotated[tuple[int, ...], NoDecode] = ()
    # Only for pointing the bot at a local Discord stand-in; leave unset in production.
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None

    @field_validator(
        "discord_guild_ids",
        "admin_role_ids",
        "operator_ids",
        "operator_guild_ids",
        "allowed_guild_ids",
        mode="before",
    )
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise ValueError("must be comma-separated numeric ids")
            return tuple(int(p) for p in parts)
        return value

    @property
    def secrets(self) -> list[str]:
        return [*super().secrets, self.discord_token.get_secret_value()]


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigError(Exception):
    """A setting is missing or malformed; the text is safe to print (no values)."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad setting and the fix, without echoing any value."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        if err["type"] == "missing":
            what = "is not set"
        else:
            what = f"is invalid ({err['msg'].removeprefix('Value error, ')})"
        fix = _FIXES.get(name, "see .env.example")
        problems.append(f"{name} {what}: {fix}, then set it in .env or the environment")
    return "Configuration error: " + "; ".join(problems)


def load(cls: type[SettingsT]) -> SettingsT:
    """Load settings or raise ConfigError with a one-line, secret-free explanation."""
    try:
        return cls()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
