"""The token bucket on its own, with an injected clock: refill, burst, debt, bounds."""

from __future__ import annotations

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


def test_a_cost_larger_than_the_bucket_is_charged_in_full() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 10, clock=clock)
    assert limiter.take("a", 25) == 0.0  # a full bucket lets it through...
    wait = limiter.take("a", 1)
    assert 15.9 < wait <= 16.0  # ...and the 15-token debt is repaid first
    clock.now += 16.0
    assert limiter.take("a", 1) == 0.0


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
    limiter = RateLimiter(60, 1, clock=Clock(), max_buckets=3)
    for key in "abcde":
        limiter.take(key)
    assert limiter.take("a") == 0.0  # "a" was evicted: a new, full bucket
