"""Client for Segmind's synchronous (v1) FLUX.1 Kontext endpoint.

The pipeline talks to `EditTransport`, so a v2 queue client can replace this one
without touching anything else.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
from PIL import Image

from bot.api_errors import KEY_REJECTED as KEY_REJECTED
from bot.api_errors import OUT_OF_CREDITS as OUT_OF_CREDITS
from bot.api_errors import AuthError as AuthError
from bot.api_errors import BadRequest as BadRequest
from bot.api_errors import ConnectFailed as ConnectFailed
from bot.api_errors import InsufficientCredits as InsufficientCredits
from bot.api_errors import InvalidResponse as InvalidResponse
from bot.api_errors import NotAcceptable as NotAcceptable
from bot.api_errors import RateLimited as RateLimited
from bot.api_errors import SegmindError as SegmindError
from bot.api_errors import SegmindTimeout as SegmindTimeout
from bot.api_errors import ServerError as ServerError
from bot.api_errors import error_for
from bot.api_transport import AiohttpTransport
from bot.clock import REAL_CLOCK, Clock
from bot.config import ApiSettings
from bot.images import ImageInfo, InvalidImage, sniff_image
from bot.params import EditParams
from bot.segmind_answers import header_float, header_int, header_text, retry_after

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 50 * 1024 * 1024  # a hostile or broken answer cannot exhaust memory
MAX_RETRY_AFTER_S = 60.0
DEADLINE_MARGIN_S = 5.0
BACKOFF_BASE_S = 0.5


@dataclass(frozen=True)
class EditResult:
    """The edited image and what the response headers said about it."""

    image: bytes
    info: ImageInfo
    elapsed_s: float
    remaining_credits: float | None
    cost: float | None
    seed: int | None
    request_id: str | None
    attempts: int


@dataclass(frozen=True)
class KeyCheck:
    """The answer to `check_key`: 200 (billed) or 422 (key fine, request refused)."""

    status: int
    remaining_credits: float | None
    cost: float | None

    @property
    def billed(self) -> bool:
        return self.status == 200


# The cheapest request the API accepts: a tiny image and the fewest steps allowed.
CHECK_SIDE = 64
CHECK_PARAMS = EditParams(
    prompt="keep this image as it is",
    seed=1,
    guidance=7.0,
    steps=4,
    aspect_ratio="match_input_image",
    output_format="jpg",
    quality=50,
)


@functools.cache
def _check_image() -> str:
    out = io.BytesIO()
    Image.new("RGB", (CHECK_SIDE, CHECK_SIDE), (128, 128, 128)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


class EditTransport(Protocol):
    """What the pipeline needs from an image-editing backend."""

    model: str

    async def edit(
        self, input_image: str, params: EditParams, *, disable_safety_checker: bool = False
    ) -> EditResult: ...


class SegmindClient:
    """One pooled HTTP client for the bot's life; bounded, explicit retries."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        model: str,
        timeout_s: float,
        max_retries: int = 2,
        http: httpx.AsyncClient | None = None,
        backoff_base_s: float = BACKOFF_BASE_S,
        deadline_margin_s: float = DEADLINE_MARGIN_S,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        """`clock` times the calls and waits out backoffs and 429 pauses."""
        self.model = model
        self._url = f"{base_url.rstrip('/')}/{model}"
        self._key = api_key
        self._clock = clock
        self._paused_until = -math.inf
        self._backoff_base_s = backoff_base_s
        self.max_response_bytes = max_response_bytes  # the largest answer read
        # The whole answer, not just each chunk, must arrive within this.
        self._deadline_s = timeout_s + deadline_margin_s
        self._max_retries = max_retries
        # Called after every attempt with its HTTP status (None: no answer) and duration.
        self.call_hooks: list[Callable[[int | None, float], object]] = []
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=10.0, write=30.0, pool=timeout_s),
            transport=AiohttpTransport(max_connections=20),
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> SegmindClient:
        """The client as the operator configured it (the bot and `kontext-bot edit`)."""
        return cls(
            api_key=settings.segmind_api_key.get_secret_value(),
            base_url=settings.segmind_base_url,
            model=settings.segmind_model,
            timeout_s=settings.segmind_timeout_s,
            max_retries=settings.segmind_max_retries,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _body(
        self, input_image: str, params: EditParams, disable_safety_checker: bool = False
    ) -> dict[str, object]:
        return {
            "prompt": params.prompt,
            "input_image": input_image,
            "seed": params.seed,
            "guidance": params.guidance,
            "num_inference_steps": params.steps,
            "aspect_ratio": params.aspect_ratio,
            "output_format": params.output_format,
            "output_quality": params.quality,
            "disable_safety_checker": disable_safety_checker,
        }

    async def edit(
        self, input_image: str, params: EditParams, *, disable_safety_checker: bool = False
    ) -> EditResult:
        """Run one edit, retrying only failures that cannot have been billed.
        `disable_safety_checker`: only ever true where the pipeline's rule allows it."""
        body = self._body(input_image, params, disable_safety_checker)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(body, attempt)
            except SegmindError as exc:
                if not exc.retryable or attempt > self._max_retries:
                    raise
                delay = self._backoff(attempt, exc)
                log.warning(
                    "Segmind attempt %d failed (%s); retrying in %.1fs",
                    attempt,
                    type(exc).__name__,
                    delay,
                )
                await self._clock.sleep(delay)

    def _backoff(self, attempt: int, exc: SegmindError) -> float:
        if isinstance(exc, RateLimited | ServerError):
            # A 429 or a 503 "come back later" holds back every call on this client, not
            # just the one that got it. (Only a 503 with Retry-After is ever retried.)
            base = self._backoff_base_s
            delay = exc.retry_after if exc.retry_after is not None else base * attempt
            self._paused_until = max(self._paused_until, self._clock.now() + delay)
            return delay
        # Full jitter keeps several bots (or tasks) from retrying in lockstep.
        return random.uniform(0, self._backoff_base_s * 2 ** (attempt - 1))

    async def _wait_out_rate_limit(self) -> None:
        wait = self._paused_until - self._clock.now()
        if wait > 0:
            log.info("Waiting %.1fs: the API asked every call to back off (429)", wait)
            await self._clock.sleep(wait)

    async def check_key(self) -> KeyCheck:
        """Send one minimal real edit (a 64x64 PNG, 4 steps) to prove the key works.

        A 200 (billed like an edit) or a 422 (refused, not billed) means the key
        authenticates; any other answer raises the usual SegmindError. Never retried.
        """
        body = self._body(_check_image(), CHECK_PARAMS)
        resp, payload = await self._post(body)
        if resp.status_code == 200:
            return KeyCheck(
                status=200,
                remaining_credits=header_float(resp.headers, "x-remaining-credits"),
                cost=header_float(resp.headers, "x-cost"),
            )
        if resp.status_code == 422:
            return KeyCheck(status=422, remaining_credits=None, cost=None)
        raise self._error_for(resp, payload)

    async def _post(self, body: dict[str, object]) -> tuple[httpx.Response, bytes]:
        """One POST, with transport failures mapped to SegmindError; the hooks hear of it."""
        await self._wait_out_rate_limit()
        started = self._clock.now()
        try:
            resp, payload = await self._exchange(body)
        except SegmindError as exc:
            self._tell(exc.status, self._clock.now() - started)
            raise
        self._tell(resp.status_code, self._clock.now() - started)
        return resp, payload

    def _tell(self, status: int | None, elapsed_s: float) -> None:
        for hook in self.call_hooks:
            hook(status, elapsed_s)

    async def _exchange(self, body: dict[str, object]) -> tuple[httpx.Response, bytes]:
        # Nothing compressed: the size cap counts the bytes as they arrive, and an answer
        # unpacked on the way could grow a thousandfold past it first.
        headers = {"x-api-key": self._key, "accept": "image/*", "accept-encoding": "identity"}
        try:
            # httpx's read timeout is per chunk: a slow drip could go on for ever.
            async with asyncio.timeout(self._deadline_s):
                async with self._http.stream("POST", self._url, json=body, headers=headers) as resp:
                    return resp, await self._read_capped(resp)
        except TimeoutError:
            raise SegmindTimeout("the API did not answer in time") from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectFailed(
                f"could not reach the API ({type(exc).__name__})", status=None
            ) from None
        except httpx.TimeoutException:
            raise SegmindTimeout("the API did not answer in time") from None
        except httpx.TransportError as exc:
            # The request may have been sent: its fate is unknown, so no retry.
            raise SegmindTimeout(f"connection lost ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:  # e.g. a body that fails to decode: it was answered
            raise InvalidResponse(
                f"unreadable answer ({type(exc).__name__})", status=None
            ) from None

    async def _once(self, body: dict[str, object], attempt: int) -> EditResult:
        started = self._clock.now()
        resp, payload = await self._post(body)
        elapsed = self._clock.now() - started
        if resp.status_code != 200:
            raise self._error_for(resp, payload)
        try:
            info = await asyncio.to_thread(sniff_image, payload)
        except InvalidImage:
            raise InvalidResponse(
                "the API answered with something that is not an image", status=200
            ) from None
        return EditResult(
            image=payload,
            info=info,
            elapsed_s=elapsed,
            remaining_credits=header_float(resp.headers, "x-remaining-credits"),
            cost=header_float(resp.headers, "x-cost"),
            seed=header_int(resp.headers, "x-seed-value"),
            request_id=header_text(resp.headers, "x-request-id"),
            attempts=attempt,
        )

    async def _read_capped(self, resp: httpx.Response) -> bytes:
        limit = self.max_response_bytes
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise InvalidResponse("the API's answer is too large", status=resp.status_code)
        chunks = bytearray()
        async for chunk in resp.aiter_raw():  # as sent: never unpacked
            chunks += chunk
            if len(chunks) > limit:
                raise InvalidResponse("the API's answer is too large", status=resp.status_code)
        return bytes(chunks)

    def _error_for(self, resp: httpx.Response, body: bytes) -> SegmindError:
        return error_for(
            resp.status_code,
            body,
            secret=self._key,
            model=self.model,
            retry_after=retry_after(resp.headers, MAX_RETRY_AFTER_S),
        )
