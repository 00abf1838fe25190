"""From match keys to a verdict: was this person in a breach, and what of theirs leaked.

One function for one query and for a million: fingerprints are computed for the
whole batch, looked up in one vectorised call, then each query's keys are read back
strongest first. For each source the strongest matching key wins and its record's
data classes are reported (`exposed`); the top-level `match` is the strongest of all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast

from .matchkeys import MatchKey
from .reader import IndexReader
from .records import class_names

__all__ = ["NOT_FOUND", "Checker", "Verdict"]

Verdict = dict[str, Any]
"""The answer of DESIGN §5: {"found", "match", "sources": [...]}, ready to serialise."""

NOT_FOUND: Final[Verdict] = {"found": False, "match": None, "sources": []}
_EXPOSED: Final = tuple(class_names(bits) for bits in range(256))


class Checker:
    """Answers queries against one opened generation."""

    def __init__(self, reader: IndexReader) -> None:
        self.reader = reader
        self._source_heads = [
            {"id": s.id, "title": s.title, "breach_date": s.breach_date} for s in reader.sources
        ]

    def check(self, keys: Sequence[MatchKey]) -> Verdict:
        return self.check_many([keys])[0]

    def check_many(self, queries: Sequence[Sequence[MatchKey]]) -> list[Verdict]:
        canonicals = [key.canonical for keys in queries for key in keys]
        rows = self.reader.lookup(self.reader.fingerprinter.many(canonicals))
        hits = cast(list[bool], rows.any(axis=1).tolist())
        verdicts: list[Verdict] = []
        position = 0
        for keys in queries:
            end = position + len(keys)
            if any(hits[position:end]):
                verdicts.append(self._verdict(keys, rows[position:end].tolist()))
            else:
                verdicts.append(NOT_FOUND)
            position = end
        return verdicts

    def _verdict(self, keys: Sequence[MatchKey], rows: list[list[int]]) -> Verdict:
        # Keys come strongest first (parse_query's order), so the first key that hits a
        # source is the strongest match for it.
        by_source: dict[int, dict[str, Any]] = {}
        best: str | None = None
        for key, row in zip(keys, rows, strict=True):
            for source, bits in enumerate(row):
                if bits and source not in by_source:
                    by_source[source] = {
                        **self._source_heads[source],
                        "matched_on": list(key.matched_on),
                        "exposed": _EXPOSED[bits],
                    }
                    if best is None or key.strength == "strong":
                        best = "strong" if key.strength == "strong" else (best or "weak")
        return {
            "found": True,
            "match": best,
            "sources": [by_source[s] for s in sorted(by_source)],
        }
