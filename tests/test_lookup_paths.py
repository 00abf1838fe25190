"""The fast lookup paths answer exactly as the straightforward ones.

`IndexReader.lookup` (the whole batch's Bloom positions at once) and
`IndexReader.lookup_one` (plain Python, for a single query) are checked against the
reference of one shard at a time with `bloom.bloom_contains` and `searchsorted`,
on every stored fingerprint of a real index and on strangers, Bloom false positives
included; `Checker` gives the same verdicts whichever path a batch takes.
"""

from __future__ import annotations

import numpy as np
from conftest import Breach, query_fields

from indexer.core.matchkeys import QueryError, canonical_keys
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


def test_the_hits_path_agrees_with_the_reference(reader: IndexReader) -> None:
    """lookup_hits (what bulk checks use) is lookup without its all-zero rows."""
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


def test_the_one_key_path_agrees_with_the_reference(reader: IndexReader) -> None:
    fps = _sample(reader)[:20_000]
    _, expected = _reference(reader, fps)
    for fp, row in zip(fps.tolist(), expected, strict=True):
        got = reader.lookup_one(fp)
        assert got == (row.tobytes() if row.any() else None)


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
