"""Faults at the API that decide money: a 5xx that may have run the model is never sent
again, and only a 406 that says the account is empty halts edits (issue 12, items 4, 5)."""

from __future__ import annotations

import pytest

from bot.segmind import BadRequest, InsufficientCredits, SegmindError, ServerError
from tests.clock import ManualClock
from tests.fake_segmind import FakeSegmind
from tests.harness import Harness
from tests.test_segmind_client import edit, failure
from tests.world import GUILD_ID, MEMBER_ID


def edit_calls(fake: FakeSegmind) -> int:
    return len([r for r in fake.requests if r.method == "POST"])


async def used(h: Harness) -> float:
    return (await h.bot.core.ledger.status(GUILD_ID, MEMBER_ID, ())).used


# -- item 4: retry only what cannot have run the model ------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_5xx_after_the_request_was_sent_is_not_retried(
    segmind: FakeSegmind, status: int
) -> None:
    # The model ran and was billed, then the answer failed: a retry would bill it again.
    segmind.fail_next(status, billed=True, times=3)
    exc = await failure(segmind, max_retries=3)
    assert type(exc) is ServerError and exc.status == status
    assert not exc.retryable and exc.maybe_billed
    assert edit_calls(segmind) == 1
    assert segmind.calls_billed == 1


async def test_a_503_without_retry_after_is_not_retried(segmind: FakeSegmind) -> None:
    segmind.fail_next(503, billed=True)
    exc = await failure(segmind, max_retries=3)
    assert type(exc) is ServerError and not exc.retryable and exc.maybe_billed
    assert edit_calls(segmind) == 1


async def test_a_503_with_retry_after_is_retried_after_that_wait(segmind: FakeSegmind) -> None:
    # "Come back later": the service did not take the work, so nothing was billed.
    segmind.fail_next(503, headers={"Retry-After": "3"})
    clock = ManualClock(auto=True)
    result = await edit(segmind, clock=clock)
    assert result.attempts == 2
    assert clock.slept == [3.0]
    assert segmind.calls_billed == 1


async def test_a_connection_that_never_sent_the_request_and_a_429_are_still_retried(
    segmind: FakeSegmind,
) -> None:
    segmind.fail_next(429, headers={"Retry-After": "0"})
    assert (await edit(segmind)).attempts == 2
    assert segmind.calls_billed == 1


async def test_a_server_error_tells_the_member_to_try_again_and_costs_nothing(
    harness: Harness,
) -> None:
    h = harness
    h.segmind.fail_next(500, billed=True, times=2)

    answer = await h.answer(await h.edit("make it night"))

    assert "try again" in answer["content"] and "not charged" in answer["content"]
    assert edit_calls(h.segmind) == 1  # once: the member decides whether to pay the risk again
    assert [(c.state, c.amount) for c in await h.charges()] == [("released", 0)]
    assert await used(h) == 0
    assert h.bot.core.health.halted_reason is None


# -- item 5: only a 406 that says the account is empty halts ------------------------------


async def test_a_406_whose_body_says_out_of_credits_is_insufficient_credits(
    segmind: FakeSegmind,
) -> None:
    segmind.out_of_credits_next()
    exc = await failure(segmind)
    assert type(exc) is InsufficientCredits and exc.status == 406


async def test_another_406_is_a_refusal_with_the_apis_reason(segmind: FakeSegmind) -> None:
    segmind.fail_next(406, body={"error": "Not Acceptable: output_format webp is unavailable"})
    exc = await failure(segmind, max_retries=2)
    assert isinstance(exc, BadRequest) and not isinstance(exc, InsufficientCredits)
    assert exc.status == 406
    assert exc.message == "Not Acceptable: output_format webp is unavailable"
    assert edit_calls(segmind) == 1


async def test_another_406_fails_that_edit_alone_and_edits_keep_running(
    harness: Harness,
) -> None:
    h = harness
    h.segmind.fail_next(406, body={"error": "Not Acceptable"})

    refused = await h.answer(await h.edit("make it night"))

    assert "Not Acceptable" in refused["content"] and "not charged" in refused["content"]
    assert "admins have been told" not in refused["content"]
    assert h.bot.core.health.halted_reason is None
    assert (await h.answer(await h.edit("again")))["attachments"]
    assert edit_calls(h.segmind) == 2


async def test_a_406_saying_out_of_credits_halts_edits(harness: Harness) -> None:
    h = harness
    h.segmind.out_of_credits_next()
    answer = await h.answer(await h.edit("make it night"))
    assert "admins have been told" in answer["content"]
    assert h.bot.core.health.halted_reason is not None


async def test_a_406_with_a_balance_below_one_edit_halts_whatever_its_body(
    harness: Harness,
) -> None:
    h = harness
    h.segmind.credits = 0.06  # one edit at 0.04 leaves 0.02: less than another edit
    assert (await h.answer(await h.edit("one")))["attachments"]
    h.segmind.fail_next(406, body=b"")

    answer = await h.answer(await h.edit("two"))

    assert "admins have been told" in answer["content"]
    assert h.bot.core.health.halted_reason is not None


def test_errors_say_whether_they_may_have_been_billed() -> None:
    # A 5xx other than 503 + Retry-After may have run the model: the meter must not
    # measure the next call's cost from a balance it may have moved.
    assert ServerError("x", status=500).maybe_billed
    assert not ServerError("x", status=503, retry_after=2.0).maybe_billed
    assert ServerError("x", status=503, retry_after=2.0).retryable
    assert not isinstance(ServerError("x", status=500), InsufficientCredits)
    assert issubclass(ServerError, SegmindError)
