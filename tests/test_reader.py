"""The reader on real artefacts: an index built by the real builder, read back from
disk by `IndexReader` and `Checker`, against the generator's ground truth."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Breach, agrees_with_ground_truth, query_fields
from index_support import (
    BAD_KEY_NIR,
    OCTAVE_NIR,
    ZELIE_NIR,
    ZELIE_SPACED,
    write_dump,
)

from indexer.core.fingerprint import Fingerprinter
from indexer.core.matchkeys import QueryError, canonical_keys
from indexer.index.generation import current_generation
from indexer.index.lookup import NOT_FOUND, Checker
from indexer.index.reader import IndexError_, IndexReader, KeyMismatch


def _queries(breach: Breach) -> tuple[list[str], list[tuple[str, ...]]]:
    refs, queries = [], []
    for member in breach.members():
        try:
            query = canonical_keys(query_fields(member))
        except QueryError:  # a member line with an error
            continue
        refs.append(member["ref"])
        queries.append(query)
    return refs, queries


def test_lookups_agree_with_the_synthetic_ground_truth(
    breach: Breach, reader: IndexReader
) -> None:
    expected = breach.expected()
    refs, queries = _queries(breach)
    verdicts = Checker(reader).check_keys(queries)
    found = 0
    for ref, verdict in zip(refs, verdicts, strict=True):
        want = expected[ref]
        listed = "|".join(s["id"] for s in verdict["sources"])
        assert agrees_with_ground_truth(want, verdict["found"], verdict["match"], listed), ref
        if verdict["found"]:
            found += 1
            assert [s["id"] for s in verdict["sources"]] == [
                s.id for s in reader.sources if s.id in want["sources"].split("|")
            ], ref
            for source in verdict["sources"]:
                assert source["exposed"], ref
        else:
            assert verdict == NOT_FOUND
    # Found: the exact-level members (a third), and the similar-level ones where the
    # service does similar matching (half in all); not the members outside the breach.
    assert 0.25 * len(refs) < found < 0.75 * len(refs)


def test_a_batch_answers_as_its_queries_one_by_one(breach: Breach, reader: IndexReader) -> None:
    _, queries = _queries(breach)
    checker = Checker(reader)
    sample = queries[:300]
    assert checker.check_keys(sample) == [checker.check_one(q) for q in sample]


def _stored(generation: Path, shards: int) -> np.ndarray:
    return np.concatenate([
        np.fromfile(generation / f"shards/{n:03d}.fp", dtype="<u8") for n in range(shards)
    ])


def test_every_stored_fingerprint_is_found_and_no_other(reader: IndexReader) -> None:
    stored = _stored(reader.path, reader.shard_count)
    assert len(stored) == reader.fingerprint_count
    rows = reader.lookup(stored)
    assert rows.shape == (len(stored), reader.n_sources)
    assert bool(rows.any(axis=1).all())
    meta = np.concatenate([
        np.fromfile(reader.path / f"shards/{n:03d}.meta", dtype=np.uint8)
        for n in range(reader.shard_count)
    ]).reshape(-1, reader.n_sources)
    assert (rows == meta).all()
    strangers = np.random.default_rng(1).integers(0, 2**64 - 1, 200_000, dtype=np.uint64)
    strangers = strangers[~np.isin(strangers, stored)]
    assert not reader.lookup(strangers).any()


def test_small_and_empty_batches(reader: IndexReader) -> None:
    stored = _stored(reader.path, reader.shard_count)[:50]
    whole = reader.lookup(stored)
    for size in (1, 2, 3, 4, 5):  # up to 4 keys take the scalar path
        for start in range(0, 50 - size, 7):
            rows = reader.lookup(stored[start : start + size])
            assert (rows == whole[start : start + size]).all()
    assert reader.lookup(np.empty(0, dtype=np.uint64)).shape == (0, reader.n_sources)


def test_another_pepper_is_refused_with_a_clear_message(breach: Breach) -> None:
    other = os.urandom(32)
    with pytest.raises(KeyMismatch) as raised:
        IndexReader.open_current(breach.index_dir, Fingerprinter(other))
    message = str(raised.value)
    assert "another pepper" in message and "pepper file used for the build" in message
    assert current_generation(breach.index_dir).name in message
    assert other.hex() not in message
    assert breach.pepper_file.read_bytes().hex() not in message


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_generation_is_refused(breach: Breach, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "generation"
    shutil.copytree(current_generation(breach.index_dir), copy)
    shard = copy / "shards" / "001.fp"
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[-8:]
    shard.write_bytes(bytes(data))
    with pytest.raises(IndexError_, match="checksum mismatch" if damage == "flip" else "truncated"):
        IndexReader(copy, Fingerprinter(breach.pepper_file.read_bytes()))


@pytest.mark.parametrize("name", ["001.fp", "001.meta", "001.bloom", "001.sim", "001.simoff"])
def test_a_file_cut_short_is_refused_even_unverified(
    breach: Breach, tmp_path: Path, name: str
) -> None:
    """Without the verification (what `exposure-serve` skips in its workers), the
    lookups still check every size before they read: a refusal, never a wrong read."""
    copy = tmp_path / "generation"
    shutil.copytree(current_generation(breach.index_dir), copy)
    shard = copy / "shards" / name
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 - 3])
    with pytest.raises(IndexError_, match="damaged"):
        IndexReader(copy, Fingerprinter(breach.pepper_file.read_bytes()), verify=False)


# --- the hand-written dump: exact answers -------------------------------------------------


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checker]:
    root = tmp_path_factory.mktemp("crafted")
    pepper = os.urandom(32)
    report = write_dump(root / "dump").build(root / "index", pepper)
    opened = IndexReader(report.generation, Fingerprinter(pepper))
    yield Checker(opened)
    opened.close()


def _check(checker: Checker, **fields: str) -> dict[str, object]:
    return checker.check_one(canonical_keys(fields))


def test_a_person_in_both_sources_with_what_each_exposed(crafted: Checker) -> None:
    verdict = _check(crafted, nir=ZELIE_SPACED, birth_date="15/03/1994")
    assert verdict["found"] is True and verdict["match"] == "strong"
    assert verdict["sources"] == [
        {"id": "alpha-2024", "title": "Alpha", "breach_date": "2024-01-29",
         "matched_on": ["nir", "birth_date"],
         "exposed": ["name", "birth_date", "nir", "birth_rank", "insurer", "marital_status",
                     "tp_guarantee"]},
        {"id": "beta-2024", "title": "Beta", "breach_date": "2024-02-05",
         "matched_on": ["nir", "birth_date"],
         "exposed": ["name", "birth_date", "nir", "marital_status"]},
    ]
    # By the usage name, only the source that holds it.
    by_usage = _check(crafted, last_name="OBERKAMPFOVA", first_name="zélie-hortense",
                      birth_date="1994-03-15")
    assert by_usage["match"] == "weak"
    assert [s["id"] for s in by_usage["sources"]] == ["alpha-2024"]  # type: ignore[index]
    # By the birth name, both; another given name alone is a similar match only.
    assert len(_check(crafted, last_name="Quintavalle Bruckner", first_name="Zelie Hortense",
                      birth_date="1994-03-15")["sources"]) == 2  # type: ignore[arg-type]
    other_name = _check(crafted, last_name="Quintavalle-Brückner", first_name="Marguerite",
                        birth_date="1994-03-15")
    assert other_name["match"] == "similar"
    assert {tuple(s.get("differences", ())) for s in other_name["sources"]} == {("name_part",)}
    assert _check(crafted, last_name="Quintavalle-Brückner", first_name="Berenice",
                  birth_date="1994-03-15") == NOT_FOUND


def test_a_bad_row_is_found_under_its_valid_keys(crafted: Checker) -> None:
    # Its NIR has a wrong key: the row is indexed by name and date of birth only, and
    # its NIR still counts as exposed (the field leaked, valid or not).
    verdict = _check(crafted, last_name="Wojciechowskaia", first_name="Berangere",
                     birth_date="20/10/1995")
    assert verdict["match"] == "weak"
    assert verdict["sources"] == [
        {"id": "alpha-2024", "title": "Alpha", "breach_date": "2024-01-29",
         "matched_on": ["last_name", "first_name", "birth_date"],
         "exposed": ["name", "birth_date", "nir", "insurer", "tp_guarantee"]},
    ]
    with pytest.raises(QueryError):
        canonical_keys({"nir": BAD_KEY_NIR, "birth_date": "1995-10-20"})
    # Its impossible date of birth leaves a row nothing to be found by.
    assert _check(crafted, nir=OCTAVE_NIR, birth_date="1986-02-28") == NOT_FOUND
    assert _check(crafted, nir=ZELIE_NIR, birth_date="1994-03-16") == NOT_FOUND
