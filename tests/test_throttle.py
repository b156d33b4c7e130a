"""The rule behind "at most one public answer per member per 30 s" (bot/throttle.py), on a
clock the test moves."""

from __future__ import annotations

from bot.throttle import PUBLIC_ANSWER_INTERVAL_S, AnswerThrottle
from tests.clock import ManualClock

ALICE, BOB = (1, 101), (1, 102)


def test_one_answer_per_member_per_interval() -> None:
    clock = ManualClock()
    answers = AnswerThrottle(clock=clock.now)
    assert PUBLIC_ANSWER_INTERVAL_S == 30
    assert answers.may_answer(ALICE)
    assert not answers.may_answer(ALICE)
    assert answers.may_answer(BOB)  # each member on their own
    clock.advance(29.9)
    assert not answers.may_answer(ALICE)  # a refusal meanwhile does not restart the wait
    clock.advance(0.1)
    assert answers.may_answer(ALICE)
    assert not answers.may_answer(ALICE)


def test_members_long_quiet_are_forgotten() -> None:
    clock = ManualClock()
    answers = AnswerThrottle(clock=clock.now, interval_s=30, remember=2)
    for member in [(1, n) for n in range(5)]:
        assert answers.may_answer(member)
    clock.advance(31)
    assert answers.may_answer((1, 99))
    assert answers.remembered <= 2
