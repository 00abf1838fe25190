"""The synthetic breach generator: formats, consistency of the people, ground truth.

These tests read the files back with the standard library only (csv, tomllib and
stdnum for the NIR key), independently of the indexer's own normalisation, so that
a fault in either is not hidden by the other.
"""

from __future__ import annotations

import csv
import re
import tomllib
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from stdnum.fr import nir as stdnum_nir

from indexer.build.synth import (
    ALMERYS_HEADER,
    CHUNK_ROWS,
    EXACT_KINDS,
    FEMALE_FIRST_NAMES,
    KIND_DIFFERENCE,
    MALE_FIRST_NAMES,
    MEMBER_KINDS,
    MEMBERS_EXPECTED_HEADER,
    MEMBERS_HEADER,
    VIAMEDIS_HEADER,
    SynthSummary,
    members_size,
    write_synthetic_breach,
)
from indexer.build.synth_contacts import CONTACT_HEADER
from indexer.build.variants import EDITS

RECORDS = 5_000
FILES = ("viamedis.csv", "almerys.csv", "members.csv", "members-expected.csv", "sources.toml")
VIAMEDIS, ALMERYS = "viamedis-2024", "almerys-2024"


# --------------------------------------------------------------------------- reading


def fold(name: str) -> str:
    """Names compared the way §3 of the design says: A-Z only."""
    name = name.replace("ß", "SS").replace("æ", "AE").replace("Æ", "AE")
    name = name.replace("œ", "OE").replace("Œ", "OE")
    decomposed = unicodedata.normalize("NFKD", name)
    return re.sub(r"[^A-Z]", "", "".join(c for c in decomposed if c.isascii()).upper())


def first_given(first_names: str) -> str:
    return re.split(r"[,\s]+", first_names.strip())[0]


def parse_date(text: str) -> date | None:
    for pattern, order in (
        (r"(\d{4})-(\d{2})-(\d{2})", "ymd"),
        (r"(\d{2})/(\d{2})/(\d{4})", "dmy"),
    ):
        found = re.fullmatch(pattern, text)
        if found:
            a, b, c = (int(g) for g in found.groups())
            y, m, d = (a, b, c) if order == "ymd" else (c, b, a)
            try:
                return date(y, m, d)
            except ValueError:
                return None
    return None


def compact_nir(text: str) -> str:
    return re.sub(r"[\s.\-]", "", text).upper()


@dataclass(frozen=True)
class Row:
    source: str
    nir: str  # compacted
    last: str
    usage: str
    first_names: str
    birth_text: str
    rank: str
    insurer: str
    marital: str
    tp: str

    @property
    def birth(self) -> date | None:
        return parse_date(self.birth_text)

    @property
    def nir_valid(self) -> bool:
        return stdnum_nir.is_valid(self.nir)

    @property
    def good(self) -> bool:
        return self.nir_valid and self.birth is not None

    @property
    def holds_nir(self) -> bool:
        """The row of the NIR's holder (a child's row carries a parent's NIR)."""
        b = self.birth
        return b is not None and self.nir[1:5] == f"{b.year % 100:02d}{b.month:02d}"


def read_dump(path: Path, source: str) -> tuple[list[str], list[Row]]:
    encoding, delimiter = ("cp1252", ";") if source == VIAMEDIS else ("utf-8", ",")
    with path.open(encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader)
        rows = []
        for fields in reader:
            assert len(fields) == 9, fields
            rows.append(Row(source, compact_nir(fields[0]), *fields[1:]))
    return header, rows


@dataclass(frozen=True)
class Breach:
    out: Path
    summary: SynthSummary
    viamedis: list[Row]
    almerys: list[Row]

    @property
    def rows(self) -> list[Row]:
        return self.viamedis + self.almerys


def generate(out: Path, records: int = RECORDS, seed: int = 7, workers: int = 1) -> Breach:
    summary = write_synthetic_breach(out, records, seed, workers=workers)
    _, viamedis = read_dump(out / "viamedis.csv", VIAMEDIS)
    _, almerys = read_dump(out / "almerys.csv", ALMERYS)
    return Breach(out, summary, viamedis, almerys)


@pytest.fixture(scope="module")
def breach(tmp_path_factory: pytest.TempPathFactory) -> Breach:
    return generate(tmp_path_factory.mktemp("synth"))


# Three chunks, the last one short, made by a pool of two processes: big enough for
# the member file to hold thousands of people and for rare cases to show up.
LARGE_RECORDS = 2 * CHUNK_ROWS + 1_234


@pytest.fixture(scope="module")
def large_breach(tmp_path_factory: pytest.TempPathFactory) -> Breach:
    return generate(tmp_path_factory.mktemp("large"), records=LARGE_RECORDS, seed=3, workers=2)


def file_bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in FILES}


# --------------------------------------------------------------------------- files


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(
    breach: Breach, tmp_path: Path
) -> None:
    again = generate(tmp_path / "again")
    other = generate(tmp_path / "other", seed=8)
    assert file_bytes(again.out) == file_bytes(breach.out)
    assert (other.out / "viamedis.csv").read_bytes() != (breach.out / "viamedis.csv").read_bytes()
    assert (other.out / "members.csv").read_bytes() != (breach.out / "members.csv").read_bytes()


def test_worker_count_does_not_change_the_bytes(large_breach: Breach, tmp_path: Path) -> None:
    alone = write_synthetic_breach(tmp_path, LARGE_RECORDS, 3, workers=1)
    assert file_bytes(tmp_path) == file_bytes(large_breach.out)
    assert alone.records == large_breach.summary.records == LARGE_RECORDS
    assert alone.members == large_breach.summary.members == members_size(LARGE_RECORDS)
    assert sorted(p.name for p in large_breach.out.iterdir()) == sorted(FILES)  # no leftovers


def test_row_counts_add_up_to_records(breach: Breach) -> None:
    s = breach.summary
    assert len(breach.viamedis) == s.viamedis_rows
    assert len(breach.almerys) == s.almerys_rows
    assert s.records == s.viamedis_rows + s.almerys_rows == RECORDS
    assert 0.4 < s.viamedis_rows / RECORDS < 0.6
    assert s.rows_by_source == {VIAMEDIS: s.viamedis_rows, ALMERYS: s.almerys_rows}
    assert s.members == members_size(RECORDS) == 500
    assert s.seconds > 0


@pytest.mark.parametrize("records", [1, 7, 333])
def test_tiny_breaches_still_have_exact_counts(tmp_path: Path, records: int) -> None:
    small = generate(tmp_path, records=records)
    assert len(small.viamedis) + len(small.almerys) == records
    assert small.summary.members == 200


def test_invalid_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_synthetic_breach(tmp_path, -1)
    with pytest.raises(ValueError):
        write_synthetic_breach(tmp_path, 10, seed=-1)


def test_headers(breach: Breach) -> None:
    header_v, _ = read_dump(breach.out / "viamedis.csv", VIAMEDIS)
    header_a, _ = read_dump(breach.out / "almerys.csv", ALMERYS)
    assert header_v == list(VIAMEDIS_HEADER) == [
        "NIR", "NOM", "NOM_USAGE", "PRENOMS", "DATE_NAISSANCE", "RANG_NAISSANCE",
        "ORGANISME", "SITUATION_FAMILIALE", "GARANTIES_TP",
    ]  # fmt: skip
    assert header_a == list(ALMERYS_HEADER) == [
        "ssn", "last_name", "usage_name", "first_names", "birth_date", "birth_rank",
        "insurer", "marital_status", "tp_guarantees",
    ]  # fmt: skip
    members = (breach.out / "members.csv").read_text("utf-8").splitlines()
    expected = (breach.out / "members-expected.csv").read_text("utf-8").splitlines()
    # The identity columns, then the insurer's own contact columns (never sent by check).
    assert members[0] == ";".join(MEMBERS_HEADER + CONTACT_HEADER) == (
        "ref;nir;last_name;first_name;birth_date;"
        "email;address_1;address_2;address_3;postcode;city;language")
    assert expected[0] == ",".join(MEMBERS_EXPECTED_HEADER) == "ref,in_breach,match,sources,kind"


def test_encodings_and_delimiters(breach: Breach) -> None:
    raw_v = (breach.out / "viamedis.csv").read_bytes()
    raw_a = (breach.out / "almerys.csv").read_bytes()
    text_v = raw_v.decode("cp1252")
    assert any(ord(c) > 127 for c in text_v)
    with pytest.raises(UnicodeDecodeError):  # really cp1252, not UTF-8
        raw_v.decode("utf-8")
    assert text_v.count("\r\n") == len(breach.viamedis) + 1  # a Windows export
    text_a = raw_a.decode("utf-8")
    assert any(ord(c) > 127 for c in text_a) and "\r" not in text_a
    # Minimal quoting: the comma-separated guarantees are quoted, simple fields are not.
    assert any("," in r.tp for r in breach.almerys)
    assert '"PHAR' in text_a or '"LABO' in text_a
    assert not text_a.splitlines()[1].startswith('"')
    assert any("/" in r.tp for r in breach.viamedis)
    assert not any("," in r.tp for r in breach.viamedis)


def test_sources_toml(breach: Breach) -> None:
    with (breach.out / "sources.toml").open("rb") as f:
        sources = tomllib.load(f)["sources"]
    assert sources == [
        {
            "id": "viamedis-2024",
            "title": "Viamedis",
            "breach_date": "2024-01-29",
            "description": sources[0]["description"],
            "path": "viamedis.csv",
            "encoding": "cp1252",
            "delimiter": ";",
            "columns": {
                "nir": "NIR",
                "last_name": "NOM",
                "usage_name": "NOM_USAGE",
                "first_names": "PRENOMS",
                "birth_date": "DATE_NAISSANCE",
                "birth_rank": "RANG_NAISSANCE",
                "insurer": "ORGANISME",
                "marital_status": "SITUATION_FAMILIALE",
                "tp_guarantee": "GARANTIES_TP",
            },
        },
        {
            "id": "almerys-2024",
            "title": "Almerys",
            "breach_date": "2024-02-05",
            "description": sources[1]["description"],
            "path": "almerys.csv",
        },
    ]
    assert all(s["description"] for s in sources)
    for s in sources:
        assert (breach.out / s["path"]).is_file()


# --------------------------------------------------------------------------- people


def test_male_and_female_first_names_are_distinct_after_folding() -> None:
    male = {fold(n) for n in MALE_FIRST_NAMES}
    female = {fold(n) for n in FEMALE_FIRST_NAMES}
    assert not male & female


def test_every_good_nir_is_consistent_with_its_holder(breach: Breach) -> None:
    male = {fold(n) for n in MALE_FIRST_NAMES}
    female = {fold(n) for n in FEMALE_FIRST_NAMES}
    for rows in (breach.viamedis, breach.almerys):
        good = [r for r in rows if r.good]
        assert len(good) > 0.99 * len(rows)
        holders: dict[str, list[Row]] = defaultdict(list)
        for r in rows:
            if r.holds_nir:
                holders[r.nir[:13]].append(r)
        broken = {r.nir[:13] for r in rows if not r.good}
        for r in good:
            assert r.nir[0] in "12" and 1 <= int(r.nir[3:5]) <= 12
            if r.holds_nir:
                given = fold(first_given(r.first_names))
                assert given in (male if r.nir[0] == "1" else female), r
                continue
            # Not the holder: a child under a parent's NIR, in the same dump.
            parents = holders.get(r.nir[:13], [])
            if not parents:
                assert r.nir[:13] in broken  # the parent's row is one of the bad ones
                continue
            parent = parents[0]
            assert parent.birth is not None and r.birth is not None
            assert (r.birth - parent.birth).days >= 18 * 365
            assert fold(r.last) in (fold(parent.last), fold(parent.usage))
            assert r.usage == ""


def test_birth_dates_are_between_1925_and_2023(breach: Breach) -> None:
    births = [r.birth for r in breach.rows if r.birth is not None]
    assert min(births) >= date(1925, 1, 1) and max(births) <= date(2023, 12, 31)
    assert min(births) < date(1940, 1, 1) and max(births) > date(2015, 1, 1)


def test_birthplaces_include_corsica_overseas_and_abroad(breach: Breach) -> None:
    places = Counter(
        r.nir[5:8] if r.nir[5:7] == "97" else r.nir[5:7] for r in breach.rows if r.holds_nir
    )
    assert places["2A"] and places["2B"]
    assert {"971", "972", "974"} <= set(places)
    assert places["99"] > 0.02 * sum(places.values())
    raw = (breach.out / "almerys.csv").read_text("utf-8")
    assert re.search(r"^[12] \d\d \d\d [\dAB]{2} \d{3} \d{3} \d\d,", raw, re.M)


def test_names_have_accents_particles_and_several_given_names(breach: Breach) -> None:
    lasts = {r.last for r in breach.almerys}
    assert any("'" in n for n in lasts) and any("-" in n for n in lasts)
    assert any(" " in n for n in lasts) and any(not n.isascii() for n in lasts)
    assert any(n.startswith(("de ", "du ", "d'")) for n in lasts)
    assert all(n == n.upper() for n in (r.last for r in breach.viamedis))
    firsts = [r.first_names for r in breach.rows]
    assert any("," in f for f in firsts) and any(" " in f.replace(", ", "") for f in firsts)
    assert any("-" in f for f in firsts)
    assert any("Æ" in f or "æ" in f for f in firsts)


def test_usage_names_belong_to_women(breach: Breach) -> None:
    with_usage = [r for r in breach.rows if r.usage]
    assert len(with_usage) > 0.05 * len(breach.rows)
    assert all(r.nir[0] == "2" for r in with_usage if r.holds_nir)
    assert all(r.holds_nir or not r.good for r in with_usage)  # children have none


def test_children_share_a_parent_nir_and_twins_have_ranks(breach: Breach) -> None:
    for rows in (breach.viamedis, breach.almerys):
        by_nir: dict[str, list[Row]] = defaultdict(list)
        for r in rows:
            by_nir[r.nir[:13]].append(r)
        families = [f for f in by_nir.values() if len({r.birth for r in f if r.good}) > 1]
        assert len(families) > 0.05 * len(by_nir)
        twins = [r for r in rows if r.rank == "2"]
        assert twins
        for twin in twins:
            # The first twin: same NIR and date, rank 1 (or one of the empty fields),
            # unless its date is one of the deliberately broken ones.
            assert any(
                o is not twin and o.rank in ("1", "") and (o.birth == twin.birth or not o.good)
                for o in by_nir[twin.nir[:13]]
            )
    assert Counter(r.rank for r in breach.rows).keys() <= {"1", "2", ""}


def test_a_fifth_of_the_people_are_in_both_dumps(breach: Breach) -> None:
    def identity(r: Row) -> tuple[str, date | None, str, str]:
        return r.nir, r.birth, fold(r.last), fold(first_given(r.first_names))

    v = {identity(r): r for r in breach.viamedis if r.good}
    a = {identity(r): r for r in breach.almerys if r.good}
    both = v.keys() & a.keys()
    share = len(both) / len(v.keys() | a.keys())
    assert 0.12 < share < 0.28
    assert share == pytest.approx(breach.summary.people_in_both / breach.summary.people, abs=0.02)
    # Same identity, but not always the same contract.
    assert any(fold(v[k].insurer) != fold(a[k].insurer) for k in both)
    assert any(fold(v[k].insurer) == fold(a[k].insurer) for k in both)


def test_some_fields_are_empty_and_vocabularies_hold(breach: Breach) -> None:
    for rows in (breach.viamedis, breach.almerys):
        assert any(r.insurer == "" for r in rows)
        assert any(r.marital == "" for r in rows)
        assert any(r.tp == "" for r in rows)
        assert sum(r.insurer == "" for r in rows) < 0.1 * len(rows)
    assert {r.marital for r in breach.viamedis} == {
        "célibataire", "marié(e)", "pacsé(e)", "divorcé(e)", "veuf", "veuve", "",
    }  # fmt: skip
    assert {r.marital for r in breach.almerys} == {"C", "M", "P", "D", "V", ""}
    assert {"Harmonie Mutuelle", "MGEN", "Malakoff Humanis"} <= {r.insurer for r in breach.rows}
    codes = {c for r in breach.rows for c in re.split(r"[/,]", r.tp) if c}
    assert {"PHAR", "LABO", "OPTI"} <= codes and all(re.fullmatch("[A-Z]{4}", c) for c in codes)


def test_a_few_rows_are_bad_on_purpose(breach: Breach) -> None:
    for rows in (breach.viamedis, breach.almerys):
        bad_key = [r for r in rows if not r.nir_valid]
        bad_date = [r for r in rows if r.birth_text and r.birth is None]
        assert bad_key and bad_date
        # A wrong key, not a mangled number: 13 digits (or 2A/2B) and a 2-digit key.
        assert all(re.fullmatch(r"[12]\d{4}(\d\d|2A|2B)\d{8}", r.nir) for r in bad_key)
        assert len(bad_key) + len(bad_date) <= 0.005 * len(rows) + 2
    bad = [r for r in breach.rows if not r.nir_valid or (r.birth_text and r.birth is None)]
    assert len(bad) == breach.summary.bad_rows


# --------------------------------------------------------------------------- members


@dataclass(frozen=True)
class Member:
    ref: str
    nir: str
    last: str
    first: str
    birth_text: str
    in_breach: bool
    match: str
    sources: tuple[str, ...]
    kind: str


def read_members(out: Path) -> list[Member]:
    with (out / "members.csv").open(encoding="utf-8", newline="") as f:
        members = list(csv.DictReader(f, delimiter=";"))
    with (out / "members-expected.csv").open(encoding="utf-8", newline="") as f:
        expected = list(csv.DictReader(f))
    assert [m["ref"] for m in members] == [e["ref"] for e in expected]
    return [
        Member(
            m["ref"],
            m["nir"],
            m["last_name"],
            m["first_name"],
            m["birth_date"],
            e["in_breach"] == "true",
            e["match"],
            tuple(s for s in e["sources"].split("|") if s),
            e["kind"],
        )
        for m, e in zip(members, expected, strict=True)
    ]


def given_names(field: str) -> list[str]:
    return [fold(g) for g in re.split(r"[,\s]+", field.strip()) if g]


def edits(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (adjacent transpositions), small strings only."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def one_of_two(typed: str, name: str) -> bool:
    """`typed` is one part of the double name `name` (split at a hyphen or a space)."""
    return any(fold(typed) in (fold(name[:at]), fold(name[at + 1:]))
               for at, c in enumerate(name) if c in "- ")


def differs_by(kind: str, m: Member, r: Row) -> bool:
    """Whether member `m` is record `r` typed with the one difference `kind` names."""
    last, first = fold(m.last), fold(m.first)
    lasts = {fold(n) for n in (r.last, r.usage) if n}
    given = given_names(r.first_names)
    same_last, same_first = last in lasts, first == given[0]
    if kind.startswith("last_name_") and kind[10:] in EDITS:
        return same_first and any(edits(last, n) == 1 for n in lasts)
    if kind.startswith("first_name_"):
        return same_last and edits(first, given[0]) == 1
    if kind == "sound_alike":
        return (same_first and any(0 < edits(last, n) <= 3 for n in lasts)) or (
            same_last and 0 < edits(first, given[0]) <= 3)
    if kind == "compound_short":
        return same_last and "-" in r.first_names and first in given_names(
            re.split(r"[,\s]+", r.first_names.strip())[0].replace("-", " "))
    if kind == "other_given_name":
        return same_last and first in given[1:]
    if kind == "last_name_part":
        return same_first and any(one_of_two(m.last, n) for n in (r.last, r.usage) if n)
    if kind == "last_name_whole":
        return same_first and one_of_two(r.last, m.last) and not same_last
    if kind == "names_swapped":
        return fold(m.last) == given[0] and first in lasts
    if kind == "day_month_swapped":
        return same_last and same_first
    raise AssertionError(kind)


def test_member_file_is_half_in_the_breach(breach: Breach) -> None:
    members = read_members(breach.out)
    assert len(members) == breach.summary.members == 500
    assert [m.ref for m in members] == [f"m-{i:06d}" for i in range(1, 501)]
    in_breach = [m for m in members if m.in_breach]
    assert len(in_breach) == breach.summary.members_in_breach == 250
    assert {m.match for m in in_breach} == {"strong", "weak", "similar"}
    assert sum(m.match in ("strong", "weak") for m in in_breach) > len(in_breach) / 2
    assert all(m.match == "" and m.sources == () and m.kind == "absent"
               for m in members if not m.in_breach)
    expected_text = (breach.out / "members-expected.csv").read_text("utf-8")
    assert not re.search(r"\d{13}", expected_text)  # no identifier in the ground truth


def test_every_kind_of_difference_is_there_with_its_level(large_breach: Breach) -> None:
    members = read_members(large_breach.out)
    kinds = Counter(m.kind for m in members)
    assert set(kinds) == set(MEMBER_KINDS)
    assert min(kinds.values()) >= 50  # enough of each to measure a recall
    assert set(KIND_DIFFERENCE.values()) == {
        "spelling", "name_part", "names_swapped", "day_month_swapped"}
    for m in members:
        if m.kind in EXACT_KINDS:
            assert m.in_breach and m.match == ("strong" if m.nir else "weak"), m.ref
        elif m.kind in KIND_DIFFERENCE:
            assert m.in_breach and m.match == "similar" and not m.nir, m.ref
        else:
            assert not m.in_breach and m.kind == "absent"
    assert {m.kind for m in members if m.nir} == {"exact", "nir_spacing", "absent"}


def test_members_are_typed_with_variants(breach: Breach) -> None:
    members = read_members(breach.out)
    assert any(re.fullmatch(r"[12] \d\d \d\d \w\w \d{3} \d{3} \d\d", m.nir) for m in members)
    assert any("." in m.nir for m in members)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d", m.birth_text) for m in members)
    assert any(re.fullmatch(r"\d\d/\d\d/\d{4}", m.birth_text) for m in members)
    assert any(m.last.islower() for m in members) and any(m.last.isupper() for m in members)
    names = [m.first for m in members] + [m.last for m in members]
    assert any(not n.isascii() for n in names)
    for m in members:
        assert m.nir == "" or stdnum_nir.is_valid(compact_nir(m.nir))
        assert parse_date(m.birth_text) is not None
        assert fold(m.last) and fold(m.first)


def test_exact_kinds_differ_only_by_what_folds_away(large_breach: Breach) -> None:
    members = {m.kind: m for m in read_members(large_breach.out)}  # one of each
    assert re.search(r"[\s.\-\u00a0]", members["nir_spacing"].nir)
    assert re.fullmatch(r"\d\d/\d\d/\d{4}", members["date_dmy"].birth_text)
    several = [m for m in read_members(large_breach.out) if m.kind == "several_given_names"]
    assert all(len(given_names(m.first)) >= 2 for m in several)
    assert any("," in m.first for m in several) and any(", " not in m.first for m in several)


@pytest.mark.parametrize("size", ["small", "large"])
def test_ground_truth_matches_the_dumps(request: pytest.FixtureRequest, size: str) -> None:
    """Every member the generator says is in the breach is found there under the key
    it names, in exactly the sources it names; a member of a similar-level kind is
    found by no exact key, and is one of the breach's records typed with exactly the
    difference its kind names, in the sources it names; the others are found nowhere
    by NIR."""
    breach: Breach = request.getfixturevalue("breach" if size == "small" else "large_breach")
    strong: dict[tuple[str, date], set[str]] = defaultdict(set)
    weak: dict[tuple[str, str, date], set[str]] = defaultdict(set)
    by_birth: dict[date, list[Row]] = defaultdict(list)
    for r in breach.rows:
        if r.birth is None:
            continue
        by_birth[r.birth].append(r)
        if r.nir_valid:
            strong[(r.nir, r.birth)].add(r.source)
        for last in {r.last, r.usage} - {""}:
            weak[(fold(last), fold(first_given(r.first_names)), r.birth)].add(r.source)

    order = {VIAMEDIS: 0, ALMERYS: 1}
    for m in read_members(breach.out):
        birth = parse_date(m.birth_text)
        assert birth is not None
        by_nir = strong.get((compact_nir(m.nir), birth), set()) if m.nir else set()
        by_name = weak.get((fold(m.last), fold(first_given(m.first)), birth), set())
        if not m.in_breach:
            assert not by_nir, m.ref  # by name: a homonym can be (see below)
        elif m.match == "strong":
            assert m.nir and sorted(by_nir, key=order.__getitem__) == list(m.sources), m.ref
            assert by_name == by_nir, m.ref
        elif m.match == "weak":
            assert not m.nir, m.ref
            assert sorted(by_name, key=order.__getitem__) == list(m.sources), m.ref
        else:
            assert not by_name and not weak.get((fold(m.last), fold(m.first), birth)), m.ref
            if m.kind == "day_month_swapped":
                assert birth.day <= 12 and birth.day != birth.month
                birth = date(birth.year, birth.day, birth.month)
            near = {r.source for r in by_birth[birth] if differs_by(m.kind, m, r)}
            assert sorted(near, key=order.__getitem__) == list(m.sources), (m.ref, m.kind)


def test_sound_alikes_are_mostly_one_edit_away(large_breach: Breach) -> None:
    rows = {(r.birth, fold(first_given(r.first_names))): r for r in large_breach.rows}
    distances = []
    for m in read_members(large_breach.out):
        r = rows.get((parse_date(m.birth_text), fold(m.first)))
        if m.kind == "sound_alike" and r is not None:
            distances.append(min(edits(fold(m.last), fold(n)) for n in (r.last, r.usage) if n))
    assert len(distances) > 30
    assert 0.75 < sum(d == 1 for d in distances) / len(distances) < 0.98


def test_members_outside_the_breach_cannot_collide_by_nir(large_breach: Breach) -> None:
    """People who are not in the breach get birth order numbers 900-999, which nobody
    in it has; their names and dates follow the breach's own distributions, so that
    they share its surnames (and, rarely, a whole name and date: homonyms)."""
    members = read_members(large_breach.out)
    outside = [m for m in members if not m.in_breach]
    assert len(outside) == len(members) - large_breach.summary.members_in_breach
    assert all(int(compact_nir(m.nir)[10:13]) >= 900 for m in outside if m.nir)
    assert any(m.nir == "" for m in outside)
    assert all(int(r.nir[10:13]) < 900 for r in large_breach.rows)
    breach_names = {fold(n) for r in large_breach.rows for n in (r.last, r.usage) if n}
    shared = sum(fold(m.last) in breach_names for m in outside)
    assert shared > 0.8 * len(outside)
    births = sorted(parse_date(m.birth_text) or date.min for m in outside)
    inside = sorted(parse_date(m.birth_text) or date.min for m in members if m.in_breach)
    assert abs(births[len(births) // 2].year - inside[len(inside) // 2].year) <= 5
