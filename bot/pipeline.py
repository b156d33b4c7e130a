"""One edit from request to stored result: checks, API call, bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

from bot import decoding, images, segmind
from bot.administration import ServerAdmin
from bot.config import Settings
from bot.credits import CreditMeter
from bot.db import generations as db
from bot.db.connection import Database
from bot.errors import BadInput, EditFailed
from bot.health import Incident, ServiceHealth
from bot.images import InputImage
from bot.imagework import ImageWork
from bot.inputs import EditInputs
from bot.ledger import Ledger, Reservation
from bot.logs import bind
from bot.requests import EditOutcome, EditRequest
from bot.results import ResultStore
from bot.servers import Servers

log = logging.getLogger(__name__)

NOT_CHARGED = "You were not charged."
MSG_UNAVAILABLE = f"The bot can't edit images right now; the admins have been told. {NOT_CHARGED}"
MSG_BUSY = f"The image service is busy. Please try again in a minute. {NOT_CHARGED}"
MSG_TIMEOUT = f"The edit took too long and was stopped. {NOT_CHARGED}"
MSG_BROKEN = f"The image service sent back a broken image. Please try again. {NOT_CHARGED}"
# Not retried by the bot: the model may have run, and only the member may choose to pay again.
MSG_SERVER_ERROR = f"The image service failed on this edit. Please try again. {NOT_CHARGED}"


class Finish(enum.StrEnum):
    """What became of an edit, as the `outcome_hooks` hear it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the API call failed; not charged
    REFUSED = "refused"  # bad input, a block, a halt, an allowance: nothing spent
    INTERRUPTED = "interrupted"  # stopped by a shutdown (or a bug) while running


class EditPipeline:
    """Validates, calls the API, and records every attempt; one per bot."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        api: segmind.EditTransport,
        inputs: EditInputs,
        work: ImageWork,
        meter: CreditMeter,
        health: ServiceHealth,
        ledger: Ledger,
        admin: ServerAdmin,
        servers: Servers,
        results: ResultStore,
        notify: Callable[[Incident], object] = lambda incident: None,
    ) -> None:
        self._settings = settings
        self._db = database
        self._api = api
        self.inputs = inputs
        self._work = work
        self.meter = meter
        self.health = health
        self.ledger = ledger
        self._admin = admin
        self._servers = servers
        self.results = results
        self._notify = notify  # a server's budget alerts
        # Called with (Finish, the request's source) once per edit refused or run.
        self.outcome_hooks: list[Callable[[Finish, str], object]] = []

    def _finished(self, finish: Finish, req: EditRequest) -> None:
        for hook in self.outcome_hooks:
            hook(finish, req.source)

    def refused_unchecked(self, req: EditRequest) -> None:
        """An edit the queue refused before its checks (the queue full, a restart): it
        counts as refused, as one its checks refused does."""
        self._finished(Finish.REFUSED, req)

    async def precheck(self, req: EditRequest) -> None:
        """What can be refused before an edit even joins the queue: the image's
        description, a server that is not served, a block, a paused bot, a budget or an
        allowance that cannot cover another edit."""
        try:
            await self._precheck(req)
        except BadInput:
            self._finished(Finish.REFUSED, req)
            raise

    async def _precheck(self, req: EditRequest) -> None:
        self._servers.check_served(req.guild_id)
        self.inputs.check(req.image)
        guild_id = req.guild_id or 0
        await self._admin.check_not_blocked(guild_id, req.user_id)
        if self.health.needs_admin:
            raise BadInput(MSG_UNAVAILABLE)
        await self.ledger.check_allowance(
            guild_id, req.user_id, req.role_ids, await self.meter.expected_cost()
        )

    def prepare_input(self, image: InputImage) -> asyncio.Task[images.ApiInput]:
        """Start fetching and proving an input for an edit about to run (hand it to `run`)."""
        return self.inputs.prepare(image)

    async def run(
        self,
        req: EditRequest,
        *,
        on_call: Callable[[], None] | None = None,
        prepared: asyncio.Task[images.ApiInput] | None = None,
    ) -> EditOutcome:
        """Run one edit. Raises BadInput (nothing spent, no row) or EditFailed (row failed).
        `on_call` is told when the API call goes out (what the per-minute limit counts).
        `prepared`: its input, already being fetched (`prepare_input`).

        Money: the expected cost is reserved before the call, held at the real cost after
        a 200 (charged once Discord has the result, see bot.delivery) and released after
        any failure. `precheck` ran when the edit was queued; a block an admin set
        meanwhile still applies.
        """
        try:
            outcome = await self._run(req, on_call, prepared)
        except BadInput:
            self._finished(Finish.REFUSED, req)
            raise
        except EditFailed:
            self._finished(Finish.FAILED, req)
            raise
        except BaseException:
            self._finished(Finish.INTERRUPTED, req)
            raise
        finally:
            if prepared is not None:
                prepared.cancel()  # refused before its input was needed (a no-op once used)
        self._finished(Finish.SUCCEEDED, req)
        return outcome

    async def _run(
        self,
        req: EditRequest,
        on_call: Callable[[], None] | None,
        prepared: asyncio.Task[images.ApiInput] | None,
    ) -> EditOutcome:
        guild_id = req.guild_id or 0
        self._servers.check_served(req.guild_id)
        await self._admin.check_not_blocked(guild_id, req.user_id)
        api_input = await (prepared if prepared is not None else self.inputs.fetch(req.image))
        self.health.check_floor(self.meter.last_balance)
        if not self.health.allow_call():
            raise BadInput(MSG_UNAVAILABLE)
        try:
            reservation = await self.ledger.reserve(
                guild_id, req.user_id, req.role_ids, await self.meter.expected_cost()
            )
        except BaseException:
            self.health.call_failed_otherwise()  # frees the probe slot if this was the probe
            raise
        try:
            generation_id = await db.insert(self._db, self._new_row(req, api_input))
        except BaseException:
            self.health.call_failed_otherwise()
            await asyncio.shield(self.ledger.release(reservation))
            raise
        bind(generation_id=generation_id)  # every later line of this edit names it
        try:
            await self.ledger.attach(reservation, generation_id)
            outcome = await self._call(generation_id, api_input, req, reservation, on_call)
        except EditFailed as exc:
            await db.mark_failed(self._db, generation_id, exc.reason)
            await self.ledger.release(reservation)
            raise
        except BaseException as exc:
            # Cancellation or a bug: still never leave the row pending or the money held.
            await asyncio.shield(self._abandon(generation_id, reservation, exc))
            raise
        return outcome

    async def _abandon(
        self, generation_id: int, reservation: Reservation, exc: BaseException
    ) -> None:
        """Settle an edit interrupted by cancellation or a bug: refund it, unless it had
        already succeeded (then its result is kept and its cost held until delivered)."""
        self.health.call_failed_otherwise()  # frees the probe slot if this was the probe
        gen = await db.get(self._db, generation_id)
        if gen is not None and gen.status == "succeeded" and gen.cost is not None:
            await self.ledger.hold(reservation, gen.cost, gen.cost_source or "estimate")
            return
        await db.mark_failed(self._db, generation_id, f"error: {exc!r}"[:200])
        await self.ledger.release(reservation)

    def _new_row(self, req: EditRequest, api_input: images.ApiInput) -> db.NewGeneration:
        return db.NewGeneration(
            guild_id=req.guild_id,
            channel_id=req.channel_id,
            user_id=req.user_id,
            source=req.source,
            model=self._api.model,
            params=req.params,
            seed_explicit=req.seed_explicit,
            input_mode=api_input.mode,
            input=req.image,
            parent_id=req.parent_id,
            interaction_id=req.interaction_id,
            job_id=req.job_id,
        )

    async def _call(
        self,
        generation_id: int,
        api_input: images.ApiInput,
        req: EditRequest,
        reservation: Reservation,
        on_call: Callable[[], None] | None,
    ) -> EditOutcome:
        ticket = self.meter.start()
        if on_call is not None:
            on_call()
        try:
            result = await self._api.edit(
                api_input.value, req.params, disable_safety_checker=await self._safety_off(req)
            )
        except segmind.SegmindError as exc:
            self.meter.finish_failed(ticket, maybe_billed=exc.maybe_billed)
            halted = self.health.api_failed(
                exc, balance=self.meter.last_balance, edit_cost=await self.meter.expected_cost()
            )
            raise self._failure(exc, halted=halted) from exc
        except BaseException:
            # Cancelled mid-call: the request may still run and be billed.
            self.meter.finish_failed(ticket, maybe_billed=True)
            raise
        self.health.call_succeeded()
        # Settled first, as the answer arrives: the call ends for the meter whatever happens
        # next (a result that breaks while made to fit, a shutdown), and its reading is in.
        cost = await self.meter.settle(
            ticket,
            generation_id=generation_id,
            remaining=result.remaining_credits,
            header_cost=result.cost,
        )
        upload = await self._fit_for_upload(result, req.upload_limit)
        # Paid for: keep the bytes until Discord has them (see bot.results). The file is
        # written while the edit is recorded; both are done before anything is posted.
        saving = asyncio.ensure_future(
            self.results.save(generation_id, upload.data, upload.extension)
        )
        try:
            await db.mark_succeeded(
                self._db,
                generation_id,
                api_seed=result.seed,
                api_time_s=result.elapsed_s,
                request_id=result.request_id,
                cost=cost.amount,
                cost_source=cost.source,
                remaining_credits=result.remaining_credits,
                reencoded=upload.reencoded,
                measured_cost=cost.measured,
                converted_from=api_input.converted_from,
            )
            # Counted as used from now on, but charged only once Discord has the result.
            await self.ledger.hold(reservation, cost.amount, cost.source)
        finally:
            await self._kept(saving, generation_id)
        incident = await self._servers.budget_incident(req.guild_id or 0)
        if incident is not None:
            self._notify(incident)
        log.info(
            "Generation %d succeeded in %.1fs (cost %.4f from %s)",
            generation_id,
            result.elapsed_s,
            cost.amount,
            cost.source,
            extra={"status": "succeeded", "cost": cost.amount, "duration_s": result.elapsed_s},
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
            quota_left=(
                await self.ledger.status(req.guild_id or 0, req.user_id, req.role_ids)
            ).left,
            converted_from=api_input.converted_from,
        )

    @staticmethod
    async def _kept(saving: asyncio.Future[object], generation_id: int) -> None:
        """Wait for the result's file (a cancelled caller too: the save cleans up after
        itself). A disk that refused it only means the result is delivered from memory."""
        try:
            await asyncio.shield(saving)
        except OSError:
            log.exception("Could not keep result %d on disk; delivering from memory", generation_id)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await saving
            raise

    async def _fit_for_upload(self, result: segmind.EditResult, limit: int) -> images.UploadImage:
        extension = images.extension_for(result.info)
        if len(result.image) <= limit:  # as it is: nothing to decode
            return images.fit_for_upload(result.image, extension, limit)
        full = decoding.decode_cost(result.image, check_only=False, max_pixels=float("inf"))
        return await self._work.run(
            images.fit_for_upload, result.image, extension, limit, cost=full
        )

    async def _safety_off(self, req: EditRequest) -> bool:
        """The safety filter is off only where all three agree: the operator allows it
        (SEGMIND_DISABLE_SAFETY_CHECKER), the server's admins turned it off, and Discord
        marks the channel age-restricted. Everywhere else it is on."""
        if not (self._settings.segmind_disable_safety_checker and req.channel_nsfw):
            return False
        return req.guild_id is not None and await self._admin.safety_filter_off(req.guild_id)

    @staticmethod
    def _failure(exc: segmind.SegmindError, *, halted: bool) -> EditFailed:
        """What the member is told about an API error (`halted`: it stopped every edit)."""
        reason = f"{type(exc).__name__}: {exc.message}"
        log.warning("Segmind call failed: %s", reason, extra={"status": "failed"})
        if halted or isinstance(exc, segmind.AuthError | segmind.InsufficientCredits):
            return EditFailed(MSG_UNAVAILABLE, reason=reason)
        if isinstance(exc, segmind.BadRequest):
            return EditFailed(
                f"The image service refused this edit: {exc.message}. {NOT_CHARGED}", reason=reason
            )
        if isinstance(exc, segmind.SegmindTimeout):
            return EditFailed(MSG_TIMEOUT, reason=reason)
        if isinstance(exc, segmind.InvalidResponse):
            return EditFailed(MSG_BROKEN, reason=reason)
        if isinstance(exc, segmind.ServerError) and not exc.retryable:
            return EditFailed(MSG_SERVER_ERROR, reason=reason)
        return EditFailed(MSG_BUSY, reason=reason)
