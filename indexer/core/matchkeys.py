"""Match keys: the canonical strings a person is indexed and looked up under.

A record is indexed under a *strong* key (NIR + date of birth) and *weak* keys
(last name + first name + date of birth, once per last name it carries). A query
builds the same keys from what it was given. Both sides go through this module and
through `identity`, so a key can only match when the traits really are equivalent.

The canonical forms are those of docs/design.md §7 (contract: the private-lookup clients
compute them too):
    strong|<NIR, 15 chars>|<YYYY-MM-DD>
    weak|<folded last name>|<folded first name>|<YYYY-MM-DD>

Pure functions, no I/O. Canonical keys are identifiers: never log them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from indexer.core.identity import IdentityError, fold_name, normalize_birth_date, normalize_nir

__all__ = [
    "MATCHED_ON",
    "QUERY_FIELDS",
    "MatchKey",
    "QueryError",
    "QueryMemo",
    "canonical_keys",
    "key_strength",
    "parse_query",
    "strong_key",
    "weak_key",
]

Strength = Literal["strong", "weak"]
QUERY_FIELDS: Final = ("nir", "birth_date", "last_name", "first_name")
STRONG_FIELDS: Final = ("nir", "birth_date")
WEAK_FIELDS: Final = ("last_name", "first_name", "birth_date")
MATCHED_ON: Final[dict[Strength, tuple[str, ...]]] = {
    "strong": STRONG_FIELDS, "weak": WEAK_FIELDS}
"""The query fields a key of each strength is made of."""
MEMO_ENTRIES: Final = 1 << 16


def strong_key(nir: str, birth_date: str) -> str:
    return f"strong|{nir}|{birth_date}"


def weak_key(last_name: str, first_name: str, birth_date: str) -> str:
    return f"weak|{last_name}|{first_name}|{birth_date}"


def key_strength(canonical: str) -> Strength:
    """The strength of a canonical key, which its form spells out."""
    return "strong" if canonical.startswith("strong|") else "weak"


@dataclass(frozen=True, slots=True)
class MatchKey:
    """One key of a query: its strength, canonical form and the fields it used."""

    strength: Strength
    canonical: str
    matched_on: tuple[str, ...]


class QueryError(ValueError):
    """A query with invalid fields or without a complete key; carries field errors."""

    def __init__(self, errors: list[IdentityError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.code}" for e in errors))
        self.errors = errors


# What a memo table answers for a field that is absent (None) or empty ("").
_ABSENT: Final[dict[object, str]] = {None: "", "": ""}


class QueryMemo:
    """The normalised dates and names of one request's earlier lines, by raw value.

    A member file repeats them a lot (a date of birth is shared by thousands of people,
    a name by more), so one bulk request normalises each once. The memo belongs to
    that request and dies with it: nothing keeps an identifier beyond the request
    (docs/design.md §2). NIRs are never kept: they are unique per person, nothing to reuse.
    It holds at most `max_entries` values: past that it starts again.

    Each table also maps None (field absent) and "" (field empty) to "" (absent), so
    that one dictionary read per field answers the fast path of `canonical_keys`.
    """

    __slots__ = ("_size", "_tables", "birth_dates", "first_names", "last_names", "max_entries")

    def __init__(self, max_entries: int = MEMO_ENTRIES) -> None:
        self.max_entries = max_entries
        # Keyed by the raw value as received: only strings (and None) are ever stored,
        # but the fast path looks up whatever the line holds.
        self.birth_dates: dict[object, str] = dict(_ABSENT)
        self.last_names: dict[object, str] = dict(_ABSENT)
        self.first_names: dict[object, str] = dict(_ABSENT)
        self._tables = {"birth_date": self.birth_dates, "last_name": self.last_names,
                        "first_name": self.first_names}
        self._size = 0

    def __len__(self) -> int:
        """How many values are remembered (the seeded absent ones not counted)."""
        return self._size

    def known(self, name: str, raw: str) -> str | None:
        """The normalised form of a raw date or name seen earlier, else None."""
        return self._tables[name].get(raw)

    def normalise(self, name: str, raw: object, today: dt.date | None) -> str | None:
        """The normal form of a date or name not remembered yet, now remembered; None
        when it has none (not a string, blank or invalid: the general path says why)."""
        if type(raw) is not str or not raw.strip():
            return None
        try:
            normal = _normalize_query_field(name, raw, today)
        except IdentityError:
            return None
        self.remember(name, raw, normal)
        return normal

    def remember(self, name: str, raw: str, normal: str) -> None:
        """Keep a value not remembered yet."""
        if self._size >= self.max_entries:
            for table in self._tables.values():
                table.clear()
                table.update(_ABSENT)
            self._size = 0
        self._tables[name][raw] = normal
        self._size += 1


def parse_query(
    fields: Mapping[str, object], *, today: dt.date | None = None,
    memo: QueryMemo | None = None,
) -> list[MatchKey]:
    """The match keys of a query, strong first.

    Empty or blank fields count as absent. Every supplied field must be valid, even
    when another complete key could be formed: a typo is reported, never ignored.
    `memo`: as for `canonical_keys`.
    """
    keys = []
    for canonical in canonical_keys(fields, today=today, memo=memo):
        strength = key_strength(canonical)
        keys.append(MatchKey(strength, canonical, MATCHED_ON[strength]))
    return keys


def canonical_keys(
    fields: Mapping[str, object], *, today: dt.date | None = None,
    memo: QueryMemo | None = None,
) -> tuple[str, ...]:
    """The canonical forms of the match keys of a query, strong first.

    `parse_query` without the MatchKey objects, for bulk checks: a key's strength and
    fields follow from its form (`key_strength`, `MATCHED_ON`). Raises QueryError.

    `memo` lets one bulk request reuse the normalised names and dates of its earlier
    lines (see `QueryMemo`); it serves one request, and so one `today`.
    """
    if memo is not None:
        # The fast path of bulk requests: the date and names are valid (or absent; most
        # were seen on an earlier line of the request), and so is the NIR if any. It
        # gives the keys `_parse_fields` gives for the same fields; every other query
        # (an error, a blank, a value that is not a string) takes that general path,
        # so errors are the general path's alone.
        get = fields.get
        raw_date, raw_last, raw_first = get("birth_date"), get("last_name"), get("first_name")
        try:
            birth_date = memo.birth_dates.get(raw_date)
            last_name = memo.last_names.get(raw_last)
            first_name = memo.first_names.get(raw_first)
        except TypeError:  # a list or an object, not hashable: an error
            birth_date = last_name = first_name = None
        if birth_date is None:
            birth_date = memo.normalise("birth_date", raw_date, today)
        if last_name is None:
            last_name = memo.normalise("last_name", raw_last, today)
        if first_name is None:
            first_name = memo.normalise("first_name", raw_first, today)
        # The f-strings are strong_key and weak_key, inlined: a call each saved per line.
        if birth_date and last_name is not None and first_name is not None:
            nir = get("nir")
            if nir is None or nir == "":
                if last_name and first_name:
                    return (f"weak|{last_name}|{first_name}|{birth_date}",)
            elif type(nir) is str:
                try:
                    nir = normalize_nir(nir)
                except IdentityError:
                    pass
                else:
                    if last_name and first_name:
                        return (f"strong|{nir}|{birth_date}",
                                f"weak|{last_name}|{first_name}|{birth_date}")
                    return (f"strong|{nir}|{birth_date}",)
    return _parse_fields(fields, today, memo)


def _parse_fields(
    fields: Mapping[str, object], today: dt.date | None, memo: QueryMemo | None
) -> tuple[str, ...]:
    supplied: dict[str, str] = {}
    errors: list[IdentityError] = []
    for name in QUERY_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            errors.append(IdentityError(name, "invalid_type", "This field must be a string."))
        elif value.strip():
            supplied[name] = value
    normal: dict[str, str] = {}
    for name, value in supplied.items():
        try:
            if memo is None or name == "nir":  # NIRs are unique per person: no reuse
                normal[name] = _normalize_query_field(name, value, today)
            elif (known := memo.known(name, value)) is not None:
                normal[name] = known
            else:
                normal[name] = _normalize_query_field(name, value, today)
                memo.remember(name, value, normal[name])
        except IdentityError as exc:
            errors.append(exc)
    if errors:
        raise QueryError(errors)
    return _complete_keys(normal)


def _normalize_query_field(name: str, value: str, today: dt.date | None) -> str:
    if name == "nir":
        return normalize_nir(value, name)
    if name == "birth_date":
        return normalize_birth_date(value, name, today=today)
    # A query first name is folded whole, so "Jean Pierre" and "Jean-Pierre" both
    # give JEANPIERRE: the record's first given name "JEAN-PIERRE" folds the same.
    return fold_name(value, name)


def _complete_keys(normal: Mapping[str, str]) -> tuple[str, ...]:
    keys: list[str] = []
    birth_date = normal.get("birth_date")
    if birth_date is not None:
        if "nir" in normal:
            keys.append(strong_key(normal["nir"], birth_date))
        if "last_name" in normal and "first_name" in normal:
            keys.append(weak_key(normal["last_name"], normal["first_name"], birth_date))
    if keys:
        return tuple(keys)
    raise QueryError(list(_missing_fields(normal)))


def _missing_fields(normal: Mapping[str, str]) -> Iterable[IdentityError]:
    if "birth_date" not in normal:
        yield IdentityError(
            "birth_date", "required", "The date of birth is needed for every lookup."
        )
    if "nir" in normal:
        return
    has_last, has_first = "last_name" in normal, "first_name" in normal
    if has_last and not has_first:
        yield IdentityError("first_name", "required", "Give the first name with the last name.")
    elif has_first and not has_last:
        yield IdentityError("last_name", "required", "Give the last name with the first name.")
    elif not has_last:
        yield IdentityError(
            "nir", "incomplete_key",
            "Give the social security number, or the last and first names.",
        )
