"""Match keys: the canonical strings a person is indexed and looked up under.

A record is indexed under a *strong* key (NIR + date of birth) and *weak* keys
(last name + first name + date of birth, once per last name it carries). A query
builds the same keys from what it was given. Both sides go through this module and
through `identity`, so a key can only match when the traits really are equivalent.

The canonical forms are those of DESIGN §7 (contract: the private-lookup clients
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

from .identity import IdentityError, fold_name, normalize_birth_date, normalize_nir

__all__ = [
    "QUERY_FIELDS",
    "MatchKey",
    "QueryError",
    "parse_query",
    "strong_key",
    "weak_key",
]

Strength = Literal["strong", "weak"]
QUERY_FIELDS: Final = ("nir", "birth_date", "last_name", "first_name")
STRONG_FIELDS: Final = ("nir", "birth_date")
WEAK_FIELDS: Final = ("last_name", "first_name", "birth_date")


def strong_key(nir: str, birth_date: str) -> str:
    return f"strong|{nir}|{birth_date}"


def weak_key(last_name: str, first_name: str, birth_date: str) -> str:
    return f"weak|{last_name}|{first_name}|{birth_date}"


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


def parse_query(
    fields: Mapping[str, object], *, today: dt.date | None = None,
    memo: dict[tuple[str, str], str] | None = None,
) -> list[MatchKey]:
    """The match keys of a query, strong first.

    Empty or blank fields count as absent. Every supplied field must be valid, even
    when another complete key could be formed: a typo is reported, never ignored.

    `memo` lets one bulk request reuse the normalised names and dates of its earlier
    lines (a member file repeats them a lot). It belongs to that request and dies with
    it: nothing here keeps an identifier beyond the request (DESIGN §2).
    """
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
            elif (known := memo.get((name, value))) is not None:
                normal[name] = known
            else:
                normal[name] = memo[(name, value)] = _normalize_query_field(
                    name, value, today)
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


def _complete_keys(normal: Mapping[str, str]) -> list[MatchKey]:
    keys: list[MatchKey] = []
    birth_date = normal.get("birth_date")
    if birth_date is not None:
        if "nir" in normal:
            keys.append(MatchKey("strong", strong_key(normal["nir"], birth_date), STRONG_FIELDS))
        if "last_name" in normal and "first_name" in normal:
            keys.append(
                MatchKey(
                    "weak",
                    weak_key(normal["last_name"], normal["first_name"], birth_date),
                    WEAK_FIELDS,
                )
            )
    if keys:
        return keys
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
