"""The Segmind client's transport (httpx over aiohttp) keeps what money depends on: a
request that may have reached the API is never sent again, whatever broke after it left;
only one that never left (refused, connect timeout) is retried."""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.params import build_params
from bot.segmind import ConnectFailed, InvalidResponse, SegmindClient, SegmindTimeout
from tests.clock import ManualClock
from tests.fake_segmind import FakeSegmind
from tests.helpers import LocalServer, make_image, make_noise_png, unused_port
from tests.world import API_KEY

MODEL = "flux-kontext-dev"
INPUT_B64 = base64.b64encode(make_image(64, 48, "PNG")).decode()
PARAMS = build_params("make it night")


def client(base_url: str, **options: float) -> SegmindClient:
    return SegmindClient(
        api_key=API_KEY,
        base_url=base_url,
        model=MODEL,
        timeout_s=options.pop("timeout_s", 10.0),
        max_retries=3,
        clock=ManualClock(auto=True),
        **options,  # type: ignore[arg-type]
    )


async def call(base_url: str, **options: float) -> None:
    api = client(base_url, **options)
    try:
        await api.edit(INPUT_B64, PARAMS)
    finally:
        await api.aclose()


async def test_an_answer_cut_short_is_not_sent_again(local_server: LocalServer) -> None:
    async def half(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(b"\x89PNG" + b"x" * 4_000)
        assert request.transport is not None
        request.transport.close()  # the model ran: only the answer was lost
        return response

    local_server.route(f"/v1/{MODEL}", half)
    with pytest.raises(SegmindTimeout, match="connection lost"):
        await call(local_server.url("/v1"))
    assert local_server.hits == [f"/v1/{MODEL}"]


@pytest.fixture
async def not_http() -> AsyncIterator[str]:
    """A server that reads a request, then answers with something that is not HTTP."""
    got: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(65536))
        writer.write(b"SPEAKING SOMETHING ELSE\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1"
    assert len(got) == 1  # asked once, never again


async def test_an_answer_that_is_not_http_is_not_sent_again(not_http: str) -> None:
    with pytest.raises(SegmindTimeout, match="connection lost"):
        await call(not_http)


async def test_a_body_stalled_past_the_read_timeout_is_not_sent_again(
    local_server: LocalServer,
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await response.write(b"\x89PNG")
        await asyncio.sleep(2)  # longer than the read timeout below
        return response

    local_server.route(f"/v1/{MODEL}", stall)
    with pytest.raises(SegmindTimeout):
        await call(local_server.url("/v1"), timeout_s=0.3, deadline_margin_s=5.0)
    assert local_server.hits == [f"/v1/{MODEL}"]


async def test_a_server_that_is_not_there_is_tried_again_then_given_up() -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    with pytest.raises(ConnectFailed):
        await call(f"http://127.0.0.1:{port}/v1")


async def test_a_large_answer_arrives_whole_and_the_connection_is_kept(
    segmind: FakeSegmind,
) -> None:
    noisy = base64.b64encode(make_noise_png(900, 700)).decode()
    api = client(segmind.base_url)
    try:
        first = await api.edit(noisy, PARAMS)
        second = await api.edit(noisy, PARAMS)
    finally:
        await api.aclose()
    assert first.info.width == second.info.width == 900
    assert len(first.image) > 1_000_000
    assert len({r.peer for r in segmind.requests}) == 1  # one connection, kept


async def test_a_compressed_answer_is_never_unpacked(local_server: LocalServer) -> None:
    """The size cap counts bytes as they arrive: an answer the bot unpacked could grow a
    thousandfold past it first. The bot asks for none, and takes none as an image."""
    asked: list[str] = []

    async def gzipped(request: web.Request) -> web.Response:
        await request.read()
        asked.append(request.headers.get("Accept-Encoding", ""))
        packed = gzip.compress(make_noise_png(64, 48))
        return web.Response(
            body=packed, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"}
        )

    local_server.route(f"/v1/{MODEL}", gzipped)
    with pytest.raises(InvalidResponse, match="not an image"):
        await call(local_server.url("/v1"))
    assert asked == ["identity"]


async def test_the_operators_proxy_is_used(
    segmind: FakeSegmind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY / HTTP_PROXY as httpx honours them without a transport of its own."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{segmind.port}")
    await call("http://segmind.invalid/v1")  # a name that resolves nowhere but the proxy
    [request] = segmind.requests
    assert request.headers["host"] == "segmind.invalid"


async def test_a_host_in_no_proxy_is_reached_directly(
    segmind: FakeSegmind, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{unused_port()}")  # nothing listens
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    await call(segmind.base_url)
    assert len(segmind.requests) == 1
