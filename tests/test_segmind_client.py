"""SegmindClient against the real FakeSegmind (and small 127.0.0.1 servers for odd answers)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from bot.clock import REAL_CLOCK, Clock
from bot.images import ImageInfo
from bot.params import EditParams, build_params
from bot.segmind import (
    AuthError,
    BadRequest,
    ConnectFailed,
    EditResult,
    InsufficientCredits,
    InvalidResponse,
    RateLimited,
    SegmindClient,
    SegmindError,
    SegmindTimeout,
    ServerError,
)
from tests.clock import ManualClock, advance, until
from tests.fake_segmind import FakeSegmind
from tests.helpers import LocalServer, make_image, make_noise_png, open_image, unused_port
from tests.world import API_KEY

MODEL = "flux-kontext-dev"
INPUT_B64 = base64.b64encode(make_image(256, 192, "PNG")).decode()
# Each option away from its default, so that each one's way into the request shows.
PARAMS = build_params(
    "make it night", seed=1234, guidance=3.5, steps=20, aspect_ratio="1:1", quality=80
)
# How every test's client is set up, unless the test says otherwise.
CLIENT_DEFAULTS: dict[str, Any] = {
    "api_key": API_KEY,
    "model": MODEL,
    "timeout_s": 10.0,
    "max_retries": 2,
}


@asynccontextmanager
async def api_client(
    base_url: str, *, clock: Clock | None = None, **options: Any
) -> AsyncIterator[SegmindClient]:
    """A client on a clock that moves by itself when the client sleeps (unless given one),
    so backoffs and 429 pauses take no real time; `options` override CLIENT_DEFAULTS or
    pass the backoff/limit knobs."""
    clock = clock if clock is not None else ManualClock(auto=True)
    client = SegmindClient(base_url=base_url, clock=clock, **(CLIENT_DEFAULTS | options))
    try:
        yield client
    finally:
        await client.aclose()


async def edit(
    fake: FakeSegmind,
    params: EditParams = PARAMS,
    input_image: str = INPUT_B64,
    disable_safety_checker: bool = False,
    **kw: object,
) -> EditResult:
    async with api_client(fake.base_url, **kw) as client:  # type: ignore[arg-type]
        return await client.edit(input_image, params, disable_safety_checker=disable_safety_checker)


async def failure(
    fake: FakeSegmind, params: EditParams = PARAMS, input_image: str = INPUT_B64, **kw: object
) -> SegmindError:
    with pytest.raises(SegmindError) as info:
        await edit(fake, params, input_image, **kw)
    return info.value


# ---------------------------------------------------------------------- success


async def test_success_returns_the_edited_image_and_parsed_headers(segmind: FakeSegmind) -> None:
    result = await edit(segmind, clock=REAL_CLOCK)  # the call's real duration is reported

    out = open_image(result.image)
    assert out.format == "PNG"
    # 1:1 crop of the 256x192 input, colours inverted by the fake.
    assert out.size == (192, 192)
    assert result.info == ImageInfo("png", 192, 192, 1)
    assert out.convert("RGB").getpixel((150, 150)) == (55, 215, 215)

    assert result.remaining_credits == pytest.approx(99.96)
    assert result.seed == 1234
    assert result.request_id is not None
    uuid.UUID(result.request_id)
    assert result.cost is None  # the fake sends no x-cost unless asked
    assert result.attempts == 1
    assert result.elapsed_s > 0
    assert segmind.calls_billed == 1


async def test_success_sends_every_field_with_the_api_names_and_the_key_header(
    segmind: FakeSegmind,
) -> None:
    await edit(segmind)

    assert len(segmind.requests) == 1
    req = segmind.requests[0]
    assert req.method == "POST"
    assert req.path == f"/v1/{MODEL}"
    assert req.headers["x-api-key"] == API_KEY
    assert req.headers["content-type"].startswith("application/json")
    assert req.json == {
        "prompt": "make it night",
        "input_image": INPUT_B64,
        "seed": 1234,
        "guidance": 3.5,
        "num_inference_steps": 20,
        "aspect_ratio": "1:1",
        "output_format": "png",
        "output_quality": 80,
        "disable_safety_checker": False,
    }


async def test_defaults_are_sent_explicitly_with_json_types(segmind: FakeSegmind) -> None:
    await edit(segmind, build_params("x", seed=5))
    body = segmind.requests[0].json
    assert body["guidance"] == 7.0
    assert isinstance(body["num_inference_steps"], int)
    assert body["num_inference_steps"] == 35
    assert body["aspect_ratio"] == "match_input_image"
    assert body["output_format"] == "png"
    assert body["output_quality"] == 90
    assert body["disable_safety_checker"] is False


async def test_a_call_can_disable_the_safety_checker(segmind: FakeSegmind) -> None:
    await edit(segmind, disable_safety_checker=True)
    assert segmind.requests[0].json["disable_safety_checker"] is True


@pytest.mark.parametrize(("fmt", "pil"), [("jpg", "JPEG"), ("webp", "WEBP")])
async def test_output_format_is_read_from_the_bytes(
    segmind: FakeSegmind, fmt: str, pil: str
) -> None:
    # The fake labels every answer image/jpeg like the real API; the bytes decide.
    result = await edit(segmind, build_params("x", seed=1, output_format=fmt))
    assert open_image(result.image).format == pil
    assert result.info.format == {"jpg": "jpeg", "webp": "webp"}[fmt]


async def test_x_cost_header_is_parsed_when_sent(segmind: FakeSegmind) -> None:
    segmind.send_cost_header = True
    result = await edit(segmind)
    assert result.cost == pytest.approx(0.04)
    assert result.remaining_credits == pytest.approx(99.96)


@pytest.mark.parametrize("mode", ["missing", "garbage"])
async def test_missing_or_garbage_credit_header_gives_none(
    segmind: FakeSegmind, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    segmind.header_mode = mode
    result = await edit(segmind)
    assert result.remaining_credits is None
    assert result.image  # the edit itself still succeeded
    if mode == "garbage":
        assert "Ignoring non-numeric x-remaining-credits header" in caplog.text


async def test_odd_header_values_are_read_defensively(local_server: LocalServer) -> None:
    png = make_image(100, 100)

    async def odd_headers(_: web.Request) -> web.Response:
        return web.Response(
            body=png,
            content_type="image/jpeg",
            headers={
                "x-remaining-credits": "inf",
                "x-cost": "NaN",
                "x-seed-value": "12.5",
                "x-request-id": "abc\tdef" + "z" * 300,
            },
        )

    local_server.route(f"/v1/{MODEL}", odd_headers)
    async with api_client(local_server.url("/v1")) as client:
        result = await client.edit(INPUT_B64, PARAMS)
    assert result.remaining_credits is None
    assert result.cost is None
    assert result.seed is None
    assert result.request_id == "abcdef" + "z" * 94


# ---------------------------------------------------------------------- API errors


async def test_401_is_auth_error_and_not_retried(segmind: FakeSegmind) -> None:
    exc = await failure(segmind, api_key="sk-wrong-key-999")
    assert type(exc) is AuthError
    assert exc.status == 401
    assert len(segmind.requests) == 1
    assert segmind.calls_billed == 0


async def test_404_unknown_model_is_bad_request_naming_the_model(segmind: FakeSegmind) -> None:
    exc = await failure(segmind, model="flux-kontext-nope")
    assert type(exc) is BadRequest
    assert exc.status == 404
    assert "flux-kontext-nope" in exc.message
    assert len(segmind.requests) == 1


async def test_406_is_insufficient_credits_and_not_retried(segmind: FakeSegmind) -> None:
    segmind.credits = 0.0
    exc = await failure(segmind)
    assert type(exc) is InsufficientCredits
    assert exc.status == 406
    assert len(segmind.requests) == 1


async def test_422_carries_the_api_validation_message(segmind: FakeSegmind) -> None:
    exc = await failure(segmind, input_image="definitely not base64 !!")
    assert type(exc) is BadRequest
    assert exc.status == 422
    assert exc.message == "input_image: not a URL and not valid base64"
    assert len(segmind.requests) == 1
    assert segmind.calls_billed == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message": "steps too high"}, "steps too high"),
        ({"detail": "bad aspect"}, "bad aspect"),
        ("plain\x00\x1b\x7freason", "plain reason"),
        ({"error": "x" * 500}, "x" * 200),
    ],
    ids=["message-key", "detail-key", "plain-text-control-chars", "long"],
)
async def test_4xx_reason_is_read_from_any_body_shape(
    segmind: FakeSegmind, body: object, expected: str
) -> None:
    segmind.fail_next(400, body=body)  # type: ignore[arg-type]
    exc = await failure(segmind)
    assert type(exc) is BadRequest
    assert exc.status == 400
    assert exc.message == expected


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ("<!DOCTYPE html><html><body><h1>422</h1></body></html>", {"Content-Type": "text/html"}),
        (b"", {}),
        ("   \n", {}),
    ],
    ids=["html", "empty", "blank"],
)
async def test_422_with_an_unhelpful_body_gets_a_generic_reason(
    segmind: FakeSegmind, body: object, headers: dict[str, str]
) -> None:
    segmind.fail_next(422, body=body, headers=headers)  # type: ignore[arg-type]
    exc = await failure(segmind)
    assert type(exc) is BadRequest
    assert exc.message == "the API refused the request (422)"
    assert "<" not in exc.message


@pytest.mark.parametrize("body", ["<html><body>Bad Gateway</body></html>", b""])
async def test_5xx_html_or_empty_body_is_server_error(segmind: FakeSegmind, body: object) -> None:
    segmind.fail_next(502, body=body, times=3)  # type: ignore[arg-type]
    exc = await failure(segmind)
    assert type(exc) is ServerError
    assert exc.status == 502
    assert exc.message == "the API failed with status 502"


# ---------------------------------------------------------------------- retries


async def test_429_with_retry_after_waits_then_succeeds(segmind: FakeSegmind) -> None:
    segmind.fail_next(429, headers={"Retry-After": "1"})
    clock = ManualClock()
    async with api_client(segmind.base_url, clock=clock) as client:
        call = asyncio.create_task(client.edit(INPUT_B64, PARAMS))
        await until(lambda: clock.sleeping)
        # The backoff would be 0.5 s for a first retry: only Retry-After explains 1 s.
        assert clock.slept == [1.0]
        await advance(clock, 0.9)
        assert clock.sleeping == 1 and len(segmind.requests) == 1  # not retried early
        await advance(clock, 0.1)
        result = await call
    assert result.attempts == 2
    assert len(segmind.requests) == 2
    assert segmind.calls_billed == 1


async def test_a_refused_connection_is_retried_max_retries_times_with_jitter() -> None:
    clock = ManualClock(auto=True)
    async with api_client(
        f"http://127.0.0.1:{unused_port()}/v1", max_retries=3, clock=clock, backoff_base_s=2.0
    ) as client:
        with pytest.raises(ConnectFailed):
            await client.edit(INPUT_B64, PARAMS)
    # Full jitter below a doubling ceiling: 2 s, 4 s, 8 s.
    assert len(clock.slept) == 3
    assert all(0 <= s <= 2.0 * 2**n for n, s in enumerate(clock.slept))


async def test_503_come_back_later_then_success_returns_the_image(segmind: FakeSegmind) -> None:
    segmind.fail_next(503, headers={"Retry-After": "0"})
    result = await edit(segmind)
    assert result.attempts == 2
    assert len(segmind.requests) == 2
    assert open_image(result.image).format == "PNG"


async def test_no_retries_when_max_retries_is_zero(segmind: FakeSegmind) -> None:
    segmind.fail_next(503, headers={"Retry-After": "0"})
    exc = await failure(segmind, max_retries=0)
    assert type(exc) is ServerError
    assert len(segmind.requests) == 1


async def test_429_retries_exhausted_is_rate_limited(segmind: FakeSegmind) -> None:
    segmind.fail_next(429, times=3, headers={"Retry-After": "0"})
    exc = await failure(segmind, max_retries=2)
    assert type(exc) is RateLimited
    assert exc.status == 429
    assert exc.retry_after == 0.0
    assert len(segmind.requests) == 3


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("3600", 60.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("-5", None)],
)
async def test_retry_after_is_parsed_capped_or_ignored(
    segmind: FakeSegmind, header: str, expected: float | None
) -> None:
    segmind.fail_next(429, headers={"Retry-After": header})
    exc = await failure(segmind, max_retries=0)
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == expected


async def test_read_timeout_is_never_retried(segmind: FakeSegmind) -> None:
    segmind.delay_next(0.6)
    exc = await failure(segmind, timeout_s=0.2, max_retries=3)
    assert type(exc) is SegmindTimeout
    assert len(segmind.requests) == 1
    # Why it must not be retried: the request ran (and was billed) after the client gave up.
    for _ in range(100):
        if segmind.calls_billed:
            break
        await asyncio.sleep(0.02)
    assert segmind.calls_billed == 1


async def test_connection_refused_is_retried_then_connect_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.segmind")
    port = unused_port()
    async with api_client(f"http://127.0.0.1:{port}/v1", max_retries=2) as client:
        with pytest.raises(ConnectFailed) as info:
            await client.edit(INPUT_B64, PARAMS)
    assert info.value.status is None
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert all("ConnectFailed" in r.getMessage() for r in retries)


async def test_connection_dropped_mid_request_is_not_retried(local_server: LocalServer) -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()  # the request arrived: its fate is unknown to the client
        return web.Response()

    local_server.route(f"/v1/{MODEL}", hang_up)
    async with api_client(local_server.url("/v1"), max_retries=3) as client:
        with pytest.raises(SegmindTimeout, match="connection lost"):
            await client.edit(INPUT_B64, PARAMS)
    assert local_server.hits == [f"/v1/{MODEL}"]


# ---------------------------------------------------------------------- bad 200s


async def test_200_that_is_not_an_image_is_invalid_response(segmind: FakeSegmind) -> None:
    segmind.not_image_next()
    exc = await failure(segmind)
    assert type(exc) is InvalidResponse
    assert exc.status == 200
    assert len(segmind.requests) == 1  # billed: never retried
    assert segmind.calls_billed == 1


async def test_response_over_max_bytes_with_content_length_is_refused(
    segmind: FakeSegmind,
) -> None:
    noisy = base64.b64encode(make_noise_png(128, 128)).decode()
    exc = await failure(segmind, input_image=noisy, max_response_bytes=10_000)
    assert type(exc) is InvalidResponse
    assert "too large" in exc.message
    assert len(segmind.requests) == 1


async def test_streamed_response_over_max_bytes_is_refused(local_server: LocalServer) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(200):  # 3 MiB, no Content-Length
                await resp.write(b"\xff" * 16384)
                await asyncio.sleep(0)
        except ConnectionError:
            pass
        return resp

    local_server.route(f"/v1/{MODEL}", endless)
    async with api_client(local_server.url("/v1"), max_response_bytes=50_000) as client:
        with pytest.raises(InvalidResponse, match="too large"):
            await client.edit(INPUT_B64, PARAMS)
    assert local_server.hits == [f"/v1/{MODEL}"]


# ---------------------------------------------------------------------- the key never leaks

Scenario = Callable[[FakeSegmind], Awaitable[SegmindError]]


async def _wrong_key(fake: FakeSegmind) -> SegmindError:
    return await failure(fake, api_key=API_KEY + "-revoked")


async def _no_credits(fake: FakeSegmind) -> SegmindError:
    fake.credits = 0
    return await failure(fake)


async def _unknown_model(fake: FakeSegmind) -> SegmindError:
    return await failure(fake, model="nope")


async def _validation(fake: FakeSegmind) -> SegmindError:
    return await failure(fake, input_image="%%%")


async def _echoes_key_json(fake: FakeSegmind) -> SegmindError:
    fake.fail_next(422, body={"error": f"key {API_KEY} is not allowed to use seed"})
    return await failure(fake)


async def _echoes_key_text(fake: FakeSegmind) -> SegmindError:
    fake.fail_next(403, body=f"forbidden for x-api-key: {API_KEY}")
    return await failure(fake)


async def _echoes_key_500(fake: FakeSegmind) -> SegmindError:
    fake.fail_next(500, body={"error": f"crash handling {API_KEY}"}, times=3)
    return await failure(fake)


async def _rate_limited(fake: FakeSegmind) -> SegmindError:
    fake.fail_next(429, body={"error": f"slow down {API_KEY}"}, times=3)
    return await failure(fake)


async def _timeout(fake: FakeSegmind) -> SegmindError:
    fake.delay_next(0.4)
    return await failure(fake, timeout_s=0.1)


async def _refused(fake: FakeSegmind) -> SegmindError:
    del fake
    async with api_client(f"http://127.0.0.1:{unused_port()}/v1") as client:
        with pytest.raises(SegmindError) as info:
            await client.edit(INPUT_B64, PARAMS)
    return info.value


async def _not_image(fake: FakeSegmind) -> SegmindError:
    fake.not_image_next()
    return await failure(fake)


SCENARIOS: dict[str, Scenario] = {
    "401": _wrong_key,
    "406": _no_credits,
    "404": _unknown_model,
    "422": _validation,
    "422-echo-json": _echoes_key_json,
    "403-echo-text": _echoes_key_text,
    "500-echo": _echoes_key_500,
    "429": _rate_limited,
    "timeout": _timeout,
    "refused": _refused,
    "not-image": _not_image,
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
async def test_api_key_never_appears_in_errors_or_logs(
    segmind: FakeSegmind, scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exc = await scenario(segmind)
    for text in (str(exc), repr(exc), exc.message, repr(exc.args), caplog.text):
        assert API_KEY not in text
    assert exc.__cause__ is None or API_KEY not in repr(exc.__cause__)
    assert caplog.records  # DEBUG logging really ran (httpx/httpcore/fake/bot)


async def test_echoed_key_in_a_reason_is_masked(segmind: FakeSegmind) -> None:
    exc = await _echoes_key_json(segmind)
    assert exc.message == "key *** is not allowed to use seed"


async def test_echoed_key_cut_by_the_length_limit_does_not_leak_a_prefix(
    segmind: FakeSegmind,
) -> None:
    segmind.fail_next(422, body={"error": "x" * 190 + API_KEY})
    exc = await failure(segmind)
    assert API_KEY[:10] not in exc.message


# ---------------------------------------------------------------------- client-wide backoff


async def test_a_429_holds_back_every_call_on_the_client(segmind: FakeSegmind) -> None:
    segmind.fail_next(429, headers={"Retry-After": "1"})
    clock = ManualClock()
    async with api_client(segmind.base_url, clock=clock) as client:
        first = asyncio.create_task(client.edit(INPUT_B64, PARAMS))
        await until(lambda: clock.sleeping == 1)  # the 429 has arrived; the pause is in force
        second = asyncio.create_task(client.edit(INPUT_B64, PARAMS))
        await until(lambda: clock.sleeping == 2)
        # The second call waits out the Retry-After it never saw, before sending anything.
        assert clock.slept == [1.0, 1.0]
        assert len(segmind.requests) == 1
        await advance(clock, 1.0)
        await asyncio.gather(first, second)
    assert [r.method for r in segmind.requests].count("POST") == 3


async def test_a_slow_drip_answer_cannot_outlast_the_deadline(local_server: LocalServer) -> None:
    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(100):  # each chunk beats the read timeout; the whole never ends
            await response.write(b"x")
            await asyncio.sleep(0.1)
        return response

    local_server.route(f"/v1/{MODEL}", drip)
    # The real margin is seconds; 0.3 s + 0.2 s keeps the test short.
    async with api_client(local_server.url("/v1"), timeout_s=0.3, deadline_margin_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(SegmindTimeout):
            await client.edit(INPUT_B64, PARAMS)
    assert time.monotonic() - started < 3
