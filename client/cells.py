"""Cells of RESULTS.csv that a spreadsheet will not run (CSV injection, OWASP).

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
Excel and LibreOffice (`=HYPERLINK(...)` opens a link; DDE runs commands). Such a cell
is written with a leading apostrophe, as OWASP's CSV-injection guidance says; the csv
module quotes the rest. `original_cell` undoes it for a program that reads the file
back (the notices join RESULTS.csv to the member file on `ref`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

__all__ = ["FORMULA_TRIGGERS", "SafeRowWriter", "neutralise_cell", "original_cell"]

FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def original_cell(text: str) -> str:
    """The cell as it was before `neutralise_cell`."""
    if text.startswith("'") and text[1:].startswith(FORMULA_TRIGGERS):
        return text[1:]
    return text


class _Writer(Protocol):
    def writerow(self, row: Iterable[str], /) -> object: ...


class SafeRowWriter:
    """A csv writer whose every cell is neutralised."""

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def writerow(self, row: Iterable[str], /) -> object:
        return self._writer.writerow([neutralise_cell(cell) for cell in row])
