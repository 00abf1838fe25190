"""How to reach one member: a checked e-mail address, a French postal address block.

The postal block follows the French standard for addresses (AFNOR NF Z10-011): at
most six lines of at most 38 characters, the recipient first, the postcode and city
last, in capitals, without punctuation on the last line. Nothing here raises on a
bad cell: each fault is a reason code, and the caller writes it to errors.csv.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["Contact", "resolve_contact", "display_name", "parse_language"]

MAX_LINE: Final = 38
# The usual addr-spec, ASCII only: an address that needs SMTPUTF8 goes by post.
_EMAIL: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_POSTCODE: Final = re.compile(r"\d{5}")
_LAST_LINE_PUNCT: Final = re.compile(r"[^\w ]+")
_LANGUAGES: Final = {"fr": "fr", "fre": "fr", "fra": "fr", "francais": "fr", "french": "fr",
                     "en": "en", "eng": "en", "anglais": "en", "english": "en"}


@dataclass(frozen=True, slots=True)
class Contact:
    email: str | None  # a checked address, or None
    postal: tuple[str, ...] | None  # the address block without the recipient line
    language: str | None  # "fr" / "en" when the member file says so
    problems: tuple[tuple[str, str], ...]  # (reason, column)


def _clean(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


def _fold(text: str) -> str:
    bare = unicodedata.normalize("NFKD", text)
    return "".join(c for c in bare if not unicodedata.combining(c))


def display_name(fields: Mapping[str, str]) -> str:
    """`Jeanne DUPONT`: first name as written, last name in capitals (French usage)."""
    first = _clean(fields.get("first_name", ""))
    if first.islower() or first.isupper():  # typed in one case: "Jean-Pierre", "D'Arcy"
        first = first.title()
    last = _clean(fields.get("last_name", "")).upper()
    return " ".join(part for part in (first, last) if part)


def parse_language(value: str) -> str | None:
    folded = _fold(value).strip().lower()
    if not folded:
        return None
    return _LANGUAGES.get(folded) or _LANGUAGES.get(folded[:2] if len(folded) > 3 else folded)


def resolve_contact(fields: Mapping[str, str]) -> Contact:
    problems: list[tuple[str, str]] = []
    email: str | None = None
    raw_email = fields.get("email", "")
    if raw_email.strip():
        candidate = raw_email.strip()
        if _CONTROL.search(candidate) or "\n" in candidate:
            problems.append(("email_header", "email"))
        elif len(candidate) > 254 or not _EMAIL.fullmatch(candidate):
            problems.append(("email_invalid", "email"))
        else:
            email = candidate

    lines = [_clean(fields.get(name, "")) for name in ("address_2", "address_3", "address_1")]
    # AFNOR order: complement (flat, floor), building, then number and street.
    lines = [line for line in lines if line]
    postcode = re.sub(r"\s+", "", fields.get("postcode", ""))
    city = _clean(fields.get("city", ""))
    postal: tuple[str, ...] | None = None
    if lines or postcode or city:
        if not _POSTCODE.fullmatch(postcode) and postcode:
            problems.append(("postcode_invalid", "postcode"))
        elif not (lines and postcode and city):
            problems.append(("address_incomplete", "postcode" if not postcode else
                             "city" if not city else "address_1"))
        else:
            last = _LAST_LINE_PUNCT.sub(" ", _fold(city).upper())
            block = [*lines, f"{postcode} {' '.join(last.split())}"]
            country = _clean(fields.get("country", ""))
            if country and _fold(country).upper() not in ("FRANCE", "FR", "FRA"):
                block.append(_fold(country).upper())
            if any(len(line) > MAX_LINE for line in block):
                problems.append(("address_too_long", "address_1"))
                block = [line[:MAX_LINE] for line in block]
            postal = tuple(block[-5:])

    language: str | None = None
    raw_language = fields.get("language", "")
    if raw_language.strip():
        language = parse_language(raw_language)
        if language is None:
            problems.append(("language_unknown", "language"))
    return Contact(email, postal, language, tuple(problems))
