"""Normalisation of the identifiers the breach exposed: NIR, date of birth, names.

This is the one place where a trait is turned into its canonical form. The indexer
uses it on the breach dumps and the service uses it on queries, so the two can never
disagree on what "the same person" means (docs/design.md §3, contract).

Pure functions over plain strings: no I/O, no logging. An `IdentityError` names the
field and a stable code, and its message never quotes the value it rejected: the
value is an identifier, and error messages end up in logs and HTTP answers.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from stdnum.fr import nir as stdnum_nir

__all__ = [
    "GivenName",
    "IdentityError",
    "compound_parts",
    "first_given_name",
    "fold_name",
    "given_names",
    "name_parts",
    "normalize_birth_date",
    "normalize_nir",
    "read_given_name",
    "read_given_names",
]


class IdentityError(ValueError):
    """A value that cannot be normalised: which field, a stable code, a safe message."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {code}: {message}")
        self.field = field
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


# --- NIR --------------------------------------------------------------------------

# Separators people type inside a NIR: spaces (also the non-breaking ones that word
# processors insert), dots and every kind of hyphen.
_BLANKS: Final = " \t\r\n\u00a0\u202f\u2007\u2009"
_DASHES: Final = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_APOSTROPHES: Final = "'\u2019\u2018`\u00b4\u02bc\u02b9\uff07"
_NIR_SEPARATORS: Final = dict.fromkeys(map(ord, _BLANKS + _DASHES + "."), None)
_NIR_SHAPE: Final = re.compile(r"[1-9][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?")
_SEX_DIGITS: Final = frozenset("123478")


def _valid_nir_month(month: int) -> bool:
    # 01-12 is a real month; 20-42 and 50-99 are the fictitious months INSEE gives to
    # people registered without a known month of birth (mostly born abroad).
    return 1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99


# The months `_valid_nir_month` accepts, as the two characters of a NIR.
_NIR_MONTHS: Final = frozenset(f"{month:02d}" for month in range(100) if _valid_nir_month(month))


def normalize_nir(raw: str, field: str = "nir") -> str:
    """The 15-character NIR (with its key), upper case, separators removed.

    13 characters are accepted and the key is computed; 15 must carry a valid key.
    """
    # The common case, a valid NIR of digits (maybe typed with spaces or dots), is
    # accepted here with the checks of the general path: without a letter, the shape
    # test reduces to the sex digit and the key is a plain mod 97 of the number.
    # Anything else, errors included, takes the general path, which names the first
    # fault. Two to three times faster than that path; it runs once per bulk line.
    compact = raw
    if not (raw.isdigit() and raw.isascii()):
        compact = raw.replace(" ", "").replace(".", "")
        if not (compact.isdigit() and compact.isascii()):
            return _normalize_nir_general(raw.translate(_NIR_SEPARATORS).upper(), field)
    if compact[3:5] in _NIR_MONTHS and compact[0] in _SEX_DIGITS:
        if len(compact) == 15:
            body, key = divmod(int(compact), 100)
            if body % 97 + key == 97:  # key == 97 - body % 97, both in 1..97
                return compact
        elif len(compact) == 13:
            return f"{compact}{97 - int(compact) % 97:02d}"
    return _normalize_nir_general(compact, field)


def _normalize_nir_general(compact: str, field: str) -> str:
    if not compact:
        raise IdentityError(field, "required", "The social security number is missing.")
    if not compact.isascii() or not compact.isalnum():
        raise IdentityError(
            field, "invalid_characters",
            "A social security number holds only digits, with 2A or 2B for Corsica.",
        )
    if len(compact) not in (13, 15):
        raise IdentityError(
            field, "invalid_length",
            "A social security number has 13 characters, or 15 with its key.",
        )
    if compact[0] not in _SEX_DIGITS:
        raise _sex_digit_error(field)
    if not _NIR_SHAPE.fullmatch(compact):
        raise IdentityError(
            field, "invalid_format",
            "Only the department may hold a letter (2A or 2B); every other character is a digit.",
        )
    if not _valid_nir_month(int(compact[3:5])):
        raise _month_error(field)
    # stdnum maps 2A -> 19 and 2B -> 18 before the mod-97 computation, as INSEE does.
    key = stdnum_nir.calc_check_digits(compact[:13])
    if len(compact) == 13:
        return compact + key
    if compact[13:] != key:
        raise _checksum_error(field)
    return compact


def _sex_digit_error(field: str) -> IdentityError:
    return IdentityError(
        field, "invalid_sex_digit",
        "The first digit of a social security number is 1, 2, 3, 4, 7 or 8.",
    )


def _month_error(field: str) -> IdentityError:
    return IdentityError(
        field, "invalid_month",
        "Characters 4 and 5 (month of birth) must be 01 to 12, 20 to 42 or 50 to 99.",
    )


def _checksum_error(field: str) -> IdentityError:
    return IdentityError(
        field, "invalid_checksum",
        "The last two digits (the key) do not match: please check for a typo.",
    )


# --- Dates of birth -------------------------------------------------------------------

_ISO_DATE: Final = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_FRENCH_DATE: Final = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})")
_SHORT_YEAR: Final = re.compile(r"\d{1,2}([/.-])\d{1,2}\1\d{2}")
EARLIEST_BIRTH_YEAR: Final = 1880


def normalize_birth_date(
    raw: str, field: str = "birth_date", *, today: dt.date | None = None, query: bool = True
) -> str:
    """`YYYY-MM-DD`; day or month `00` (unknown in civil status) is kept as such.

    `query=True` also rejects dates in the future or before 1880 (`today` is injected
    by tests; it defaults to the current date). Records are not range-checked: a dump
    is what it is, and such a record simply never matches a query.
    """
    canonical, earliest = _parse_date(raw.strip(), field)
    # With 00, the earliest day the date can mean is what gets compared; None is a
    # year before 1880.
    if query and (earliest is None or earliest > (today or _today())):
        raise IdentityError(
            field, "out_of_range",
            "The date of birth must be between 1880 and today.",
        )
    return canonical


def _today() -> dt.date:
    """The local date, read from the clock at most once a minute.

    `date.today()` costs more than the rest of a cached date check; a date of birth
    is "in the future" a minute late at worst, once a day.
    """
    return _local_date(int(time.time()) // 60)


@lru_cache(maxsize=1)
def _local_date(minute: int) -> dt.date:
    return dt.date.today()


def _parse_date(text: str, field: str) -> tuple[str, dt.date | None]:
    """(canonical form, earliest day it can mean or None before 1880).

    Not cached here: the service must keep no identifier beyond the request (docs/design.md
    §2). The offline builder, which reads the plaintext dumps anyway, caches around
    these functions (`indexer.core.records`).
    """
    if not text:
        raise IdentityError(field, "required", "The date of birth is missing.")
    if m := _ISO_DATE.fullmatch(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _FRENCH_DATE.fullmatch(text):
        day, month, year = int(m[1]), int(m[3]), int(m[4])
    elif _SHORT_YEAR.fullmatch(text):
        raise IdentityError(
            field, "two_digit_year", "Write the year with four digits (e.g. 1980)."
        )
    else:
        raise IdentityError(
            field, "invalid_format", "Write the date as DD/MM/YYYY or YYYY-MM-DD."
        )
    if year < 1 or month > 12 or day > 31:
        raise IdentityError(field, "invalid_date", "This date does not exist.")
    if month and day:
        try:
            dt.date(year, month, day)
        except ValueError:
            raise IdentityError(field, "invalid_date", "This date does not exist.") from None
    earliest = dt.date(year, month or 1, day or 1) if year >= EARLIEST_BIRTH_YEAR else None
    return f"{year:04d}-{month:02d}-{day:02d}", earliest


# --- Names ----------------------------------------------------------------------------

# Letters that Unicode decomposition leaves alone but French civil status writes as
# plain letters: ligatures, and a few Latin letters with strokes.
_LETTER_FOLDS: Final = str.maketrans(
    {"Æ": "AE", "Œ": "OE", "Ø": "O", "Đ": "D", "Ł": "L", "Ŀ": "L", "Ð": "D", "Þ": "TH",
     "ẞ": "SS"}
)
GivenName = tuple[str, tuple[str, ...]]
"""One given name read: (its fold, the parts of its hyphenated composite, or ())."""

# Separators fold away: blanks, every dash, every apostrophe, dots.
_NAME_SEPARATORS: Final = dict.fromkeys(map(ord, _BLANKS + _DASHES + _APOSTROPHES + "."), None)
_A_TO_Z: Final = re.compile(r"[A-Z]+")
_GIVEN_NAME_SPLIT: Final = re.compile(r"[\s,;]+")


def fold_name(raw: str, field: str = "last_name") -> str:
    """The A-Z form of a name: case, diacritics, ligatures and separators fold away.

    `Lætitia` -> `LAETITIA`, `D'Artagnan` -> `DARTAGNAN`, `Le Gall` -> `LEGALL`.
    Anything that does not fold to A-Z (digits, other scripts, symbols) is rejected.
    """
    text = _fold_ascii(raw) if raw.isascii() else _fold_unicode(raw)
    if not text:
        raise IdentityError(field, "required", "The name is missing.")
    if not (text.isascii() and _A_TO_Z.fullmatch(text)):
        raise IdentityError(
            field, "invalid_characters",
            "A name holds only letters, spaces, hyphens and apostrophes.",
        )
    return text


def _fold_ascii(raw: str) -> str:
    # `_fold_unicode` of an ASCII name, about four times faster: ASCII has no ligature,
    # and decomposition leaves it as it is, without a combining mark; only case and
    # separators fold. Most names of a member file are ASCII.
    return raw.upper().translate(_NAME_SEPARATORS)


def _fold_unicode(raw: str) -> str:
    # upper() first: it expands ß to SS, and its output is what decomposition sees, so
    # a letter whose capital gains a combining mark (ǰ -> J̌) still loses it below.
    text = raw.upper().translate(_LETTER_FOLDS)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.translate(_NAME_SEPARATORS)


def given_names(raw: str, field: str = "first_names") -> tuple[str, ...]:
    """The folded given names of a first-names field, in order (record or query).

    Given names are separated by blanks, commas or semicolons; a hyphenated composite
    is one name: `JEAN PIERRE MARIE` and `Jean, Pierre, Marie` give (JEAN, PIERRE,
    MARIE); `Jean-Pierre Marie` gives (JEANPIERRE, MARIE). At least one name, each
    valid, else an IdentityError.
    """
    return tuple(name for name, _ in read_given_names(raw, field))


def first_given_name(raw: str, field: str = "first_names") -> str:
    """The folded first of the given names in a first-names field (`given_names`)."""
    return given_names(raw, field)[0]


# Particles: they belong to the word that follows them (`LE BRAS`, `DE LA TOUR`).
_PARTICLES: Final = frozenset(
    {"D", "L", "DE", "DU", "DES", "LA", "LE", "LES", "DEL", "DELA", "DI", "DA", "VAN", "VON"}
)
_PART_SPLIT: Final = re.compile(f"[\\s,;{re.escape(_DASHES)}]+")
_DASH_SPLIT: Final = re.compile(f"[{re.escape(_DASHES)}]+")


def _folded_words(raw: str, split: re.Pattern[str]) -> list[str]:
    """The folded words of `raw` cut by `split`, each particle glued to the next word;
    words that do not fold to A-Z are left out (these serve `similar` probes only)."""
    words: list[str] = []
    particles = ""
    for token in split.split(raw):
        if not token:
            continue
        try:
            word = fold_name(token)
        except IdentityError:
            continue
        if word in _PARTICLES:
            particles += word
        else:
            words.append(particles + word)
            particles = ""
    if particles and words:
        words[-1] += particles
    return words


def name_parts(raw: str) -> tuple[str, ...]:
    """The parts of a double (or longer) last name, when it has two or more words.

    Words are cut at blanks, commas and dashes, a particle staying with the word that
    follows it; a part is the name cut in two at one of these places, either side:
    `Dupont-Martin` and `DUPONT MARTIN` give (DUPONT, MARTIN), `Le Bras-Dupont` gives
    (LEBRAS, DUPONT), `Duchêne-Germant-Bertel` gives (DUCHENE, DUCHENEGERMANT,
    GERMANTBERTEL, BERTEL); `Le Gall` and `de La Tour` give ().
    """
    words = _folded_words(raw, _PART_SPLIT)
    if len(words) < 2:
        return ()
    cuts = range(1, len(words))
    parts = ["".join(words[:cut]) for cut in cuts] + ["".join(words[cut:]) for cut in cuts]
    kept = tuple(part for part in dict.fromkeys(parts) if len(part) > 1)
    return kept if len(kept) > 1 else ()


def read_given_name(token: str, field: str = "first_names") -> GivenName:
    """One given name of a first-names field: its fold, and the parts of its
    composite when hyphenated (as `compound_parts` gives them). An IdentityError when
    it does not fold to A-Z."""
    folded = fold_name(token, field)
    words = _folded_words(token, _DASH_SPLIT)
    return folded, tuple(word for word in words if len(word) > 1) if len(words) > 1 else ()


def read_given_names(
    raw: str, field: str = "first_names",
    read: Callable[[str, str], GivenName] = read_given_name,
) -> list[GivenName]:
    """Each given name of a first-names field (cut as `given_names` cuts them) read by
    `read`: `read_given_name`, or the same cached, as the offline build does. At least
    one, each valid, else an IdentityError."""
    if raw.isalpha():  # one given name, nothing to cut (no blank, comma or semicolon)
        return [read(raw, field)]
    names = [read(token, field) for token in _GIVEN_NAME_SPLIT.split(raw) if token]
    if not names:
        raise IdentityError(field, "required", "The first name is missing.")
    return names


def compound_parts(raw: str) -> tuple[str, ...]:
    """The parts of each hyphenated given name of a first-names field (`Jean-Pierre
    Marie` gives (JEAN, PIERRE)); () when none is hyphenated."""
    parts: list[str] = []
    for token in _GIVEN_NAME_SPLIT.split(raw):
        words = _folded_words(token, _DASH_SPLIT)
        if len(words) > 1:
            parts.extend(word for word in words if len(word) > 1)
    return tuple(dict.fromkeys(parts))
