"""Match keys: the canonical strings a person is indexed and looked up under.

A record is indexed under a *strong* key (NIR + date of birth) and *weak* keys
(last name + first name + date of birth, for each last name it carries and for its
first given name and all its given names folded together). A query builds the same
keys from what it was given. Both sides go through this module and through
`identity`, so a key can only match when the traits really are equivalent.

The canonical forms are those of docs/design.md §7 (contract: the private-lookup clients
compute them too):
    strong|<NIR, 15 chars>|<YYYY-MM-DD>
    weak|<folded last name>|<folded first name>|<YYYY-MM-DD>
A query may add `part|...` keys (the weak form, one part of a compound name or a
given name other than the first): probes of a `similar` match, never exact ones.
`similar_probes` derives the other similar probes from a query's keys
(docs/design.md §3, "Similar matches"; why these: docs/matching.md).

Pure functions, no I/O. Canonical keys are identifiers: never log them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Final, Literal, NamedTuple, TypeVar

from indexer.core.identity import (
    GivenName,
    IdentityError,
    fold_name,
    name_parts,
    normalize_birth_date,
    normalize_nir,
    read_given_name,
    read_given_names,
)

__all__ = [
    "DIFFERENCES",
    "MATCHED_ON",
    "QUERY_FIELDS",
    "Difference",
    "KeyKind",
    "Level",
    "Probes",
    "QueryError",
    "QueryMemo",
    "QueryName",
    "canonical_keys",
    "deletion_positions",
    "deletions",
    "exact_keys",
    "key_kind",
    "query_first_name",
    "query_last_name",
    "similar_probes",
    "strong_key",
    "weak_key",
]

KeyKind = Literal["strong", "weak", "part"]
Level = Literal["strong", "weak", "similar"]
Difference = Literal["spelling", "name_part", "names_swapped", "day_month_swapped"]
DIFFERENCES: Final[tuple[Difference, ...]] = (
    "spelling", "name_part", "names_swapped", "day_month_swapped")
"""The kinds of difference a `similar` match reports, in this order (contract)."""
QUERY_FIELDS: Final = ("nir", "birth_date", "last_name", "first_name")
STRONG_FIELDS: Final = ("nir", "birth_date")
WEAK_FIELDS: Final = ("last_name", "first_name", "birth_date")
MATCHED_ON: Final[dict[KeyKind, tuple[str, ...]]] = {
    "strong": STRONG_FIELDS, "weak": WEAK_FIELDS, "part": WEAK_FIELDS}
"""The query fields a key of each kind is made of."""
MEMO_ENTRIES: Final = 1 << 17
_T = TypeVar("_T")


def strong_key(nir: str, birth_date: str) -> str:
    return f"strong|{nir}|{birth_date}"


def weak_key(last_name: str, first_name: str, birth_date: str) -> str:
    return f"weak|{last_name}|{first_name}|{birth_date}"


_KINDS: Final[dict[str, KeyKind]] = {"s": "strong", "w": "weak", "p": "part"}


def key_kind(canonical: str) -> KeyKind:
    """The kind of a canonical key, which its form spells out."""
    return _KINDS[canonical[0]]


def exact_keys(keys: Iterable[str]) -> list[str]:
    """The strong and weak keys among a query's keys: what a private lookup checks."""
    return [key for key in keys if key[0] != "p"]


class QueryName(NamedTuple):
    """The normal form of a query's last-name or first-name field.

    `first`: the fold of a last name, the first given name of a first-names field;
    `whole`: every given name folded together (`Jean Pierre` -> JEANPIERRE; a stray
    space inside a name folds away this way); `parts`: the other given names and the
    parts of a compound (`similar` probes, kind `name_part`).
    """

    first: str
    whole: str
    parts: tuple[str, ...]


_NO_NAME: Final = QueryName("", "", ())


def query_last_name(raw: str, field: str = "last_name") -> QueryName:
    folded = fold_name(raw, field)
    return QueryName(folded, folded, name_parts(raw))


def query_first_name(
    raw: str, field: str = "first_name",
    read: Callable[[str, str], GivenName] = read_given_name,
) -> QueryName:
    """A query's first-names field read as a record's is (docs/design.md §3).

    `read` reads one given name: the offline build passes `read_given_name` cached
    (a dump's first-names fields vary a lot, its given names far less)."""
    names = read_given_names(raw, field, read)
    first, composite = names[0]
    if len(names) == 1 and not composite:  # most fields: one given name, not hyphenated
        return QueryName(first, first, ())
    folded = [name for name, _ in names]
    whole = "".join(folded)
    # The other given names, then the parts of the composites, each once, in this order.
    others = dict.fromkeys(folded[1:])
    for _, parts in names:
        for part in parts:
            others[part] = None
    others.pop(first, None)
    others.pop(whole, None)
    return QueryName(first, whole, tuple(others))


def _name_keys(last: QueryName, first: QueryName, birth_date: str) -> list[str]:
    """The weak keys of a query's names (first given name, then all of them), then
    its `part` probes."""
    keys = [f"weak|{last.first}|{first.first}|{birth_date}"]
    if first.whole != first.first:
        keys.append(f"weak|{last.first}|{first.whole}|{birth_date}")
    keys.extend(f"part|{last.first}|{part}|{birth_date}" for part in first.parts)
    keys.extend(f"part|{part}|{first.first}|{birth_date}" for part in last.parts)
    return keys


class QueryError(ValueError):
    """A query with invalid fields or without a complete key; carries field errors."""

    def __init__(self, errors: list[IdentityError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.code}" for e in errors))
        self.errors = errors


NativeKeys = Callable[[Mapping[str, object], "QueryMemo", dt.date | None], tuple[str, ...] | None]
"""The fast path of `canonical_keys` with a memo, in C: its keys, or None where the
Python path must decide (`_querykeys.c`)."""


def _native_keys() -> NativeKeys | None:
    try:
        from indexer.core._querykeys import MemoKeys
    except ImportError:  # not compiled: the Python path answers alone
        return None
    return MemoKeys(QueryName).keys


class QueryMemo:
    """The normalised dates and names of one request's earlier lines, by raw value.

    A member file repeats them a lot (a date of birth is shared by thousands of people,
    a name by more), so one bulk request normalises each once. The memo belongs to
    that request and dies with it: nothing keeps an identifier beyond the request
    (docs/design.md §2). NIRs are never kept: they are unique per person, nothing to
    reuse. It holds at most `max_entries` values: past that it starts again.

    Each table also maps None (field absent) and "" (field empty) to an empty value,
    so that one dictionary read per field answers the fast path of `canonical_keys`.
    `native=False` leaves that fast path to Python alone: the reference the tests hold
    the C one (`_querykeys.c`) equal to.
    """

    # _querykeys.c reads and updates the tables, _size and max_entries by these names,
    # and calls _room: a change here is a change there.
    __slots__ = ("_size", "birth_dates", "first_names", "last_names", "max_entries",
                 "native_keys")

    def __init__(self, max_entries: int = MEMO_ENTRIES, *, native: bool = True) -> None:
        self.max_entries = max_entries
        self.native_keys = _NATIVE_KEYS if native else None
        # Keyed by the raw value as received: only strings (and None) are ever stored,
        # but the fast path looks up whatever the line holds.
        self.birth_dates: dict[object, str] = {None: "", "": ""}
        self.last_names: dict[object, QueryName] = {None: _NO_NAME, "": _NO_NAME}
        self.first_names: dict[object, QueryName] = {None: _NO_NAME, "": _NO_NAME}
        self._size = 0

    def __len__(self) -> int:
        """How many values are remembered (the seeded absent ones not counted)."""
        return self._size

    def _room(self) -> None:
        if self._size >= self.max_entries:
            for table in (self.birth_dates, self.last_names, self.first_names):
                table.clear()
            self.birth_dates.update({None: "", "": ""})
            self.last_names.update({None: _NO_NAME, "": _NO_NAME})
            self.first_names.update({None: _NO_NAME, "": _NO_NAME})
            self._size = 0
        self._size += 1

    def _remember(self, table: dict[object, _T], raw: str, normal: Callable[[str], _T]) -> _T:
        """`normal(raw)`, from `table` when seen before; raises IdentityError."""
        known = table.get(raw)
        if known is None:
            known = normal(raw)
            self._room()  # may empty the tables (in place): then `raw` is the first again
            table[raw] = known
        return known

    def birth_date(self, raw: str, today: dt.date | None) -> str:
        """The normal form of a date of birth (remembered); raises IdentityError."""
        return self._remember(self.birth_dates, raw,
                              partial(normalize_birth_date, field="birth_date", today=today))

    def last_name(self, raw: str) -> QueryName:
        return self._remember(self.last_names, raw, query_last_name)

    def first_name(self, raw: str) -> QueryName:
        return self._remember(self.first_names, raw, query_first_name)


_NATIVE_KEYS: Final = _native_keys()


def canonical_keys(
    fields: Mapping[str, object], *, today: dt.date | None = None,
    memo: QueryMemo | None = None,
) -> tuple[str, ...]:
    """The canonical keys of a query: strong, then weak, then `part` probes.

    Empty or blank fields count as absent. Every supplied field must be valid, even
    when another complete key could be formed: a typo is reported, never ignored.
    Raises QueryError.

    `memo` lets one bulk request reuse the normalised names and dates of its earlier
    lines (see `QueryMemo`); it serves one request, and so one `today`.
    """
    if memo is not None:
        # The fast path of bulk requests: the date and names were seen on an earlier
        # line of the request (or are absent), and the NIR if any is valid. It gives
        # the keys the general path gives for the same fields; every other query (an
        # error, a blank, a value not seen yet) takes that path, which remembers it.
        # The C module answers most lines (and normalises plain ASCII values not seen
        # yet); None from it means "as if it were not there".
        native = memo.native_keys
        if native is not None:
            keys = native(fields, memo, today)
            if keys is not None:
                return keys
        get = fields.get
        raw_date, raw_last, raw_first = get("birth_date"), get("last_name"), get("first_name")
        try:
            birth_date = memo.birth_dates.get(raw_date)
            last = memo.last_names.get(raw_last)
            first = memo.first_names.get(raw_first)
        except TypeError:  # a list or an object, not hashable: an error
            birth_date = last = first = None
        else:
            if birth_date is None or last is None or first is None:
                # A value not seen yet: normalised alone (and remembered), not the whole
                # line again. A value in error, or blank, takes the general path.
                try:
                    if birth_date is None and type(raw_date) is str and raw_date.strip():
                        birth_date = memo.birth_date(raw_date, today)
                    if last is None and type(raw_last) is str and raw_last.strip():
                        last = memo.last_name(raw_last)
                    if first is None and type(raw_first) is str and raw_first.strip():
                        first = memo.first_name(raw_first)
                except IdentityError:
                    birth_date = None
        if birth_date and last is not None and first is not None:
            if first.first and last.first:
                if first.whole == first.first and not (first.parts or last.parts):
                    weak: Sequence[str] = (f"weak|{last.first}|{first.first}|{birth_date}",)
                else:
                    weak = _name_keys(last, first, birth_date)
            elif first.first or last.first:
                weak = ()  # half a name key: the general path says which half is missing
                birth_date = None
            else:
                weak = ()
            nir = get("nir")
            if birth_date and (nir is None or nir == "") and weak:
                return tuple(weak)
            if birth_date and type(nir) is str:
                try:
                    nir = normalize_nir(nir)
                except IdentityError:
                    pass
                else:
                    return (f"strong|{nir}|{birth_date}", *weak)
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
    nir = birth_date = None
    last = first = None
    for name, value in supplied.items():
        try:
            if name == "nir":  # NIRs are unique per person: no reuse
                nir = normalize_nir(value, name)
            elif name == "birth_date":
                birth_date = (normalize_birth_date(value, name, today=today) if memo is None
                              else memo.birth_date(value, today))
            elif name == "last_name":
                last = query_last_name(value) if memo is None else memo.last_name(value)
            else:
                first = query_first_name(value) if memo is None else memo.first_name(value)
        except IdentityError as exc:
            errors.append(exc)
    if errors:
        raise QueryError(errors)
    keys: list[str] = []
    if birth_date is not None:
        if nir is not None:
            keys.append(strong_key(nir, birth_date))
        if last is not None and first is not None:
            keys.extend(_name_keys(last, first, birth_date))
    if keys:
        return tuple(keys)
    raise QueryError(list(_missing_fields(
        birth_date is not None, nir is not None, last is not None, first is not None)))


def _missing_fields(
    has_date: bool, has_nir: bool, has_last: bool, has_first: bool
) -> Iterable[IdentityError]:
    if not has_date:
        yield IdentityError(
            "birth_date", "required", "The date of birth is needed for every lookup."
        )
    if has_nir:
        return
    if has_last and not has_first:
        yield IdentityError("first_name", "required", "Give the first name with the last name.")
    elif has_first and not has_last:
        yield IdentityError("last_name", "required", "Give the last name with the first name.")
    elif not has_last:
        yield IdentityError(
            "nir", "incomplete_key",
            "Give the social security number, or the last and first names.",
        )


# --- similar probes ---------------------------------------------------------------------

# What a probe is looked up as (docs/matching.md). A deletion is looked up in the exact
# index (the query has a letter too many) and in the similar tier under the same
# name's deletions (a letter too few, replaced, or two neighbours swapped); the query's
# own weak key in the similar tier under every namespace; the others in the exact index.
PROBE_LAST_DELETION: Final = 0
PROBE_FIRST_DELETION: Final = 1
PROBE_OWN: Final = 2
PROBE_SWAPPED: Final = 3
PROBE_DAY_MONTH: Final = 4  # a weak key with day and month swapped
PROBE_DAY_MONTH_NIR: Final = 5  # a strong key with day and month swapped
PROBE_PART: Final = 6

Probes = tuple[list[str], list[int], list[int]]
"""(the strings to fingerprint, in weak or strong form; for each, the index of the
character to leave out first, -1 for none; the PROBE_* kind of each)"""

_WEAK_HEAD: Final = len("weak|")


def similar_probes(keys: Sequence[str]) -> Probes:
    """The probes of a `similar` match for a query given as its canonical keys.

    Each probe embodies one difference of docs/design.md §3, never two: one edit in
    the last name or in the first given name, names swapped, day and month swapped,
    one part of a name (the query's `part` keys, and the similar tier's name parts).
    A one-letter deletion is the query's own weak key with one letter of a name left
    out: given as that key and the letter's index, for `Fingerprinter.many` to cut
    (no string is made for it).
    """
    probes: list[str] = []
    drops: list[int] = []
    kinds: list[int] = []
    nir = own = whole = None
    for key in keys:
        head = key[0]
        if head == "s":
            nir = key
        elif head == "w":
            if own is None:
                own = key
            else:
                whole = key
        else:
            probes.append("weak" + key[4:])
            kinds.append(PROBE_PART)
    if nir is not None:
        _, number, birth_date = nir.split("|")
        swapped = _day_month_swapped(birth_date)
        if swapped:
            probes.append(f"strong|{number}|{swapped}")
            kinds.append(PROBE_DAY_MONTH_NIR)
    drops += [-1] * len(probes)
    if own is None:
        return probes, drops, kinds
    _, last, first, birth_date = own.split("|")
    probes.append(own)
    drops.append(-1)
    kinds.append(PROBE_OWN)
    # A letter deleted at each position (none in a one-letter name); a doubled letter
    # gives the same string twice, looked up twice: cheaper than removing the repeats.
    if len(last) >= 2:
        probes += [own] * len(last)
        drops += range(_WEAK_HEAD, _WEAK_HEAD + len(last))
        kinds += [PROBE_LAST_DELETION] * len(last)
    if len(first) >= 2:
        start = _WEAK_HEAD + len(last) + 1
        probes += [own] * len(first)
        drops += range(start, start + len(first))
        kinds += [PROBE_FIRST_DELETION] * len(first)
    given = whole.split("|")[2] if whole is not None else first
    probes.append(f"weak|{given}|{last}|{birth_date}")
    drops.append(-1)
    kinds.append(PROBE_SWAPPED)
    swapped = _day_month_swapped(birth_date)
    if swapped:
        probes.append(f"weak|{last}|{first}|{swapped}")
        drops.append(-1)
        kinds.append(PROBE_DAY_MONTH)
    return probes, drops, kinds


def deletions(name: str) -> tuple[str, ...]:
    """The distinct strings `name` gives with one letter deleted (none under 2 letters).

    Two names one edit apart (a letter inserted, deleted or replaced, two neighbours
    swapped) share one of these or one is the other: what the similar tier relies on.
    """
    if len(name) < 2:
        return ()
    return tuple(dict.fromkeys([name[:i] + name[i + 1 :] for i in range(len(name))]))


def deletion_positions(name: str) -> tuple[int, ...]:
    """The index of the letter deleted for each of `deletions(name)`, in its order.

    Deleting any letter of a run of one letter gives the same string, and only that
    way do two deletions coincide: the first letter of each run stands for its run.
    """
    if len(name) < 2:
        return ()
    return (0, *(i for i in range(1, len(name)) if name[i] != name[i - 1]))


def _day_month_swapped(birth_date: str) -> str | None:
    """The date with day and month swapped, when both are at most 12 and differ."""
    year, month, day = birth_date[:4], birth_date[5:7], birth_date[8:]
    if month != day and "01" <= day <= "12" and "01" <= month <= "12":
        return f"{year}-{day}-{month}"
    return None
