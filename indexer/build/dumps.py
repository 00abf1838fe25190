"""Reading the breach dumps: header detection, record-aligned blocks, row parsing.

A dump is a CSV file of tens of millions of rows, in whatever shape the breach left
it: `;`, `,` or tab separated, UTF-8 or cp1252 (or both, line by line), French or
English headers, quoted fields that may hold delimiters and newlines. `detect_layout`
looks at the first 64 KiB once; `iter_blocks` then cuts the rest of the file into
blocks that end on a record boundary, so that blocks can be parsed independently (in
worker processes), and `parse_block` turns a block into rows in `DUMP_FIELDS` order.
Header matching and line decoding are `indexer.core.columns`, shared with member files.

Rows hold identifiers. Nothing here logs, and no error message may ever quote a data
row: messages name the file, the source and the header line only (and not even the
header line when it looks like data). A malformed row is reported as `None`, never
with its content.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Final

from indexer.core.columns import (
    BIRTH_DATE_HEADERS,
    LAST_NAME_HEADERS,
    NIR_HEADERS,
    decode_lines,
    match_headers,
)

if TYPE_CHECKING:
    from indexer.build.sources import Source

__all__ = [
    "DUMP_FIELDS",
    "HEADER_ALIASES",
    "DumpError",
    "DumpLayout",
    "detect_layout",
    "iter_blocks",
    "parse_block",
]

# The canonical order of a parsed row (records.record_keys unpacks it in this order).
DUMP_FIELDS: Final = (
    "nir",
    "last_name",
    "usage_name",
    "first_names",
    "birth_date",
    "birth_rank",
    "insurer",
    "marital_status",
    "tp_guarantee",
)


# Canonical field -> recognised headers, in fold_header form, most specific first.
# No header belongs to two fields (tests check it), so the order of fields is free.
HEADER_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "nir": NIR_HEADERS,
    "last_name": LAST_NAME_HEADERS,
    "usage_name": ("NOM_USAGE", "NOM_D_USAGE", "NOM_MARITAL", "USAGE_NAME", "MARRIED_NAME"),
    "first_names": (
        "PRENOMS",
        "PRENOM",
        "PRENOM_S",
        "FIRST_NAMES",
        "FIRST_NAME",
        "GIVEN_NAMES",
        "FORENAMES",
    ),
    "birth_date": BIRTH_DATE_HEADERS,
    "birth_rank": ("RANG_NAISSANCE", "RANG_DE_NAISSANCE", "RANG", "BIRTH_RANK", "BIRTH_ORDER"),
    "insurer": (
        "ORGANISME",
        "ORGANISME_COMPLEMENTAIRE",
        "MUTUELLE",
        "ASSUREUR",
        "COMPLEMENTAIRE",
        "INSURER",
        "INSURANCE",
        "CARRIER",
    ),
    "marital_status": (
        "SITUATION_FAMILIALE",
        "SITUATION_MATRIMONIALE",
        "ETAT_CIVIL",
        "MARITAL_STATUS",
        "CIVIL_STATUS",
    ),
    "tp_guarantee": (
        "GARANTIES_TP",
        "GARANTIE_TP",
        "GARANTIES",
        "DROITS_TP",
        "TP_GUARANTEE",
        "TP_GUARANTEES",
        "GUARANTEES",
        "COVERAGE",
    ),
}

_SAMPLE_BYTES: Final = 64 << 10
# Delimiters tried when sources.toml does not name one; '|' comes last because it also
# appears inside guarantee lists ("PHARMA|OPTIQUE").
_SNIFFED: Final = (";", ",", "\t", "|")
_SNIFF_ROWS: Final = 200
# iter_blocks trusts quote parity to find record boundaries. A stray '"' in an unquoted
# field (O"BRIEN) makes every later newline look quoted; rather than grow a block
# without bound, past this size it is cut at the last newline whatever the parity,
# which costs at most the record on each side of the cut.
_MAX_BLOCK_BYTES: Final = 64 << 20
_SHOWN_HEADERS: Final = 40
# Bad (cp1252) lines in a block decoded around in bulk before switching to per-line.
_BULK_RETRIES: Final = 64
# A header line holds words; three digits in a row (a NIR, a year) or a d/d date means
# the first line is probably a data row, which must not be quoted in an error.
_DATA_LIKE: Final = re.compile(r"\d{3}|\d[/.-]\d")

class DumpError(Exception):
    """A dump that cannot be read as described; the message never quotes a data row."""


@dataclass(frozen=True, slots=True)
class DumpLayout:
    """How to read the data part of one dump, as found by `detect_layout`."""

    path: Path
    encoding: str | None  # None: UTF-8, and a line that is not UTF-8 is read as cp1252
    delimiter: str
    columns: Mapping[str, int]  # canonical field -> column index, a subset of DUMP_FIELDS
    data_offset: int  # byte offset of the first data line


def detect_layout(source: Source) -> DumpLayout:
    """Encoding, delimiter, header columns and data offset of `source`'s dump.

    Reads only the first 64 KiB. Raises `DumpError` when the file cannot be read as a
    dump, saying what to change in sources.toml.
    """
    path = source.path
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SAMPLE_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise DumpError(
            f"{path}: cannot read the dump of source {source.id!r} ({exc.strerror or exc})"
        ) from exc
    whole_file = size <= len(head)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DumpError(
            f"{path}: the dump is UTF-16 (or UTF-32); convert it to UTF-8, "
            "e.g. iconv -f UTF-16 -t UTF-8"
        )
    offset = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    header_end = _first_record_end(head, offset)
    # Blank lines before the header carry nothing: step over them.
    while header_end >= 0 and not head[offset:header_end].strip():
        offset = header_end + 1
        header_end = _first_record_end(head, offset)
    if header_end < 0:
        if not whole_file:
            raise DumpError(
                f"{path}: no line ends in the first {_SAMPLE_BYTES >> 10} KiB; a dump is a "
                "CSV file whose first line is a header"
            )
        if b"\r" in head[offset:]:
            raise DumpError(
                f"{path}: lines end with CR alone (classic Mac); convert the file to LF "
                "or CRLF line ends"
            )
        header_end = len(head)
        data_offset = len(head)
    else:
        data_offset = header_end + 1
    header_bytes = head[offset:header_end]
    if not header_bytes.strip():
        raise DumpError(f"{path}: the file is empty; a dump needs a header line and rows")
    if b"\0" in header_bytes:
        raise DumpError(
            f"{path}: the header line holds NUL bytes (a UTF-16 file?); convert the dump to UTF-8"
        )
    header_text = _decode(header_bytes, source.encoding)
    sample = head[data_offset:] if whole_file else head[data_offset : head.rfind(b"\n") + 1]

    delimiter = source.delimiter
    if delimiter is None:
        delimiter = _sniff_delimiter(header_text, _decode(sample, source.encoding))
        if delimiter is None:
            raise DumpError(
                f"{path}: cannot tell the delimiter: the header line splits into fewer than "
                "two columns on ';', ',', tab or '|'; "
                f"{_headers_found([header_text])}; set delimiter in the [[sources]] table "
                f"of {source.id!r}"
            )
    cells = _first_row(header_text, delimiter)
    columns = _header_columns(source, cells)
    has_key = "nir" in columns or ("last_name" in columns and "first_names" in columns)
    if "birth_date" not in columns or not has_key:
        # Fields and column numbers only: the cells may be a data row (no header).
        recognised = ", ".join(f"{field} (column {i + 1})" for field, i in columns.items())
        raise DumpError(
            f"{path}: no recognisable identifier columns for source {source.id!r}: a dump "
            "needs a birth date column and either a NIR column or last name and first "
            f"names columns; recognised: {recognised or 'none'}; {_headers_found(cells)}; "
            "name the columns in a [sources.columns] table, "
            'e.g. nir = "<header of the NIR column>", birth_date = "<header>"'
        )
    return DumpLayout(
        path=path,
        encoding=source.encoding,
        delimiter=delimiter,
        columns=columns,
        data_offset=data_offset,
    )


def iter_blocks(
    layout: DumpLayout, block_size: int = 4 << 20, *, max_block_size: int = _MAX_BLOCK_BYTES
) -> Iterator[bytes]:
    """The data part of the dump in blocks of about `block_size` bytes.

    Each block ends on a record boundary: a newline outside quoted fields. With RFC
    4180 quoting ("" inside a quoted field), a newline is inside quotes exactly when
    an odd number of '"' precede it in the block. The blocks concatenate to the data
    part exactly; the last one may lack a final newline. Memory stays bounded by
    `max_block_size` plus a block whatever the file (see _MAX_BLOCK_BYTES).
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    limit = max(max_block_size, block_size)
    with open(layout.path, "rb") as handle:
        handle.seek(layout.data_offset)
        pending: list[bytes] = []  # the start of a record that the next chunk completes
        pending_size = 0
        pending_odd = 0  # parity of '"' in pending
        while chunk := handle.read(block_size):
            cut = _last_record_end(chunk, pending_odd)
            if cut:
                pending.append(chunk[:cut])
                yield b"".join(pending)
                rest = chunk[cut:]
                pending = [rest] if rest else []
                pending_size = len(rest)
                pending_odd = rest.count(b'"') & 1
                continue
            pending.append(chunk)
            pending_size += len(chunk)
            pending_odd ^= chunk.count(b'"') & 1
            if pending_size > limit:
                buffer = b"".join(pending)
                cut = buffer.rfind(b"\n") + 1 or len(buffer)
                yield buffer[:cut]
                rest = buffer[cut:]
                pending = [rest] if rest else []
                pending_size = len(rest)
                pending_odd = rest.count(b'"') & 1
        if pending:
            yield b"".join(pending)


def parse_block(block: bytes, layout: DumpLayout) -> Iterator[tuple[str, ...] | None]:
    """The rows of a block from `iter_blocks`, in `DUMP_FIELDS` order, or None if malformed.

    Values are stripped; a field the dump lacks is "". Blank lines are skipped. A row
    with too few columns, a NUL byte or a CSV error is None, and parsing goes on.
    """
    text = _decode(block, layout.encoding)
    pick, top, padded = _row_picker(layout.columns)
    # newline="": lines split as the csv module expects of a file (\n, \r\n, \r) and
    # line ends inside quoted fields are kept, so a field reads back exactly.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter)
    # The csv module accepts NUL since Python 3.11; a NUL in a dump is corruption. One
    # search of the block keeps the per-row test off the common path.
    with_nul = "\0" in text
    if padded or with_nul:
        return _checked_rows(reader, pick, top, padded, with_nul)
    return _rows(reader, pick)


_Picker = Callable[[list[str]], Sequence[str]]


def _row_picker(columns: Mapping[str, int]) -> tuple[_Picker, int, bool]:
    """An itemgetter from a parsed row to its values in DUMP_FIELDS order, the highest
    column index it reads, and whether the row must first be padded with one "" (at
    index -1) that stands for the fields the dump lacks."""
    indices = [columns.get(field) for field in DUMP_FIELDS]
    present = [index for index in indices if index is not None]
    if not present:
        raise ValueError("a dump layout needs at least one column")
    padded = len(present) < len(DUMP_FIELDS)
    return itemgetter(*(-1 if index is None else index for index in indices)), max(present), padded


def _rows(reader: Iterator[list[str]], pick: _Picker) -> Iterator[tuple[str, ...] | None]:
    """The hot loop, for a block without NUL of a dump with every field.

    A row costs the C parser, one itemgetter and one map of str.strip (about 1.4 µs
    for nine fields). A row too short for the itemgetter raises IndexError, which
    costs nothing on the rows that are not.
    """
    strip = str.strip
    row: list[str] = []
    while True:
        try:
            for row in reader:
                yield tuple(map(strip, pick(row)))
            return
        except IndexError:
            if _is_malformed(row):
                yield None
        except csv.Error:
            # The reader drops the bad record and carries on from the next line.
            yield None


def _checked_rows(
    reader: Iterator[list[str]], pick: _Picker, top: int, padded: bool, with_nul: bool
) -> Iterator[tuple[str, ...] | None]:
    """The loop for the other cases: row length (and NUL bytes) tested row by row."""
    strip = str.strip
    while True:
        try:
            for row in reader:
                if len(row) <= top:
                    if _is_malformed(row):
                        yield None
                    continue
                if with_nul and any("\0" in value for value in row):
                    yield None
                    continue
                if padded:
                    row.append("")
                yield tuple(map(strip, pick(row)))
            return
        except csv.Error:
            yield None


def _is_malformed(short_row: list[str]) -> bool:
    # A blank line parses as [] or as blank fields: it holds nothing, so it is skipped
    # rather than counted as malformed.
    return any(value.strip() for value in short_row)


def _decode(data: bytes, encoding: str | None) -> str:
    """`data` as text: in `encoding`, else as UTF-8 with cp1252 for lines that are not.

    Dumps stitched from several exports mix UTF-8 lines with cp1252 ones. A line is
    decoded as a whole, in one encoding or the other ('\n' is the same byte in both).
    """
    if encoding is not None:
        return data.decode(encoding, errors="replace")
    # A few bad lines in a UTF-8 block: decode around each, in bulk, at C speed.
    view = memoryview(data)
    parts: list[str] = []
    start = 0
    for _ in range(_BULK_RETRIES):
        try:
            parts.append(str(view[start:], "utf-8"))
            return "".join(parts)
        except UnicodeDecodeError as exc:
            bad = start + exc.start
        line_start = data.rfind(b"\n", start, bad) + 1
        line_end = data.find(b"\n", bad)
        if line_end < 0:
            line_end = len(data)
        parts.append(str(view[start:line_start], "utf-8"))
        parts.append(str(view[line_start:line_end], "cp1252", "replace"))
        start = line_end
    # Many bad lines (an undeclared cp1252 dump): every failed bulk attempt above costs
    # a buffer of the block's size, so decode the rest both ways and pick line by line.
    parts.append(decode_lines(data[start:]))
    return "".join(parts)


def _first_record_end(data: bytes, start: int) -> int:
    """Index of the first newline at or after `start` outside quotes, or -1."""
    quotes = 0
    while (newline := data.find(b"\n", start)) >= 0:
        quotes += data.count(b'"', start, newline)
        if not quotes & 1:
            return newline
        start = newline + 1
    return -1


def _last_record_end(chunk: bytes, odd: int) -> int:
    """Index just past the last newline of `chunk` outside quotes, or 0 if none.

    `odd` is the parity of '"' before the chunk. The parity only changes at a quote,
    so walk back from quote to quote and look for a newline in each stretch whose
    parity is even: the first stretch is the answer in all but odd files.
    """
    parity = (odd + chunk.count(b'"')) & 1
    end = len(chunk)
    while True:
        quote = chunk.rfind(b'"', 0, end)
        if not parity:
            newline = chunk.rfind(b"\n", quote + 1, end)
            if newline >= 0:
                return newline + 1
        if quote < 0:
            return 0
        end = quote
        parity ^= 1


def _first_row(text: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    except csv.Error:
        return [text]


def _sniff_delimiter(header: str, sample: str) -> str | None:
    """The candidate that splits the header in most columns that the rows agree with."""
    best: tuple[int, int] = (0, 0)
    chosen: str | None = None
    for delimiter in _SNIFFED:
        width = len(_first_row(header, delimiter))
        if width < 2:
            continue
        agreeing = 0
        rows = islice(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter), _SNIFF_ROWS)
        try:
            agreeing = sum(1 for row in rows if len(row) == width)
        except csv.Error:
            pass
        score = (agreeing, width)
        if score > best:
            best, chosen = score, delimiter
    return chosen


def _header_columns(source: Source, cells: list[str]) -> dict[str, int]:
    """Columns named in [sources.columns], then the rest recognised by HEADER_ALIASES."""
    columns: dict[str, int] = {}
    for field in DUMP_FIELDS:
        header = source.columns.get(field)
        if header is None:
            continue
        found = match_headers(cells, {field: (header,)})
        if field not in found:
            raise DumpError(
                f"{source.path}: [sources.columns] of source {source.id!r} maps {field} to "
                f"{header!r}, which is not in the header line; {_headers_found(cells)}; "
                "give the header exactly as the file spells it"
            )
        columns[field] = found[field]
    taken = set(columns.values())
    # A column named explicitly is not offered to the automatic recognition as well.
    free_cells = ["" if index in taken else cell for index, cell in enumerate(cells)]
    remaining = {field: names for field, names in HEADER_ALIASES.items() if field not in columns}
    columns.update(match_headers(free_cells, remaining))
    return {field: columns[field] for field in DUMP_FIELDS if field in columns}


def _headers_found(cells: Sequence[str]) -> str:
    if any(_DATA_LIKE.search(cell) for cell in cells):
        return (
            "headers found: not shown, as the first line holds digits and may be a data "
            "row (the first line of a dump must be its header)"
        )
    shown = [repr(cell.strip()[:40]) for cell in cells[:_SHOWN_HEADERS]]
    more = ", ..." if len(cells) > _SHOWN_HEADERS else ""
    return f"headers found: {', '.join(shown)}{more}"
