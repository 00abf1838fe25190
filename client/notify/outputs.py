"""Files of a notify run: created mode 0600 (0700 for folders), complete or absent.

Each file is written under a temporary name in its final folder and renamed once
whole, so an interrupted run never leaves a file that looks finished. CSV cells are
neutralised against formula injection (OWASP: a cell starting with = + - @ or a tab
or carriage return gets a leading apostrophe), as RESULTS.csv is.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from client.cells import neutralise_cell

__all__ = ["CsvLog", "make_private_dir", "neutralise", "write_private"]



def neutralise(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula (the same rule as RESULTS.csv)."""
    return neutralise_cell(cell)


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) through a temporary name and a rename."""
    temp = path.with_name(f".{path.name}.part")
    try:
        # A new file gets mode 0600 (a umask can only take bits away); O_EXCL makes
        # sure it is new, so no fchmod is needed: one system call less per e-mail.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # left by an interrupted run
        temp.unlink()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)
    os.replace(temp, path)


class CsvLog:
    """review.csv / errors.csv, streamed to a temporary file and renamed by `close`.

    A resumed run rewrites them from the whole input, so they are always complete."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        self.path = path
        self._temp = path.with_name(f".{path.name}.part")
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        self._stream = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._stream, lineterminator="\n")
        self._writer.writerow(header)
        self.count = 0

    def add(self, row: Iterable[object]) -> None:
        self._writer.writerow([neutralise(str(cell)) for cell in row])
        self.count += 1

    def close(self) -> None:
        self._stream.close()
        os.replace(self._temp, self.path)

    def abandon(self) -> None:
        self._stream.close()
        self._temp.unlink(missing_ok=True)
