"""The builder's fast paths give the index the straightforward code gives, exactly.

The build makes each record's one-letter deletions as (its weak key, the letter's
index) for `Fingerprinter.many` to cut, reads first-names fields through caches of
given names, and sorts the similar tier's shards with one sort of (bucket, value).
Each is compared here with a reference written out plainly in this file, the way the
builder did it before: every deletion as a string (duplicates from doubled letters
removed), given names and compound parts read from the whole field, np.lexsort. On a
real synthetic breach and on hypothesis' names.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pytest
from conftest import Breach
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.build.dumps import detect_layout, iter_blocks, parse_block
from indexer.build.sources import load_sources
from indexer.core.fingerprint import Fingerprinter
from indexer.core.identity import (
    GivenName,
    IdentityError,
    compound_parts,
    fold_name,
    given_names,
    name_parts,
    normalize_birth_date,
    normalize_nir,
    read_given_name,
)
from indexer.core.matchkeys import deletion_positions, query_first_name
from indexer.core.records import (
    NS_FIRST_DELETION,
    NS_FIRST_PART,
    NS_LAST_DELETION,
    NS_LAST_PART,
    SimilarEntries,
    record_keys,
)
from indexer.index.shards import shard_of
from indexer.index.similar import _bucket_bits, _buckets, similar_shard_files

Entry = tuple[str, int]  # (weak-form string, namespace)


# --- the reference: the straightforward string path ------------------------------------


def reference_deletions(name: str) -> list[str]:
    """Every distinct string `name` gives with one letter deleted, first seen first."""
    if len(name) < 2:
        return []
    return list(dict.fromkeys(name[:i] + name[i + 1:] for i in range(len(name))))


def reference_first_names(raw: str) -> tuple[str, str, list[str]]:
    """(first given name, all of them folded together, the other names and the parts
    of hyphenated ones), read from the whole field at once."""
    names = given_names(raw, "first_names")
    first, whole = names[0], "".join(names)
    others = dict.fromkeys((*names[1:], *compound_parts(raw)))
    return first, whole, [part for part in others if part not in (first, whole)]


def reference_record(row: tuple[str, ...]) -> tuple[list[str], list[Entry]]:
    """A dump row's exact keys and its similar-tier entries, each deletion a string."""
    nir_raw, last_raw, usage_raw, first_raw, date_raw = row[:5]
    keys: list[str] = []
    entries: list[Entry] = []
    try:
        birth_date = normalize_birth_date(date_raw, query=False)
    except IdentityError:
        return keys, entries
    if nir_raw:
        try:
            keys.append(f"strong|{normalize_nir(nir_raw)}|{birth_date}")
        except IdentityError:
            pass
    try:
        first, whole, first_parts = reference_first_names(first_raw)
    except IdentityError:
        return keys, entries
    for raw in (last_raw, usage_raw):
        try:
            last = fold_name(raw)
        except IdentityError:
            continue
        key = f"weak|{last}|{first}|{birth_date}"
        if key in keys:
            continue
        keys.append(key)
        if whole != first:
            keys.append(f"weak|{last}|{whole}|{birth_date}")
        entries += [(f"weak|{name}|{first}|{birth_date}", NS_LAST_DELETION)
                    for name in reference_deletions(last)]
        entries += [(f"weak|{last}|{name}|{birth_date}", NS_FIRST_DELETION)
                    for name in reference_deletions(first)]
        entries += [(f"weak|{last}|{part}|{birth_date}", NS_FIRST_PART) for part in first_parts]
        entries += [(f"weak|{part}|{first}|{birth_date}", NS_LAST_PART)
                    for part in name_parts(raw)]
    return keys, entries


def reference_tier_fingerprints(entries: list[Entry], pepper: bytes) -> list[int]:
    """hashlib's fingerprints of the strings, under their namespace's mask."""
    fingerprinter = Fingerprinter(pepper, native=False)
    masks = fingerprinter.namespace_masks
    fingerprints = fingerprinter.many([text for text, _ in entries])
    return [int(fp) ^ masks[ns] for fp, (_, ns) in zip(fingerprints, entries, strict=True)]


# --- the build's path --------------------------------------------------------------------


def built_record(row: tuple[str, ...]) -> tuple[list[str], SimilarEntries]:
    similar = SimilarEntries()
    keys, _, _ = record_keys(row, similar)
    return keys, similar


def as_strings(similar: SimilarEntries) -> list[Entry]:
    """The build's entries spelled out: each key cut at its drop."""
    texts = [key if drop < 0 else key[:drop] + key[drop + 1:]
             for key, drop in zip(similar.keys, similar.drops, strict=True)]
    return list(zip(texts, similar.namespaces().tolist(), strict=True))


def tier_fingerprints(similar: SimilarEntries, pepper: bytes) -> list[int]:
    """As `fingerprint_block` computes them: the C module cuts the deletions."""
    fingerprinter = Fingerprinter(pepper)
    masks = np.array(fingerprinter.namespace_masks, dtype=np.uint64)
    fingerprints = fingerprinter.many(similar.keys, similar.drops) ^ masks[similar.namespaces()]
    return [int(fp) for fp in fingerprints]


# --- on a synthetic breach -----------------------------------------------------------------


def _dump_rows(breach: Breach) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for source in load_sources(breach.sources_toml):
        layout = detect_layout(source)
        for block in iter_blocks(layout):
            rows.extend(row for row in parse_block(block, layout) if row is not None)
    return rows


def test_each_record_gives_the_reference_keys_and_tier_entries(breach: Breach) -> None:
    """Row by row, in the same order: exact keys, entries spelled out, fingerprints."""
    pepper = breach.pepper_file.read_bytes()
    rows = _dump_rows(breach)
    all_built: list[int] = []
    all_reference: list[Entry] = []
    doubled = several = 0
    for row in rows:
        keys, similar = built_record(row)
        reference_keys, reference_entries = reference_record(row)
        assert keys == reference_keys
        assert as_strings(similar) == reference_entries
        all_built += tier_fingerprints(similar, pepper)
        all_reference += reference_entries
        doubled += any(a == b for a, b in zip(row[1], row[1][1:], strict=False))
        several += len(reference_first_names(row[3])[2]) > 0 if row[3] else 0
    assert all_built == reference_tier_fingerprints(all_reference, pepper)
    # The dump exercises what the fast paths skip or cache: doubled letters (a deletion
    # given once), several given names and composites (parts).
    assert len(rows) >= 4000 and doubled > 100 and several > 100


# --- on any names (hypothesis) ---------------------------------------------------------------

# Doubled and tripled letters, hyphens, blanks, commas, accents, a digit (an invalid name).
NAME = st.text(alphabet=st.sampled_from("aabbnnLLé-' ,;" + "MN2"), min_size=0, max_size=14)
DATE = st.sampled_from(["12/03/1994", "1994-03-12", "", "31/02/1990"])
NIR = st.sampled_from(["", "294037512000591", "12345"])


@settings(max_examples=500, deadline=None)
@given(nir=NIR, last=NAME, usage=NAME, first=NAME, date=DATE)
def test_any_record_gives_the_reference_entries(
    nir: str, last: str, usage: str, first: str, date: str
) -> None:
    row = (nir, last.strip(), usage.strip(), first.strip(), date, "", "", "", "")
    keys, similar = built_record(row)
    reference_keys, reference_entries = reference_record(row)
    assert keys == reference_keys
    assert as_strings(similar) == reference_entries


@settings(max_examples=500, deadline=None)
@given(name=st.text(alphabet=st.sampled_from("AABBNNE"), max_size=12))
def test_deletion_positions_give_each_deletion_once(name: str) -> None:
    assert [name[:i] + name[i + 1:] for i in deletion_positions(name)] == (
        reference_deletions(name))


FIRST_NAMES = st.text(
    alphabet=st.sampled_from("jeanJEAN-pierréÉ ,;\u00a0\t'’" + string.ascii_letters + "3"),
    max_size=30)


@settings(max_examples=500, deadline=None)
@given(raw=st.one_of(FIRST_NAMES, st.text(max_size=30)))
def test_first_names_read_through_cached_given_names_as_from_the_whole_field(raw: str) -> None:
    cached = _cached_reader()
    try:
        reference = reference_first_names(raw)
    except IdentityError as error:
        for read in (read_given_name, cached):
            with pytest.raises(IdentityError) as raised:
                query_first_name(raw, "first_names", read)
            assert (raised.value.field, raised.value.code) == (error.field, error.code)
        return
    for read in (read_given_name, cached, cached):  # the second time from the cache
        first = query_first_name(raw, "first_names", read)
        assert (first.first, first.whole, list(first.parts)) == reference


def _cached_reader() -> Callable[[str, str], GivenName]:
    return lru_cache(maxsize=64)(read_given_name)


# --- the similar tier's shard files ----------------------------------------------------------


def reference_sim_files(fps: npt.NDArray[np.uint64], row_ids: npt.NDArray[np.intp],
                        row_bits: int, shard_count: int) -> tuple[bytes, bytes]:
    """(NNN.sim, NNN.simoff) as np.lexsort orders them: by bucket, then by value."""
    bucket_bits = _bucket_bits(len(fps), shard_count)
    buckets = _buckets(fps, shard_count, bucket_bits)
    low = fps & np.uint64((1 << (32 - row_bits)) - 1)
    values = ((low << np.uint64(row_bits)) | row_ids.astype(np.uint64)).astype("<u4")
    order = np.lexsort((values, buckets))
    offsets = np.searchsorted(buckets[order], np.arange((1 << bucket_bits) + 1))
    return values[order].tobytes(), offsets.astype("<u4").tobytes()


@pytest.mark.parametrize(("entries", "shard_count", "n_sources"),
                         [(0, 4, 1), (1, 4, 2), (37, 1, 1), (5000, 4, 2), (60_000, 64, 3),
                          (20_000, 2, 9)])
def test_similar_shard_files_order_entries_as_lexsort_does(
    entries: int, shard_count: int, n_sources: int
) -> None:
    rng = np.random.default_rng(entries)
    shard = shard_count // 2
    # The shard's fingerprints: its slice of the 32 high bits, any low bits; sorted, unique.
    high = rng.integers(0, 1 << 32, entries, dtype=np.uint64) // np.uint64(shard_count)
    high += np.uint64(((shard << 32) + shard_count - 1) // shard_count)
    fps = np.unique((high << np.uint64(32)) | rng.integers(0, 1 << 32, entries, dtype=np.uint64))
    assert bool(np.all(shard_of(fps, shard_count) == shard))
    meta = rng.integers(0, 2 if n_sources > 4 else 4, (len(fps), n_sources), dtype=np.uint8)
    files, entry = similar_shard_files(shard, fps, meta.reshape(-1), shard_count, n_sources)
    # The rows table is the code's own (its order is not what this test is about): each
    # entry's row id is where its meta row sits in it.
    table = np.frombuffer(files[f"shards/{shard:03d}.simrows"], dtype=np.uint8)
    where = {row.tobytes(): i for i, row in enumerate(table.reshape(-1, n_sources))}
    assert len(where) == entry["rows"] == len(table) // n_sources
    row_ids = np.array([where[row.tobytes()] for row in meta], dtype=np.intp)
    sim, simoff = reference_sim_files(fps, row_ids, entry["row_bits"], shard_count)
    assert files[f"shards/{shard:03d}.sim"] == sim
    assert files[f"shards/{shard:03d}.simoff"] == simoff
