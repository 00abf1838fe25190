"""The C fingerprint module against its reference (hashlib), and the similar probes.

`Fingerprinter` computes its fingerprints in C (indexer/core/_fingerprints.c, over
libsodium); `Fingerprinter(pepper, native=False)` computes them with hashlib. An index
built by one is read by the other: every fingerprint must be the same, for any text,
and a deletion probe (a key with one character left out) must be the fingerprint of
the string `key[:d] + key[d + 1:]`; a query's similar probes made and fingerprinted
in C must be `matchkeys.similar_probes`, fingerprinted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.core._fingerprints import Hasher
from indexer.core.fingerprint import Fingerprinter
from indexer.core.matchkeys import (
    PROBE_DAY_MONTH,
    PROBE_DAY_MONTH_NIR,
    PROBE_FIRST_DELETION,
    PROBE_LAST_DELETION,
    PROBE_OWN,
    PROBE_PART,
    PROBE_SWAPPED,
    QueryError,
    canonical_keys,
    deletions,
    similar_probes,
)

PEPPER = os.urandom(32)
NATIVE_KEY = PEPPER  # a pepper of at most 64 bytes is the BLAKE2b key itself
NATIVE, REFERENCE = Fingerprinter(PEPPER), Fingerprinter(PEPPER, native=False)
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
# Canonical keys are ASCII; the module takes any text (UTF-8, as hashlib is given it).
TEXT = st.text(max_size=80) | st.text(alphabet="ABCDEZ|-0123456789", max_size=600)


def test_the_same_fingerprints_as_hashlib_blake2b_keyed() -> None:
    keys = ["strong|294037512001779|1994-03-15", "weak|DUPONT|JEAN|1980-02-01", "", "é" * 300]
    expected = [int.from_bytes(hashlib.blake2b(
        k.encode(), key=PEPPER, digest_size=8, person=b"exposure-fp-v1").digest(), "little")
        for k in keys]
    assert NATIVE.many(keys).tolist() == expected
    assert REFERENCE.many(keys).tolist() == expected
    assert [NATIVE.one(k) for k in keys] == expected


@pytest.mark.parametrize("key_bytes", [16, 32, 33, 64])
@pytest.mark.parametrize("person", [b"", b"exposure-fp-v1", b"p" * 16])
def test_each_length_either_side_of_one_block_as_hashlib(key_bytes: int, person: bytes) -> None:
    """A message of one block at most takes the module's own compression after the
    precomputed key block; an empty or longer one takes libsodium. Every length from 0 to
    past two blocks, under keys and personalisations of every size, is hashlib's."""
    key = os.urandom(key_bytes)
    texts = ["".join(chr(65 + (i * 7 + n) % 26) for i in range(n)) for n in range(0, 300)]
    expected = b"".join(hashlib.blake2b(text.encode(), key=key, digest_size=8,
                                        person=person).digest() for text in texts)
    assert Hasher(key, person).many(texts) == expected


@FUZZ
@given(st.lists(TEXT, max_size=40))
def test_native_and_reference_agree_on_any_text(keys: list[str]) -> None:
    assert NATIVE.many(keys).tolist() == REFERENCE.many(keys).tolist()


@FUZZ
@given(st.lists(st.text(min_size=1, max_size=700), min_size=1, max_size=30), st.data())
def test_a_drop_is_the_key_without_that_character(keys: list[str], data: st.DataObject) -> None:
    drops = [data.draw(st.integers(-1, len(k) - 1)) for k in keys]
    cut = [k if d < 0 else k[:d] + k[d + 1:] for k, d in zip(keys, drops, strict=True)]
    assert NATIVE.many(keys, drops).tolist() == NATIVE.many(cut).tolist()
    assert REFERENCE.many(keys, drops).tolist() == NATIVE.many(cut).tolist()


@pytest.mark.parametrize("fingerprinter", [NATIVE, REFERENCE], ids=["native", "reference"])
def test_bad_calls_are_refused_alike(fingerprinter: Fingerprinter) -> None:
    with pytest.raises(IndexError):
        fingerprinter.many(["ABC"], [3])
    with pytest.raises(ValueError):
        fingerprinter.many(["ABC", "DEF"], [0])
    with pytest.raises((TypeError, AttributeError)):
        fingerprinter.many([b"bytes"])  # type: ignore[list-item]


def test_the_hasher_refuses_a_bad_key_or_person() -> None:
    with pytest.raises(ValueError):
        Hasher(b"short", b"person")
    with pytest.raises(ValueError):
        Hasher(os.urandom(32), b"a person of seventeen"[:17])
    with pytest.raises(TypeError):
        Hasher(os.urandom(32), b"person").many(["A"], ["0"])  # type: ignore[list-item]


NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=20)


@FUZZ
@given(NAMES, NAMES, st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)))
def test_deletion_probes_are_the_names_one_letter_deletions(
        last: str, first: str, born: object) -> None:
    """Each name of a query's own weak key gives its one-letter deletions, as
    `deletions` lists them (and the similar tier indexes them), one probe each."""
    keys = canonical_keys({"last_name": last, "first_name": first,
                           "birth_date": str(born)})
    probes, drops, kinds = similar_probes(keys)
    date = str(born)
    made = {kind: [p[:d] + p[d + 1:] for p, d, k in zip(probes, drops, kinds, strict=True)
                   if k == kind]
            for kind in (PROBE_LAST_DELETION, PROBE_FIRST_DELETION)}
    assert set(made[PROBE_LAST_DELETION]) == {
        f"weak|{d}|{first}|{date}" for d in deletions(last)}
    assert set(made[PROBE_FIRST_DELETION]) == {
        f"weak|{last}|{d}|{date}" for d in deletions(first)}
    assert len(made[PROBE_LAST_DELETION]) == (len(last) if len(last) > 1 else 0)
    assert len(made[PROBE_FIRST_DELETION]) == (len(first) if len(first) > 1 else 0)
    # Every other probe is fingerprinted as it is.
    assert all(d == -1 for d, k in zip(drops, kinds, strict=True)
               if k not in (PROBE_LAST_DELETION, PROBE_FIRST_DELETION))


# --- a similar query's probes in one call ----------------------------------------------

FIELD = (st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ -'", max_size=30)
         | st.text(max_size=12))
DATES = (st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)).map(str)
         | st.sampled_from(["1980-05-05", "1980-12-01", "1980-13-02", "01/02/1980"]))


def _reference_plan(keys: list[str]) -> tuple[bytes, bytes]:
    probes, drops, kinds = similar_probes(keys)
    return REFERENCE.digests(probes, drops), bytes(kinds)


@FUZZ
@given(FIELD, FIELD, DATES, st.sampled_from(["", "294037512001779", "1 80 05 75 116 042 86"]))
def test_the_c_probe_plan_is_similar_probes_fingerprinted(
        last: str, first: str, born: str, nir: str) -> None:
    """`similar_digests` (the probes made and fingerprinted in C) gives what
    `similar_probes` then the reference fingerprints give, kinds included, for every
    query that forms keys: compound names, several given names, swappable dates."""
    try:
        keys = canonical_keys({"nir": nir, "last_name": last, "first_name": first,
                               "birth_date": born})
    except QueryError:
        return
    assert NATIVE.similar_digests(keys) == _reference_plan(list(keys))
    assert REFERENCE.similar_digests(keys) == _reference_plan(list(keys))


@FUZZ
@given(st.lists(st.sampled_from(["strong|", "weak|", "part|", "w", "s|x", "p"]).flatmap(
    lambda head: TEXT.map(lambda tail: head + tail)), max_size=6))
def test_the_c_probe_plan_agrees_or_steps_aside_on_any_keys(keys: list[str]) -> None:
    """On keys no query makes (wrong field counts, non-ASCII, long), the C plan gives
    the Python answer or None (then `similar_digests` asks `similar_probes`, which
    may raise): never another answer."""
    try:
        expected: tuple[bytes, bytes] | None = _reference_plan(keys)
    except (ValueError, IndexError):
        expected = None
    planned = Hasher(NATIVE_KEY, b"exposure-fp-v1").similar(keys)
    assert planned is None or planned == expected


def test_the_c_probe_plan_covers_every_kind() -> None:
    """The kinds are matchkeys' PROBE_* numbers (the C module has its own copy)."""
    keys = canonical_keys({"nir": "294037512001779", "last_name": "Martin-Dupont",
                           "first_name": "Jean Pierre", "birth_date": "1994-03-05"})
    _, kinds = NATIVE.similar_digests(keys)
    assert set(kinds) == {PROBE_LAST_DELETION, PROBE_FIRST_DELETION, PROBE_OWN, PROBE_SWAPPED,
                          PROBE_DAY_MONTH, PROBE_DAY_MONTH_NIR, PROBE_PART}
    assert NATIVE.similar_digests(keys) == _reference_plan(list(keys))


def test_the_c_probe_plan_steps_aside_for_a_probe_longer_than_its_room() -> None:
    """Keys no query makes, whose swapped-names probe (a name of each key) is longer
    than any key given: the Python answer, never a write past the C module's buffer."""
    keys = ["weak|" + "L" * 400 + "|A|1980-01-02", "weak|X|" + "G" * 490 + "|1980-01-02"]
    hasher = Hasher(NATIVE_KEY, b"exposure-fp-v1")
    assert hasher.similar(keys) is None
    assert NATIVE.similar_digests(keys) == _reference_plan(keys)
    canonical = canonical_keys({"last_name": "L" * 150, "first_name": "A" * 300 + " " + "B" * 50,
                                "birth_date": "1980-01-02"})
    assert NATIVE.similar_digests(canonical) == _reference_plan(list(canonical))
