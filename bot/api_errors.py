"""What an API failure means for money: the error hierarchy of the Segmind client, and how
a status and a body map onto it.

Each error says whether sending the request again could double a bill (`retryable`) and
whether the failed call may have run and been billed (`maybe_billed`).
"""

from __future__ import annotations

import re

from bot.segmind_answers import error_text

# A 406 body that says the account is empty (the contract's 406: "not enough credits").
_NO_CREDITS = re.compile(r"credit|balance|insufficient|fund|top.?up|recharge", re.IGNORECASE)
# The operator problems' messages, which also name the incident when edits halt.
KEY_REJECTED = "the API key was rejected"
OUT_OF_CREDITS = "the Segmind account is out of credits"


class SegmindError(Exception):
    """An API failure; `message` is safe to show (never carries the key).

    `retryable`: sending it again cannot double a bill. `maybe_billed`: the call may have
    run and been billed although no usable answer came back.
    """

    retryable = False
    maybe_billed = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthError(SegmindError):
    """401: the key is wrong or revoked (an operator problem)."""


class InsufficientCredits(SegmindError):
    """A 406 whose answer says the account is out of credits (an operator problem)."""


class BadRequest(SegmindError):
    """Another 4xx: the request itself was refused; `message` is the API's reason."""


class NotAcceptable(BadRequest):
    """A 406 that does not say the account is empty: this request alone was refused.
    (Health still halts edits for it when the last balance is below one edit's cost.)"""


class RateLimited(SegmindError):
    """429: too many requests; `retry_after` seconds when the API said so."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class ServerError(SegmindError):
    """5xx. Only a 503 with `Retry-After` says the work was not taken ("come back later"):
    it is retried after that wait. Any other 5xx came after the request was sent and may
    have run the model, so it is never sent again automatically and counts as maybe billed
    (the next balance drop is not one call's own)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.retryable = status == 503 and retry_after is not None
        self.maybe_billed = not self.retryable


class ConnectFailed(SegmindError):
    """The request never reached the API (refused, DNS, connect timeout)."""

    retryable = True


class SegmindTimeout(SegmindError):
    """No answer in time. The call may still have run and been billed; never retried."""

    maybe_billed = True


class InvalidResponse(SegmindError):
    """A 200 whose body is not a usable image (billed, but unusable)."""

    maybe_billed = True


def error_for(
    status: int, body: bytes, *, secret: str, model: str, retry_after: float | None
) -> SegmindError:
    """The error an answer other than 200 means."""
    reason = error_text(body, secret)
    if status == 401:
        return AuthError(KEY_REJECTED, status=status)
    if status == 406:
        if _NO_CREDITS.search(reason):
            return InsufficientCredits(OUT_OF_CREDITS, status=status)
        return NotAcceptable(reason or "the API refused the request (406)", status=status)
    if status == 429:
        return RateLimited("rate limited by the API", retry_after=retry_after)
    if status >= 500:
        return ServerError(
            f"the API failed with status {status}", status=status, retry_after=retry_after
        )
    if status == 404:
        return BadRequest(f"unknown model `{model}` (404)", status=status)
    return BadRequest(reason or f"the API refused the request ({status})", status=status)
