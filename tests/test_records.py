"""Tests for indexer.core.records: a breach row's keys, exposed data classes and faults.

docs/design.md §2: a class is exposed when the record's field is non-empty. docs/design.md §4: a bad
row is not fatal, it is indexed under whatever keys remain valid and its faults are
counted by reason.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.core.matchkeys import strong_key, weak_key
from indexer.core.records import CLASS_BITS, DATA_CLASSES, class_names, record_keys

PROPERTY = settings(deadline=None, max_examples=200)

ROW_FIELDS = (
    "nir", "last_name", "usage_name", "first_names", "birth_date", "birth_rank", "insurer",
    "marital_status", "tp_guarantee",
)
FIELD_CLASS = {
    "nir": "nir",
    "last_name": "name",
    "usage_name": "name",
    "first_names": "name",
    "birth_date": "birth_date",
    "birth_rank": "birth_rank",
    "insurer": "insurer",
    "marital_status": "marital_status",
    "tp_guarantee": "tp_guarantee",
}
FULL = {
    "nir": "2 94 03 75 120 005 91",
    "last_name": "MARTIN",
    "usage_name": "LE GALL",
    "first_names": "MARIE ANNE",
    "birth_date": "12/03/1994",
    "birth_rank": "1",
    "insurer": "Mutuelle Exemple",
    "marital_status": "M",
    "tp_guarantee": "PHAR;OPTI",
}
NIR = "294037512000591"
DATE = "1994-03-12"


def row(**fields: str) -> tuple[str, ...]:
    return tuple(fields.get(name, "") for name in ROW_FIELDS)


def test_data_class_vocabulary_and_order() -> None:
    assert DATA_CLASSES == ("name", "birth_date", "nir", "birth_rank", "insurer",
                            "marital_status", "tp_guarantee")
    assert class_names(sum(CLASS_BITS.values())) == list(DATA_CLASSES)


def test_full_row() -> None:
    keys, bits, faults = record_keys(row(**FULL))
    assert keys[0] == strong_key(NIR, DATE)
    assert set(keys) == {
        strong_key(NIR, DATE), weak_key("MARTIN", "MARIE", DATE), weak_key("LEGALL", "MARIE", DATE),
        weak_key("MARTIN", "MARIEANNE", DATE), weak_key("LEGALL", "MARIEANNE", DATE),
    }
    assert len(keys) == len(set(keys))
    assert class_names(bits) == list(DATA_CLASSES)
    assert faults == []


# --- class bits ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ROW_FIELDS)
def test_one_non_empty_field_exposes_its_class(field: str) -> None:
    _, bits, _ = record_keys(row(**{field: FULL[field]}))
    assert class_names(bits) == [FIELD_CLASS[field]]
    assert bits == CLASS_BITS[FIELD_CLASS[field]]


def test_empty_row_exposes_nothing() -> None:
    keys, bits, faults = record_keys(row())
    assert (keys, bits) == ([], 0)
    assert "no_key" in faults


@pytest.mark.parametrize(
    ("field", "bad_value"),
    [("nir", "12345"), ("birth_date", "31/02/1994"), ("last_name", "M4RTIN"),
     ("first_names", "J3AN")],
)
def test_an_invalid_field_is_exposed_all_the_same(field: str, bad_value: str) -> None:
    _, bits, _ = record_keys(row(**{**FULL, field: bad_value}))
    assert class_names(bits) == list(DATA_CLASSES)


@PROPERTY
@given(present=st.sets(st.sampled_from(ROW_FIELDS)))
def test_class_bits_follow_non_empty_fields(present: set[str]) -> None:
    _, bits, _ = record_keys(row(**{name: FULL[name] for name in present}))
    assert set(class_names(bits)) == {FIELD_CLASS[name] for name in present}


# --- keys and faults -----------------------------------------------------------------------


def test_bad_nir_still_leaves_the_weak_keys() -> None:
    keys, _, faults = record_keys(row(**{**FULL, "nir": "294037512000592"}))
    assert set(keys) == {weak_key("MARTIN", "MARIE", DATE), weak_key("LEGALL", "MARIE", DATE),
                         weak_key("MARTIN", "MARIEANNE", DATE),
                         weak_key("LEGALL", "MARIEANNE", DATE)}
    assert not any(key.startswith("strong|") for key in keys)
    assert "invalid_nir" in faults
    assert "no_key" not in faults


@pytest.mark.parametrize("bad_date", ["31/02/1994", "12/03/94", "1994/03/12", "hier"])
def test_bad_date_leaves_no_key(bad_date: str) -> None:
    keys, _, faults = record_keys(row(**{**FULL, "birth_date": bad_date}))
    assert keys == []
    assert "invalid_birth_date" in faults
    assert "no_key" in faults


def test_missing_date_leaves_no_key() -> None:
    keys, _, faults = record_keys(row(**{**FULL, "birth_date": ""}))
    assert keys == []
    assert "no_key" in faults


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("00/00/1950", "1950-00-00"), ("00/05/1950", "1950-05-00"),
     # Records are not range-checked: a dump is what it is.
     ("01/01/1850", "1850-01-01")],
)
def test_record_dates_are_kept_as_written(raw: str, canonical: str) -> None:
    keys, _, faults = record_keys(row(nir=NIR, birth_date=raw))
    assert keys == [strong_key(NIR, canonical)]
    assert faults == []


def test_thirteen_character_nir_is_indexed_with_its_key() -> None:
    keys, _, _ = record_keys(row(nir="2940375120005", birth_date="12/03/1994"))
    assert keys == [strong_key(NIR, DATE)]


def test_bad_last_name_keeps_the_usage_name_key() -> None:
    keys, _, faults = record_keys(row(**{**FULL, "last_name": "M4RTIN"}))
    assert set(keys) == {strong_key(NIR, DATE), weak_key("LEGALL", "MARIE", DATE),
                         weak_key("LEGALL", "MARIEANNE", DATE)}
    assert faults == ["invalid_last_name"]


def test_bad_first_names_keep_the_strong_key() -> None:
    keys, _, faults = record_keys(row(**{**FULL, "first_names": "J3AN"}))
    assert keys == [strong_key(NIR, DATE)]
    assert "invalid_first_name" in faults


def test_bad_nir_and_no_names_leaves_no_key() -> None:
    keys, _, faults = record_keys(row(nir="12345", birth_date="12/03/1994"))
    assert keys == []
    assert {"invalid_nir", "no_key"} <= set(faults)


def test_usage_name_equal_to_birth_name_gives_one_key() -> None:
    keys, _, _ = record_keys(row(last_name="MARTIN", usage_name="Martin",
                                 first_names="JEAN", birth_date="12/03/1994"))
    assert keys == [weak_key("MARTIN", "JEAN", DATE)]


def test_faults_never_carry_content() -> None:
    bad = row(nir="294037512000592", last_name="M4RTIN", usage_name="L3 GALL",
              first_names="MARIE", birth_date="12/03/1994")
    _, _, faults = record_keys(bad)
    for fault in faults:
        assert fault.replace("_", "").isalpha()
        assert all(value not in fault for value in bad if value)


@PROPERTY
@given(values=st.tuples(*(st.one_of(st.just(""), st.text(max_size=20)) for _ in ROW_FIELDS)))
def test_any_row_gives_keys_bits_and_faults(values: tuple[str, ...]) -> None:
    keys, bits, faults = record_keys(values)
    assert 0 <= bits < 1 << len(DATA_CLASSES)
    assert all(key.startswith(("strong|", "weak|")) for key in keys)
    assert bool(keys) != ("no_key" in faults)
