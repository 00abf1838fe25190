"""Reading CSV headers and lines the way French and English exports write them.

Shared by the dump reader (indexer.build.dumps), the bulk route and the insurer's
client: recognised header names (`fold_header`, `match_headers`) and the one line
decoder (UTF-8, else cp1252). Pure functions; nothing here sees a data row.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = [
    "BIRTH_DATE_HEADERS",
    "LAST_NAME_HEADERS",
    "MEMBER_ALIASES",
    "NIR_HEADERS",
    "decode_line",
    "decode_lines",
    "fold_header",
    "match_headers",
]

NIR_HEADERS: Final = (
    "NIR",
    "NUMERO_SECU",
    "NUM_SECU",
    "NO_SECU",
    "NUMERO_SECURITE_SOCIALE",
    "NUMERO_DE_SECURITE_SOCIALE",
    "NO_SECURITE_SOCIALE",
    "NO_SS",
    "N_SS",
    "NUMERO_SS",
    "NSS",
    "SSN",
    "SOCIAL_SECURITY_NUMBER",
    "INSEE",
    "NUMERO_INSEE",
    "NO_INSEE",
)
LAST_NAME_HEADERS: Final = (
    "NOM",
    "NOM_NAISSANCE",
    "NOM_DE_NAISSANCE",
    "NOM_PATRONYMIQUE",
    "NOM_FAMILLE",
    "NOM_DE_FAMILLE",
    "LAST_NAME",
    "SURNAME",
    "FAMILY_NAME",
    "BIRTH_NAME",
)
BIRTH_DATE_HEADERS: Final = (
    "DATE_NAISSANCE",
    "DATE_DE_NAISSANCE",
    "DDN",
    "NE_LE",
    "NE_E_LE",
    "BIRTH_DATE",
    "DATE_OF_BIRTH",
    "DOB",
    "BIRTHDATE",
)

# Insurers' member files (exposure-client): a caller's `ref` and the query fields.
MEMBER_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "ref": (
        "REF",
        "REFERENCE",
        "ID",
        "MEMBER_ID",
        "NUMERO_ADHERENT",
        "NO_ADHERENT",
        "ADHERENT",
        "IDENTIFIANT",
    ),
    "nir": NIR_HEADERS,
    "last_name": LAST_NAME_HEADERS,
    "first_name": ("PRENOM", "PRENOMS", "PRENOM_S", "FIRST_NAME", "GIVEN_NAME", "FIRST_NAMES"),
    "birth_date": BIRTH_DATE_HEADERS,
}

_LIGATURES: Final = str.maketrans(
    {"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "°": "o", "º": "o"}
)
_CAMEL_CASE: Final = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NOT_ALNUM: Final = re.compile(r"[^A-Z0-9]+")


def fold_header(cell: str) -> str:
    """The comparable form of a header: `Date de naissance` -> `DATE_DE_NAISSANCE`.

    Upper case, accents and ligatures folded, camelCase split, and every run of other
    characters (spaces, - . ' ’ ( ), BOM, quotes) made one `_`, none at either end.
    """
    decomposed = unicodedata.normalize("NFKD", cell.translate(_LIGATURES))
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NOT_ALNUM.sub("_", _CAMEL_CASE.sub("_", bare).upper()).strip("_")


def match_headers(cells: Sequence[str], aliases: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Canonical field -> index of the first header cell that names it.

    A header matches an alias when their `fold_header` forms are equal; failing that,
    when they are equal once the `_` separators are dropped (`DATENAISSANCE`). The
    first alias that matches wins, then the leftmost cell. Unmatched fields are absent.
    """
    exact: dict[str, int] = {}
    compact: dict[str, int] = {}
    for index, cell in enumerate(cells):
        folded = fold_header(cell)
        if folded:
            exact.setdefault(folded, index)
            compact.setdefault(folded.replace("_", ""), index)
    found: dict[str, int] = {}
    for field, names in aliases.items():
        folded_names = [fold_header(name) for name in names]
        hits = [exact[name] for name in folded_names if name in exact]
        if not hits:
            hits = [
                compact[key]
                for key in (name.replace("_", "") for name in folded_names)
                if key and key in compact
            ]
        if hits:
            found[field] = hits[0]
    return found


def decode_lines(data: bytes) -> str:
    if b"\xef\xbf\xbd" in data:
        # A real U+FFFD would be taken for a decoding error below: go line by line.
        return "\n".join(decode_line(line) for line in data.split(b"\n"))
    # utf-8 "replace" never swallows a '\n' into a bad sequence, and cp1252 maps each
    # byte to one character, so both split into the same lines.
    as_utf8 = data.decode("utf-8", "replace").split("\n")
    as_cp1252 = data.decode("cp1252", "replace").split("\n")
    return "\n".join(
        [
            cp1252 if "\ufffd" in utf8 else utf8
            for utf8, cp1252 in zip(as_utf8, as_cp1252, strict=True)
        ]
    )


def decode_line(line: bytes) -> str:
    """One line of a CSV file: UTF-8, else Windows-1252 (insurers' and breach exports mix
    both, line by line: files concatenated from two systems)."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("cp1252", "replace")
