"""The time budget of a handler: derived from the Lambda context, split for waits, fitted into botocore's config."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from auto_repair.deadline import Deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def context(remaining_ms: int) -> SimpleNamespace:
    return SimpleNamespace(get_remaining_time_in_millis=lambda: remaining_ms)


def test_from_context_keeps_the_margin_and_never_goes_negative():
    clock = FakeClock()
    assert Deadline.from_context(context(120_000), margin_s=10, clock=clock).remaining() == 110
    assert Deadline.from_context(context(3_000), margin_s=10, clock=clock).remaining() == 0
    assert math.isinf(Deadline.from_context(SimpleNamespace(), margin_s=10, clock=clock).remaining())


def test_a_wait_within_a_deadline_knows_which_bound_stopped_it():
    clock = FakeClock()
    parent = Deadline(clock() + 50, clock=clock)
    own = parent.within(20, keep_s=10)  # its own 20 s come first
    assert own.remaining() == 20 and not own.cut_short
    cut = parent.within(120, keep_s=10)  # the parent's 50 s less 10 kept
    assert cut.remaining() == 40 and cut.cut_short
    clock.now += 40
    assert cut.expired() and parent.reached and "own timeout" in cut.note()
    assert not parent.expired()  # the 10 s kept are still there


@pytest.mark.parametrize(("remaining", "attempts"), [
    (110.0, 2), (300.0, 5), (40.0, 1), (6.0, 1), (1.5, 1),
])
def test_botocore_config_fits_every_attempt_into_the_time_left(remaining, attempts):
    """Worst case of a call: every attempt connects and reads to its timeout, with a backoff between them."""
    clock = FakeClock()
    config = Deadline(clock() + remaining, clock=clock).botocore_config()
    got = config.retries["total_max_attempts"]
    worst = got * (config.connect_timeout + config.read_timeout) + (got - 1) * 2.0
    assert got == attempts
    assert worst <= max(remaining, 2.0)  # botocore's timeouts are at least 1 s each
    assert config.read_timeout <= 30 and config.connect_timeout <= 5


def test_botocore_config_without_a_deadline_is_the_usual_one():
    config = Deadline.unlimited().botocore_config()
    assert (config.read_timeout, config.connect_timeout, config.retries["total_max_attempts"]) == (30.0, 5.0, 5)
