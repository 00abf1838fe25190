"""The breach sources of a build: reading and checking `sources.toml` (docs/design.md §4, contract).

`sources.toml` is written by hand by whoever runs the indexer, so every mistake in it
is reported as one `SourcesError` that names the file, the source and the key at fault
and says what to write instead: never a bare KeyError, TypeError or TOML parser error.
The data files it names are checked to exist here, before a long build starts.

This module reads configuration only; it never opens a dump for its rows. It must
never log, and its messages quote only what the configuration file says.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from indexer.build.dumps import DUMP_FIELDS

__all__ = ["DELIMITERS", "MAX_SOURCES", "Source", "SourcesError", "load_sources"]

# The index keeps one meta byte column per source (shards/NNN.meta); 255 leaves room
# for a reserved value in an 8-bit source number.
MAX_SOURCES: Final = 255
DELIMITERS: Final = (";", ",", "\t", "|")
# A sources.toml is a few kilobytes; refusing a large file catches `build dump.csv`
# (a dump given in place of the configuration) before it is read whole.
_MAX_TOML_BYTES: Final = 1 << 20

_ID: Final = re.compile(r"[a-z0-9-]+")
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_REQUIRED: Final = ("id", "title", "breach_date", "path")
_KNOWN_KEYS: Final = frozenset(
    {"id", "title", "breach_date", "description", "path", "encoding", "delimiter", "columns"}
)
# The dumps are split into blocks on b"\n" and parsed as bytes-level CSV, so only an
# encoding that writes these characters as their ASCII bytes can be read correctly.
_ASCII_PROBE: Final = '\n\r";,\t|azAZ09'


class SourcesError(Exception):
    """`sources.toml` is missing, malformed or names something that is not there."""


@dataclass(frozen=True, slots=True)
class Source:
    """One breach: what it is called and where and how its dump is read."""

    id: str
    title: str
    breach_date: str
    description: str
    path: Path
    encoding: str | None
    delimiter: str | None
    columns: Mapping[str, str]


def load_sources(toml_path: Path) -> list[Source]:
    """The sources listed in `toml_path`, in file order, each checked.

    Raises `SourcesError` for anything wrong, with a message that says how to fix it.
    """
    toml_path = Path(toml_path)
    document = _read_toml(toml_path)
    entries = document.get("sources")
    if entries is None:
        others = ", ".join(sorted(repr(key) for key in document))
        found = f" (found only {others})" if others else ""
        raise SourcesError(
            f"{toml_path}: no [[sources]] table{found}; describe each breach dump in a "
            "[[sources]] table with id, title, breach_date and path"
        )
    unknown_top = sorted(key for key in document if key != "sources")
    if unknown_top:
        raise SourcesError(
            f"{toml_path}: unknown top-level key {unknown_top[0]!r}; only [[sources]] "
            "tables belong in this file"
        )
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SourcesError(
            f"{toml_path}: 'sources' must be a list of tables: write each source as a "
            "[[sources]] table, not as sources = ..."
        )
    if not entries:
        raise SourcesError(f"{toml_path}: [[sources]] is empty; list at least one source")
    if len(entries) > MAX_SOURCES:
        raise SourcesError(
            f"{toml_path}: {len(entries)} sources, at most {MAX_SOURCES} are supported; "
            "merge the dumps of one breach into one source"
        )
    base = _base_dir(toml_path)
    sources: list[Source] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        source = _parse_source(toml_path, base, number, entry)
        if source.id in seen:
            raise SourcesError(
                f"{toml_path}: source #{number}: id {source.id!r} is used by an earlier "
                "source; every source needs its own id"
            )
        seen.add(source.id)
        sources.append(source)
    return sources


def _read_toml(toml_path: Path) -> dict[str, Any]:
    try:
        with toml_path.open("rb") as handle:
            raw = handle.read(_MAX_TOML_BYTES + 1)
    except FileNotFoundError:
        raise SourcesError(
            f"{toml_path}: no such file; give the path of the sources.toml that lists "
            "the breach dumps"
        ) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourcesError(f"{toml_path}: cannot read the file ({reason})") from exc
    if len(raw) > _MAX_TOML_BYTES:
        raise SourcesError(
            f"{toml_path}: larger than {_MAX_TOML_BYTES >> 20} MiB, which is not a "
            "sources.toml (was a dump given in its place?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SourcesError(
            f"{toml_path}: line {line}: not valid UTF-8; TOML files must be saved as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    # RecursionError: tomllib recurses on nested arrays and inline tables.
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise SourcesError(f"{toml_path}: invalid TOML: {exc}") from None


def _base_dir(toml_path: Path) -> Path:
    try:
        return toml_path.resolve().parent
    except (OSError, RuntimeError) as exc:
        raise SourcesError(f"{toml_path}: cannot resolve its directory ({exc})") from exc


def _parse_source(toml_path: Path, base: Path, number: int, entry: dict[str, Any]) -> Source:
    where = f"{toml_path}: source #{number}"
    raw_id = entry.get("id")
    if isinstance(raw_id, str) and raw_id:
        where = f"{where} ({raw_id!r})"

    unknown = sorted(key for key in entry if key not in _KNOWN_KEYS)
    if unknown:
        raise SourcesError(
            f"{where}: unknown key {unknown[0]!r}; the keys of a source are "
            f"{', '.join(sorted(_KNOWN_KEYS))}"
        )
    for key in _REQUIRED:
        if key not in entry:
            raise SourcesError(f"{where}: missing required key {key!r}")

    source_id = _string(entry, "id", where)
    if not _ID.fullmatch(source_id):
        raise SourcesError(
            f"{where}: id {source_id!r} may hold only lower-case letters a-z, digits "
            "and '-', e.g. \"viamedis-2024\""
        )
    title = _string(entry, "title", where)
    breach_date = _breach_date(entry, where)
    description = _optional_string(entry, "description", where) or ""
    path = _data_path(entry, base, where)
    encoding = _encoding(entry, where)
    delimiter = _optional_string(entry, "delimiter", where)
    if delimiter is not None and delimiter not in DELIMITERS:
        raise SourcesError(
            f"{where}: delimiter {delimiter!r} is not supported; use one of "
            '";", ",", "\\t" (tab) or "|", or leave it out to have it detected'
        )
    return Source(
        id=source_id,
        title=title,
        breach_date=breach_date,
        description=description,
        path=path,
        encoding=encoding,
        delimiter=delimiter,
        columns=_columns(entry, where),
    )


def _string(entry: dict[str, Any], key: str, where: str) -> str:
    """A required, non-blank string."""
    value = _optional_string(entry, key, where)
    if value is None:
        raise SourcesError(f"{where}: missing required key {key!r}")
    if not value.strip():
        raise SourcesError(f"{where}: {key!r} is empty")
    return value


def _optional_string(entry: dict[str, Any], key: str, where: str) -> str | None:
    if key not in entry:
        return None
    value = entry[key]
    if not isinstance(value, str):
        raise SourcesError(f"{where}: {key!r} must be a string in quotes, not {_toml_type(value)}")
    return value


def _breach_date(entry: dict[str, Any], where: str) -> str:
    value = entry["breach_date"]
    # An unquoted TOML date (breach_date = 2024-01-29) is the natural way to write a
    # date in TOML: accept it, but not a date-time, which says more than a day.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    text = _string(entry, "breach_date", where)
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise SourcesError(
            f'{where}: breach_date {text!r} is not a date written YYYY-MM-DD, e.g. "2024-01-29"'
        ) from None


def _data_path(entry: dict[str, Any], base: Path, where: str) -> Path:
    text = _string(entry, "path", where)
    if "\0" in text:
        raise SourcesError(f"{where}: path contains a NUL character")
    try:
        path = (base / text).resolve()
        is_file = path.is_file()
        exists = is_file or path.exists()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SourcesError(f"{where}: path {text!r} cannot be resolved ({exc})") from exc
    if not is_file:
        problem = "is not a regular file" if exists else "does not exist"
        raise SourcesError(
            f"{where}: the dump file {path} {problem}; 'path' is read relative to the "
            f"directory of the sources file ({base})"
        )
    return path


def _encoding(entry: dict[str, Any], where: str) -> str | None:
    name = _optional_string(entry, "encoding", where)
    if name is None:
        return None
    try:
        info = codecs.lookup(name)
        # A bytes-to-bytes or text-to-text codec (rot13, base64) is found by lookup but
        # cannot decode bytes to text: decoding nothing tells them apart.
        b"".decode(info.name)
        ascii_compatible = _ASCII_PROBE.encode(info.name) == _ASCII_PROBE.encode("ascii")
    except (LookupError, ValueError, TypeError, UnicodeError):
        raise SourcesError(
            f"{where}: unknown encoding {name!r}; use a Python codec name such as "
            '"utf-8", "cp1252" or "latin-1", or leave it out (UTF-8, falling back to '
            "cp1252 line by line)"
        ) from None
    if not ascii_compatible:
        raise SourcesError(
            f"{where}: encoding {name!r} is not ASCII-compatible (UTF-16, UTF-32, EBCDIC); "
            "convert the dump to UTF-8, e.g. iconv -f UTF-16 -t UTF-8"
        )
    return info.name


def _columns(entry: dict[str, Any], where: str) -> Mapping[str, str]:
    table = entry.get("columns", {})
    if not isinstance(table, dict):
        raise SourcesError(
            f"{where}: 'columns' must be a table: write [sources.columns] with lines "
            'such as nir = "NUMERO_SECU"'
        )
    columns: dict[str, str] = {}
    for field, header in table.items():
        if field not in DUMP_FIELDS:
            raise SourcesError(
                f"{where}: [sources.columns] has unknown field {field!r}; the fields are "
                f"{', '.join(DUMP_FIELDS)}"
            )
        if not isinstance(header, str):
            raise SourcesError(
                f"{where}: [sources.columns] {field} must be the header in quotes, "
                f"not {_toml_type(header)}"
            )
        if not header.strip():
            raise SourcesError(f"{where}: [sources.columns] {field} is empty")
        columns[field] = header
    # A plain dict (typed read-only): a Source must pickle to reach worker processes.
    return columns


def _toml_type(value: object) -> str:
    # Says which TOML type was written without echoing the value.
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        list: "an array",
        dict: "a table",
        dt.datetime: "a date-time",
        dt.date: "a date",
        dt.time: "a time",
    }
    return names.get(type(value), type(value).__name__)
