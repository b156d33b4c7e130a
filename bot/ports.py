"""What the core needs from Discord, as small protocols the Discord side implements.
The core never imports `discord`: it hands a result card to a `Poster` and reads a
message's image through a `MessageReader`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.cards import ResultCard
from bot.images import InputImage


@dataclass(frozen=True)
class Posted:
    """A message Discord accepted that shows a generation's image."""

    channel_id: int
    message_id: int
    attachment_id: int | None
    url: str | None  # the attachment's URL
    jump_url: str


class PostFailed(Exception):
    """Discord did not take a post. `retryable`: it may next time (5xx, 429, network);
    otherwise it was refused (no permission, channel gone)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class Poster(Protocol):
    """Posts a result card with its image where the member will see it."""

    async def post(self, card: ResultCard, image: bytes) -> Posted: ...


class MessageReader(Protocol):
    """Reads Discord's current copy of a message's first image (URLs are re-signed)."""

    async def first_image(self, channel_id: int, message_id: int) -> InputImage | None:
        """None when the message is gone or has no attachment."""
        ...


class DirectMessages(Protocol):
    """Reaches a member privately, when their channel will not take the bot's posts."""

    async def dm(self, user_id: int, text: str) -> bool:
        """Send a DM; False when it could not be sent (DMs closed): logged, not raised."""
        ...


class Channels(DirectMessages, Protocol):
    """Reaches a channel when no interaction is at hand (after a restart)."""

    def poster(
        self, channel_id: int, guild_id: int | None, *, reply_to_message_id: int | None
    ) -> Poster: ...

    async def tell(self, channel_id: int, guild_id: int | None, user_id: int, text: str) -> None:
        """A short message that pings this one member; failures are logged, not raised."""
        ...
