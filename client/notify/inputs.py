"""Reading the insurer's member file (with its contact columns) and RESULTS.csv.

Both readers are generators of plain records; a row that cannot be used becomes a
`RowProblem` (line number, the insurer's ref when there is one, a reason code),
never an exception and never a copy of a cell. Files are read line by line (UTF-8,
else cp1252, as `exposure-client check` reads them).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from client.cells import original_cell
from indexer.core.columns import MEMBER_ALIASES, decode_line, match_headers

__all__ = [
    "CONTACT_ALIASES",
    "LEVELS",
    "InputError",
    "Member",
    "Result",
    "RowProblem",
    "read_members",
    "read_results",
]

CONTACT_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "address_1": ("ADDRESS_1", "ADRESSE_1", "ADRESSE_LIGNE_1", "ADDRESS_LINE_1", "ADRESSE",
                  "ADDRESS", "LIGNE_ADRESSE_1", "NUMERO_ET_VOIE", "STREET"),
    "address_2": ("ADDRESS_2", "ADRESSE_2", "ADRESSE_LIGNE_2", "ADDRESS_LINE_2",
                  "COMPLEMENT_ADRESSE", "COMPLEMENT_D_ADRESSE", "LIGNE_ADRESSE_2"),
    "address_3": ("ADDRESS_3", "ADRESSE_3", "ADRESSE_LIGNE_3", "ADDRESS_LINE_3", "LIEU_DIT",
                  "LIGNE_ADRESSE_3"),
    "postcode": ("POSTCODE", "CODE_POSTAL", "CP", "POSTAL_CODE", "ZIP", "ZIP_CODE"),
    "city": ("CITY", "VILLE", "COMMUNE", "LOCALITE", "TOWN"),
    "country": ("COUNTRY", "PAYS"),
    "email": ("EMAIL", "E_MAIL", "COURRIEL", "ADRESSE_EMAIL", "ADRESSE_MAIL", "MAIL",
              "EMAIL_ADDRESS"),
    "language": ("LANGUAGE", "LANGUE", "LANGUE_PREFEREE", "PREFERRED_LANGUAGE", "LANG"),
}
_NAME_FIELDS: Final = ("last_name", "first_name")
_DELIMITERS: Final = (";", ",", "\t")
LEVELS: Final = ("strong", "weak", "similar")
_RESULT_COLUMNS: Final = ("ref", "found", "match", "sources", "exposed", "error")


class InputError(Exception):
    """A file cannot be used at all (missing, no usable header); says what to fix."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    file: str  # "members" or "results"
    line: int  # physical line of the row's start, 1 = the header
    ref: str
    reason: str  # a key of [reasons] in the texts
    column: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    line: int
    ref: str
    fields: Mapping[str, str]  # canonical field -> stripped cell (names and contact only)


@dataclass(frozen=True, slots=True)
class Result:
    line: int
    ref: str
    level: str  # strong, weak, similar, not_found, check_error
    sources: tuple[str, ...]
    exposed: tuple[str, ...]
    differences: tuple[str, ...]
    error: str


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            yield number, decode_line(raw)


def _header(path: Path, aliases: Mapping[str, tuple[str, ...]]) -> tuple[str, dict[str, int]]:
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 16)
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    text = decode_line(first).lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        raise InputError(f"{path}: the first line must be the header line")
    best: tuple[int, str, dict[str, int]] | None = None
    for delimiter in _DELIMITERS:
        try:
            cells = next(csv.reader([text], delimiter=delimiter), [])
        except csv.Error:  # a stray carriage return or NUL in the header line
            cells = []
        columns = match_headers(cells, aliases)
        if best is None or len(columns) > best[0]:
            best = (len(columns), delimiter, columns)
    assert best is not None
    return best[1], best[2]


def _rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str] | None]]:
    """(line, cells) per non-blank row after the header; cells None for a broken row."""
    numbered = _lines(path)
    next(numbered, None)  # the header
    current = [1]

    def texts() -> Iterator[str]:
        for number, text in numbered:
            current[0] = number
            yield text

    source = texts()
    reader = csv.reader(source, delimiter=delimiter)
    while True:
        start = current[0] + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield start, None  # csv moves on to the next line by itself
            continue
        if any(cell.strip() for cell in cells):
            yield start, cells


def read_members(path: Path) -> Iterator[Member | RowProblem]:
    """The member file's rows: ref, names and contact columns (never NIR or date).

    The header is checked at once (`InputError`); the rows are read as iterated."""
    aliases = {"ref": MEMBER_ALIASES["ref"],
               **{name: MEMBER_ALIASES[name] for name in _NAME_FIELDS}, **CONTACT_ALIASES}
    delimiter, columns = _header(path, aliases)
    if "ref" not in columns:
        raise InputError(f"{path}: the header line needs a ref column (ref, id, "
                         "numero_adherent...), the same as for `exposure-client check`")
    if not any(name in columns for name in ("email", "address_1", "postcode")):
        raise InputError(
            f"{path}: no contact column: notices need an e-mail column (email, courriel) "
            "and/or postal columns (address_1, address_2, address_3, postcode, city; or "
            "adresse_1, code_postal, ville...)")
    return _member_rows(path, delimiter, columns)


def _member_rows(path: Path, delimiter: str,
                 columns: Mapping[str, int]) -> Iterator[Member | RowProblem]:
    wanted = [(name, index) for name, index in columns.items() if name != "ref"]
    ref_index = columns["ref"]
    for line, cells in _rows(path, delimiter):
        if cells is None:
            yield RowProblem("members", line, "", "csv_invalid")
            continue
        ref = cells[ref_index].strip() if ref_index < len(cells) else ""
        if not ref:
            yield RowProblem("members", line, "", "missing_ref", "ref")
            continue
        yield Member(line, ref, {name: cells[index].strip() for name, index in wanted
                                 if index < len(cells)})


def _split(cell: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in cell.split("|")) if part)


def read_results(path: Path) -> Iterator[Result | RowProblem]:
    """RESULTS.csv as `exposure-client check` writes it (extra columns are ignored,
    but an optional `differences` column, '|'-separated, is read for review.csv).

    The header is checked at once (`InputError`); the rows are read as iterated."""
    aliases = {name: (name.upper(),) for name in (*_RESULT_COLUMNS, "differences")}
    delimiter, columns = _header(path, aliases)
    missing = [name for name in _RESULT_COLUMNS if name not in columns]
    if missing:
        raise InputError(f"{path}: not a results file of `exposure-client check`: the "
                         f"header lacks {', '.join(missing)} (expected "
                         f"{','.join(_RESULT_COLUMNS)})")
    return _result_rows(path, delimiter, columns)


def _result_rows(path: Path, delimiter: str,
                 columns: Mapping[str, int]) -> Iterator[Result | RowProblem]:
    width = max(columns.values()) + 1

    def cell(cells: list[str], name: str) -> str:
        index = columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    for line, cells in _rows(path, delimiter):
        if cells is None:
            yield RowProblem("results", line, "", "csv_invalid")
            continue
        ref = original_cell(cell(cells, "ref"))
        if not ref:
            yield RowProblem("results", line, "", "missing_ref", "ref")
            continue
        if len(cells) < width - ("differences" in columns):
            yield RowProblem("results", line, ref, "result_malformed")
            continue
        found, match, error = cell(cells, "found"), cell(cells, "match"), cell(cells, "error")
        sources, exposed = _split(cell(cells, "sources")), _split(cell(cells, "exposed"))
        differences = _split(cell(cells, "differences"))
        if error:
            level = "check_error"
        elif found == "false":
            level = "not_found"
        elif found == "true" and match in LEVELS:
            level = match
        elif found == "true":
            yield RowProblem("results", line, ref, "match_unknown", "match")
            continue
        else:
            yield RowProblem("results", line, ref, "result_malformed", "found")
            continue
        # Codes only ("field:code"): the check never writes a cell into `error`.
        yield Result(line, ref, level, sources, exposed, differences, error[:80])
