"""Tests for indexer.core.matchkeys: query parsing, complete keys, matching (design §2, §3).

Matching is checked end to end on the real code of both sides: a record's keys come
from `records.record_keys`, a query's from `canonical_keys`, and a query matches when
the two share a strong or weak key (similar matches: tests/test_similar.py). "today" is injected.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.core.identity import IdentityError
from indexer.core.matchkeys import (
    MATCHED_ON,
    QUERY_FIELDS,
    QueryError,
    QueryMemo,
    canonical_keys,
    exact_keys,
    key_kind,
    strong_key,
    weak_key,
)
from indexer.core.records import record_keys

TODAY = dt.date(2024, 6, 15)
PROPERTY = settings(deadline=None, max_examples=200)

NIR = "294037512000591"  # docs/design.md §3 reference vector; born March 1994
BIRTH_DATE = "12/03/1994"
CANONICAL_DATE = "1994-03-12"
VALID_QUERY = {"nir": NIR, "birth_date": BIRTH_DATE, "last_name": "Martin", "first_name": "Jean"}


def record(
    *,
    nir: str = "",
    last_name: str = "",
    usage_name: str = "",
    first_names: str = "",
    birth_date: str = BIRTH_DATE,
) -> list[str]:
    row = (nir, last_name, usage_name, first_names, birth_date, "", "", "", "")
    return record_keys(row)[0]


def query(**fields: object) -> tuple[str, ...]:
    return canonical_keys(fields, today=TODAY)


def matches(record_fields: dict[str, str], query_fields: dict[str, object]) -> bool:
    indexed = set(record(**record_fields))
    return any(key in indexed for key in exact_keys(query(**query_fields)))


def query_error(**fields: object) -> QueryError:
    with pytest.raises(QueryError) as info:
        canonical_keys(fields, today=TODAY)
    assert info.value.errors, "a QueryError always carries field errors"
    return info.value


def codes(error: QueryError) -> set[tuple[str, str]]:
    return {(e.field, e.code) for e in error.errors}


# --- keys ---------------------------------------------------------------------------------


def test_canonical_key_forms() -> None:
    assert strong_key(NIR, CANONICAL_DATE) == f"strong|{NIR}|{CANONICAL_DATE}"
    assert weak_key("MARTIN", "JEAN", CANONICAL_DATE) == f"weak|MARTIN|JEAN|{CANONICAL_DATE}"


def test_full_query_gives_strong_key_first() -> None:
    keys = query(**VALID_QUERY)
    assert [key_kind(key) for key in keys] == ["strong", "weak"]
    assert keys[0] == strong_key(NIR, CANONICAL_DATE)
    assert MATCHED_ON[key_kind(keys[0])] == ("nir", "birth_date")
    assert keys[1] == weak_key("MARTIN", "JEAN", CANONICAL_DATE)
    assert set(MATCHED_ON[key_kind(keys[1])]) == {"last_name", "first_name", "birth_date"}


def test_query_keys_are_normalised() -> None:
    keys = query(nir="2 94 03 75 120 005 91", birth_date="1994-03-12",
                 last_name="  martin ", first_name="jéan")
    assert list(keys) == [
        strong_key(NIR, CANONICAL_DATE), weak_key("MARTIN", "JEAN", CANONICAL_DATE)
    ]


def test_strong_key_alone() -> None:
    keys = query(nir=NIR, birth_date=BIRTH_DATE)
    assert [(key_kind(k), k) for k in keys] == [
        ("strong", strong_key(NIR, CANONICAL_DATE))
    ]


def test_weak_key_alone() -> None:
    keys = query(last_name="Martin", first_name="Jean", birth_date=BIRTH_DATE)
    assert [(key_kind(k), k) for k in keys] == [
        ("weak", weak_key("MARTIN", "JEAN", CANONICAL_DATE))
    ]


def test_unknown_fields_are_ignored() -> None:
    keys = query(nir=NIR, birth_date=BIRTH_DATE, ref="m-001", comment=12)
    assert [key_kind(k) for k in keys] == ["strong"]


# --- matching: first names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_first_names", "query_first_name", "expected"),
    [
        ("JEAN PIERRE MARIE", "Jean", True),
        ("JEAN-PIERRE", "Jean-Pierre", True),
        ("JEAN-PIERRE", "Jean Pierre", True),
        ("JEAN-PIERRE", "jean–pierre", True),
        ("JEAN-PIERRE MARIE", "Jean-Pierre", True),
        ("JEAN-PIERRE", "Jean", False),
        ("JEAN-PIERRE", "Pierre", False),
        ("JEAN PIERRE MARIE", "Pierre", False),
        ("JEAN PIERRE MARIE", "Marie", False),
        ("JEAN, PIERRE, MARIE", "Jean", True),
        ("JEAN,PIERRE,MARIE", "Jean", True),
        ("JEAN,PIERRE", "Pierre", False),
        ("JEAN-PIERRE, MARIE", "Jean Pierre", True),
        # docs/design.md §3: a query's first-names field is read as a record's is.
        ("JEAN PIERRE MARIE", "Jean Pierre", True),
        ("JEAN PIERRE MARIE", "Jean, Pierre", True),
        ("JEAN PIERRE MARIE", "JEAN PIERRE MARIE", True),
        ("JEAN PIERRE MARIE", "Jean;Pierre", True),
        ("JEAN PIERRE", "JeanPierre", True),
        ("JEAN-PIERRE", "Jean-Pierre Marie", True),
        ("ISABELLA", "isabe lla", True),  # a stray space folds away (the whole field)
        ("ISABE LLA", "Isabella", True),
        ("JEAN PIERRE MARIE", "Pierre Jean", False),
        ("JEAN PIERRE MARIE", "Marie, Jean", False),
        ("LÆTITIA MARIE", "Laetitia", True),
        ("Hélène", "HELENE", True),
    ],
)
def test_query_first_name_matches_the_first_given_name(
    record_first_names: str, query_first_name: str, expected: bool
) -> None:
    assert matches(
        {"last_name": "MARTIN", "first_names": record_first_names},
        {"last_name": "Martin", "first_name": query_first_name, "birth_date": BIRTH_DATE},
    ) is expected


# --- matching: last names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query_last_name", "expected"),
    [
        ("Martin", True),  # birth name
        ("Le Gall", True),  # usage name
        ("LE-GALL", True),
        ("legall", True),
        ("Martin Le Gall", False),
        ("Durand", False),
    ],
)
def test_query_last_name_matches_birth_or_usage_name(query_last_name: str, expected: bool) -> None:
    assert matches(
        {"last_name": "MARTIN", "usage_name": "LE GALL", "first_names": "MARIE ANNE"},
        {"last_name": query_last_name, "first_name": "Marie", "birth_date": BIRTH_DATE},
    ) is expected


def test_record_with_usage_name_is_indexed_under_both_names() -> None:
    keys = record(last_name="MARTIN", usage_name="LE GALL", first_names="MARIE ANNE")
    # Each last name with the first given name, and with all the given names folded
    # together (docs/design.md §3).
    assert set(keys) == {
        weak_key("MARTIN", "MARIE", CANONICAL_DATE),
        weak_key("LEGALL", "MARIE", CANONICAL_DATE),
        weak_key("MARTIN", "MARIEANNE", CANONICAL_DATE),
        weak_key("LEGALL", "MARIEANNE", CANONICAL_DATE),
    }


@pytest.mark.parametrize(
    ("record_name", "query_name"),
    [
        ("D'ARTAGNAN", "d’Artagnan"),
        ("DARTAGNAN", "D'Artagnan"),
        ("D ARTAGNAN", "d‘artagnan"),
        ("D`ARTAGNAN", "DARTAGNAN"),
        ("MÜLLER", "Muller"),
        ("ŒILLET", "Oeillet"),
        ("STRASSE", "Straße"),
        ("LE—GALL", "Le Gall"),
    ],
)
def test_name_equivalences_hold_between_record_and_query(record_name: str, query_name: str) -> None:
    assert matches(
        {"last_name": record_name, "first_names": "JEAN"},
        {"last_name": query_name, "first_name": "Jean", "birth_date": BIRTH_DATE},
    )


# --- matching: NIR and date ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_nir", "query_nir"),
    [
        (NIR, "2 94 03 75 120 005 91"),
        (NIR, "2.94.03.75.120.005.91"),
        (NIR, "2\u00a094\u00a003\u00a075\u00a0120\u00a0005\u00a091"),
        (NIR, "2940375120005"),
        ("2940375120005", NIR),
        ("253072B07300470", "2 53 07 2b 073 004 70"),
    ],
)
@pytest.mark.parametrize("query_date", ["1994-03-12", "12/03/1994", "12-03-1994", "12.03.1994"])
def test_strong_key_matches_typed_variants(
    record_nir: str, query_nir: str, query_date: str
) -> None:
    assert matches({"nir": record_nir}, {"nir": query_nir, "birth_date": query_date})


def test_another_birth_date_under_the_same_nir_does_not_match() -> None:
    # A child under a parent's NIR: the date of birth tells them apart.
    assert not matches({"nir": NIR}, {"nir": NIR, "birth_date": "12/03/2010"})


def test_unknown_day_and_month_match_as_such() -> None:
    record_fields = {"nir": NIR, "birth_date": "00/00/1950"}
    assert matches(record_fields, {"nir": NIR, "birth_date": "1950-00-00"})
    assert not matches(record_fields, {"nir": NIR, "birth_date": "01/01/1950"})


# --- complete keys ------------------------------------------------------------------------


def test_nir_without_birth_date_is_incomplete() -> None:
    assert ("birth_date", "required") in codes(query_error(nir=NIR))


def test_names_without_birth_date_are_incomplete() -> None:
    error = query_error(last_name="Martin", first_name="Jean")
    assert ("birth_date", "required") in codes(error)


def test_last_name_without_first_name_is_incomplete() -> None:
    error = query_error(last_name="Martin", birth_date=BIRTH_DATE)
    assert codes(error) == {("first_name", "required")}


def test_first_name_without_last_name_is_incomplete() -> None:
    error = query_error(first_name="Jean", birth_date=BIRTH_DATE)
    assert codes(error) == {("last_name", "required")}


def test_birth_date_alone_is_incomplete() -> None:
    error = query_error(birth_date=BIRTH_DATE)
    assert {e.field for e in error.errors} & {"nir", "last_name", "first_name"}


@pytest.mark.parametrize(
    "fields",
    [{}, {"nir": ""}, {"nir": " ", "birth_date": "\t", "last_name": "", "first_name": "\u00a0"},
     {"ref": "m-001"}],
    ids=["empty", "blank-nir", "all-blank", "unknown-only"],
)
def test_nothing_is_incomplete(fields: dict[str, str]) -> None:
    error = query_error(**fields)
    assert ("birth_date", "required") in codes(error)
    assert len(error.errors) >= 2


# --- invalid fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("nir", "294037512000592", "invalid_checksum"),
        ("nir", "29403751200059", "invalid_length"),
        ("nir", "994037512000591", "invalid_sex_digit"),
        ("nir", "294437512000591", "invalid_month"),
        ("birth_date", "31/02/1994", "invalid_date"),
        ("birth_date", "12/03/94", "two_digit_year"),
        ("birth_date", "12/03/2031", "out_of_range"),
        ("last_name", "Mart1n", "invalid_characters"),
        ("first_name", "Жан", "invalid_characters"),
    ],
)
def test_an_invalid_field_is_an_error_even_with_another_complete_key(
    field: str, value: str, code: str
) -> None:
    error = query_error(**{**VALID_QUERY, field: value})
    assert (field, code) in codes(error)


def test_every_invalid_field_is_reported() -> None:
    error = query_error(nir="294037512000592", birth_date="31/02/1994",
                        last_name="Mart1n", first_name="J3an")
    assert codes(error) == {
        ("nir", "invalid_checksum"),
        ("birth_date", "invalid_date"),
        ("last_name", "invalid_characters"),
        ("first_name", "invalid_characters"),
    }


@pytest.mark.parametrize("value", [12, 1.5, True, ["Martin"], {"v": "Martin"}, b"Martin"],
                         ids=["int", "float", "bool", "list", "dict", "bytes"])
@pytest.mark.parametrize("field", QUERY_FIELDS)
def test_non_string_values_are_invalid_type(field: str, value: object) -> None:
    error = query_error(**{**VALID_QUERY, field: value})
    assert (field, "invalid_type") in codes(error)


@pytest.mark.parametrize("blank", ["", " ", "\t", "\u00a0", "  \n "])
def test_blank_strings_count_as_absent(blank: str) -> None:
    keys = query(**{**VALID_QUERY, "nir": blank})
    assert [key_kind(k) for k in keys] == ["weak"]
    keys = query(**{**VALID_QUERY, "last_name": blank, "first_name": blank})
    assert [key_kind(k) for k in keys] == ["strong"]
    error = query_error(**{**VALID_QUERY, "birth_date": blank})
    assert ("birth_date", "required") in codes(error)


# --- error messages never quote the value -------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {**VALID_QUERY, "nir": "294037512000592"},
        {**VALID_QUERY, "nir": "29403751200059"},
        {**VALID_QUERY, "nir": "994037512000591"},
        {**VALID_QUERY, "nir": "294437512000591"},
        {**VALID_QUERY, "nir": "294037C12000591"},
        {**VALID_QUERY, "nir": "2940375120005+1"},
        {**VALID_QUERY, "nir": "...-"},
        {**VALID_QUERY, "birth_date": "31/02/1994"},
        {**VALID_QUERY, "birth_date": "12/03/94"},
        {**VALID_QUERY, "birth_date": "12/03/2031"},
        {**VALID_QUERY, "birth_date": "12/03-1994"},
        {**VALID_QUERY, "last_name": "Mart1n"},
        {**VALID_QUERY, "first_name": "Jean/Marie"},
        {**VALID_QUERY, "first_name": "’–’"},
        {**VALID_QUERY, "nir": 294037512000591},
        {"nir": NIR},
        {"last_name": "Martin", "birth_date": BIRTH_DATE},
        {"first_name": "Jean", "birth_date": BIRTH_DATE},
        {"birth_date": BIRTH_DATE},
    ],
)
def test_error_messages_never_quote_a_submitted_value(fields: dict[str, object]) -> None:
    error = query_error(**fields)
    assert_no_value_quoted(error, fields)


def assert_no_value_quoted(error: QueryError, fields: dict[str, object]) -> None:
    texts = [str(error)] + [t for e in error.errors for t in (e.message, str(e))]
    for value in fields.values():
        shown = value.strip() if isinstance(value, str) else str(value)
        for text in texts:
            assert shown not in text


DIGITS = "0123456789"


def _distinctive(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) >= 2 and not stripped.isascii()


def _nir_key(body: str) -> str:
    department = {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7])
    return f"{97 - int(body[:5] + department + body[7:]) % 97:02d}"


@st.composite
def _nir_body(draw: st.DrawFn, month: int | None = None) -> str:
    sex = draw(st.sampled_from("123478"))
    if month is None:
        month = draw(st.sampled_from([*range(1, 13), *range(20, 43), *range(50, 100)]))
    return f"{sex}{draw(st.text(DIGITS, min_size=2, max_size=2))}{month:02d}" + draw(
        st.text(DIGITS, min_size=8, max_size=8)
    )


@st.composite
def bad_nirs(draw: st.DrawFn) -> tuple[str, str]:
    """An invalid NIR and the code it must give, one branch per error path."""
    path = draw(st.sampled_from(["checksum", "length", "sex", "format", "month",
                                 "characters", "required"]))
    body = draw(_nir_body())
    if path == "checksum":
        key = draw(st.integers(0, 99).map("{:02d}".format).filter(lambda k: k != _nir_key(body)))
        return body + key, "invalid_checksum"
    if path == "length":
        size = draw(st.sampled_from([6, 7, 8, 9, 10, 11, 12, 14, 16, 17, 20]))
        return draw(st.text(DIGITS, min_size=size, max_size=size)), "invalid_length"
    if path == "sex":
        return draw(st.sampled_from("0569")) + body[1:] + _nir_key(body), "invalid_sex_digit"
    if path == "format":
        at = draw(st.integers(1, 14))
        nir = body + _nir_key(body)
        return nir[:at] + draw(st.sampled_from("CDEFXYZ")) + nir[at + 1:], "invalid_format"
    if path == "month":
        month = draw(st.sampled_from([0, *range(13, 20), *range(43, 50)]))
        body = draw(_nir_body(month=month))
        return body + _nir_key(body), "invalid_month"
    if path == "characters":
        nir = body + _nir_key(body)
        at = draw(st.integers(0, 15))
        return nir[:at] + draw(st.sampled_from("+/*#_é€٣")) + nir[at:], "invalid_characters"
    # Only separators; at least one of them non-ASCII, so that it cannot occur by chance
    # in the (ASCII) messages.
    separators = st.text(".-\u00a0\u2013", min_size=2, max_size=6)
    return draw(separators.filter(_distinctive)), "required"


@st.composite
def bad_dates(draw: st.DrawFn) -> tuple[str, str]:
    path = draw(st.sampled_from(["short", "format", "date", "future", "past"]))
    day, month = draw(st.integers(1, 28)), draw(st.integers(1, 12))
    sep = draw(st.sampled_from("/.-"))
    if path == "short":
        return f"{day:02d}{sep}{month:02d}{sep}{draw(st.integers(0, 99)):02d}", "two_digit_year"
    if path == "format":
        other = draw(st.sampled_from("/.-").filter(lambda s: s != sep))
        return f"{day:02d}{sep}{month:02d}{other}{draw(st.integers(1880, 2020))}", "invalid_format"
    if path == "date":
        day, month = draw(st.one_of(
            st.tuples(st.integers(32, 99), st.integers(1, 12)),
            st.tuples(st.integers(1, 28), st.integers(13, 99)),
            st.tuples(st.integers(30, 31), st.just(2)),
        ))
        return f"{day:02d}/{month:02d}/{draw(st.integers(1880, 2020))}", "invalid_date"
    year = draw(st.integers(2025, 9999) if path == "future" else st.integers(1, 1879))
    return f"{day:02d}/{month:02d}/{year:04d}", "out_of_range"


@st.composite
def bad_names(draw: st.DrawFn) -> tuple[str, str]:
    path = draw(st.sampled_from(["digits", "script", "symbol", "required"]))
    if path == "digits":
        return draw(st.from_regex(r"[A-Za-zéè]{2,8}[0-9]{1,3}[a-z]{0,4}", fullmatch=True)), (
            "invalid_characters"
        )
    if path == "script":
        letters = st.characters(min_codepoint=0x410, max_codepoint=0x44F)  # Cyrillic
        greek = st.characters(min_codepoint=0x3B1, max_codepoint=0x3C9)
        return draw(st.text(st.one_of(letters, greek), min_size=1, max_size=10)), (
            "invalid_characters"
        )
    if path == "symbol":
        name = draw(st.from_regex(r"[A-Za-z]{2,8}", fullmatch=True))
        return name + draw(st.sampled_from("!?@#$%&*+=/()[]{}<>|~^€£")), "invalid_characters"
    separators = st.text("-'’‘–—. ", min_size=2, max_size=6)
    return draw(separators.filter(_distinctive)), "required"


@st.composite
def bad_types(draw: st.DrawFn) -> tuple[object, str]:
    value = draw(st.one_of(
        st.integers().filter(lambda n: abs(n) >= 10_000),
        st.lists(st.text(), max_size=3),
        st.booleans(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ))
    return value, "invalid_type"


@st.composite
def queries_with_one_bad_field(draw: st.DrawFn) -> tuple[dict[str, object], str, str]:
    field = draw(st.sampled_from(QUERY_FIELDS))
    strategy = {"nir": bad_nirs(), "birth_date": bad_dates(), "last_name": bad_names(),
                "first_name": bad_names()}[field]
    value, code = draw(st.one_of(strategy, bad_types()))
    return {**VALID_QUERY, field: value}, field, code


@PROPERTY
@given(case=queries_with_one_bad_field())
def test_every_error_path_gives_its_code_and_never_quotes_the_value(
    case: tuple[dict[str, object], str, str],
) -> None:
    fields, field, code = case
    error = query_error(**fields)
    assert (field, code) in codes(error)
    assert_no_value_quoted(error, fields)


@PROPERTY
@given(
    nir=st.one_of(bad_nirs(), bad_types()),
    date=st.one_of(bad_dates(), bad_types()),
    last=st.one_of(bad_names(), bad_types()),
    first=st.one_of(bad_names(), bad_types()),
)
def test_all_fields_bad_at_once(
    nir: tuple[object, str], date: tuple[object, str], last: tuple[object, str],
    first: tuple[object, str],
) -> None:
    fields = {"nir": nir[0], "birth_date": date[0], "last_name": last[0], "first_name": first[0]}
    error = query_error(**fields)
    assert codes(error) == {
        ("nir", nir[1]), ("birth_date", date[1]), ("last_name", last[1]),
        ("first_name", first[1]),
    }
    assert_no_value_quoted(error, fields)


# --- canonical_keys on arbitrary input -------------------------------------------------------

VALID_VALUES = st.sampled_from(
    [NIR, "2 94 03 75 120 005 91", BIRTH_DATE, "1994-03-12", "Martin", "Jean", "Le Gall"]
)
ANY_VALUE = st.one_of(
    st.text(), st.integers(), st.none(), st.lists(st.one_of(st.text(), st.integers())),
    VALID_VALUES,
)


@PROPERTY
@given(fields=st.dictionaries(st.one_of(st.sampled_from(QUERY_FIELDS), st.text()), ANY_VALUE))
def test_canonical_keys_returns_keys_or_raises_query_error(fields: dict[str, object]) -> None:
    try:
        keys = canonical_keys(fields, today=TODAY)
    except QueryError as error:
        assert error.errors
        for item in error.errors:
            assert isinstance(item, IdentityError)
            assert item.field in QUERY_FIELDS
            assert item.code and item.message
        return
    assert keys
    kinds = [key_kind(key) for key in keys]
    assert kinds == sorted(kinds, key=["strong", "weak", "part"].index)
    for key in keys:
        assert isinstance(key, str)
        assert key.startswith(f"{key_kind(key)}|")


def test_a_request_memo_gives_the_same_keys_and_never_holds_a_nir() -> None:
    memo = QueryMemo()
    queries = [
        {"nir": "2 95 10 99 126 111 93", "birth_date": "01/10/1995",
         "last_name": "Lætitia", "first_name": "D'Artagnan"},
        {"last_name": "LAETITIA", "first_name": "d’artagnan", "birth_date": "1995-10-01"},
        {"last_name": "Lætitia", "first_name": "D'Artagnan", "birth_date": "01/10/1995"},
    ]
    for _ in range(2):  # the second time, every date and name is remembered
        for query in queries:
            assert canonical_keys(query, memo=memo) == canonical_keys(query)
    assert len(memo) == 6  # 2 dates, 2 last names, 2 first names
    remembered = [*memo.birth_dates.items(), *memo.last_names.items(),
                  *memo.first_names.items()]
    assert not [pair for pair in remembered if any("12611193" in str(v).replace(" ", "")
                                                   for v in pair)]
    with pytest.raises(QueryError):  # an invalid value is never remembered as valid
        canonical_keys({"last_name": "R2D2", "first_name": "Jean", "birth_date": "1995-10-01"},
                    memo=memo)
    assert "R2D2" not in memo.last_names


def test_a_full_memo_starts_again() -> None:
    memo = QueryMemo(max_entries=4)
    for day in range(1, 29):
        query = {"last_name": "Martin", "first_name": "Jean", "birth_date": f"{day:02d}/03/1994"}
        assert canonical_keys(query, memo=memo, today=TODAY) == canonical_keys(query, today=TODAY)
        assert len(memo) <= 4


# Values of every kind a bulk line may hold: blank, invalid, of other types, any text;
# and per field, valid ones in several spellings, drawn often enough that many queries
# are valid and, the second time, answered by the memo's fast path.
OTHER_VALUES = st.one_of(
    st.sampled_from(["", " ", "\t", "294037512000592", "995109912611134", "185434501234556",
                     "29403751200059", "253072C07300443", "31/02/1994", "12/03/94",
                     "2090-01-01", "1879-12-31", "R2D2", "-", "Ø"]),
    st.text(max_size=25), st.integers(), st.none(), st.booleans(), st.floats(),
    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=2), st.none()),
)
VALID_SPELLINGS = {
    "nir": [NIR, "2 94 03 75 120 005 91", "2.94.03.75.120.005.91", "2940375120005",
            "2-94-03-75-120-005-91", "2\u00a094 03 75 120 005 91", "253072b07300470",
            "186022A21532523"],
    "birth_date": [BIRTH_DATE, "1994-03-12", "12.03.1994", "00/03/1994", "1994-3-2"],
    "last_name": ["Martin", "MARTIN", "Lætitia", "D'Artagnan", "Le Gall", " martin "],
    "first_name": ["Jean", "Jean-Pierre", "jean pierre", "Œillet", "ß"],
}
QUERIES = st.fixed_dictionaries({}, optional={
    # Three valid values for one other (st.one_of would draw from each of the many
    # strategies of OTHER_VALUES as often as from the valid ones).
    **{name: st.integers(0, 3).flatmap(
        lambda pick, valid=valid: st.sampled_from(valid) if pick else OTHER_VALUES)
       for name, valid in VALID_SPELLINGS.items()},
    "ref": st.text(max_size=3),
})


def outcome(fields: dict[str, object], memo: QueryMemo | None) -> object:
    """The keys of a query, or the (field, code, message) of each of its errors."""
    try:
        return canonical_keys(fields, today=TODAY, memo=memo)
    except QueryError as error:
        return [(e.field, e.code, e.message) for e in error.errors]


@PROPERTY
@given(queries=st.lists(QUERIES, min_size=1, max_size=8))
def test_the_memo_fast_path_answers_as_the_general_path(
    queries: list[dict[str, object]],
) -> None:
    """canonical_keys with a memo (whose fast path answers once the dates and names are
    remembered) gives the same keys, and the same errors, as without one."""
    memo = QueryMemo()
    for _ in range(2):
        for fields in queries:
            assert outcome(fields, memo) == outcome(fields, None)
