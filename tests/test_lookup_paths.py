"""The fast lookup paths answer exactly as the straightforward ones.

`IndexReader.lookup` (the whole batch's Bloom positions at once), `lookup_hits` and
`lookup_one`, in C (`_lookups.c`) and in Python (`native=False`), are checked against
the reference of one shard at a time with `bloom.bloom_contains` and `searchsorted`,
on every stored fingerprint of a real index and on strangers, Bloom false positives
included; the similar tier's C lookups against its numpy and Python ones; `Checker`
gives the same verdicts whichever path a batch takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from conftest import Breach, query_fields

from indexer.core.fingerprint import Fingerprinter
from indexer.core.matchkeys import QueryError, canonical_keys, similar_probes
from indexer.index.bloom import bloom_contains
from indexer.index.lookup import SCALAR_KEYS, Checker
from indexer.index.reader import IndexReader
from indexer.index.shards import shard_of


def _reference(reader: IndexReader, fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Bloom says maybe, meta rows) one shard at a time, the plain way."""
    maybe = np.zeros(len(fps), dtype=bool)
    rows = np.zeros((len(fps), reader.n_sources), dtype=np.uint8)
    shard_ids = shard_of(fps, reader.shard_count)
    for shard_id in range(reader.shard_count):
        mine = np.flatnonzero(shard_ids == shard_id)
        generation = reader.path / "shards"
        stored = np.fromfile(generation / f"{shard_id:03d}.fp", dtype="<u8")
        if not len(mine) or not len(stored):
            continue
        meta = np.fromfile(generation / f"{shard_id:03d}.meta", dtype=np.uint8)
        meta = meta.reshape(-1, reader.n_sources)
        raw = np.fromfile(generation / f"{shard_id:03d}.bloom", dtype=np.uint8)
        header = np.frombuffer(raw[:40].tobytes(), dtype="<u8")
        bits = raw[40:]
        maybe[mine] = bloom_contains(bits, fps[mine], int(header[1]), int(header[2]))
        where = np.minimum(np.searchsorted(stored, fps[mine]), len(stored) - 1)
        hit = stored[where] == fps[mine]
        rows[mine[hit]] = meta[where[hit]]
    return maybe, rows


def _sample(reader: IndexReader) -> np.ndarray:
    stored = np.concatenate([
        np.fromfile(reader.path / f"shards/{n:03d}.fp", dtype="<u8")
        for n in range(reader.shard_count)
    ])
    strangers = np.random.default_rng(7).integers(0, 2**64 - 1, 50_000, dtype=np.uint64)
    mixed = np.concatenate([stored, strangers])
    return mixed[np.random.default_rng(8).permutation(len(mixed))]


def test_the_batch_path_agrees_with_the_reference(reader: IndexReader) -> None:
    fps = _sample(reader)
    maybe, expected = _reference(reader, fps)
    assert maybe.sum() > reader.fingerprint_count  # some Bloom false positives are tested
    for size in (1, 3, 17, 1000, len(fps)):
        for start in range(0, min(len(fps), 5 * size), size):
            chunk = slice(start, start + size)
            assert (reader.lookup(fps[chunk]) == expected[chunk]).all()


@pytest.fixture(scope="module")
def python_reader(breach: Breach) -> Iterator[IndexReader]:
    """The breach's index with the Python lookups the C ones replaced."""
    opened = IndexReader.open_current(
        breach.index_dir, Fingerprinter(breach.pepper_file.read_bytes()), native=False)
    yield opened
    opened.close()


@pytest.fixture(params=["c", "python"])
def either_reader(request: pytest.FixtureRequest, reader: IndexReader,
                  python_reader: IndexReader) -> IndexReader:
    return reader if request.param == "c" else python_reader


def test_the_hits_path_agrees_with_the_reference(either_reader: IndexReader) -> None:
    """lookup_hits (what bulk checks use) is lookup without its all-zero rows."""
    reader = either_reader
    fps = _sample(reader)
    _, expected = _reference(reader, fps)
    for size in (17, 1000, 4096):
        for start in range(0, min(len(fps), 3 * size), size):
            positions, rows = reader.lookup_hits(fps[start:start + size])
            present = np.flatnonzero(expected[start:start + size].any(axis=1))
            assert positions.tolist() == present.tolist()
            assert (rows == expected[start:start + size][present]).all()
    positions, rows = reader.lookup_hits(np.empty(0, dtype=np.uint64))
    assert len(positions) == 0 and rows.shape == (0, reader.n_sources)


def test_the_one_key_path_agrees_with_the_reference(either_reader: IndexReader) -> None:
    reader = either_reader
    fps = _sample(reader)[:20_000]
    _, expected = _reference(reader, fps)
    for fp, row in zip(fps.tolist(), expected, strict=True):
        got = reader.lookup_one(fp)
        assert got == (row.tobytes() if row.any() else None)


def _tier_sample(breach: Breach, reader: IndexReader) -> list[int]:
    """What the tier is looked up with: every member's similar probes under each
    namespace's mask (many present), and as many strangers."""
    probes: list[int] = []
    for member in breach.members():
        try:
            keys = canonical_keys(query_fields(member))
        except QueryError:
            continue
        strings, drops, _ = similar_probes(keys)
        for fp in reader.fingerprinter.many(strings, drops).tolist():
            probes += [fp ^ mask for mask in reader.fingerprinter.namespace_masks]
    strangers = np.random.default_rng(9).integers(0, 2**64 - 1, len(probes), dtype=np.uint64)
    return probes + strangers.tolist()


def test_the_tier_paths_agree(breach: Breach, reader: IndexReader,
                              python_reader: IndexReader) -> None:
    """The similar tier in C answers as its numpy batch path and its Python scalar one."""
    sample = _tier_sample(breach, reader)
    fps = np.array(sample, dtype=np.uint64)
    positions, rows = reader.similar.hits(fps)
    expected_positions, expected_rows = python_reader.similar.hits(fps)
    assert positions.tolist() == expected_positions.tolist()
    assert (rows == expected_rows).all()
    assert 0 < len(positions) < len(sample) // 2  # probes found, strangers not
    for fp in sample[:: max(1, len(sample) // 5000)]:
        assert reader.similar.one(fp) == python_reader.similar.one(fp)
    empty_positions, empty_rows = reader.similar.hits(np.empty(0, dtype=np.uint64))
    assert len(empty_positions) == 0 and empty_rows.shape == (0, reader.n_sources)


def test_a_fingerprint_out_of_range_is_refused(reader: IndexReader) -> None:
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="fingerprint"):
            reader.lookup_one(bad)
        with pytest.raises(ValueError, match="fingerprint"):
            reader.similar.one(bad)


def test_verdicts_do_not_depend_on_the_path(breach: Breach, reader: IndexReader) -> None:
    checker = Checker(reader)
    queries = []
    for member in breach.members():
        try:
            queries.append(canonical_keys(query_fields(member)))
        except QueryError:  # a member line with an error
            continue
    batched = checker.check_keys(queries)  # the vectorised path
    small = [v for i in range(0, len(queries), 4) for v in checker.check_keys(queries[i:i + 4])]
    assert sum(len(q) for q in queries[:4]) <= SCALAR_KEYS  # ... and the key-by-key one
    assert batched == small == [checker.check_one(q) for q in queries]
    assert any(v["found"] for v in batched) and not all(v["found"] for v in batched)


def test_similar_verdicts_do_not_depend_on_the_path(breach: Breach, reader: IndexReader) -> None:
    """Members typed with one letter changed: the vectorised similar search answers as
    the scalar one, on the real index (most are found `similar`)."""
    checker = Checker(reader)
    queries = []
    for member in breach.members():
        fields = query_fields(member)
        if fields.get("first_name") and len(fields.get("last_name", "")) > 2:
            name = fields["last_name"]
            fields = {**fields, "nir": "", "last_name": name[:2] + "x" + name[3:]}
            queries.append(canonical_keys(fields))
    batched = checker.check_keys(queries)
    assert batched == [checker.check_one(q) for q in queries]
    assert any(v["match"] == "similar" for v in batched)


def test_the_c_and_python_checkers_agree(breach: Breach, reader: IndexReader,
                                          python_reader: IndexReader) -> None:
    """Members as they are and with one letter changed, day and month swapped, names
    swapped: the C lookups give the verdicts the Python ones give."""
    queries = []
    for member in breach.members():
        fields = query_fields(member)
        last, first = fields.get("last_name", ""), fields.get("first_name", "")
        date = fields.get("birth_date", "")
        variants = [fields, {**fields, "nir": ""},
                    {**fields, "nir": "", "last_name": first, "first_name": last}]
        if len(last) > 2:
            variants.append({**fields, "nir": "", "last_name": last[:2] + "x" + last[3:]})
        if len(date) == 10 and date[4] == "-":
            variants.append({**fields, "birth_date": f"{date[:4]}-{date[8:]}-{date[5:7]}"})
        for variant in variants:
            try:
                queries.append(canonical_keys(variant))
            except QueryError:
                continue
    c, python = Checker(reader), Checker(python_reader)
    assert c.check_keys(queries) == python.check_keys(queries)
    assert [c.check_one(q) for q in queries[:2000]] == [python.check_one(q) for q in queries[:2000]]
    levels = {v["match"] for v in c.check_keys(queries)}
    assert {"strong", "weak", "similar", None} <= levels


def test_the_c_lookups_refuse_what_they_cannot_read() -> None:
    """Wrong shapes and sizes are refused at construction, never read past."""
    from indexer.index import _lookups

    fps = np.array([1, 2, 3], dtype="<u8")
    with pytest.raises(ValueError, match="sizes disagree"):
        _lookups.Exact([(fps, b"\x01\x01", b"\xff" * 8, 3, 16)], 1)
    with pytest.raises(ValueError, match="Bloom"):
        _lookups.Exact([(fps, b"\x01\x01\x01", b"\xff", 3, 16)], 1)
    with pytest.raises(TypeError, match="tuple of 5"):
        _lookups.Exact([(fps, b"\x01\x01\x01")], 1)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="n_sources"):
        _lookups.Exact([], 0)
    with pytest.raises(ValueError, match="one shard spec per shard"):
        _lookups.Tier([], 1, 2)
    values = np.array([5], dtype="<u4")
    with pytest.raises(ValueError, match="sizes inconsistent"):
        _lookups.Tier([(values, np.array([0, 1], dtype="<u4"), b"\x01", 3, 4)], 1, 1)
    exact = _lookups.Exact([(fps, b"\x01\x01\x01", b"\xff" * 6, 3, 16)], 1)
    with pytest.raises(RuntimeError, match="already"):
        exact.__init__([], 1)  # type: ignore[misc]
    assert exact.one(2) == b"\x01" and exact.one(4) is None  # all-ones Bloom: a search


def test_a_chunk_check_refuses_what_is_not_a_query() -> None:
    """`Similar.check` takes canonical keys and the fingerprint functions' answers: a key
    of another form, or a function that answers wrongly, is an error, never a read past
    a buffer or a crash; a well-formed chunk answers per query."""
    from indexer.index import _lookups

    fps = np.array([1, 2, 3], dtype="<u8")
    exact = _lookups.Exact([(fps, b"\x01\x00\x01", b"\xff" * 6, 3, 16)], 1)
    tier = _lookups.Tier([(np.zeros(0, dtype="<u4"), b"", b"", 0, 1)], 1, 1)
    search = _lookups.Similar(exact, tier, b"\x00", [[]])

    def digests(keys: object) -> bytes:  # "s..." keys are fingerprint 1, others 2, 3
        assert isinstance(keys, (list, tuple))
        return b"".join(((1 if k[0] == "s" else 2 + (k == "wb")).to_bytes(8, "little"))
                        for k in keys)

    def nothing(keys: object) -> tuple[bytes, bytes]:
        return b"", b""

    assert search.check([("sa",), ("wa",), ("wb", "pc"), ("pc",)], digests, nothing) == [
        b"s\x01", b"", b"w\x01", b""]
    for bad in [("",), ("xa",), (3,), "sa"]:
        with pytest.raises(ValueError, match="canonical key"):
            search.check([bad], digests, nothing)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="8 bytes a key"):
        search.check([("sa",)], lambda keys: b"\x01", nothing)
    for planned in [None, (b"\x00" * 8,), (b"\x00" * 7, b"\x00"), (b"\x00" * 8, b"")]:
        with pytest.raises(ValueError, match="similar must give"):
            search.check([("wa",)], digests, lambda keys, p=planned: p)
    with pytest.raises(ValueError, match="not a known kind"):
        search.check([("wa",)], digests, lambda keys: (b"\x00" * 8, b"\x05"))
