"""The token bucket on its own, with an injected clock: refill, burst, debt, bounds."""

from __future__ import annotations

import math

from service.resources.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 3, clock=clock)  # one token per second, burst 3
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0.99 < wait <= 1.0
    clock.now += 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter(60, 1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_a_cost_larger_than_the_bucket_is_never_let_through() -> None:
    # Issue 14 (2): 1,000 private evaluations passed on a full bucket of 10, on credit.
    clock = Clock()
    limiter = RateLimiter(60, 10, clock=clock)
    assert limiter.take("a", 25) == math.inf  # more than the bucket ever holds
    assert limiter.take("a", 10) == 0.0  # and refusing it cost nothing
    wait = limiter.take("a", 4)
    assert 3.9 < wait <= 4.0  # a cost that fits waits for its tokens
    clock.now += 4.0
    assert limiter.take("a", 4) == 0.0


def test_refused_requests_cost_nothing_more() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 1, clock=clock)
    limiter.take("a")
    for _ in range(5):
        assert limiter.take("a") > 0
    clock.now += 1.0
    assert limiter.take("a") == 0.0


def test_wait_for_does_not_spend() -> None:
    limiter = RateLimiter(60, 2, clock=Clock())
    assert limiter.wait_for("a", 2) == 0.0
    assert limiter.take("a", 2) == 0.0
    assert limiter.wait_for("a", 1) > 0


def test_zero_rate_is_unlimited_and_table_is_bounded() -> None:
    assert RateLimiter(0, 1).take("a", 1e9) == 0.0
    clock = Clock()
    limiter = RateLimiter(60, 1, clock=clock, max_buckets=3)
    for key in "abcde":
        limiter.take(key)
        clock.now += 1.0  # each bucket is full again a second after its take
    assert len(limiter._buckets) <= 3
    assert limiter.take("a") == 0.0  # "a" was full again when it was dropped


def test_eviction_never_forgives_what_a_bucket_spent() -> None:
    # Issue 14 (2): a drained bucket pushed out of the table came back full.
    clock = Clock()
    limiter = RateLimiter(6, 10, clock=clock, max_buckets=3)  # refills in 100 s
    assert limiter.take("attacker", 10) == 0.0
    for key in ("b", "c", "d", "e", "f"):  # a flood of newcomers...
        limiter.take(key)
    assert len(limiter._buckets) <= 4  # ...in a bounded table (plus the overflow bucket)
    assert limiter.take("attacker") > 0  # still drained
    clock.now += 100.0
    assert limiter.take("attacker") == 0.0


def test_newcomers_share_one_bucket_while_the_table_is_full_of_refilling_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(6, 2, clock=clock, max_buckets=2)
    limiter.take("a", 2)
    limiter.take("b", 2)
    assert [limiter.take(f"new-{i}") for i in range(3)][:2] == [0.0, 0.0]
    assert limiter.take("new-3") > 0  # the overflow bucket holds two tokens, like any
