"""One edit from request to stored result: checks, API call, bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiosqlite
import httpx

from bot import db, images, segmind
from bot.config import ApiSettings
from bot.credits import Cost, CreditMeter
from bot.errors import EditFailed
from bot.health import ServiceHealth
from bot.images import InputImage
from bot.params import EditParams

log = logging.getLogger(__name__)

NOT_CHARGED = "You were not charged."
MSG_UNAVAILABLE = f"The bot can't edit images right now; the admins have been told. {NOT_CHARGED}"
MSG_BUSY = f"The image service is busy. Please try again in a minute. {NOT_CHARGED}"
MSG_TIMEOUT = f"The edit took too long and was stopped. {NOT_CHARGED}"
MSG_BROKEN = f"The image service sent back a broken image. Please try again. {NOT_CHARGED}"


@dataclass(frozen=True)
class EditRequest:
    """Everything one edit needs, already parsed from Discord."""

    user_id: int
    guild_id: int | None
    channel_id: int
    source: str  # slash, reply, button, context
    image: InputImage
    params: EditParams
    seed_explicit: bool
    upload_limit: int = images.DISCORD_UPLOAD_LIMIT
    parent_id: int | None = None
    interaction_id: int | None = None


@dataclass(frozen=True)
class EditOutcome:
    generation_id: int
    image: bytes
    filename: str
    params: EditParams
    elapsed_s: float
    cost: Cost
    remaining_credits: float | None
    reencoded: bool


class EditPipeline:
    """Validates, calls the API, and records every attempt; one per bot."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        conn: aiosqlite.Connection,
        api: segmind.EditTransport,
        http: httpx.AsyncClient,
        meter: CreditMeter,
        health: ServiceHealth,
    ) -> None:
        self._settings = settings
        self._conn = conn
        self._api = api
        self._http = http
        self.meter = meter
        self.health = health

    async def run(self, req: EditRequest) -> EditOutcome:
        """Run one edit. Raises BadInput (nothing spent, no row) or EditFailed (row failed)."""
        images.check_input(req.image, self._settings.max_input_bytes)
        api_input = await self._api_input(req.image)
        if not self.health.allow_call():
            raise EditFailed(MSG_UNAVAILABLE, reason=f"halted: {self.health.halted_reason}")
        generation_id = await db.insert_generation(
            self._conn,
            db.NewGeneration(
                guild_id=req.guild_id,
                channel_id=req.channel_id,
                user_id=req.user_id,
                source=req.source,
                model=self._api.model,
                params=req.params,
                seed_explicit=req.seed_explicit,
                input_mode=self._settings.segmind_input_mode,
                input_url=req.image.url,
                input_attachment_id=req.image.attachment_id,
                parent_id=req.parent_id,
                interaction_id=req.interaction_id,
            ),
        )
        try:
            return await self._call(generation_id, api_input, req)
        except EditFailed as exc:
            await db.mark_failed(self._conn, generation_id, exc.reason)
            raise
        except BaseException as exc:
            # Cancellation or a bug: still never leave the row pending.
            await asyncio.shield(db.mark_failed(self._conn, generation_id, f"error: {exc!r}"))
            raise

    async def _api_input(self, image: InputImage) -> str:
        if self._settings.segmind_input_mode == "url":
            return image.url
        data = await images.download(
            self._http,
            image.url,
            max_bytes=self._settings.max_input_bytes,
            allowed_hosts=self._settings.discord_cdn_hosts,
        )
        return await asyncio.to_thread(
            images.prepare_for_api, data, self._settings.max_input_megapixels
        )

    async def _call(self, generation_id: int, api_input: str, req: EditRequest) -> EditOutcome:
        ticket = self.meter.start()
        try:
            result = await self._api.edit(api_input, req.params)
        except segmind.SegmindError as exc:
            self.meter.finish_failed(ticket)
            raise self._failure(exc) from exc
        except BaseException:
            self.meter.finish_failed(ticket)
            raise
        self.health.call_succeeded()
        cost = await self.meter.settle(
            ticket,
            generation_id=generation_id,
            remaining=result.remaining_credits,
            header_cost=result.cost,
        )
        upload = await asyncio.to_thread(
            images.fit_for_upload, result.image, images.extension_for(result.info), req.upload_limit
        )
        await db.mark_succeeded(
            self._conn,
            generation_id,
            api_seed=result.seed,
            api_time_s=result.elapsed_s,
            request_id=result.request_id,
            cost=cost.amount,
            cost_source=cost.source,
            remaining_credits=result.remaining_credits,
            reencoded=upload.reencoded,
        )
        log.info(
            "Generation %d succeeded in %.1fs (cost %.4f from %s)",
            generation_id,
            result.elapsed_s,
            cost.amount,
            cost.source,
        )
        return EditOutcome(
            generation_id=generation_id,
            image=upload.data,
            filename=f"kontext-{generation_id}.{upload.extension}",
            params=req.params,
            elapsed_s=result.elapsed_s,
            cost=cost,
            remaining_credits=result.remaining_credits,
            reencoded=upload.reencoded,
        )

    def _failure(self, exc: segmind.SegmindError) -> EditFailed:
        """Map an API error to what the member is told; operator problems halt edits."""
        reason = f"{type(exc).__name__}: {exc.message}"
        log.warning("Segmind call failed: %s", reason)
        if isinstance(exc, segmind.AuthError | segmind.InsufficientCredits):
            self.health.halt(exc.message)
            return EditFailed(MSG_UNAVAILABLE, reason=reason)
        self.health.call_failed_otherwise()
        if isinstance(exc, segmind.BadRequest):
            return EditFailed(
                f"The image service refused this edit: {exc.message}. {NOT_CHARGED}", reason=reason
            )
        if isinstance(exc, segmind.SegmindTimeout):
            return EditFailed(MSG_TIMEOUT, reason=reason)
        if isinstance(exc, segmind.InvalidResponse):
            return EditFailed(MSG_BROKEN, reason=reason)
        return EditFailed(MSG_BUSY, reason=reason)
