"""The composition root: the one place that builds every long-lived object from the
settings, and closes them in reverse order. The Discord client, `kontext-bot edit` and the
benchmark all use it."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import httpx
from PIL import Image

from bot import db
from bot.administration import ServerAdmin
from bot.alerts import Alerts
from bot.chains import Chains
from bot.config import ApiSettings, Settings
from bot.credits import CreditMeter
from bot.delivery import Delivery
from bot.health import ServiceHealth
from bot.history import History
from bot.imagework import ImageWork
from bot.inputs import EditInputs
from bot.instance import InstanceLock
from bot.ledger import Ledger, QuotaStatus
from bot.metrics import Metrics
from bot.operator import OperatorDesk
from bot.pipeline import EditPipeline
from bot.ports import Channels
from bot.queue import QueueLimits
from bot.recovery import Recovery
from bot.reports import Reports
from bot.results import ResultStore
from bot.segmind import SegmindClient
from bot.servers import Servers
from bot.service import EditService
from bot.throttle import AnswerThrottle
from bot.upkeep import Upkeep

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOAD_CONNECT_S = 10.0


def api_client(settings: ApiSettings) -> SegmindClient:
    """The Segmind client as the operator configured it (the bot and `kontext-bot edit`)."""
    return SegmindClient.from_settings(settings)


def download_client() -> httpx.AsyncClient:
    """Fetches an image URL for `kontext-bot edit`."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(DOWNLOAD_TIMEOUT_S, connect=DOWNLOAD_CONNECT_S),
        follow_redirects=False,
    )


def download_session() -> aiohttp.ClientSession:
    """Fetches members' images from Discord's CDN for the bot. aiohttp (discord.py's own
    HTTP library) rather than httpx here: three times faster on a big file, and every
    edit waits on its input before the API call."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S, connect=DOWNLOAD_CONNECT_S)
    )


def queue_limits(settings: Settings) -> QueueLimits:
    return QueueLimits(
        max_concurrency=settings.segmind_max_concurrency,
        rpm=settings.segmind_rpm,
        per_member_running=settings.max_inflight_per_user,
        per_member_queued=settings.max_queued_per_user,
        max_queued_total=settings.max_queued_total,
        status_interval_s=settings.status_update_interval_s,
    )


@dataclass(frozen=True)
class QuotaView:
    """What a member (or an admin looking at them) is shown about their allowance."""

    status: QuotaStatus
    cost: float  # what an edit is expected to cost now
    blocked_reason: str | None
    blocked: bool
    halted_reason: str | None


@dataclass
class Core:
    settings: Settings
    database: db.Database
    downloads: aiohttp.ClientSession
    images: ImageWork
    inputs: EditInputs  # members' pictures: checked, fetched from Discord's CDN, proven
    api: SegmindClient
    meter: CreditMeter
    health: ServiceHealth
    alerts: Alerts
    ledger: Ledger
    admin: ServerAdmin
    results: ResultStore
    pipeline: EditPipeline
    delivery: Delivery
    edits: EditService
    chains: Chains
    history: History
    reports: Reports
    servers: Servers
    operator: OperatorDesk
    recovery: Recovery
    metrics: Metrics
    upkeep: Upkeep
    instance: InstanceLock
    answers: AnswerThrottle  # public answers to refused mentions and replies

    def start(self) -> None:
        """Start what runs for the bot's life: the edit queue and the hourly expiry."""
        self.edits.start()
        self.upkeep.start()

    async def quota_view(self, guild_id: int, user_id: int, role_ids: tuple[int, ...]) -> QuotaView:
        block = await self.admin.block_of(guild_id, user_id)
        return QuotaView(
            status=await self.ledger.status(guild_id, user_id, role_ids),
            cost=await self.meter.expected_cost(),
            blocked_reason=block.reason if block else None,
            blocked=block is not None,
            halted_reason=self.health.halted_reason,
        )

    async def aclose(self) -> None:
        """Stop the edits, then close what was opened, in reverse order."""
        try:
            await self.edits.shutdown(0)  # a no-op after a graceful shutdown
            await self.recovery.aclose()
            await self.upkeep.aclose()
            await self.alerts.drain()
        finally:
            await self.api.aclose()
            await self.downloads.close()
            self.images.close()
            # aiosqlite's worker thread is not a daemon: an unclosed database hangs the exit.
            await self.database.close()
            self.instance.release()  # last: the database is closed, another bot may start


def watch(
    metrics: Metrics,
    *,
    api: SegmindClient,
    meter: CreditMeter,
    health: ServiceHealth,
    ledger: Ledger,
    edits: EditService,
) -> Metrics:
    """Feed the metrics from the core's hooks (the Discord side adds the gateway's)."""
    api.call_hooks.append(metrics.api_answered)
    meter.reading_hooks.append(metrics.balance_seen)
    if meter.last_balance is not None:
        metrics.balance_seen(meter.last_balance)
    ledger.charge_hooks.append(metrics.charged)
    ledger.refund_hooks.append(metrics.refunded)
    edits.pipeline.outcome_hooks.append(metrics.edit_finished)
    edits.started_hooks.append(metrics.job_started)
    metrics.watch_queue(lambda: edits.queue.waiting_count, lambda: edits.queue.running_count)
    metrics.watch_halt(lambda: health.halted is not None)
    return metrics


async def build(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    channels: Channels | None = None,
    instance: InstanceLock | None = None,
) -> Core:
    """Lock the database to this process (or take over `instance`, the lock the caller
    took), open it (migrated), settle what a crash left, and wire every service.
    Nothing is sent anywhere until the edit queue is started. Raises AlreadyRunning.
    `channels`: the Discord side's way to reach members (a DM when their channel refuses
    a result)."""
    if instance is None:
        instance = InstanceLock.acquire(settings.database_path)
    stack = contextlib.AsyncExitStack()
    stack.callback(instance.release)
    async with stack:
        database = await db.connect(settings.database_path)
        stack.push_async_callback(database.close)
        downloads = download_session()
        stack.push_async_callback(downloads.close)
        work = ImageWork()
        stack.callback(work.close)
        api = api_client(settings)
        stack.push_async_callback(api.aclose)
        ledger = Ledger(
            database,
            default_credits=settings.quota_default_credits,
            default_period=settings.quota_period,
            server_budget=settings.server_budget_credits,
            clock=clock,
        )

        admin = ServerAdmin(
            database, ledger, iterate_author_only_default=settings.iterate_author_only
        )
        servers = Servers(database, ledger, admin, allowed_guild_ids=settings.allowed_guild_ids)
        await servers.load()
        results = ResultStore(
            database, settings.results_dir, retention_s=settings.result_retention_hours * 3600
        )
        meter = CreditMeter(
            database, model=settings.segmind_model, fallback_estimate=settings.segmind_cost_estimate
        )
        await meter.load()  # the account floor holds from the first edit after a restart
        health = ServiceHealth(
            reserve=settings.account_reserve_credits, low_balance=settings.alert_below_credits
        )
        meter.reading_hooks.append(health.balance_seen)
        alerts = Alerts(cooldown_s=settings.alert_cooldown_minutes * 60)
        health.incident_hooks.append(alerts.notify)
        inputs = EditInputs(settings, downloads, work)
        pipeline = EditPipeline(
            settings=settings,
            database=database,
            api=api,
            inputs=inputs,
            work=work,
            meter=meter,
            health=health,
            ledger=ledger,
            admin=admin,
            servers=servers,
            results=results,
            notify=alerts.notify,
        )
        delivery = Delivery(database, results, dms=channels)
        edits = EditService(database, pipeline, delivery, queue_limits(settings))
        upkeep = Upkeep(results, ledger, clock=clock, uploading=delivery.uploading)
        recovery = Recovery(database, ledger, upkeep, delivery, edits)
        operator = OperatorDesk(
            database, api, meter, health, admin, operator_ids=frozenset(settings.operator_ids)
        )
        await operator.load()  # a pause survives restarts
        metrics = watch(Metrics(), api=api, meter=meter, health=health, ledger=ledger, edits=edits)
        # Before Discord connects: jobs this run creates must never be "recovered".
        await recovery.settle()
        core = Core(
            settings=settings,
            database=database,
            downloads=downloads,
            images=work,
            inputs=inputs,
            api=api,
            meter=meter,
            health=health,
            alerts=alerts,
            ledger=ledger,
            admin=admin,
            results=results,
            pipeline=pipeline,
            delivery=delivery,
            edits=edits,
            chains=Chains(database, admin, inputs, work),
            history=History(database),
            reports=Reports(database, ledger, reserve=settings.account_reserve_credits),
            servers=servers,
            operator=operator,
            recovery=recovery,
            metrics=metrics,
            upkeep=upkeep,
            instance=instance,
            answers=AnswerThrottle(),
        )
        stack.pop_all()  # built: the Core closes them from now on
    # Pillow loads its file format plugins at the first picture it opens: tens of ms of
    # imports holding the interpreter in the middle of the first edit. Loaded now instead.
    Image.preinit()
    # Everything loaded so far lives as long as the process: keep the garbage collector's
    # full passes (a stall of the event loop that grows with what it walks) off it.
    gc.freeze()
    return core
