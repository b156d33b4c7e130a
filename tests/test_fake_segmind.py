"""Proves tests/fake_segmind.py behaves like the contract in segmind-kontext-api.md."""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image, ImageChops, ImageOps, ImageStat

from tests.fake_segmind import FakeSegmind
from tests.helpers import make_image, make_mpo

pytestmark = pytest.mark.asyncio

KEY = "test-key"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def make_png(size: tuple[int, int] = (64, 48)) -> bytes:
    """A smooth gradient: every pixel differs from its inverse, and JPEG handles it well."""
    w, h = size
    img = Image.new("RGB", size)
    img.putdata(
        [
            (x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), 60)
            for y in range(h)
            for x in range(w)
        ]
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PNG = make_png()
PNG_B64 = base64.b64encode(PNG).decode()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"prompt": "make it pop", "input_image": PNG_B64}
    data.update(overrides)
    return data


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind() as f:
        yield f


@pytest.fixture
def client(http: httpx.AsyncClient) -> httpx.AsyncClient:
    """conftest's loopback-only client, under the name these tests use."""
    return http


@pytest_asyncio.fixture
async def cdn() -> AsyncIterator[str]:
    """A tiny stand-in for Discord's CDN serving PNG at /a.png; yields its base URL."""

    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/a.png", png)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def post(
    client: httpx.AsyncClient,
    fake: FakeSegmind,
    json: Any = None,
    *,
    model: str = "flux-kontext-dev",
    key: str | None = KEY,
    **kw: Any,
) -> httpx.Response:
    headers = {"x-api-key": key} if key is not None else {}
    return await client.post(
        f"{fake.base_url}/{model}", json=json if json is not None else body(), headers=headers, **kw
    )


# ---------------------------------------------------------------------- happy path


async def test_png_200_is_inverted_image_and_billed(
    fake: FakeSegmind, client: httpx.AsyncClient
) -> None:
    r = await post(client, fake, body(output_format="png"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"  # the real API's quirk
    out = decode(r.content)
    assert out.format == "PNG"
    src = decode(PNG).convert("RGB")
    assert out.size == src.size
    # PNG is lossless, so the edit must be exactly the inverse pixel for pixel.
    assert out.convert("RGB").tobytes() == ImageOps.invert(src).tobytes()
    assert mean_abs_diff(out, src) > 50

    assert r.headers["x-remaining-credits"] == "99.96"
    assert fake.credits == pytest.approx(99.96)
    assert fake.calls_billed == 1
    assert r.headers["x-seed-value"] == "42"  # contract default
    uuid.UUID(r.headers["x-request-id"])
    assert float(r.headers["x-generation-time"]) >= 0
    assert "x-cost" not in r.headers


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
async def test_each_output_format(
    fake: FakeSegmind, client: httpx.AsyncClient, fmt: str, pil_format: str
) -> None:
    r = await post(client, fake, body(output_format=fmt, output_quality=95))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    out = decode(r.content)
    assert out.format == pil_format
    src = decode(PNG)
    assert out.size == src.size
    # Lossy formats: close to the inverse, far from the input.
    assert mean_abs_diff(out, ImageOps.invert(src.convert("RGB"))) < 6
    assert mean_abs_diff(out, src) > 50


async def test_output_quality_changes_jpeg_size(
    fake: FakeSegmind, client: httpx.AsyncClient
) -> None:
    big = base64.b64encode(make_png((256, 256))).decode()
    low = await post(client, fake, body(input_image=big, output_format="jpg", output_quality=5))
    high = await post(client, fake, body(input_image=big, output_format="jpg", output_quality=100))
    assert low.status_code == high.status_code == 200
    assert len(low.content) < len(high.content)


async def test_credits_fall_by_cost_and_header_tracks_them(client: httpx.AsyncClient) -> None:
    async with FakeSegmind(credits=1.0, cost=0.25, send_cost_header=True) as fake:
        seen = []
        for _ in range(3):
            r = await post(client, fake)
            assert r.status_code == 200
            assert r.headers["x-cost"] == "0.25"
            seen.append(r.headers["x-remaining-credits"])
        assert seen == ["0.75", "0.50", "0.25"]
        assert fake.calls_billed == 3
        assert fake.credits == pytest.approx(0.25)


async def test_seed_explicit_and_random(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    r = await post(client, fake, body(seed=7))
    assert r.headers["x-seed-value"] == "7"
    r = await post(client, fake, body(seed=-1))
    assert r.status_code == 200
    assert int(r.headers["x-seed-value"]) >= 0


@pytest.mark.parametrize(
    ("aspect", "ratio"), [("1:1", 1.0), ("16:9", 16 / 9), ("9:16", 9 / 16), ("21:9", 21 / 9)]
)
async def test_aspect_ratio_crops(
    fake: FakeSegmind, client: httpx.AsyncClient, aspect: str, ratio: float
) -> None:
    r = await post(client, fake, body(aspect_ratio=aspect))
    assert r.status_code == 200
    w, h = decode(r.content).size
    assert abs(w / h - ratio) < 0.05


async def test_max_model_defaults_to_16_9(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    r = await post(client, fake, model="flux-kontext-max")
    assert r.status_code == 200
    w, h = decode(r.content).size
    assert abs(w / h - 16 / 9) < 0.05


async def test_large_input_capped_at_1024(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    big = base64.b64encode(make_png((1500, 300))).decode()
    r = await post(client, fake, body(input_image=big))
    assert r.status_code == 200
    assert max(decode(r.content).size) == 1024


async def test_requests_are_recorded(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    before = time.monotonic()
    await post(client, fake, body(seed=3), model="flux-kontext-pro")
    await client.get(f"{fake.base_url}/flux-kontext-dev", headers={"X-Api-Key": KEY})
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v1/flux-kontext-pro"),
        ("GET", "/v1/flux-kontext-dev"),
    ]
    first = fake.requests[0]
    assert first.headers["x-api-key"] == KEY  # keys lower-cased
    assert first.json["seed"] == 3
    assert b'"seed"' in first.raw_body
    assert before <= first.received_at <= fake.requests[1].received_at
    assert fake.requests[1].json is None


# ---------------------------------------------------------------------- input_image


async def test_base64_data_uri_input(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    r = await post(client, fake, body(input_image=f"data:image/png;base64,{PNG_B64}"))
    assert r.status_code == 200
    assert decode(r.content).size == (64, 48)


@pytest.mark.parametrize(
    "bad",
    [
        "@@@not base64@@@",
        base64.b64encode(b"hello, not an image").decode(),
        "data:image/png,rawdata",
    ],
)
async def test_bad_base64_input_is_422_not_billed(
    fake: FakeSegmind, client: httpx.AsyncClient, bad: str
) -> None:
    r = await post(client, fake, body(input_image=bad))
    assert r.status_code == 422
    assert "input_image" in r.json()["error"]
    assert fake.calls_billed == 0
    assert fake.credits == 100.0


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "HEIF", "AVIF"])
async def test_an_input_format_outside_the_contract_is_422_not_billed(
    fake: FakeSegmind, client: httpx.AsyncClient, fmt: str
) -> None:
    image = base64.b64encode(make_image(64, 64, fmt)).decode()
    r = await post(client, fake, body(input_image=image))
    assert r.status_code == 422
    assert "jpeg, png, gif or webp" in r.json()["error"]
    assert fake.calls_billed == 0


async def test_an_mpo_input_is_read_as_the_jpeg_it_is(
    fake: FakeSegmind, client: httpx.AsyncClient
) -> None:
    r = await post(client, fake, body(input_image=base64.b64encode(make_mpo(64, 48)).decode()))
    assert r.status_code == 200
    assert decode(r.content).size == (64, 48)


async def test_url_input_is_fetched(fake: FakeSegmind, client: httpx.AsyncClient, cdn: str) -> None:
    r = await post(client, fake, body(input_image=f"{cdn}/a.png"))
    assert r.status_code == 200
    out = decode(r.content).convert("RGB")
    assert out.tobytes() == ImageOps.invert(decode(PNG).convert("RGB")).tobytes()


async def test_url_fetch_failures_are_422(
    fake: FakeSegmind, client: httpx.AsyncClient, cdn: str
) -> None:
    r = await post(client, fake, body(input_image=f"{cdn}/missing.png"))
    assert r.status_code == 422
    assert r.json() == {"error": "Could not fetch input_image"}

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = await post(client, fake, body(input_image=f"http://127.0.0.1:{dead}/a.png"))
    assert r.status_code == 422
    assert r.json() == {"error": "Could not fetch input_image"}
    assert fake.calls_billed == 0


# ---------------------------------------------------------------------- errors


async def test_401_bad_or_missing_key(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    for key in ("wrong", None):
        r = await post(client, fake, key=key)
        assert r.status_code == 401
        assert r.json() == {"error": "Invalid API key"}
        assert "wrong" not in r.text  # the key is never echoed
    assert fake.calls_billed == 0
    assert fake.credits == 100.0


async def test_404_unknown_model(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    r = await post(client, fake, model="flux-kontext-ultra")
    assert r.status_code == 404
    assert r.json() == {"error": "Not found"}


async def test_405_wrong_method(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = await client.request(
            method, f"{fake.base_url}/flux-kontext-dev", headers={"x-api-key": KEY}
        )
        assert r.status_code == 405
        assert "error" in r.json()
    assert fake.calls_billed == 0


async def test_406_insufficient_credits_then_top_up(client: httpx.AsyncClient) -> None:
    async with FakeSegmind(credits=0.05, cost=0.04) as fake:
        assert (await post(client, fake)).status_code == 200
        r = await post(client, fake)
        assert r.status_code == 406
        assert r.json() == {"error": "Insufficient credits"}
        assert fake.calls_billed == 1
        assert fake.credits == pytest.approx(0.01)
        fake.top_up(1.0)
        r = await post(client, fake)
        assert r.status_code == 200
        assert r.headers["x-remaining-credits"] == "0.97"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"input_image": None}, "input_image"),
        ({"input_image": 123}, "input_image"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": -2}, "seed"),
        ({"guidance": 11}, "guidance"),
        ({"guidance": -0.1}, "guidance"),
        ({"guidance": "7"}, "guidance"),
        ({"num_inference_steps": 3}, "num_inference_steps"),
        ({"num_inference_steps": 51}, "num_inference_steps"),
        ({"num_inference_steps": 30.0}, "num_inference_steps"),
        ({"aspect_ratio": "7:5"}, "aspect_ratio"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "jpeg"}, "output_format"),
        ({"output_quality": 101}, "output_quality"),
        ({"output_quality": -1}, "output_quality"),
        ({"disable_safety_checker": "yes"}, "disable_safety_checker"),
        ({"safety_tolerance": 7}, "safety_tolerance"),
    ],
)
async def test_422_field_validation(
    fake: FakeSegmind, client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    data = body(**overrides)
    for k, v in overrides.items():
        if v is None:
            del data[k]
    r = await post(client, fake, data)
    assert r.status_code == 422
    assert field in r.json()["error"]
    assert fake.calls_billed == 0
    assert fake.credits == 100.0


async def test_valid_edge_values_accepted(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    edges = {
        "seed": 0,
        "guidance": 0,
        "num_inference_steps": 4,
        "aspect_ratio": "match_input_image",
        "output_format": "webp",
        "output_quality": 0,
        "disable_safety_checker": 1,
        "safety_tolerance": 6,
    }
    r = await post(client, fake, body(**edges))
    assert r.status_code == 200, r.text


async def test_422_non_json_bodies(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    url = f"{fake.base_url}/flux-kontext-dev"
    r = await client.post(
        url, headers={"x-api-key": KEY}, data={"prompt": "x", "input_image": PNG_B64}
    )
    assert r.status_code == 422
    assert "JSON" in r.json()["error"]
    r = await client.post(
        url, headers={"x-api-key": KEY, "content-type": "application/json"}, content=b"{nope"
    )
    assert r.status_code == 422
    r = await client.post(url, headers={"x-api-key": KEY}, json=["a", "list"])
    assert r.status_code == 422
    assert fake.calls_billed == 0


# ---------------------------------------------------------------------- scripted faults


async def test_fail_next_429_with_retry_after(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    fake.fail_next(429, body={"error": "Too many requests"}, headers={"Retry-After": "1"}, times=2)
    for _ in range(2):
        r = await post(client, fake)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json() == {"error": "Too many requests"}
    assert fake.calls_billed == 0
    assert fake.credits == 100.0
    r = await post(client, fake)
    assert r.status_code == 200
    assert fake.calls_billed == 1


async def test_fail_next_body_shapes(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    fake.fail_next(500, body="<html>oops</html>", headers={"Content-Type": "text/html"})
    fake.fail_next(502, body=b"")
    fake.fail_next(503)
    r = await post(client, fake)
    assert (r.status_code, r.text, r.headers["content-type"]) == (
        500,
        "<html>oops</html>",
        "text/html",
    )
    r = await post(client, fake)
    assert (r.status_code, r.content) == (502, b"")
    r = await post(client, fake)
    assert r.status_code == 503
    assert r.json() == {"error": "Service Unavailable"}
    # Faults win even over a bad key: they are "the next request", whatever it is.
    fake.fail_next(500)
    assert (await post(client, fake, key="wrong")).status_code == 500
    assert fake.calls_billed == 0


async def test_delay_next_past_client_timeout_is_still_billed(
    fake: FakeSegmind, client: httpx.AsyncClient
) -> None:
    fake.delay_next(0.6)
    with pytest.raises(httpx.TimeoutException):
        await post(client, fake, timeout=0.2)
    # The client gave up, but the server carries on and bills, as the real API may.
    for _ in range(60):  # poll up to 3 s
        if fake.calls_billed:
            break
        await asyncio.sleep(0.05)
    assert fake.calls_billed == 1
    assert fake.credits == pytest.approx(99.96)
    # Only one request was delayed: the script is used up and the default is no delay.
    assert fake.delays_left == 0 and fake.delay == 0
    r = await post(client, fake, timeout=2.0)
    assert r.status_code == 200


async def test_delay_applies_to_every_request(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    fake.delay = 0.2
    t0 = time.monotonic()
    assert (await post(client, fake)).status_code == 200
    assert (await post(client, fake, model="nope")).status_code == 404
    assert time.monotonic() - t0 >= 0.4
    fake.delay = 0.0


async def test_not_image_next_is_billed_garbage(
    fake: FakeSegmind, client: httpx.AsyncClient
) -> None:
    fake.not_image_next()
    r = await post(client, fake)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    with pytest.raises(Exception):  # noqa: B017 - any PIL failure will do
        decode(r.content)
    assert fake.calls_billed == 1
    assert r.headers["x-remaining-credits"] == "99.96"
    r = await post(client, fake)
    decode(r.content)  # back to real images


async def test_header_modes(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    fake.header_mode = "missing"
    r = await post(client, fake)
    assert r.status_code == 200
    assert "x-remaining-credits" not in r.headers
    fake.header_mode = "garbage"
    r = await post(client, fake)
    assert r.headers["x-remaining-credits"] == "n/a"
    fake.header_mode = "normal"
    r = await post(client, fake)
    assert r.headers["x-remaining-credits"] == "99.88"
    assert fake.calls_billed == 3
    with pytest.raises(ValueError):
        fake.header_mode = "weird"


async def test_concurrency_tracking(client: httpx.AsyncClient) -> None:
    async with FakeSegmind(delay=0.3) as fake:
        rs = await asyncio.gather(*(post(client, fake) for _ in range(4)))
        assert [r.status_code for r in rs] == [200] * 4
        assert fake.max_in_flight == 4  # served in parallel, not one after another
        assert fake.in_flight == 0
        assert fake.calls_billed == 4
        assert fake.credits == pytest.approx(100 - 4 * 0.04)


# ---------------------------------------------------------------------- misc


async def test_health_and_base_url(fake: FakeSegmind, client: httpx.AsyncClient) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")
    r = await client.get(fake.base_url.removesuffix("/v1") + "/health")
    assert (r.status_code, r.text) == (200, "ok")


async def test_base_url_before_start_raises() -> None:
    fake = FakeSegmind()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    await fake.stop()  # harmless when never started


async def test_cli_runs_and_serves(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_segmind",
        "--port",
        str(port),
        "--api-key",
        "cli-key",
        "--credits",
        "5",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=15)).decode()
        assert f"http://127.0.0.1:{port}/v1" in line
        r = await client.post(
            f"http://127.0.0.1:{port}/v1/flux-kontext-dev",
            json=body(),
            headers={"x-api-key": "cli-key"},
        )
        assert r.status_code == 200
        assert r.headers["x-remaining-credits"] == "4.96"
    finally:
        proc.send_signal(signal.SIGINT)
        # A clean exit is what is tested, not a fast one: a loaded machine gets time.
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=20)
        except TimeoutError:
            proc.kill()
            _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
