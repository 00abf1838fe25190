"""From canonical keys to a verdict: was this person in a breach, and what of theirs leaked.

One scalar path (`check_one`, a `/v1/check` or the form) and one vectorised path
(`check_keys`, bulk), both taking a query as its canonical keys
(`matchkeys.canonical_keys`) and giving the typed answer of docs/design.md §5. First
the exact keys (strong, weak): for each source the strongest matching key wins and
its record's data classes are reported (`exposed`); the top-level `match` is the
strongest of all. Only when no exact key matched, the `similar` probes
(`matchkeys.similar_probes`) are looked up in the exact index and in the similar tier:
each probe is one difference, so a similar match never needs two (docs/matching.md).

A verdict depends only on which kinds of key hit which class bits of which source: a
few dozen combinations in practice. Each is built once and the same object is
returned to every query that has it: verdicts are read-only. The cache holds class
bits and key kinds, never a key or a fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Final, NotRequired, TypedDict, cast

import numpy as np
import numpy.typing as npt

from indexer.core.matchkeys import (
    DIFFERENCES,
    MATCHED_ON,
    PROBE_DAY_MONTH,
    PROBE_DAY_MONTH_NIR,
    PROBE_FIRST_DELETION,
    PROBE_LAST_DELETION,
    PROBE_OWN,
    PROBE_PART,
    PROBE_SWAPPED,
    Difference,
    Level,
    similar_probes,
)
from indexer.core.records import (
    NS_FIRST_DELETION,
    NS_FIRST_PART,
    NS_LAST_DELETION,
    NS_LAST_PART,
    class_names,
)
from indexer.index.reader import IndexReader

__all__ = ["NOT_FOUND", "Checker", "SourceEntry", "Verdict"]


class SourceEntry(TypedDict):
    """One source of a verdict (docs/design.md §5)."""

    id: str
    title: str
    breach_date: str
    matched_on: list[str]
    exposed: list[str]
    differences: NotRequired[list[Difference]]


class Verdict(TypedDict):
    """The answer of docs/design.md §5, ready to serialise."""

    found: bool
    match: Level | None
    sources: list[SourceEntry]


NOT_FOUND: Final[Verdict] = {"found": False, "match": None, "sources": []}
_EXPOSED: Final = tuple(class_names(bits) for bits in range(256))
# Up to this many keys in a call, `IndexReader.lookup_one` key by key is faster than
# the vectorised `IndexReader.lookup` (measured: ~3 µs a key against ~25 µs for one
# key and ~1 µs a key at 1,000 keys).
SCALAR_KEYS: Final = 16
# Distinct verdicts kept; past this (a pathological index) the cache starts again.
MAX_VERDICTS: Final = 4096

Hits = bytes
"""A query's hits, the cache key of its verdict: for each hit, a tag byte (below) then
its class bits per source (a byte each). A verdict depends on nothing else, and one
bytes object is the cheapest key to build."""

# Tags: the exact kinds, then one per difference (weak fields), then day and month
# swapped under the NIR (strong fields).
_STRONG, _WEAK = ord("s"), ord("w")
_SPELLING, _NAME_PART, _SWAPPED, _DAY_MONTH, _DAY_MONTH_NIR = b"12345"
_EXACT_TAGS: Final = {"s": b"s", "w": b"w"}
_DIFFERENCE_OF: Final[dict[int, Difference]] = {
    _SPELLING: "spelling", _NAME_PART: "name_part", _SWAPPED: "names_swapped",
    _DAY_MONTH: "day_month_swapped", _DAY_MONTH_NIR: "day_month_swapped",
}
# Where each probe kind is looked up: its tag in the exact index (None: not there), and
# the (namespace, tag) pairs it is looked up under in the similar tier.
_EXACT_TAG_OF_PROBE: Final[dict[int, int | None]] = {
    PROBE_LAST_DELETION: _SPELLING, PROBE_FIRST_DELETION: _SPELLING, PROBE_OWN: None,
    PROBE_SWAPPED: _SWAPPED, PROBE_DAY_MONTH: _DAY_MONTH, PROBE_DAY_MONTH_NIR: _DAY_MONTH_NIR,
    PROBE_PART: _NAME_PART,
}
_TIER_OF_PROBE: Final[dict[int, tuple[tuple[int, int], ...]]] = {
    PROBE_LAST_DELETION: ((NS_LAST_DELETION, _SPELLING),),
    PROBE_FIRST_DELETION: ((NS_FIRST_DELETION, _SPELLING),),
    PROBE_OWN: ((NS_LAST_DELETION, _SPELLING), (NS_FIRST_DELETION, _SPELLING),
                (NS_FIRST_PART, _NAME_PART), (NS_LAST_PART, _NAME_PART)),
}

Found = Iterable[tuple[int, int, bytes]]
"""The keys found: (query number, position among all the keys, class bits), ascending."""


class Checker:
    """Answers queries against one opened generation."""

    def __init__(self, reader: IndexReader) -> None:
        self.reader = reader
        self._source_heads = [
            (s.id, s.title, s.breach_date) for s in reader.sources
        ]
        self._masks = reader.fingerprinter.namespace_masks
        self._verdicts: dict[Hits, Verdict] = {}
        # The probes' lookups in C, in one call a query, when the reader has them.
        self._search = reader.similar_search(
            bytes(tag or 0 for _, tag in sorted(_EXACT_TAG_OF_PROBE.items())),
            [[(self._masks[namespace], tag) for namespace, tag in _TIER_OF_PROBE.get(kind, ())]
             for kind in sorted(_EXACT_TAG_OF_PROBE)])

    def check_one(self, keys: Sequence[str]) -> Verdict:
        """The verdict of one query given as its canonical keys: what a `/v1/check`
        and the form call. In C when the reader has it; otherwise key by key, without
        numpy."""
        if self._search is not None:
            return self._native_verdicts((keys,))[0]
        one, fingerprint = self.reader.lookup_one, self.reader.fingerprinter.one
        hits = b""
        for canonical in keys:
            if canonical[0] == "p":  # the `part` probes come last: similar only
                break
            row = one(fingerprint(canonical))
            if row is not None:
                hits += _EXACT_TAGS[canonical[0]] + row
        if hits:
            return self._cached_verdict(hits)
        return self._similar_one(keys)

    def _similar_one(self, keys: Sequence[str]) -> Verdict:
        probes, drops, kinds = similar_probes(keys)
        one, tier, masks = self.reader.lookup_one, self.reader.similar.one, self._masks
        fps: list[int] = self.reader.fingerprinter.many(probes, drops).tolist()
        found: list[bytes] = []
        for fp, kind in zip(fps, kinds, strict=True):
            tag = _EXACT_TAG_OF_PROBE[kind]
            if tag is not None and (row := one(fp)) is not None:
                found.append(bytes((tag,)) + row)
            for namespace, tier_tag in _TIER_OF_PROBE.get(kind, ()):
                if (row := tier(fp ^ masks[namespace])) is not None:
                    found.append(bytes((tier_tag,)) + row)
        return self._cached_verdict(b"".join(sorted(found))) if found else NOT_FOUND

    def check_keys(self, queries: Sequence[Sequence[str]]) -> list[Verdict]:
        """The verdicts of many queries given as their canonical keys: what bulk
        checks call. In one C call when the reader has it; otherwise vectorised: one
        fingerprint call and one lookup call a pass."""
        if self._search is not None:
            return self._native_verdicts(queries)
        # The `part` probes come last in a query's keys, and few queries have any.
        exact = [
            query if not query or query[-1][0] != "p" else [k for k in query if k[0] != "p"]
            for query in queries
        ]
        keys = list(chain.from_iterable(exact))
        if len(keys) <= SCALAR_KEYS:
            return [self.check_one(query) for query in queries]
        found = self._found_vectorised(exact, keys)
        verdicts: list[Verdict] = [NOT_FOUND] * len(queries)
        cached = self._cached_verdict
        owner, hits = -1, b""
        for query, position, row in found:
            if query != owner:
                if hits:
                    verdicts[owner] = cached(hits)
                owner, hits = query, b""
            hits += _EXACT_TAGS[keys[position][0]] + row
        if hits:
            verdicts[owner] = cached(hits)
        missing = [i for i, verdict in enumerate(verdicts) if verdict is NOT_FOUND]
        if missing:
            self._similar_many(queries, missing, verdicts)
        return verdicts

    def _native_verdicts(self, queries: Sequence[Sequence[str]]) -> list[Verdict]:
        """`check_keys` in one C call (`_lookups.Similar.check`): each query's exact keys,
        then, when none matched, its similar probes; the same hits as the paths below."""
        assert self._search is not None
        fingerprinter, cached = self.reader.fingerprinter, self._cached_verdict
        found = self._search.check(queries, fingerprinter.digests_of,
                                   fingerprinter.similar_digests)
        return [cached(hits) if hits else NOT_FOUND for hits in found]

    def _found_vectorised(self, queries: Sequence[Sequence[str]], keys: list[str]) -> Found:
        positions, table = self.reader.lookup_hits(self.reader.fingerprinter.many(keys))
        # The query of each key found: the first whose keys end past its position.
        ends = np.fromiter(map(len, queries), dtype=np.intp, count=len(queries)).cumsum()
        owners: list[int] = ends.searchsorted(positions, side="right").tolist()
        return zip(owners, positions.tolist(), _rows_as_bytes(table), strict=True)

    def _similar_many(
        self, queries: Sequence[Sequence[str]], missing: list[int], verdicts: list[Verdict]
    ) -> None:
        """Fill in the verdicts of the `missing` queries from their similar probes."""
        probes: list[str] = []
        drops: list[int] = []
        kinds: list[int] = []
        counts: list[int] = []
        for index in missing:
            query_probes, query_drops, query_kinds = similar_probes(queries[index])
            probes += query_probes
            drops += query_drops
            kinds += query_kinds
            counts.append(len(query_kinds))
        fps = self.reader.fingerprinter.many(probes, drops)
        kind = np.array(kinds, dtype=np.intp)
        owner = np.repeat(np.array(missing, dtype=np.intp), counts)
        exact_tag = np.array(
            [-1 if t is None else t for _, t in sorted(_EXACT_TAG_OF_PROBE.items())],
            dtype=np.intp)[kind]
        # Lookups: (fingerprints, owners, tags) per place looked up.
        in_exact = np.flatnonzero(exact_tag >= 0)
        batches = [(self.reader.lookup_hits, fps[in_exact], owner[in_exact],
                    exact_tag[in_exact])]
        tier_fps, tier_owner, tier_tag = [], [], []
        for probe_kind, places in _TIER_OF_PROBE.items():
            chosen = np.flatnonzero(kind == probe_kind)
            for namespace, tag in places:
                tier_fps.append(fps[chosen] ^ np.uint64(self._masks[namespace]))
                tier_owner.append(owner[chosen])
                tier_tag.append(np.full(len(chosen), tag, dtype=np.intp))
        batches.append((self.reader.similar.hits, np.concatenate(tier_fps),
                        np.concatenate(tier_owner), np.concatenate(tier_tag)))
        found: dict[int, list[bytes]] = {}
        for lookup, batch_fps, batch_owner, batch_tag in batches:
            positions, rows = lookup(batch_fps)
            for query, tag, row in zip(batch_owner[positions].tolist(),
                                       batch_tag[positions].tolist(),
                                       _rows_as_bytes(rows), strict=True):
                found.setdefault(query, []).append(bytes((tag,)) + row)
        cached = self._cached_verdict
        for query, hits in found.items():
            verdicts[query] = cached(b"".join(sorted(hits)))

    def _cached_verdict(self, hits: Hits) -> Verdict:
        verdict = self._verdicts.get(hits)
        if verdict is None:
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            verdict = self._verdicts[hits] = self._verdict(hits)
        return verdict

    def _verdict(self, hits: Hits) -> Verdict:
        # Exact keys come strongest first (canonical_keys' order), so the first key that
        # hits a source is the strongest match for it. Similar hits come only when no
        # exact key hit, sorted by tag: a source lists every difference that found it.
        by_source: dict[int, SourceEntry] = {}
        best: Level | None = None
        width = 1 + self.reader.n_sources
        for start in range(0, len(hits), width):
            tag = hits[start]
            for source, bits in enumerate(hits[start + 1 : start + width]):
                if not bits:
                    continue
                entry = by_source.get(source)
                if tag in (_STRONG, _WEAK):
                    if entry is None:
                        by_source[source] = self._entry(
                            source, "strong" if tag == _STRONG else "weak", bits)
                        if best != "strong":
                            best = "strong" if tag == _STRONG else "weak"
                    continue
                difference = _DIFFERENCE_OF[tag]
                if entry is None:
                    entry = by_source[source] = self._entry(
                        source, "strong" if tag == _DAY_MONTH_NIR else "weak", bits)
                    entry["differences"] = []
                    best = best or "similar"
                if difference not in entry["differences"]:
                    entry["differences"].append(difference)
        for entry in by_source.values():
            if "differences" in entry:
                entry["differences"].sort(key=DIFFERENCES.index)
        return {
            "found": True,
            "match": best,
            "sources": [by_source[s] for s in sorted(by_source)],
        }

    def _entry(self, source: int, kind: str, bits: int) -> SourceEntry:
        source_id, title, breach_date = self._source_heads[source]
        return {
            "id": source_id, "title": title, "breach_date": breach_date,
            "matched_on": list(MATCHED_ON["strong" if kind == "strong" else "weak"]),
            "exposed": _EXPOSED[bits],
        }


def _rows_as_bytes(table: npt.NDArray[np.uint8]) -> list[bytes]:
    """Each row as one bytes object, without a Python loop: a row is a void scalar."""
    rows = np.ascontiguousarray(table).view(np.dtype((np.void, table.shape[1])))
    return cast(list[bytes], rows.ravel().tolist())
