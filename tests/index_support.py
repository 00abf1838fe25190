"""Helpers for the indexer tests: a hand-written dump with distinctive identifiers
(bad rows included), the identifiers of a dump in every form they could be written
in, a scan of a directory for them, and the CLI run as an operator runs it.

The hand-written dump is small and its values are unlike anything an index file
could hold by chance, so a scan of every byte of every file is meaningful; the
synthetic breach of conftest brings the volume.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import service_support
from stdnum.fr import nir as stdnum_nir

from indexer.build.local import BuildOptions, BuildReport, build_index
from indexer.core.identity import (
    IdentityError,
    fold_name,
    given_names,
    normalize_birth_date,
    normalize_nir,
)

ROOT = Path(__file__).resolve().parent.parent


def with_key(body: str) -> str:
    """A 13-character NIR body completed with its valid key."""
    return body + stdnum_nir.calc_check_digits(body)


# Valid NIRs, chosen to be unlike any other test data.
ZELIE_NIR = with_key("2940375120017")  # in both sources
ZELIE_SPACED = " ".join((ZELIE_NIR[0], ZELIE_NIR[1:3], ZELIE_NIR[3:5], ZELIE_NIR[5:7],
                         ZELIE_NIR[7:10], ZELIE_NIR[10:13], ZELIE_NIR[13:]))
OCTAVE_NIR = with_key("186022A215377")
BAD_KEY_NIR = ZELIE_NIR[:13] + f"{int(ZELIE_NIR[13:]) % 97 + 1:02d}"  # wrong key
OMER_NIR = with_key("1710699350021")

ALPHA_CSV = (
    "NIR;NOM;NOM_USAGE;PRENOMS;DATE_NAISSANCE;RANG_NAISSANCE;ORGANISME;"
    "SITUATION_FAMILIALE;GARANTIES_TP\r\n"
    # A person in both sources.
    f"{ZELIE_SPACED};Quintavalle-Brückner;Oberkampfová;Zélie-Hortense Marguerite;"
    "15/03/1994;1;Mutuelle Alpha;mariée;PHAR/DENT\r\n"
    # Invalid NIR key: still indexed under the name key.
    f"{BAD_KEY_NIR};Wojciechowskaïa;;Bérangère;20/10/1995;;"
    "Mutuelle Alpha;;OPTI\r\n"
    # Impossible date: no key at all.
    f"{OCTAVE_NIR};Abercrombie-Saint-Aubin;;Octave;31/02/1986;;Mutuelle Beta;;\r\n"
    # No date of birth.
    f"{OMER_NIR};Vandenbroucke;;Omer;;;;;\r\n"
    # Too few columns.
    "1710699350;Xanthopoulos\r\n"
)
BETA_CSV = (
    "ssn,last_name,usage_name,first_names,birth_date,birth_rank,insurer,marital_status,"
    "tp_guarantees\n"
    f"{ZELIE_NIR},Quintavalle-Bruckner,,Zélie-Hortense,1994-03-15,,,M,\n"
)
# The same two hand-written sources (ids, titles, files) as the service tests use.
SOURCES_TOML = service_support.SOURCES_TOML

# What the build must count for the hand-written dump (counts only, per reason).
ALPHA_FAULTS = {
    "invalid_nir": 1,
    "invalid_birth_date": 1,
    "missing_birth_date": 1,
    "no_key": 2,
    "malformed_row": 1,
}


@dataclass(frozen=True)
class Dump:
    dir: Path
    sources_toml: Path

    def build(self, index_dir: Path, pepper: bytes, **options: int) -> BuildReport:
        return build_index(self.sources_toml, index_dir, pepper,
                           BuildOptions(**{"shards": 2, "workers": 1, **options}))


def write_dump(root: Path) -> Dump:
    root.mkdir(parents=True, exist_ok=True)
    (root / "alpha.csv").write_text(ALPHA_CSV, encoding="utf-8", newline="")
    (root / "beta.csv").write_text(BETA_CSV, encoding="utf-8", newline="")
    (root / "sources.toml").write_text(SOURCES_TOML, encoding="utf-8")
    return Dump(root, root / "sources.toml")


# --- identifiers in every written form ----------------------------------------------------

def _nir_forms(raw: str) -> set[str]:
    compact = "".join(ch for ch in raw if ch.isalnum()).upper()
    forms = {raw, compact, compact[:13], compact.lower()}
    try:
        forms.add(normalize_nir(raw))
    except IdentityError:
        pass
    return {form for form in forms if form}


def _date_forms(raw: str) -> set[str]:
    forms = {raw}
    try:
        canonical = normalize_birth_date(raw, query=False)
    except IdentityError:
        return forms
    year, month, day = canonical.split("-")
    forms |= {canonical, f"{day}/{month}/{year}", f"{day}.{month}.{year}",
              f"{day}-{month}-{year}", f"{year}{month}{day}", f"{day}{month}{year}"}
    return forms


def _name_forms(raw: str, first_names: bool = False) -> set[str]:
    forms = {raw, raw.upper()}
    try:
        forms.add(fold_name(raw))
    except IdentityError:
        pass
    if first_names:
        try:
            names = given_names(raw)
            forms.update(names)
            forms.add("".join(names))
        except IdentityError:
            pass
    return {form for form in forms if form.strip()}


def identifier_forms(row: Mapping[str, str]) -> set[str]:
    """Every written form of the identifiers of one dump row (csv.DictReader row)."""
    forms: set[str] = set()
    for header, value in row.items():
        value = (value or "").strip()
        if not value or header is None:
            continue
        kind = header.upper()
        if kind in ("NIR", "SSN"):
            forms |= _nir_forms(value)
        elif "DATE" in kind or "BIRTH_DATE" in kind:
            forms |= _date_forms(value)
        elif kind in ("NOM", "NOM_USAGE", "LAST_NAME", "USAGE_NAME"):
            forms |= _name_forms(value)
        elif kind in ("PRENOMS", "FIRST_NAMES"):
            forms |= _name_forms(value, first_names=True)
    return forms


def dump_rows(path: Path, encoding: str = "utf-8", limit: int | None = None,
              ) -> Iterator[dict[str, str]]:
    with path.open(encoding=encoding, newline="", errors="replace") as stream:
        sample = stream.readline()
        stream.seek(0)
        delimiter = ";" if sample.count(";") > sample.count(",") else ","
        for n, row in enumerate(csv.DictReader(stream, delimiter=delimiter)):
            if limit is not None and n >= limit:
                return
            yield row


def encoded(forms: Iterable[str]) -> set[bytes]:
    """The byte strings a text could be stored as (UTF-8, cp1252, UTF-16)."""
    found: set[bytes] = set()
    for form in forms:
        found.add(form.encode("utf-8"))
        found.add(form.encode("utf-16-le"))
        try:
            found.add(form.encode("cp1252"))
        except UnicodeEncodeError:
            pass
    return found


# --- scanning --------------------------------------------------------------------------

def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def leaks(root: Path, needles: Iterable[bytes], min_length: int = 6) -> list[str]:
    """(file, needle) pairs where a needle of at least `min_length` bytes occurs in a file
    under `root` or in a path name. Shorter needles occur in random bytes by chance and
    are left to the caller."""
    candidates = {needle for needle in needles if len(needle) >= min_length}
    by_prefix: dict[bytes, list[bytes]] = {}
    for needle in candidates:
        by_prefix.setdefault(needle[:min_length], []).append(needle)
    found: list[str] = []
    names = "\n".join(str(path.relative_to(root)) for path in root.rglob("*")).encode()
    for label, data in [("<paths>", names)] + [
        (str(path.relative_to(root)), path.read_bytes()) for path in files_under(root)
    ]:
        # Every window of min_length bytes, then the full needle: one pass per file
        # whatever the number of needles.
        windows = {data[i : i + min_length] for i in range(len(data) - min_length + 1)}
        for prefix in windows & by_prefix.keys():
            found.extend(f"{label}: {needle!r}" for needle in by_prefix[prefix] if needle in data)
    return found


# --- the CLI as an operator runs it -----------------------------------------------------

def cli(*args: str | Path, env: Mapping[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`exposure-index ARGS` in a subprocess, without any pepper in its environment
    unless `env` brings one."""
    environment = {key: value for key, value in os.environ.items()
                   if key != "EXPOSURE_PEPPER_FILE"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=timeout, cwd=ROOT,
    )
