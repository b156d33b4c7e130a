"""A local stand-in for Segmind's FLUX.1 Kontext v1 HTTP API.

It is a real aiohttp server on loopback, so the bot's real HTTP client can be
tested end to end: auth, validation, billing through ``x-remaining-credits``,
scripted faults (429, 5xx, odd bodies), slow answers and concurrency.
The contract it follows is /work/shared/segmind-kontext-api.md.

Run it by hand with ``python -m tests.fake_segmind --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import random
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image, ImageOps, UnidentifiedImageError

from tests.helpers import Started

log = logging.getLogger(__name__)

# The contract's input formats, by Pillow's names. An MPO is a JPEG with a picture index
# appended: any JPEG decoder reads its first picture.
INPUT_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP"})

DEFAULT_MODELS: tuple[str, ...] = ("flux-kontext-dev", "flux-kontext-pro", "flux-kontext-max")

# The contract's ratios, built on their own (each wide one and its tall twin) so that a
# wrong list in bot/params.py is caught here rather than copied.
_WIDE = ((16, 9), (4, 3), (3, 2), (5, 4), (21, 9), (2, 1))
ASPECT_RATIOS: tuple[str, ...] = (
    "match_input_image",
    "1:1",
    *(f"{a}:{b}" for w, h in _WIDE for a, b in ((w, h), (h, w))),
)
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpg", "webp")
HEADER_MODES: tuple[str, ...] = ("normal", "missing", "garbage")

# Keep generated images small so tests stay fast.
MAX_SIDE = 1024
# Refuse to download anything bigger than this as an input image.
MAX_FETCH_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT_S = 10.0
# Bytes served by not_image_next(): clearly not any image format.
GARBAGE_BODY = b"<html><body>definitely not an image</body></html>"
# The contract's 406 is "not enough credits"; its body says so. `fail_next(406)` sends
# another 406 ({"error": "Not Acceptable"}, what a proxy or a content negotiation answers).
OUT_OF_CREDITS_ERROR = "Insufficient credits"


@dataclass
class RecordedRequest:
    """One request as the fake saw it (before any delay or fault)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    json: Any  # parsed JSON body, or None when the body was not JSON
    raw_body: bytes
    received_at: float  # time.monotonic()
    answered_at: float | None = None  # time.monotonic() when the answer was handed back
    peer: tuple[str, int] | None = None  # the client's end of the connection it came on


@dataclass
class _Fault:
    status: int
    body: bytes | str | dict | None
    headers: dict[str, str]
    billed: bool = False


class _ValidationError(Exception):
    """A 422: the message becomes the ``error`` field of the body."""


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python; JSON true must not pass as a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def format_amount(value: float) -> str:
    """Format a money figure like Segmind does ("99.96"), keeping extra digits if needed."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class FakeSegmind(Started):
    """In-process fake of ``POST {base_url}/{model}`` with scriptable faults."""

    def __init__(
        self,
        api_key: str = "test-key",
        credits: float = 100.0,
        cost: float = 0.04,
        models: tuple[str, ...] = DEFAULT_MODELS,
        delay: float = 0.0,
        send_cost_header: bool = False,
    ) -> None:
        self.api_key = api_key
        self.credits = float(credits)
        self.cost = float(cost)
        self.models = tuple(models)
        self.delay = float(delay)
        self.send_cost_header = send_cost_header

        self.requests: list[RecordedRequest] = []
        self.calls_billed = 0
        self.in_flight = 0
        self.max_in_flight = 0

        self._header_mode = "normal"
        # One entry per scripted request, consumed in arrival order.
        self._faults: deque[_Fault] = deque()
        self._delays: deque[float] = deque()
        self._not_images = 0

        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None
        self._host = "127.0.0.1"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening; ``port=0`` picks a free port (see ``base_url``)."""
        if self._runner is not None:
            raise RuntimeError("FakeSegmind already started")
        app = web.Application(client_max_size=MAX_FETCH_BYTES * 2)
        app.router.add_get("/health", self._handle_health)
        app.router.add_route("*", "/v1/{model}", self._handle_model)
        # Short shutdown wait: a test that stops mid-request should not hang for a minute.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        # trust_env=False: input_image URLs are loopback in tests and must never go via a proxy.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S), trust_env=False
        )
        log.info("fake Segmind listening on %s", self.base_url)

    async def stop(self) -> None:
        """Stop the server and release the port; safe to call twice."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("fake Segmind stopped")

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSegmind is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``; append ``/<model>`` to get an endpoint."""
        return f"http://{self._host}:{self.port}/v1"

    # ------------------------------------------------------------------ scripting

    @property
    def header_mode(self) -> str:
        return self._header_mode

    @header_mode.setter
    def header_mode(self, mode: str) -> None:
        if mode not in HEADER_MODES:
            raise ValueError(f"header_mode must be one of {HEADER_MODES}, got {mode!r}")
        self._header_mode = mode

    def fail_next(
        self,
        status: int,
        *,
        body: bytes | str | dict | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        billed: bool = False,
    ) -> None:
        """The next ``times`` model requests answer this instead of doing the work.

        ``body=None`` sends ``{"error": "<reason phrase>"}``; pass ``b""`` for an empty body.
        ``billed``: the model ran and was billed before the failure (a 5xx after the work).
        """
        for _ in range(times):
            self._faults.append(_Fault(status, body, dict(headers or {}), billed))

    def out_of_credits_next(self, times: int = 1) -> None:
        """The next ``times`` requests get the contract's 406, as an empty account would."""
        self.fail_next(406, body={"error": OUT_OF_CREDITS_ERROR}, times=times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests sleep ``seconds`` (not ``delay``), then answer as usual.

        Billed like any 200: a request the client timed out on may still have run.
        """
        self._delays.extend([float(seconds)] * times)

    @property
    def delays_left(self) -> int:
        """Scripted delays (`delay_next`) not yet taken by a request."""
        return len(self._delays)

    def not_image_next(self, times: int = 1) -> None:
        """The next ``times`` 200 answers carry garbage bytes instead of an image (still billed)."""
        self._not_images += times

    def top_up(self, amount: float) -> None:
        self.credits = round(self.credits + amount, 6)

    # ------------------------------------------------------------------ handlers

    async def _handle_health(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="ok")

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=parsed,
            raw_body=raw,
            received_at=time.monotonic(),
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        self.requests.append(rec)
        return rec

    async def _handle_model(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        rec = await self._record(request)
        # Scripts are taken at arrival so "next" means arrival order even under concurrency.
        fault = self._faults.popleft() if self._faults else None
        sleep_for = self._delays.popleft() if self._delays else self.delay
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if sleep_for > 0:
                await asyncio.sleep(sleep_for)
            if fault is not None:
                log.info("scripted fault %s for %s %s", fault.status, rec.method, rec.path)
                if fault.billed:
                    self.credits = round(self.credits - self.cost, 6)
                    self.calls_billed += 1
                return self._fault_response(fault)
            return await self._serve(request, rec, started)
        finally:
            self.in_flight -= 1
            rec.answered_at = time.monotonic()

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        headers = dict(fault.headers)
        has_ct = any(k.lower() == "content-type" for k in headers)
        body = fault.body
        if body is None:
            try:
                reason = HTTPStatus(fault.status).phrase
            except ValueError:
                reason = "Error"
            body = {"error": reason}
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            default_ct = "application/json"
        elif isinstance(body, str):
            data = body.encode()
            default_ct = "text/plain; charset=utf-8"
        else:
            data = bytes(body)
            default_ct = "application/octet-stream"
        if not has_ct:
            headers["Content-Type"] = default_ct
        return web.Response(status=fault.status, body=data, headers=headers)

    async def _serve(
        self, request: web.Request, rec: RecordedRequest, started: float
    ) -> web.StreamResponse:
        model = request.match_info["model"]
        # Order of checks: path, method, key, credits, body - cheapest and most global first.
        if model not in self.models:
            return _json_error(404, "Not found")
        if request.method != "POST":
            return _json_error(405, "Method Not Allowed", headers={"Allow": "POST"})
        if request.headers.get("x-api-key") != self.api_key:
            # Never echo or log the key that was sent.
            return _json_error(401, "Invalid API key")
        if self.credits < self.cost:
            return _json_error(406, OUT_OF_CREDITS_ERROR)

        try:
            params = self._validate(request, rec, model)
            source = await self._load_input(params["input_image"])
            seed = params["seed"]
            if seed == -1:
                seed = random.randint(0, 2**31 - 1)
            body = await asyncio.to_thread(
                _edit_image,
                source,
                params["aspect_ratio"],
                params["output_format"],
                params["output_quality"],
            )
        except _ValidationError as exc:
            log.info("422 for %s: %s", rec.path, exc)
            return _json_error(422, str(exc))

        # Re-check at billing time: concurrent calls may have drained the balance meanwhile.
        if self.credits < self.cost:
            return _json_error(406, OUT_OF_CREDITS_ERROR)
        self.credits = round(self.credits - self.cost, 6)
        self.calls_billed += 1

        if self._not_images > 0:
            self._not_images -= 1
            body = GARBAGE_BODY

        headers = {
            "x-seed-value": str(seed),
            "x-request-id": str(uuid.uuid4()),
            "x-generation-time": f"{time.monotonic() - started:.3f}",
        }
        if self._header_mode == "normal":
            headers["x-remaining-credits"] = format_amount(self.credits)
        elif self._header_mode == "garbage":
            headers["x-remaining-credits"] = "n/a"
        if self.send_cost_header:
            headers["x-cost"] = format_amount(self.cost)
        # The real API labels every image image/jpeg whatever the format; keep the quirk.
        return web.Response(status=200, body=body, content_type="image/jpeg", headers=headers)

    # ------------------------------------------------------------------ validation

    def _validate(self, request: web.Request, rec: RecordedRequest, model: str) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise _ValidationError("Body must be JSON (Content-Type: application/json)")
        data = rec.json
        if not isinstance(data, dict):
            raise _ValidationError("Body must be a JSON object")

        prompt = data.get("prompt")
        if prompt is None:
            raise _ValidationError("prompt: field required")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _ValidationError("prompt: must be a non-empty string")

        image = data.get("input_image")
        if image is None:
            raise _ValidationError("input_image: field required")
        if not isinstance(image, str) or not image.strip():
            raise _ValidationError("input_image: must be a non-empty string (URL or base64)")

        seed = data.get("seed", 42)
        if not _is_int(seed) or seed < -1:
            raise _ValidationError("seed: must be an integer >= -1 (-1 means random)")

        guidance = data.get("guidance", 7)
        if not _is_number(guidance) or not 0 <= guidance <= 10:
            raise _ValidationError("guidance: must be a number from 0 to 10")

        steps = data.get("num_inference_steps", 35)
        if not _is_int(steps) or not 4 <= steps <= 50:
            raise _ValidationError("num_inference_steps: must be an integer from 4 to 50")

        # flux-kontext-max defaults to 16:9 per the contract; the others match the input.
        default_ar = "16:9" if model == "flux-kontext-max" else "match_input_image"
        aspect = data.get("aspect_ratio", default_ar)
        if aspect not in ASPECT_RATIOS:
            raise _ValidationError(f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)}")

        fmt = data.get("output_format", "png")
        if fmt not in OUTPUT_FORMATS:
            raise _ValidationError(f"output_format: must be one of {', '.join(OUTPUT_FORMATS)}")

        quality = data.get("output_quality", 90)
        if not _is_int(quality) or not 0 <= quality <= 100:
            raise _ValidationError("output_quality: must be an integer from 0 to 100")

        # Documented as both `false` and `1`, so accept booleans and 0/1.
        dsc = data.get("disable_safety_checker", False)
        if not (isinstance(dsc, bool) or (_is_int(dsc) and dsc in (0, 1))):
            raise _ValidationError("disable_safety_checker: must be a boolean")

        if "safety_tolerance" in data:
            tol = data["safety_tolerance"]
            if not _is_int(tol) or not 0 <= tol <= 6:
                raise _ValidationError("safety_tolerance: must be an integer from 0 to 6")

        return {
            "prompt": prompt,
            "input_image": image.strip(),
            "seed": seed,
            "aspect_ratio": aspect,
            "output_format": fmt,
            "output_quality": quality,
        }

    async def _load_input(self, value: str) -> bytes:
        """Return the raw bytes of input_image: fetched when a URL, else base64-decoded."""
        if value.startswith(("http://", "https://")):
            return await self._fetch(value)
        payload = value
        if payload.startswith("data:"):
            header, sep, rest = payload.partition(",")
            if not sep or ";base64" not in header:
                raise _ValidationError("input_image: data URI must be base64-encoded")
            payload = rest
        try:
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _ValidationError("input_image: not a URL and not valid base64") from None

    async def _fetch(self, url: str) -> bytes:
        assert self._session is not None
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    log.info("input_image fetch got HTTP %s", resp.status)
                    raise _ValidationError("Could not fetch input_image")
                # read(n) returns whatever has arrived; loop until EOF or over the cap.
                data = b""
                while len(data) <= MAX_FETCH_BYTES:
                    chunk = await resp.content.read(MAX_FETCH_BYTES + 1 - len(data))
                    if not chunk:
                        break
                    data += chunk
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.info("input_image fetch failed: %r", exc)
            raise _ValidationError("Could not fetch input_image") from None
        if len(data) > MAX_FETCH_BYTES:
            raise _ValidationError("input_image: too large")
        return data


# ---------------------------------------------------------------------- image work


def _parse_ratio(aspect: str) -> float:
    w, h = aspect.split(":")
    return int(w) / int(h)


def _edit_image(source: bytes, aspect: str, fmt: str, quality: int) -> bytes:
    """Decode, invert, crop to ``aspect``, cap the size and encode; runs in a worker thread."""
    refused = _ValidationError("input_image: not a valid jpeg, png, gif or webp image")
    try:
        with Image.open(io.BytesIO(source)) as img:
            # Only what the contract lists, whatever else Pillow (with plugins) can read.
            if img.format not in INPUT_FORMATS:
                raise refused
            img.load()
            rgb = img.convert("RGB")  # first frame for GIFs; alpha dropped
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise refused from None

    # The "edit": inverting every pixel is trivial to verify from a test.
    out = ImageOps.invert(rgb)

    if aspect != "match_input_image":
        # Centre-crop (no resampling) so pixels stay comparable with the input.
        target = _parse_ratio(aspect)
        w, h = out.size
        if w / h > target:
            new_w, new_h = max(1, round(h * target)), h
        else:
            new_w, new_h = w, max(1, round(w / target))
        left, top = (w - new_w) // 2, (h - new_h) // 2
        out = out.crop((left, top, left + new_w, top + new_h))

    if max(out.size) > MAX_SIDE:
        out.thumbnail((MAX_SIDE, MAX_SIDE))

    buf = io.BytesIO()
    if fmt == "jpg":
        out.save(buf, format="JPEG", quality=quality)
    elif fmt == "webp":
        out.save(buf, format="WEBP", quality=quality)
    else:
        out.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------- CLI


async def _serve_forever(args: argparse.Namespace) -> None:
    fake = FakeSegmind(
        api_key=args.api_key,
        credits=args.credits,
        cost=args.cost,
        delay=args.delay,
        send_cost_header=args.send_cost_header,
    )
    await fake.start(host=args.host, port=args.port)
    print(f"Fake Segmind API at {fake.base_url} (models: {', '.join(fake.models)})", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    # Through the loop, not asyncio.run's own SIGINT handler: that one wakes the loop only
    # when the signal lands on the main thread, and after an image was edited in a worker
    # thread the kernel may deliver it there, leaving the loop asleep for ever.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``python -m tests.fake_segmind``."""
    parser = argparse.ArgumentParser(description="Local stand-in for Segmind's FLUX.1 Kontext API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--credits", type=float, default=100.0)
    parser.add_argument("--cost", type=float, default=0.04)
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before each answer"
    )
    parser.add_argument("--send-cost-header", action="store_true", help="also send x-cost")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Ctrl-C is the normal way to stop the dev server: exit quietly.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


if __name__ == "__main__":
    main()
