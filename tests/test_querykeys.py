"""The C fast path of canonical_keys with a memo (indexer/core/_querykeys.c) against Python.

`QueryMemo()` answers a bulk line in C when it can (`memo.native_keys`), and
`QueryMemo(native=False)` in Python alone: the reference. For any line the C answer is
None (the Python path decides) or exactly the keys the Python general path gives, and a
memo used by both paths remembers exactly what the Python one remembers. On realistic
members (a synthetic breach's member file) the C path must answer nearly every line,
else it would only be falling back. It never raises, whatever it is given.
"""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.fr import nir as stdnum_nir

from indexer.build.synth import write_synthetic_breach
from indexer.core._querykeys import MemoKeys
from indexer.core.matchkeys import QUERY_FIELDS, QueryError, QueryMemo, QueryName, canonical_keys

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEYS = MemoKeys(QueryName).keys
CLOCK = dt.date.today()

# --- values of every kind a line may hold ---------------------------------------------

SEPARATORS = [" ", ".", "-", "\t", "\n", "\u00a0", "\u2013", "/", "_", "  "]


@st.composite
def nirs(draw: st.DrawFn, valid: bool = False) -> str:
    """NIRs valid and not (sex digit, month, department, key, length), 13 or 15
    characters, Corsican ones in either case, with separators typed anywhere."""
    sex = draw(st.sampled_from("123478" if valid else "12347805"))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from([1, 12, 20, 42, 50, 99] + ([] if valid else [0, 13, 43, 49])))
    department = draw(st.sampled_from(
        ["75", "2A", "2B", "2a", "2b", "99"] + ([] if valid else ["2C", "20", "A2"])))
    rest = draw(st.text("0123456789", min_size=6, max_size=6))
    body = f"{sex}{year:02d}{month:02d}{department}{rest}"
    try:
        key = stdnum_nir.calc_check_digits(body.upper())
    except ValueError:
        key = "00"
    form = draw(st.sampled_from(["13", "15"] + ([] if valid else ["bad key", "14", "16"])))
    text = {"13": body, "15": body + key, "bad key": body + f"{(int(key) % 97) + 1:02d}",
            "14": body + key[0], "16": body + key + "1"}[form]
    chars = list(text)
    for _ in range(draw(st.integers(0, 4))):
        separators = SEPARATORS[:5] if valid else SEPARATORS
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(separators)))
    return "".join(chars)


DATE_FORMS = ["iso", "/", ".", "-"]


@st.composite
def dates(draw: st.DrawFn, valid: bool = False) -> str:
    """Dates in all the formats of docs/design.md §3 and others: 00 day or month,
    unpadded, impossible, before 1880, in the future, two-digit years, blanks around."""
    if valid or draw(st.booleans()):
        day = draw(st.dates(dt.date(1880, 1, 1), CLOCK + dt.timedelta(days=4)) if valid else
                   st.dates(CLOCK - dt.timedelta(days=4), CLOCK + dt.timedelta(days=4)))
        year, month, date = day.year, day.month, day.day
        if draw(st.booleans()):
            month, date = draw(st.sampled_from([(month, 0), (0, date), (0, 0)]))
    else:
        year = draw(st.sampled_from([1879, 1880, 1900, 1994, 2000, 2004, 2023, 2024, 2099, 0, 12]))
        month = draw(st.integers(0, 13))
        date = draw(st.integers(0, 32))
    pad = draw(st.booleans())
    dd, mm = (f"{date:02d}", f"{month:02d}") if pad else (str(date), str(month))
    form = draw(st.sampled_from(
        DATE_FORMS if valid else [*DATE_FORMS, "mixed", "short", "spaced"]))
    text = {
        "iso": f"{year:04d}-{mm}-{dd}", "/": f"{dd}/{mm}/{year:04d}",
        ".": f"{dd}.{mm}.{year:04d}", "-": f"{dd}-{mm}-{year:04d}",
        "mixed": f"{dd}/{mm}-{year:04d}", "short": f"{dd}/{mm}/{year % 100:02d}",
        "spaced": f"{dd} / {mm} / {year}",
    }[form]
    blank = draw(st.sampled_from(["", " ", "\t", "\x1c"] + ([] if valid else ["\u00a0"])))
    return blank + text + blank[::-1]


# Words and separators of names: plain ASCII ones first (valid names, compound ones,
# particles), then what the C path leaves to Python.
ASCII_WORDS = ["de", "La", "le", "d'", "van", "VON", "du", "Dupont", "MARTIN", "jean", "Pierre",
               "Anne-Marie", "O'Brien", "x", "AB", "-", "--", " ", ",", ";", ".", "`", "'", "\t"]
OTHER_WORDS = ["D’", "Lætitia", "Ø", "ß", "é", "R2D2", "\u00a0", "\u2011", "Zoé", "\x0b"]
ASCII_NAMES = st.lists(st.sampled_from(ASCII_WORDS), min_size=1, max_size=8).map("".join)
NAMES = st.one_of(
    ASCII_NAMES,
    st.lists(st.sampled_from(ASCII_WORDS + OTHER_WORDS), max_size=8).map("".join),
    st.text(alphabet="abDELAVNO -'`.,;\t\n\x0b", max_size=30),
    st.text(max_size=20),
    st.text(alphabet="ab -", min_size=100, max_size=300),  # long, near and past C's limit
)
OTHERS = st.one_of(
    st.none(), st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3)),
    st.dictionaries(st.text(max_size=2), st.none(), max_size=2),
)
VALUES = {
    "nir": st.one_of(nirs(), st.sampled_from(["", " ", "\t"]), st.text(max_size=18), OTHERS),
    "birth_date": st.one_of(dates(), st.sampled_from(["", " "]), st.text(max_size=12), OTHERS),
    "last_name": st.one_of(NAMES, st.sampled_from(["", " "]), OTHERS),
    "first_name": st.one_of(NAMES, st.sampled_from(["", " "]), OTHERS),
}
PLAIN = {
    "nir": nirs(valid=True), "birth_date": dates(valid=True),
    "last_name": ASCII_NAMES, "first_name": ASCII_NAMES,
}
# Five plain values for one of any kind (st.one_of would draw from each of the many
# strategies of the latter as often as from the former): many lines are answered in C.
LINES = st.fixed_dictionaries({}, optional={
    **{name: st.integers(0, 5).flatmap(
        lambda pick, name=name: PLAIN[name] if pick else VALUES[name]) for name in VALUES},
    "ref": st.text(max_size=3),
})
TODAYS = st.one_of(st.none(), st.dates(dt.date(1990, 1, 1), dt.date(2100, 1, 1)))


def outcome(fields: Mapping[str, object], today: dt.date | None,
            memo: QueryMemo | None = None) -> object:
    """canonical_keys' answer: the keys, or the errors."""
    try:
        return canonical_keys(fields, today=today, memo=memo)
    except QueryError as error:
        return [(e.field, e.code) for e in error.errors]


def remembered(memo: QueryMemo) -> object:
    return len(memo), memo.birth_dates, memo.last_names, memo.first_names


def check_line(fields: Mapping[str, object], today: dt.date | None, native: QueryMemo,
               python: QueryMemo) -> bool:
    """One line of a request answered with each memo: the C answer is None or the
    general path's keys, and when it is None canonical_keys (which asks it again, then
    takes the Python path) gives them too; the Python fast path alone gives the same
    with the other memo, and both memos remember the same. Whether C answered."""
    expected = outcome(fields, today)  # no memo: the general path
    answer = KEYS(fields, native, today)
    if answer is not None:
        assert type(answer) is tuple and all(type(key) is str for key in answer)
        assert answer == expected
    else:
        assert outcome(fields, today, native) == expected
    assert outcome(fields, today, python) == expected
    assert remembered(native) == remembered(python)
    return answer is not None


# --- arbitrary lines ------------------------------------------------------------------


@FUZZ
@given(lines=st.lists(LINES, min_size=1, max_size=10), today=TODAYS,
       entries=st.sampled_from([3, 8, 1 << 17]))
def test_the_c_path_answers_none_or_the_python_keys(
    lines: list[dict[str, object]], today: dt.date | None, entries: int
) -> None:
    """Twice over the lines: the second time, their values are remembered (a small
    memo starts again on the way, in the same places for both)."""
    native, python = QueryMemo(entries), QueryMemo(entries, native=False)
    for _ in range(2):
        for fields in lines:
            check_line(fields, today, native, python)


# Lines whose every value is plain ASCII and valid: the C path must answer each of them,
# first as values not seen yet, then from the memo.
ASCII_LINES = [
    {"nir": "294037512000591", "birth_date": "12/03/1994", "last_name": "Martin",
     "first_name": "Jean"},
    {"nir": "2 94 03 75 120 005 91", "birth_date": "1994-3-2"},
    {"nir": "2.94.03.75.120.005.91", "birth_date": "00.03.1994", "last_name": "",
     "first_name": None},
    {"nir": "2940375120005", "birth_date": "00-00-1994"},  # 13 characters: key computed
    {"nir": "253072b07300470", "birth_date": "1953-07-01"},
    {"nir": "1 86 02 2A 215 325 23", "birth_date": "1986-02-28"},
    {"nir": "2-94-03-75-120-005-91\t", "birth_date": " 12/03/1994 "},
    {"last_name": "de la Tour", "first_name": "Anne-Marie, Louise", "birth_date": "29/02/2000"},
    {"last_name": "Le Bras-Dupont", "first_name": "jean pierre marie", "birth_date": "1980-1-31",
     "nir": ""},
    {"last_name": "Duchene-Germant-Bertel", "first_name": "Jean-Pierre Marie",
     "birth_date": "01/01/1880"},
    {"last_name": "O'Brien", "first_name": "Jean-Pierre;Jean", "birth_date": "1960-00-15"},
    {"last_name": "van der Berg", "first_name": "A-B de-la", "birth_date": "1970-12-00"},
    {"last_name": "Dupont Dupont", "first_name": "Marie,,Marie", "birth_date": "3/4/1955"},
]


@pytest.mark.parametrize("today", [None, dt.date(2024, 6, 15)])
def test_the_c_path_answers_plain_valid_lines(today: dt.date | None) -> None:
    native, python = QueryMemo(), QueryMemo(native=False)
    for _ in range(2):
        answered = [check_line(fields, today, native, python) for fields in ASCII_LINES]
        assert all(answered)


def test_what_the_c_path_leaves_to_python() -> None:
    """Errors, blanks, non-strings, other mappings, non-ASCII values, dates too near
    the clock: None, and nothing remembered."""
    memo = QueryMemo()
    valid = {"nir": "294037512000591", "birth_date": "12/03/1994", "last_name": "Martin",
             "first_name": "Jean"}
    assert KEYS(valid, memo, None) is not None
    near = CLOCK.strftime("%d/%m/%Y")
    leave: list[dict[str, object]] = [
        {**valid, "nir": "294037512000592"},  # its key does not match
        {**valid, "nir": " "}, {**valid, "nir": 294037512000591},
        {**valid, "nir": "2\u00a094 03 75 120 005 91"},  # a separator not ASCII
        {**valid, "birth_date": "31/02/1994"}, {**valid, "birth_date": "12/03/94"},
        {**valid, "birth_date": "1879-12-31"}, {**valid, "birth_date": near},
        {**valid, "birth_date": " "}, {**valid, "birth_date": ["12/03/1994"]},
        {**valid, "last_name": "Lætitia"}, {**valid, "last_name": "R2D2"},
        {**valid, "last_name": "Martin, Jean"}, {**valid, "first_name": "-"},
        {**valid, "first_name": ""},  # half a name key
        {**valid, "first_name": "A" * 200},
        {"last_name": "Martin", "first_name": "Jean"},
    ]
    before = remembered(memo)
    for fields in leave:
        assert KEYS(fields, memo, None) is None
        assert remembered(memo) == before
    assert KEYS(types.MappingProxyType(valid), memo, None) is None
    assert KEYS(valid, memo, dt.datetime(2024, 6, 15)) is not None  # remembered: no check
    assert KEYS({**valid, "birth_date": "13/03/1994"}, memo, dt.datetime(2024, 6, 15)) is None


GARBAGE = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=5), st.floats(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers()),
    st.builds(object), st.just(dt.datetime(2024, 1, 1)),
)


@FUZZ
@given(fields=st.one_of(GARBAGE, st.dictionaries(st.one_of(st.text(max_size=12),
                                                           st.sampled_from(QUERY_FIELDS),
                                                           st.integers()), GARBAGE)),
       today=GARBAGE, tables=st.sampled_from(["memo", "broken"]))
def test_the_c_path_never_raises(fields: object, today: object, tables: str) -> None:
    memo = QueryMemo()
    if tables == "broken":  # tables that are not the memo's dictionaries
        memo.birth_dates = {None: 3, "": ["x"]}
        memo.last_names = {None: ("A", 1, ()), "": ("", "", [""])}
        memo.first_names = {None: "", "": ("é", "é", ())}
    answer = KEYS(fields, memo, today)
    assert answer is None or (type(answer) is tuple and answer)
    assert KEYS(fields, object(), today) is None


def test_the_module_is_used_only_when_present() -> None:
    """Without the compiled module, canonical_keys with a memo answers in Python."""
    code = (
        "import sys; sys.modules['indexer.core._querykeys'] = None\n"
        "from indexer.core.matchkeys import QueryMemo, canonical_keys\n"
        "memo = QueryMemo(); assert memo.native_keys is None\n"
        "fields = {'last_name': 'Martin', 'first_name': 'Jean', 'birth_date': '12/03/1994'}\n"
        "print(canonical_keys(fields, memo=memo) == canonical_keys(fields), len(memo))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[1])
    assert done.stdout.split() == ["True", "3"]  # its date and two names remembered
    assert QueryMemo().native_keys is not None


# --- realistic members ----------------------------------------------------------------


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """The member file of a small synthetic breach, read as a bulk CSV is read."""
    out = tmp_path_factory.mktemp("querykeys")
    write_synthetic_breach(out, records=20_000, seed=20240129, workers=1)
    with (out / "members.csv").open(encoding="utf-8", newline="") as stream:
        return [{name: row[name].strip() for name in QUERY_FIELDS}
                for row in csv.DictReader(stream, delimiter=";")]


def test_the_c_path_answers_most_members(members: list[dict[str, object]]) -> None:
    """Every answer the reference's; and most lines answered in C: the first time,
    those of plain ASCII (their dates and names normalised in C; about a fifth of the
    synthetic members have a name with an accent, left to Python), the second time
    nearly all (read from the memo)."""
    native, python = QueryMemo(), QueryMemo(native=False)
    first = sum(check_line(fields, None, native, python) for fields in members)
    ascii_lines = sum(all(str(value).isascii() for value in fields.values())
                      for fields in members)
    assert first >= 0.98 * ascii_lines and first > 0.75 * len(members)
    again = sum(check_line(fields, None, native, python) for fields in members)
    assert again > 0.95 * len(members)
