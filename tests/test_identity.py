"""Tests for indexer.core.identity: every equivalence and reference vector of docs/design.md §3.

The NIR reference vectors are the public ones the contract lists; every other
expected NIR key is computed here, independently of the implementation, with the
rule of the contract: 97 - (N mod 97), where N reads 2A as 19 and 2B as 18.
Dates that depend on "today" get it injected.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.core.identity import (
    _NIR_SEPARATORS,
    IdentityError,
    _fold_ascii,
    _fold_unicode,
    _normalize_nir_general,
    first_given_name,
    fold_name,
    normalize_birth_date,
    normalize_nir,
)

TODAY = dt.date(2024, 6, 15)
PROPERTY = settings(deadline=None, max_examples=200)

CANONICAL_NIR = re.compile(r"[0-9]{5}([0-9]{2}|2[AB])[0-9]{8}")
CANONICAL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CANONICAL_NAME = re.compile(r"[A-Z]+")

VALID_MONTHS = frozenset(range(1, 13)) | frozenset(range(20, 43)) | frozenset(range(50, 100))
SEX_DIGITS = "123478"


def nir_key(body: str) -> str:
    """The key of a 13-character NIR body, from the contract's rule alone."""
    body = body.upper()
    department = {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7])
    number = int(body[:5] + department + body[7:13])
    return f"{97 - number % 97:02d}"


def with_key(body: str) -> str:
    return body + nir_key(body)


def raises_identity(call: Callable[..., object], *args: object, **kwargs: object) -> IdentityError:
    with pytest.raises(IdentityError) as info:
        call(*args, **kwargs)
    return info.value


# --- NIR: reference vectors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2 95 10 99 126 111 93", "295109912611193"),
        ("253072B07300470", "253072B07300470"),
        ("253072A07300443", "253072A07300443"),
        ("186022A21532523", "186022A21532523"),
        ("294037512000591", "294037512000591"),
        ("253072b07300470", "253072B07300470"),
    ],
)
def test_reference_valid_nirs(raw: str, expected: str) -> None:
    assert normalize_nir(raw) == expected


@pytest.mark.parametrize(
    "nir",
    ["295109912611193", "253072B07300470", "253072A07300443", "186022A21532523",
     "294037512000591"],
)
def test_reference_vectors_agree_with_the_key_rule(nir: str) -> None:
    # Guards the independent key computation used by the other tests.
    assert nir_key(nir[:13]) == nir[13:]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("295109912611199", "invalid_checksum"),
        ("253072C07300443", "invalid_format"),
        ("175039720123594", "invalid_checksum"),
        ("185434501234556", "invalid_month"),
        ("995109912611134", "invalid_sex_digit"),
    ],
)
def test_reference_invalid_nirs(raw: str, code: str) -> None:
    error = raises_identity(normalize_nir, raw, "nir")
    assert (error.field, error.code) == ("nir", code)


# --- NIR: separators, case, length --------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2 95 10 99 126 111 93",
        "2.95.10.99.126.111.93",
        "2-95-10-99-126-111-93",
        "2\u00a095\u00a010\u00a099\u00a0126\u00a0111\u00a093",  # non-breaking space
        "2\u202f95\u202f10\u202f99\u202f126\u202f111\u202f93",  # narrow non-breaking space
        "2 95.10-99\u00a0126 111 93",
        "  295109912611193  ",
        "2\u201095\u201310\u201499 126 111 93",  # hyphen, en dash, em dash
    ],
    ids=["spaces", "dots", "hyphens", "nbsp", "narrow-nbsp", "mixed", "padded", "dashes"],
)
def test_nir_separators_fold_away(raw: str) -> None:
    assert normalize_nir(raw) == "295109912611193"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("253072a07300443", "253072A07300443"),
        ("253072b07300470", "253072B07300470"),
        ("2 53 07 2a 073 004 43", "253072A07300443"),
        ("1 86 02 2a 215 325 23", "186022A21532523"),
    ],
)
def test_nir_corsica_letters_in_any_case(raw: str, expected: str) -> None:
    assert normalize_nir(raw) == expected


@pytest.mark.parametrize(
    "body",
    ["2951099126111", "253072B073004", "253072A073004", "186022A215325", "2940375120005",
     "253072b073004", "1850375120005", "7990199123456", "8020520999001"],
)
def test_thirteen_character_nir_gets_its_key(body: str) -> None:
    assert normalize_nir(body) == body.upper() + nir_key(body)


def test_thirteen_character_nir_with_separators() -> None:
    assert normalize_nir("2 53 07 2B 073 004") == "253072B07300470"


@pytest.mark.parametrize(
    "raw",
    ["29510991261119", "2951099126111930", "295109912611", "2", "2951099126111933"],
    ids=["14", "16", "12", "1", "16b"],
)
def test_nir_of_wrong_length_is_rejected(raw: str) -> None:
    error = raises_identity(normalize_nir, raw, "nir")
    assert (error.field, error.code) == ("nir", "invalid_length")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("29510991261119+", "invalid_characters"),
        ("2951099126111/3", "invalid_characters"),
        ("29510991261119é", "invalid_characters"),
        ("2951099126111９３", "invalid_characters"),  # full-width digits
        ("29510991261119X", "invalid_format"),
        ("2951O99126111 93", "invalid_format"),  # letter O for a zero
        ("253072Z07300443", "invalid_format"),
    ],
)
def test_nir_with_bad_characters_is_rejected(raw: str, code: str) -> None:
    error = raises_identity(normalize_nir, raw, "nir")
    assert (error.field, error.code) == ("nir", code)


@pytest.mark.parametrize("raw", ["", " ", "..", " - "])
def test_empty_nir_is_rejected(raw: str) -> None:
    error = raises_identity(normalize_nir, raw, "nir")
    assert (error.field, error.code) == ("nir", "required")


def test_nir_checksum_mismatch_on_every_wrong_key() -> None:
    body = "1850375120005"
    good = nir_key(body)
    for key in range(100):
        if f"{key:02d}" == good:
            assert normalize_nir(body + good) == body + good
            continue
        error = raises_identity(normalize_nir, f"{body}{key:02d}", "nir")
        assert error.code == "invalid_checksum"


# --- NIR: months and sex digit ------------------------------------------------------------


@pytest.mark.parametrize("month", range(100), ids=lambda m: f"{m:02d}")
def test_nir_month(month: int) -> None:
    nir = with_key(f"185{month:02d}75120005")
    if month in VALID_MONTHS:
        assert normalize_nir(nir) == nir
    else:
        error = raises_identity(normalize_nir, nir, "nir")
        assert (error.field, error.code) == ("nir", "invalid_month")


@pytest.mark.parametrize("digit", "0123456789")
def test_nir_first_digit(digit: str) -> None:
    nir = with_key(f"{digit}850375120005")
    if digit in SEX_DIGITS:
        assert normalize_nir(nir) == nir
    else:
        error = raises_identity(normalize_nir, nir, "nir")
        assert (error.field, error.code) == ("nir", "invalid_sex_digit")


def test_nir_error_names_the_field_and_not_the_value() -> None:
    error = raises_identity(normalize_nir, "295109912611199", "member_nir")
    assert error.field == "member_nir"
    assert "295109912611199" not in str(error)
    assert error.as_dict() == {"field": "member_nir", "code": "invalid_checksum",
                               "message": error.message}


# --- Dates of birth -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1980-02-01", "01/02/1980", "01-02-1980", "01.02.1980"])
def test_the_four_date_formats(raw: str) -> None:
    assert normalize_birth_date(raw, today=TODAY) == "1980-02-01"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("01/02/1980", "1980-02-01"),  # 1 February, not 2 January
        ("13/02/1980", "1980-02-13"),
        ("02/01/1980", "1980-01-02"),
        ("31.12.1999", "1999-12-31"),
    ],
)
def test_dates_are_read_in_french_order(raw: str, expected: str) -> None:
    assert normalize_birth_date(raw, today=TODAY) == expected


def test_american_order_is_not_guessed() -> None:
    error = raises_identity(normalize_birth_date, "02/13/1980", today=TODAY)
    assert error.code == "invalid_date"


@pytest.mark.parametrize("raw", ["01/02/80", "01-02-80", "01.02.80", "1/2/80", "80-02-01"])
def test_two_digit_years_are_rejected(raw: str) -> None:
    error = raises_identity(normalize_birth_date, raw, today=TODAY)
    assert error.field == "birth_date"
    assert error.code in {"two_digit_year", "invalid_format"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00/00/1950", "1950-00-00"),
        ("00/05/1950", "1950-05-00"),
        ("12/00/1950", "1950-00-12"),
        ("1950-00-00", "1950-00-00"),
        ("00.00.1950", "1950-00-00"),
        ("00-07-1950", "1950-07-00"),
    ],
)
@pytest.mark.parametrize("query", [True, False], ids=["query", "record"])
def test_unknown_day_or_month_is_kept(raw: str, expected: str, query: bool) -> None:
    assert normalize_birth_date(raw, today=TODAY, query=query) == expected


@pytest.mark.parametrize(
    "raw",
    ["31/02/1980", "30/02/1980", "29/02/1981", "31/04/1980", "32/01/1980", "01/13/1980",
     "1980-02-30", "1980-13-01", "0000-01-01"],
)
@pytest.mark.parametrize("query", [True, False], ids=["query", "record"])
def test_dates_that_do_not_exist_are_rejected(raw: str, query: bool) -> None:
    error = raises_identity(normalize_birth_date, raw, today=TODAY, query=query)
    assert error.field == "birth_date"


def test_leap_day_exists() -> None:
    assert normalize_birth_date("29/02/1980", today=TODAY) == "1980-02-29"


@pytest.mark.parametrize("raw", ["", "   ", "1980", "1er février 1980", "1980/02/01",
                                 "01/02-1980", "01//02/1980", "19800201"])
def test_other_date_shapes_are_rejected(raw: str) -> None:
    error = raises_identity(normalize_birth_date, raw, today=TODAY)
    assert error.field == "birth_date"


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        ("15/06/2024", True),  # today
        ("16/06/2024", False),  # tomorrow
        ("01/01/2030", False),
        ("00/06/2024", True),  # earliest: 1 June 2024
        ("00/07/2024", False),  # earliest: 1 July 2024
        ("00/00/2024", True),  # earliest: 1 January 2024
        ("00/00/2025", False),
        ("01/01/1880", True),
        ("00/00/1880", True),
        ("31/12/1879", False),
        ("00/00/1879", False),
        ("00/12/1879", False),
        ("01/01/1000", False),
    ],
)
def test_query_date_range(raw: str, accepted: bool) -> None:
    if accepted:
        assert CANONICAL_DATE.fullmatch(normalize_birth_date(raw, today=TODAY))
    else:
        error = raises_identity(normalize_birth_date, raw, today=TODAY)
        assert (error.field, error.code) == ("birth_date", "out_of_range")


@pytest.mark.parametrize("raw", ["16/06/2024", "01/01/1850", "00/00/1700"])
def test_record_dates_are_not_range_checked(raw: str) -> None:
    assert CANONICAL_DATE.fullmatch(normalize_birth_date(raw, today=TODAY, query=False))


def test_date_error_does_not_quote_the_value() -> None:
    for raw in ["31/02/1987", "01/02/87", "16/06/2031", "1987 02 01"]:
        error = raises_identity(normalize_birth_date, raw, today=TODAY)
        assert raw not in str(error)


# --- Names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        (["Lætitia", "LAETITIA", "lætitia", "LÆTITIA", "Laetitia"], "LAETITIA"),
        (["Œillet", "OEILLET", "œillet", "Oeillet"], "OEILLET"),
        (["Müller", "MULLER", "müller", "MÜLLER", "Mu\u0308ller"], "MULLER"),
        (["ß", "SS", "ss"], "SS"),
        (["Straße", "STRASSE"], "STRASSE"),
        (["Éloïse", "ELOISE", "éloïse", "ÉLOÏSE"], "ELOISE"),
        (["François", "FRANCOIS"], "FRANCOIS"),
    ],
    ids=["ae", "oe", "umlaut", "sharp-s", "strasse", "accents", "cedilla"],
)
def test_case_diacritics_and_ligatures_fold_away(variants: list[str], expected: str) -> None:
    for raw in variants:
        assert fold_name(raw) == expected, raw


def test_capital_sharp_s_folds_like_sharp_s() -> None:
    assert fold_name("ẞ") == fold_name("ß") == "SS"
    assert fold_name("STRAẞE") == "STRASSE"


@pytest.mark.parametrize(
    "raw",
    ["D'Artagnan", "d’artagnan", "DARTAGNAN", "D ARTAGNAN", "D‘Artagnan", "D`Artagnan",
     "d'artagnan", "D’ARTAGNAN", "D. Artagnan"],
)
def test_apostrophes_spaces_and_dots_fold_away(raw: str) -> None:
    assert fold_name(raw) == "DARTAGNAN"


@pytest.mark.parametrize(
    "raw",
    ["Le Gall", "LE-GALL", "LEGALL", "le gall", "Le–Gall", "Le—Gall", "Le‐Gall", "Le\u2011Gall",
     "Le\u2212Gall", "Le\u00a0Gall", "  Le  Gall  ", "Le - Gall"],
)
def test_spaces_and_any_dash_fold_away(raw: str) -> None:
    assert fold_name(raw) == "LEGALL"


@pytest.mark.parametrize(
    "raw",
    ["Dup0nt", "Jean2", "Louis 14", "Иван", "Ωμέγα", "李", "محمد", "Jean!", "Martin@", "Léa_",
     "Martin/Durand", "Jean+Marie", "O'Brien²"],
)
@pytest.mark.parametrize("field", ["last_name", "first_name"])
def test_names_that_do_not_fold_to_a_z_are_rejected(raw: str, field: str) -> None:
    error = raises_identity(fold_name, raw, field)
    assert (error.field, error.code) == (field, "invalid_characters")
    assert raw not in str(error)


@pytest.mark.parametrize("raw", ["", " ", "-", "' -"])
def test_empty_name_is_rejected(raw: str) -> None:
    error = raises_identity(fold_name, raw, "last_name")
    assert (error.field, error.code) == ("last_name", "required")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("JEAN PIERRE MARIE", "JEAN"),
        ("JEAN, PIERRE", "JEAN"),
        ("JEAN,PIERRE,MARIE", "JEAN"),
        ("Jean ,Pierre", "JEAN"),
        ("JEAN-PIERRE", "JEANPIERRE"),
        ("JEAN-PIERRE MARIE", "JEANPIERRE"),
        ("Jean-Pierre, Marie", "JEANPIERRE"),
        ("Lætitia Marie", "LAETITIA"),
        ("  Hélène  ", "HELENE"),
    ],
)
def test_first_given_name(raw: str, expected: str) -> None:
    assert first_given_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "  ", ", ,"])
def test_first_given_name_missing(raw: str) -> None:
    error = raises_identity(first_given_name, raw)
    assert (error.field, error.code) == ("first_names", "required")


# --- Properties ---------------------------------------------------------------------------

NIR_SEPARATORS = st.sampled_from(["", "", "", " ", ".", "-", "\u00a0", "\u202f"])


@st.composite
def nir_bodies(draw: st.DrawFn) -> str:
    sex = draw(st.sampled_from(SEX_DIGITS))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from(sorted(VALID_MONTHS)))
    department = draw(st.one_of(st.integers(0, 99).map("{:02d}".format),
                                st.sampled_from(["2A", "2B", "2a", "2b"])))
    rest = draw(st.text("0123456789", min_size=6, max_size=6))
    return f"{sex}{year:02d}{month:02d}{department}{rest}"


@st.composite
def typed_nirs(draw: st.DrawFn) -> str:
    """A valid NIR as a person may type it: 13 or 15 characters, with separators."""
    body = draw(nir_bodies())
    chars = body + (nir_key(body) if draw(st.booleans()) else "")
    return "".join(ch + draw(NIR_SEPARATORS) for ch in chars)


@st.composite
def typed_dates(draw: st.DrawFn) -> str:
    day_ = draw(st.dates(min_value=dt.date(1880, 1, 1), max_value=TODAY))
    year, month, day = day_.year, day_.month, day_.day
    if draw(st.booleans()):
        day = 0
        if draw(st.booleans()):
            month = 0
    template = draw(st.sampled_from(
        ["{y:04d}-{m:02d}-{d:02d}", "{d:02d}/{m:02d}/{y:04d}", "{d:02d}-{m:02d}-{y:04d}",
         "{d:02d}.{m:02d}.{y:04d}"]
    ))
    return template.format(y=year, m=month, d=day)


NAME_CHARS = st.sampled_from(list("abcdeéèêëàâäîïôöùûüçæœßABCÉÈÀÇÆŒ -'’‘`.–—"))
typed_names = st.text(NAME_CHARS, min_size=1, max_size=20)


@PROPERTY
@given(raw=typed_nirs())
def test_typed_nirs_normalise_with_the_contract_key(raw: str) -> None:
    compact = re.sub(r"[ .\-\u00a0\u202f]", "", raw).upper()
    assert normalize_nir(raw) == compact[:13] + nir_key(compact[:13])


@PROPERTY
@given(raw=st.one_of(typed_nirs(), st.text()))
def test_nir_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalize_nir(raw)
    except IdentityError:
        return
    assert normalize_nir(once) == once


@PROPERTY
@given(raw=st.one_of(typed_dates(), st.text()), query=st.booleans())
def test_date_normalisation_is_idempotent(raw: str, query: bool) -> None:
    try:
        once = normalize_birth_date(raw, today=TODAY, query=query)
    except IdentityError:
        return
    assert normalize_birth_date(once, today=TODAY, query=query) == once


@PROPERTY
@given(raw=typed_dates())
def test_typed_dates_in_range_are_accepted(raw: str) -> None:
    assert CANONICAL_DATE.fullmatch(normalize_birth_date(raw, today=TODAY))


@PROPERTY
@given(raw=st.one_of(typed_names, st.text()))
def test_name_folding_is_idempotent(raw: str) -> None:
    try:
        once = fold_name(raw)
    except IdentityError:
        return
    assert fold_name(once) == once


@PROPERTY
@given(raw=st.text())
def test_nir_on_any_text_is_canonical_or_identity_error(raw: str) -> None:
    try:
        result = normalize_nir(raw)
    except IdentityError as error:
        assert error.field == "nir"
        return
    assert CANONICAL_NIR.fullmatch(result)


@PROPERTY
@given(raw=st.text(), query=st.booleans())
def test_date_on_any_text_is_canonical_or_identity_error(raw: str, query: bool) -> None:
    try:
        result = normalize_birth_date(raw, today=TODAY, query=query)
    except IdentityError as error:
        assert error.field == "birth_date"
        return
    assert CANONICAL_DATE.fullmatch(result)


@PROPERTY
@given(raw=st.one_of(st.text(), typed_names))
def test_name_on_any_text_is_canonical_or_identity_error(raw: str) -> None:
    try:
        result = fold_name(raw)
    except IdentityError as error:
        assert error.field == "last_name"
        return
    assert CANONICAL_NAME.fullmatch(result)


@PROPERTY
@given(raw=st.one_of(st.text(), typed_names))
def test_first_given_name_on_any_text_is_canonical_or_identity_error(raw: str) -> None:
    try:
        result = first_given_name(raw)
    except IdentityError as error:
        assert error.field == "first_names"
        return
    assert CANONICAL_NAME.fullmatch(result)


# --- Fast paths answer as the general ones ---------------------------------------------


@st.composite
def mistyped_nirs(draw: st.DrawFn) -> str:
    """NIRs of digits (maybe separated) with any sex digit, month, key and length."""
    body = draw(nir_bodies())
    sex, month = draw(st.integers(0, 9)), draw(st.integers(0, 99))
    chars = f"{sex}{body[1:3]}{month:02d}{body[5:]}"
    chars += draw(st.sampled_from([nir_key(chars), "", f"{draw(st.integers(0, 99)):02d}"]))
    chars = chars[:draw(st.integers(11, 16))]
    return "".join(ch + draw(NIR_SEPARATORS) for ch in chars)


def outcome(normalise: Callable[[str], str], raw: str) -> object:
    """The normal form, or the (field, code, message) of the error."""
    try:
        return normalise(raw)
    except IdentityError as error:
        return (error.field, error.code, error.message)


@PROPERTY
@given(raw=st.one_of(typed_nirs(), mistyped_nirs(), st.text(), st.text("0123456789 .-AB")))
def test_the_nir_fast_path_answers_as_the_general_path(raw: str) -> None:
    """normalize_nir accepts the common all-digit NIRs itself: for any input, it gives
    the value or the error that the general path gives."""
    def general(value: str) -> str:
        return _normalize_nir_general(value.translate(_NIR_SEPARATORS).upper(), "nir")

    assert outcome(normalize_nir, raw) == outcome(general, raw)


@PROPERTY
@given(raw=st.one_of(st.text(st.characters(max_codepoint=127)), st.text("aZ -'.`09")))
def test_ascii_names_fold_as_any_name(raw: str) -> None:
    assert _fold_ascii(raw) == _fold_unicode(raw)


def test_query_side_normalisation_keeps_no_cache_of_identifiers() -> None:
    """docs/design.md §2: identifiers live in the request only, never in a cache. The service
    normalises queries with these functions, so none of them may memoise its input."""
    import indexer.core.identity as identity
    import indexer.core.matchkeys as matchkeys

    for module in (identity, matchkeys):
        for name in dir(module):
            value = getattr(module, name)
            if callable(value) and hasattr(value, "cache_info"):
                # Only the clock's date is cached (keyed by the minute, not by input).
                assert name == "_local_date", f"{module.__name__}.{name} caches its inputs"
