"""Usage of API keys counted in memory, for both key stores (SQLite and PostgreSQL).

A key's usage is counts per day (requests, records), never what was checked. Requests
count them on the event loop, where nothing may wait for a disk or a database; a store
writes them now and then with its own `write_usage`, in a worker thread. Rows it could
not write are put back and go with the next write.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections import Counter

__all__ = ["UsageCounts", "UsageRow"]

UsageRow = tuple[int, str, int, int]  # key id, day (YYYY-MM-DD, UTC), requests, records


class UsageCounts(abc.ABC):
    """The counting half of a key store; the store adds `write_usage(rows)`."""

    def __init__(self) -> None:
        self._pending: Counter[tuple[int, str, str]] = Counter()

    @abc.abstractmethod
    def write_usage(self, rows: list[UsageRow]) -> None:
        """Add `rows` to the stored usage, in one transaction (blocking: run it in a
        thread)."""

    def record_usage(self, key_id: int, *, requests: int = 0, records: int = 0) -> None:
        """Counted in memory; written by `flush_usage` (called periodically)."""
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        self._pending[(key_id, day, "requests")] += requests
        self._pending[(key_id, day, "records")] += records

    def flush_usage(self) -> None:
        """Write what was counted since the last flush (blocking)."""
        self.write_usage(self.take_usage())

    def take_usage(self) -> list[UsageRow]:
        """What was counted since the last call, as rows for `write_usage`; on the thread
        that counts (the event loop), so that no count is lost to a race."""
        pending, self._pending = self._pending, Counter()
        totals: dict[tuple[int, str], list[int]] = {}
        for (key_id, day, what), count in pending.items():
            entry = totals.setdefault((key_id, day), [0, 0])
            entry[0 if what == "requests" else 1] += count
        return [(k, d, r, n) for (k, d), (r, n) in totals.items()]

    def put_back_usage(self, rows: list[UsageRow]) -> None:
        """Count again rows that could not be written (the next flush retries them)."""
        for key_id, day, requests, records in rows:
            self._pending[(key_id, day, "requests")] += requests
            self._pending[(key_id, day, "records")] += records
