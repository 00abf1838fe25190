"""From match keys to a verdict: was this person in a breach, and what of theirs leaked.

One function for one query and for a million: fingerprints are computed for the
whole batch, looked up in one vectorised call, then each query's keys are read back
strongest first. For each source the strongest matching key wins and its record's
data classes are reported (`exposed`); the top-level `match` is the strongest of all.
Queries come as canonical keys (`matchkeys.canonical_keys`), whose form says their
strength (`check_one`, `check_keys`), or as MatchKeys (`check`, `check_many`), which
carry the same.

A handful of keys (one `/v1/check`) is looked up key by key instead (numpy's call
overhead would cost ten times the lookup). A verdict depends only on which kinds of
key hit which class bits of which source: a few dozen combinations in practice. Each
is built once and the same object is returned to every query that has it, as
`NOT_FOUND` always was: verdicts are read-only. The cache holds class bits and key
kinds, never a key or a fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, Final, cast

import numpy as np

from indexer.core.matchkeys import MATCHED_ON, MatchKey, Strength, key_strength
from indexer.core.records import class_names
from indexer.index.reader import IndexReader

__all__ = ["NOT_FOUND", "Checker", "Verdict"]

Verdict = dict[str, Any]
"""The answer of docs/design.md §5: {"found", "match", "sources": [...]}, ready to serialise."""

NOT_FOUND: Final[Verdict] = {"found": False, "match": None, "sources": []}
_EXPOSED: Final = tuple(class_names(bits) for bits in range(256))
# Up to this many keys in a call, `IndexReader.lookup_one` key by key is faster than
# the vectorised `IndexReader.lookup` (measured: ~3 µs a key against ~25 µs for one
# key and ~1 µs a key at 1,000 keys).
SCALAR_KEYS: Final = 16
# Distinct verdicts kept; past this (a pathological index) the cache starts again.
MAX_VERDICTS: Final = 4096

Hits = bytes
"""A query's hits, the cache key of its verdict: for each of its keys found, in order,
b"s" (strong) or b"w" (weak) then its class bits per source (a byte each). A verdict
depends on nothing else, and one bytes object is the cheapest key to build."""
_TAGS: Final[dict[Strength, bytes]] = {"strong": b"s", "weak": b"w"}
_STRENGTHS: Final[dict[int, Strength]] = {ord(tag): strength for strength, tag in _TAGS.items()}

Found = Iterable[tuple[int, int, bytes]]
"""The keys found: (query number, position among all the keys, class bits), ascending."""


class Checker:
    """Answers queries against one opened generation."""

    def __init__(self, reader: IndexReader) -> None:
        self.reader = reader
        self._source_heads = [
            {"id": s.id, "title": s.title, "breach_date": s.breach_date} for s in reader.sources
        ]
        self._verdicts: dict[Hits, Verdict] = {}

    def check(self, keys: Sequence[MatchKey]) -> Verdict:
        return self.check_one([key.canonical for key in keys])

    def check_one(self, keys: Sequence[str]) -> Verdict:
        """The verdict of one query given as canonical keys, strongest first: what a
        `/v1/check` calls. `check_keys` for a single query, key by key, without its
        bookkeeping of which key belongs to which query."""
        one, fingerprint = self.reader.lookup_one, self.reader.fingerprinter.one
        hits = b""
        for canonical in keys:
            row = one(fingerprint(canonical))
            if row is not None:
                hits += _TAGS[key_strength(canonical)] + row
        return self._cached_verdict(hits) if hits else NOT_FOUND

    def check_many(self, queries: Sequence[Sequence[MatchKey]]) -> list[Verdict]:
        return self.check_keys([[key.canonical for key in keys] for keys in queries])

    def check_keys(self, queries: Sequence[Sequence[str]]) -> list[Verdict]:
        """The verdicts of queries given as canonical keys (`matchkeys.canonical_keys`).

        What bulk checks call: the keys' strengths follow from their form, so no
        MatchKey is built.
        """
        keys = list(chain.from_iterable(queries))
        if len(keys) <= SCALAR_KEYS:
            return [self.check_one(query) for query in queries]
        found = self._found_vectorised(queries, keys)
        verdicts: list[Verdict] = [NOT_FOUND] * len(queries)
        cached = self._cached_verdict
        owner, hits = -1, b""
        for query, position, row in found:
            if query != owner:
                if hits:
                    verdicts[owner] = cached(hits)
                owner, hits = query, b""
            hits += _TAGS[key_strength(keys[position])] + row
        if hits:
            verdicts[owner] = cached(hits)
        return verdicts

    def _found_vectorised(self, queries: Sequence[Sequence[str]], keys: list[str]) -> Found:
        positions, table = self.reader.lookup_hits(self.reader.fingerprinter.many(keys))
        # The query of each key found: the first whose keys end past its position.
        ends = np.fromiter(map(len, queries), dtype=np.intp, count=len(queries)).cumsum()
        owners: list[int] = ends.searchsorted(positions, side="right").tolist()
        # Each row as one bytes object, without a Python loop: a row is a void scalar.
        rows = np.ascontiguousarray(table).view(np.dtype((np.void, table.shape[1])))
        return zip(owners, positions.tolist(), cast(list[bytes], rows.ravel().tolist()),
                   strict=True)

    def _cached_verdict(self, hits: Hits) -> Verdict:
        verdict = self._verdicts.get(hits)
        if verdict is None:
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            verdict = self._verdicts[hits] = self._verdict(hits)
        return verdict

    def _verdict(self, hits: Hits) -> Verdict:
        # Keys come strongest first (parse_query's order), so the first key that hits a
        # source is the strongest match for it.
        by_source: dict[int, dict[str, Any]] = {}
        best: str | None = None
        width = 1 + self.reader.n_sources
        for start in range(0, len(hits), width):
            strength = _STRENGTHS[hits[start]]
            for source, bits in enumerate(hits[start + 1 : start + width]):
                if bits and source not in by_source:
                    by_source[source] = {
                        **self._source_heads[source],
                        "matched_on": list(MATCHED_ON[strength]),
                        "exposed": _EXPOSED[bits],
                    }
                    if best != "strong":
                        best = strength
        return {
            "found": True,
            "match": best,
            "sources": [by_source[s] for s in sorted(by_source)],
        }
