"""From one breach record to its match keys, its exposed data classes and its faults.

A record is indexed under every key that its valid fields still form: a bad NIR
does not stop the record being found by name and date of birth (docs/design.md §4). Faults
are returned as reason codes, to be counted; nothing here keeps or reports content.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Final

import numpy as np
import numpy.typing as npt

from indexer.core.identity import (
    IdentityError,
    normalize_birth_date,
    normalize_nir,
    read_given_name,
)
from indexer.core.matchkeys import (
    QueryName,
    deletion_positions,
    query_first_name,
    query_last_name,
    strong_key,
)

# Caches for the offline build only: a dump of 33 million people holds ~40,000 distinct
# dates of birth (twice that in two date formats), a few thousand distinct given names,
# and far fewer distinct names than rows; the builder reads the plaintext dumps anyway.
# The service never calls these (docs/design.md §2: no identifier in a cache): its
# queries go through `matchkeys.canonical_keys`, uncached.
_record_date = lru_cache(maxsize=1 << 17)(partial(normalize_birth_date, query=False))
_record_last = lru_cache(maxsize=1 << 17)(query_last_name)
# First-names fields combine given names so freely that a cache of whole fields misses
# about one row in five; a miss then reads its given names from the cache of those.
_given_name = lru_cache(maxsize=1 << 14)(read_given_name)


@lru_cache(maxsize=1 << 16)
def _record_first(raw: str) -> QueryName:
    """A record's first names read as a query's are."""
    return query_first_name(raw, "first_names", _given_name)


_WEAK_HEAD: Final = len("weak|")


@lru_cache(maxsize=1 << 17)
def _last_drops(name: str) -> tuple[int, ...]:
    """Where the letters of `deletion_positions` of a last name sit in a weak key."""
    return tuple(_WEAK_HEAD + i for i in deletion_positions(name))


@lru_cache(maxsize=1 << 16)
def _first_drops(given: str, start: int) -> tuple[int, ...]:
    """Where the letters of `deletion_positions` of a first given name sit in a weak
    key whose given name starts at `start`."""
    return tuple(start + i for i in deletion_positions(given))


__all__ = [
    "DATA_CLASSES", "CLASS_BITS", "NAMESPACES", "RecordKeys", "SimilarEntries", "class_names",
    "record_keys",
]

# The namespaces of the similar tier (docs/matching.md): a record's weak key with one
# letter of its last name deleted, of its first given name deleted, with another of its
# given names (or a part of a compound), with a part of its compound last name.
NS_LAST_DELETION, NS_FIRST_DELETION, NS_FIRST_PART, NS_LAST_PART = range(4)
NAMESPACES: Final = 4

# Fixed vocabulary, in this order (contract): answers list classes in this order.
DATA_CLASSES: Final = (
    "name", "birth_date", "nir", "birth_rank", "insurer", "marital_status", "tp_guarantee",
)
CLASS_BITS: Final = {name: 1 << i for i, name in enumerate(DATA_CLASSES)}
_NAME, _BIRTH_DATE, _NIR, _RANK, _INSURER, _MARITAL, _TP = (1 << i for i in range(7))

RecordKeys = tuple[list[str], int, list[str]]
"""(canonical keys, data-class bits, fault reasons)"""


class SimilarEntries:
    """Records' entries of the similar tier, in the form `Fingerprinter.many` takes.

    Entry i is `keys[i]` without its character at `drops[i]` (all of it when -1): a
    one-letter deletion is given as the record's own weak key and the letter's index,
    so no string is made for it. `counts` holds, per (last name, first names) pair of
    a record, its number of entries of each namespace, in NS_* order.
    """

    __slots__ = ("counts", "drops", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.drops: list[int] = []
        self.counts: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    def namespaces(self) -> npt.NDArray[np.intp]:
        """The namespace (NS_*) of each entry."""
        counts = np.array(self.counts, dtype=np.intp)
        each = np.tile(np.arange(NAMESPACES, dtype=np.intp), len(counts) // NAMESPACES)
        return np.repeat(each, counts)


def class_names(bits: int) -> list[str]:
    """The data classes set in `bits`, in the fixed order."""
    return [name for i, name in enumerate(DATA_CLASSES) if bits >> i & 1]


def record_keys(row: tuple[str, ...], similar: SimilarEntries | None = None) -> RecordKeys:
    """Keys, class bits and faults of a row in `dumps.DUMP_FIELDS` order.

    (nir, last_name, usage_name, first_names, birth_date, birth_rank, insurer,
    marital_status, tp_guarantee), each already stripped, "" when empty.

    Weak keys: each last name with the first given name, and with all the given names
    folded together (docs/design.md §3). With `similar`, the record's entries of the
    similar tier are appended there.
    """
    nir_raw, last_raw, usage_raw, first_raw, date_raw, rank, insurer, marital, tp = row
    # A class is exposed when the record's field is non-empty, valid or not: a
    # mistyped NIR in the dump has leaked all the same.
    classes = (
        (_NAME if (last_raw or usage_raw or first_raw) else 0)
        | (_BIRTH_DATE if date_raw else 0)
        | (_NIR if nir_raw else 0)
        | (_RANK if rank else 0)
        | (_INSURER if insurer else 0)
        | (_MARITAL if marital else 0)
        | (_TP if tp else 0)
    )
    faults: list[str] = []
    keys: list[str] = []
    if not date_raw:
        faults.append("missing_birth_date")
        faults.append("no_key")
        return keys, classes, faults
    try:
        birth_date = _record_date(date_raw)
    except IdentityError:
        faults.append("invalid_birth_date")
        faults.append("no_key")
        return keys, classes, faults
    if nir_raw:
        try:
            keys.append(strong_key(normalize_nir(nir_raw), birth_date))
        except IdentityError:
            faults.append("invalid_nir")
    if first_raw:
        try:
            first = _record_first(first_raw)
        except IdentityError:
            faults.append("invalid_first_name")
        else:
            for reason, raw in (("invalid_last_name", last_raw), ("invalid_usage_name", usage_raw)):
                if not raw:
                    continue
                try:
                    last = _record_last(raw)
                except IdentityError:
                    faults.append(reason)
                    continue
                key = f"weak|{last.first}|{first.first}|{birth_date}"
                if key in keys:
                    continue
                keys.append(key)
                if first.whole != first.first:
                    keys.append(f"weak|{last.first}|{first.whole}|{birth_date}")
                if similar is not None:
                    _similar_entries(key, last, first, birth_date, similar)
    if not keys:
        faults.append("no_key")
    return keys, classes, faults


def _similar_entries(
    key: str, last: QueryName, first: QueryName, birth_date: str, similar: SimilarEntries,
) -> None:
    """The entries of one weak key `key` (of `last`, `first` and `birth_date`): each
    distinct one-letter deletion of the last name, then of the first given name (as
    `matchkeys.deletions` lists them), the other given names, the parts of the last name."""
    name, given = last.first, first.first
    last_drops = _last_drops(name)
    first_drops = _first_drops(given, _WEAK_HEAD + len(name) + 1)
    keys, drops = similar.keys, similar.drops
    keys += [key] * (len(last_drops) + len(first_drops))
    drops += last_drops
    drops += first_drops
    if first.parts or last.parts:
        head, tail = f"weak|{name}|", f"|{birth_date}"
        keys += [f"{head}{part}{tail}" for part in first.parts]
        keys += [f"weak|{part}|{given}|{birth_date}" for part in last.parts]
        drops += [-1] * (len(first.parts) + len(last.parts))
    similar.counts += (len(last_drops), len(first_drops), len(first.parts), len(last.parts))
