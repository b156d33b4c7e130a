"""The health endpoint (`GET /healthz`), on when HTTP_PORT is set, against the stand-ins."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bot import core as core_module
from bot.adapter.ops_http import OpsServer
from tests.harness import Harness
from tests.world import make_settings


@pytest.fixture
def url(h: Harness) -> str:
    """The running bot's /healthz (its test is marked `settings(http_port=0)`)."""
    assert h.bot.ops_http is not None
    return f"http://127.0.0.1:{h.bot.ops_http.port}/healthz"


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        return await client.get(url)


@pytest.mark.settings(http_port=0)
async def test_healthz_goes_503_when_the_gateway_drops_and_200_after_it_resumes(
    h: Harness, url: str
) -> None:
    ok = await get(url)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})

    h.discord.hold_gateway()  # the bot's reconnection waits: it stays disconnected
    await h.discord.close_gateway(4000)
    down = await h.discord.wait_for(lambda: _status_if(url, 503), message="/healthz to answer 503")
    assert down["status"] == "unhealthy"
    assert down["reason"] == "not connected to Discord"

    resumes = len([f for f in h.discord.received_gateway if f.get("op") == 6])
    h.discord.release_gateway()
    back = await h.discord.wait_for(lambda: _status_if(url, 200), message="/healthz back to 200")
    assert back == {"status": "ok"}
    # It came back by resuming the same session, as Discord lets a dropped bot do.
    assert len([f for f in h.discord.received_gateway if f.get("op") == 6]) == resumes + 1


@pytest.mark.settings(http_port=0)
async def test_healthz_is_503_after_an_invalidated_session_until_ready_again(
    h: Harness, url: str
) -> None:
    h.discord.hold_gateway()
    await h.discord.invalidate_session(resumable=False)
    down = await h.discord.wait_for(lambda: _status_if(url, 503), message="a 503")
    assert down["reason"] == "not connected to Discord"
    h.discord.release_gateway()
    assert await h.discord.wait_for(lambda: _status_if(url, 200), message="a 200 again")


@pytest.mark.settings(http_port=0)
async def test_healthz_is_503_while_edits_are_halted(h: Harness, url: str) -> None:
    h.segmind.fail_next(401)  # the key is rejected: edits halt until an admin acts
    interaction = await h.edit("make it night")
    await h.answer(interaction)
    answer = await get(url)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "edits halted (key_rejected)"


async def test_healthz_is_503_when_the_database_is_unavailable(tmp_path: Path) -> None:
    core = await core_module.build(make_settings(tmp_path))
    core.edits.start()
    server = OpsServer(core, lambda: True, host="127.0.0.1", port=0)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert (await get(url)).status_code == 200
        await core.database.close()
        answer = await get(url)
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "unhealthy",
            "reason": "database unavailable",
            "reasons": ["database unavailable"],
        }
    finally:
        await server.stop()
        await core.aclose()


async def test_healthz_is_503_when_the_queue_worker_is_not_running(tmp_path: Path) -> None:
    core = await core_module.build(make_settings(tmp_path))  # the queue is never started
    server = OpsServer(core, lambda: True, host="127.0.0.1", port=0)
    await server.start()
    try:
        answer = await get(f"http://127.0.0.1:{server.port}/healthz")
        assert answer.status_code == 503
        assert answer.json()["reason"] == "edit queue stopped"
    finally:
        await server.stop()
        await core.aclose()


@pytest.mark.settings(http_port=0)
async def test_the_endpoint_listens_on_loopback_unless_http_host_says_otherwise(
    harness: Harness,
) -> None:
    assert harness.bot.ops_http is not None
    assert {host for host, _port in harness.bot.ops_http.addresses} == {"127.0.0.1"}


async def test_the_endpoint_is_off_without_http_port(harness: Harness) -> None:
    assert harness.settings.http_port is None
    assert harness.bot.ops_http is None


async def _status_if(url: str, status: int) -> dict | None:
    answer = await get(url)
    return answer.json() if answer.status_code == status else None
