"""Token-bucket rate limits, per client address or per API key.

Each bucket refills at `rate_per_minute` up to `burst` tokens. Buckets live in this
process only (docs/design.md §5: limits are per worker; the reverse proxy enforces the global
one). Nothing passes on credit, and the table is bounded without forgiving anything:
a bucket is dropped only once it is full again (see `_tokens`).
The keys are client addresses or key ids, never identifiers, and are never logged.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

__all__ = ["RateLimiter"]

_MAX_BUCKETS: Final = 100_000
# The bucket that newcomers share while the table is full of buckets still refilling.
_OVERFLOW: Final = "\x00overflow"

# tokens left, when they were counted, when the bucket will be full again
_Bucket = tuple[float, float, float]


class RateLimiter:
    def __init__(
        self,
        rate_per_minute: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = _MAX_BUCKETS,
    ) -> None:
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = max_buckets

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second <= 0

    def take(
        self, key: str, cost: float = 1.0, *, rate_per_minute: float | None = None,
        burst: float | None = None,
    ) -> float:
        """Spend `cost` tokens; 0.0 if allowed, else the seconds until it would be
        (`math.inf` when `cost` is more than the bucket ever holds).

        Nothing is let through on credit: a bucket never goes below zero, so there is no
        debt for an evicted bucket to forgive (issue 14). A refused request costs
        nothing: the caller decides whether to retry. `rate_per_minute`/`burst`
        override the defaults (per-key limits).
        """
        rate = self.rate_per_second if rate_per_minute is None else rate_per_minute / 60.0
        if rate <= 0:
            return 0.0
        capacity = self.burst if burst is None else float(burst)
        now = self._clock()
        key, tokens = self._tokens(key, capacity, rate, now)
        if tokens >= cost:
            tokens -= cost
            wait = 0.0
        else:
            wait = math.inf if cost > capacity else (cost - tokens) / rate
        self._buckets[key] = (tokens, now, now + (capacity - tokens) / rate)
        return wait

    def wait_for(
        self, key: str, cost: float = 1.0, *, rate_per_minute: float | None = None,
        burst: float | None = None,
    ) -> float:
        """Seconds until `min(cost, burst)` tokens are available, without spending any."""
        rate = self.rate_per_second if rate_per_minute is None else rate_per_minute / 60.0
        if rate <= 0:
            return 0.0
        capacity = self.burst if burst is None else float(burst)
        now = self._clock()
        entry = self._buckets.get(key)
        tokens = capacity if entry is None else min(capacity, entry[0] + (now - entry[1]) * rate)
        need = min(cost, capacity)
        return 0.0 if tokens >= need else (need - tokens) / rate

    def _tokens(self, key: str, capacity: float, rate: float, now: float) -> tuple[str, float]:
        """The bucket that pays for `key` (taken out of the table, most recent last when
        stored back) and its tokens now.

        The table is bounded. A bucket leaves it only once it is full again, when
        forgetting it forgives nothing; while the least recently used one is still
        refilling, newcomers share one overflow bucket instead of getting a fresh one
        each (an address flood larger than the table is limited as one client).
        """
        entry = self._buckets.pop(key, None)
        if entry is None:
            if len(self._buckets) >= self._max and not self._evict_one(now):
                key = _OVERFLOW
                entry = self._buckets.pop(key, None)
            if entry is None:
                return key, capacity
        tokens, stamp, _ = entry
        return key, min(capacity, tokens + (now - stamp) * rate)

    def _evict_one(self, now: float) -> bool:
        oldest = next(iter(self._buckets))
        if self._buckets[oldest][2] > now:
            return False
        del self._buckets[oldest]
        return True
