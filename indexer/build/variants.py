"""Typing differences of docs/design.md §3, made the way clerks and people make them.

Pure functions over strings for ``exposure-index synth``: each takes the name as the
breach writes it and a few uniform draws in [0, 1) taken in bulk by the caller, and
returns the name as a member file would hold it, or None when this difference cannot
be made on that name (the caller then picks another person). Names are compared in
their folded A-Z form, the form the index compares: a "difference" here is always one
that survives folding, and a cosmetic variant is always one that folding removes.

Nothing here reads data or draws randomness of its own: same inputs, same output.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Sequence
from typing import Final

__all__ = [
    "EDITS",
    "fold",
    "one_edit",
    "sound_alike",
    "split_double",
    "swap_day_month",
]

_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
EDITS: Final = ("insert", "delete", "replace", "transpose")


def fold(name: str) -> str:
    """The A-Z form of docs/design.md §3 (case, diacritics, ligatures and separators
    fold away), written independently of indexer.core so that a fault in either shows."""
    name = name.replace("æ", "ae").replace("Æ", "AE").replace("œ", "oe").replace("Œ", "OE")
    decomposed = unicodedata.normalize("NFKD", name).upper()  # ß -> SS
    return "".join(c for c in decomposed if "A" <= c <= "Z")


def _pick(options: Sequence[int], r: float) -> int:
    return options[min(int(r * len(options)), len(options) - 1)]


def one_edit(folded: str, edit: str, r: Sequence[float]) -> str | None:
    """`folded` with one letter inserted, deleted, replaced, or two differing neighbours
    transposed (two draws in ``r``); None when the name is too short for it."""
    n = len(folded)
    if edit == "insert":
        at = _pick(range(n + 1), r[0])
        return folded[:at] + _LETTERS[_pick(range(26), r[1])] + folded[at:]
    if edit == "delete":
        if n < 3:
            return None
        at = _pick(range(n), r[0])
        return folded[:at] + folded[at + 1:]
    if edit == "replace":
        at = _pick(range(n), r[0])
        others = [c for c in _LETTERS if c != folded[at]]
        return folded[:at] + others[_pick(range(25), r[1])] + folded[at + 1:]
    if edit == "transpose":
        spots = [i for i in range(n - 1) if folded[i] != folded[i + 1]]
        if not spots:
            return None
        at = _pick(spots, r[0])
        return folded[:at] + folded[at + 1] + folded[at] + folded[at + 2:]
    raise ValueError(f"unknown edit {edit!r}")


# Spellings that sound alike in French, on folded names. Most are one edit away
# (DUPONT/DUPOND, LEFEBVRE/LEFEUVRE, ROUSSEL/ROUSEL); a few are two or three (PH/F,
# AU/O, EAU/O): about one sound-alike in ten is not one edit away, as in real files.
_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def _rules(*pairs: tuple[str, str]) -> tuple[_Rule, ...]:
    return tuple((re.compile(pattern), replacement) for pattern, replacement in pairs)


_ONE_EDIT: Final = _rules(
    (r"T$", "D"), (r"(?<=[AEIOU])D$", "T"), (r"BV", "UV"), (r"Y", "I"),
    (r"(?<=[^AEIOUY])I(?=[^AEIOUY])", "Y"), (r"C(?=[AOU])", "K"), (r"K", "C"),
    (r"([BCDFGLMNPRST])\1", r"\1"), (r"(?<=[AEIOU])([LNRT])(?=[AEIOU])", r"\1\1"),
    (r"EN", "AN"), (r"AN", "EN"), (r"(?<=[AEIOU])S$", ""), (r"AU$", "AUX"),
    (r"(?<=[AEIOU])S(?=[AEIOU])", "Z"), (r"C(?=[EI])", "S"), (r"^H", ""), (r"TH", "T"),
    (r"ER$", "EZ"), (r"G(?=[EI])", "J"), (r"AI", "EI"), (r"EI", "AI"), (r"IN$", "AIN"),
)
_MORE_EDITS: Final = _rules(
    (r"PH", "F"), (r"F", "PH"), (r"EAU", "O"), (r"(?<!E)AU", "O"), (r"QU", "K"),
    (r"AI", "E"), (r"O(?!U)", "AU"),
)


def _applications(folded: str, rules: Sequence[_Rule]) -> list[str]:
    """Every distinct spelling one rule makes at one place of the name."""
    out: dict[str, None] = {}
    for pattern, replacement in rules:
        for match in pattern.finditer(folded):
            made = match.expand(replacement) if isinstance(replacement, str) else \
                replacement(match)
            spelled = folded[:match.start()] + made + folded[match.end():]
            if spelled != folded and len(spelled) >= 2:
                out[spelled] = None
    return list(out)


def sound_alike(folded: str, r: Sequence[float]) -> str | None:
    """A spelling of `folded` that sounds the same (two draws); None if no rule fits."""
    near = _applications(folded, _ONE_EDIT)
    far = _applications(folded, _MORE_EDITS)
    options = near if (r[0] < 0.9 and near) or not far else far
    if not options:
        return None
    return options[_pick(range(len(options)), r[1])]


def split_double(name: str, known: Collection[str]) -> tuple[str, str] | None:
    """The two surnames of a double name (``Dupont-Martin``, ``Le Gall Moreau``), when
    `name` splits at a hyphen or space into two names whose folded forms are `known`."""
    for at, c in enumerate(name):
        if c in "- " and fold(name[:at]) in known and fold(name[at + 1:]) in known:
            return name[:at], name[at + 1:]
    return None


def swap_day_month(iso: str) -> str | None:
    """YYYY-MM-DD with day and month swapped, when both are at most 12 and differ."""
    year, month, day = iso[:4], iso[5:7], iso[8:10]
    if month == day or int(day) > 12:
        return None
    return f"{year}-{day}-{month}"
