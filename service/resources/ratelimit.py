"""Token-bucket rate limits, per client address or per API key.

Each bucket refills at `rate_per_minute` up to `burst` tokens. Buckets live in this
process only (docs/design.md §5: limits are per worker; the reverse proxy enforces the global
one). The table is bounded: the least recently used buckets are dropped first, and a
dropped bucket would have been full again anyway after `burst / rate` minutes.
The keys are client addresses or key ids, never identifiers, and are never logged.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

__all__ = ["RateLimiter"]

_MAX_BUCKETS: Final = 100_000


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
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max = max_buckets

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second <= 0

    def take(
        self, key: str, cost: float = 1.0, *, rate_per_minute: float | None = None,
        burst: float | None = None,
    ) -> float:
        """Spend `cost` tokens; 0.0 if allowed, else the seconds until it would be.

        A refused request still costs nothing more: the caller decides whether to
        retry. `rate_per_minute`/`burst` override the defaults (per-key limits).
        """
        rate = self.rate_per_second if rate_per_minute is None else rate_per_minute / 60.0
        if rate <= 0:
            return 0.0
        capacity = self.burst if burst is None else float(burst)
        now = self._clock()
        tokens, stamp = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - stamp) * rate)
        # A cost larger than the bucket can ever hold is let through when the bucket is
        # full and charged in full: the bucket goes into debt, and the debt is repaid at
        # the refill rate before anything else passes. Nothing is ever free.
        need = min(cost, capacity)
        if tokens >= need:
            self._store(key, tokens - cost, now)
            return 0.0
        self._store(key, tokens, now)
        return (need - tokens) / rate

    def wait_for(
        self, key: str, cost: float = 1.0, *, rate_per_minute: float | None = None,
        burst: float | None = None,
    ) -> float:
        """Seconds until `cost` tokens are available, without spending any."""
        rate = self.rate_per_second if rate_per_minute is None else rate_per_minute / 60.0
        if rate <= 0:
            return 0.0
        capacity = self.burst if burst is None else float(burst)
        tokens, stamp = self._buckets.get(key, (capacity, self._clock()))
        tokens = min(capacity, tokens + (self._clock() - stamp) * rate)
        need = min(cost, capacity)
        return 0.0 if tokens >= need else (need - tokens) / rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
