"""Reading a published generation: memory-mapped lookups.

`IndexReader` maps every shard file read-only (the pages are shared by every worker
process of the service and by the page cache), checks that the manifest's key id is
the pepper's, and answers fingerprints: a Bloom test, then a binary search in the
sorted fingerprint array of the shard.

The lookups run in C (`_lookups.c`), one fingerprint (`lookup_one`, ~0.2 µs) or a
batch (`lookup_hits`) per call, over the same mapped bytes. `IndexReader(...,
native=False)` answers with the Python paths they replaced and the tests compare
them with: numpy for a batch (the Bloom positions of the whole batch at once, then
`searchsorted` per shard) and plain Python for one key (`bisect` on a memoryview:
~20 numpy calls would cost ~20 µs a key in call overhead alone).
"""

from __future__ import annotations

import mmap
import struct
import sys
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from indexer.core.fingerprint import Fingerprinter
from indexer.index import _lookups
from indexer.index.bloom import (
    HEADER_BYTES,
    FingerprintBloom,
    bloom_contains,
    bloom_has_one,
    bloom_positions_per_key,
)
from indexer.index.generation import current_generation, shard_file
from indexer.index.manifest import ManifestError, load_manifest, verify_generation
from indexer.index.shards import shard_of, shard_of_one
from indexer.index.similar import SimilarShard, SimilarTier, found_arrays

__all__ = ["IndexError_", "IndexReader", "KeyMismatch", "SourceInfo"]


class IndexError_(Exception):  # noqa: N801 - "IndexError" is a builtin
    """A generation that cannot be served: missing, corrupt or of another format."""


class KeyMismatch(IndexError_):
    """The index was built under another pepper: every answer would be "not found"."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    id: str
    title: str
    breach_date: str
    description: str
    rows: int
    records_indexed: int


@dataclass(frozen=True, slots=True)
class _Shard:
    fingerprints: npt.NDArray[np.uint64]
    meta: npt.NDArray[np.uint8]
    bloom_bits: npt.NDArray[np.uint8]
    num_slices: int
    bits_per_slice: int
    # The same mapped bytes as memoryviews, for `lookup_one`: indexing one gives a
    # Python int without a numpy call.
    fingerprint_view: memoryview
    meta_view: memoryview
    bloom_view: memoryview


_EMPTY_U64: Final = np.empty(0, dtype=np.uint64)
# The C lookups and `lookup_one` read the little-endian files as native integers.
_LITTLE_ENDIAN: Final = sys.byteorder == "little"


def _groups(ids: npt.NDArray[np.intp]) -> list[tuple[int, int, int]]:
    """(shard, start, end) of each run of equal shard ids in `ids` (sorted)."""
    if not len(ids):
        return []
    starts = np.flatnonzero(np.diff(ids)) + 1
    bounds = [0, *starts.tolist(), len(ids)]
    firsts = ids[bounds[:-1]].tolist()
    return list(zip(firsts, bounds[:-1], bounds[1:], strict=True))


class IndexReader:
    """One generation, opened. Immutable; swap readers to change generation."""

    def __init__(self, generation: Path, fingerprinter: Fingerprinter, *, verify: bool = True,
                 native: bool = True):
        try:
            manifest = load_manifest(generation)
        except ManifestError as exc:
            raise IndexError_(str(exc)) from exc
        if manifest["key_id"] != fingerprinter.key_id:
            raise KeyMismatch(
                f"the index {generation.name} was built with another pepper (key id "
                f"{manifest['key_id']}, this pepper's is {fingerprinter.key_id}): start "
                f"with the pepper file used for the build, or rebuild the index"
            )
        if verify:
            faults = verify_generation(generation, deep=False)
            if faults:
                raise IndexError_(
                    f"the index {generation.name} failed verification: {'; '.join(faults[:3])}"
                )
        self.path = generation
        self.generation: str = manifest["generation"]
        self.manifest: dict[str, Any] = manifest
        self.fingerprinter = fingerprinter
        self.sources = [
            SourceInfo(
                s["id"], s["title"], s["breach_date"], s.get("description", ""),
                int(s.get("rows", 0)), int(s.get("records_indexed", 0)),
            )
            for s in manifest["sources"]
        ]
        self.n_sources = len(self.sources)
        self.shard_count: int = manifest["shards"]["count"]
        self.fingerprint_count: int = int(manifest["totals"]["fingerprints"])
        self._maps: list[mmap.mmap] = []
        native = native and _LITTLE_ENDIAN
        try:
            self._shards = [self._open_shard(i) for i in range(self.shard_count)]
            self.similar = SimilarTier(
                [SimilarShard.open(generation, i, entry, self.n_sources, self._maps)
                 for i, entry in enumerate(manifest["similar"]["shards"])],
                self.shard_count, self.n_sources, native=native,
            )
            self._native = _lookups.Exact(
                [(s.fingerprints, s.meta, s.bloom_bits, s.num_slices, s.bits_per_slice)
                 for s in self._shards], self.n_sources) if native else None
        except ValueError as exc:  # sizes that disagree (a file cut short), unverified
            raise IndexError_(f"the index {generation.name} is damaged: {exc}") from exc
        self._bits_per_slice = np.array(
            [shard.bits_per_slice for shard in self._shards], dtype=np.uint64
        )
        slice_counts = {shard.num_slices for shard in self._shards}
        self._num_slices = slice_counts.pop() if len(slice_counts) == 1 else None
        # The meta row (class bits per source) of one fingerprint; None when absent.
        self.lookup_one: Callable[[int], bytes | None] = (
            self._native.one if self._native is not None else self._lookup_one_python)

    @classmethod
    def open_current(
        cls, index_dir: Path, fingerprinter: Fingerprinter, *, verify: bool = True,
        native: bool = True,
    ) -> IndexReader:
        return cls(current_generation(index_dir), fingerprinter, verify=verify, native=native)

    def _map(self, name: str, offset: int = 0) -> npt.NDArray[np.uint8]:
        path = self.path / name
        size = path.stat().st_size
        if size <= offset:
            return np.empty(0, dtype=np.uint8)
        with path.open("rb") as stream:
            mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(mapped)
        return np.frombuffer(mapped, dtype=np.uint8, offset=offset)

    def _open_shard(self, shard: int) -> _Shard:
        with (self.path / shard_file(shard, "bloom")).open("rb") as stream:
            header = stream.read(HEADER_BYTES)
        try:
            _, num_slices, bits_per_slice, _, _ = struct.unpack(FingerprintBloom.FILE_FMT, header)
        except struct.error as exc:
            raise IndexError_(f"shard {shard}: Bloom filter header unreadable") from exc
        fps = self._map(shard_file(shard, "fp")).view("<u8")
        fps = fps if len(fps) else _EMPTY_U64
        meta_bytes = self._map(shard_file(shard, "meta"))
        bloom_bits = self._map(shard_file(shard, "bloom"), HEADER_BYTES)
        return _Shard(
            fps, meta_bytes.reshape(-1, self.n_sources), bloom_bits, num_slices,
            bits_per_slice, fps.data, meta_bytes.data, bloom_bits.data,
        )

    def lookup(self, fingerprints: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
        """Meta rows (n, n_sources) for the fingerprints: class bits per source, 0 = absent."""
        fps = np.asarray(fingerprints, dtype=np.uint64)
        result = np.zeros((len(fps), self.n_sources), dtype=np.uint8)
        if self._num_slices is None:
            # Shards with different numbers of hash functions: one shard at a time.
            shard_ids = shard_of(fps, self.shard_count)
            order = np.argsort(shard_ids, kind="stable")
            bounds = np.flatnonzero(np.diff(shard_ids[order])) + 1
            for group in np.split(order, bounds):
                if len(group):
                    self._lookup_into(int(shard_ids[group[0]]), fps[group], group, result)
            return result
        positions, rows = self._stored(fps, self._num_slices)
        result[positions] = rows
        return result

    def lookup_hits(
        self, fingerprints: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
        """(positions, rows): where in `fingerprints` (ascending) the present ones are,
        and their meta rows; `lookup` with its all-zero rows left out.

        What a bulk check needs: about half the keys of a member file are absent, and
        their zero rows would only be allocated to be skipped.
        """
        fps = np.asarray(fingerprints, dtype=np.uint64)
        if self._native is not None:
            return found_arrays(self._native.hits(np.ascontiguousarray(fps)), self.n_sources)
        if self._num_slices is None:
            table = self.lookup(fps)
            present = np.flatnonzero(table.any(axis=1))
            return present, table[present]
        positions, rows = self._stored(fps, self._num_slices)
        # Ascending positions; a stored fingerprint without any class bit is absent.
        order = positions.argsort()
        order = order[rows[order].any(axis=1)]
        return positions[order], rows[order]

    def _stored(
        self, fps: npt.NDArray[np.uint64], num_slices: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
        """(positions, rows) of the fingerprints stored in the index, in shard order.

        The fingerprints are grouped by shard; the Bloom positions of the whole batch
        are computed at once (each key with its shard's slice size), and only the
        gathers from a shard's own mapped arrays run once per shard: three numpy calls
        a shard, which is what a batch of a thousand keys spread over 64 shards pays.
        """
        shard_ids = shard_of(fps, self.shard_count)
        order = shard_ids.argsort(kind="stable")
        ids = shard_ids[order]
        candidates = np.flatnonzero(self._bloom_maybe(fps[order], ids, num_slices))
        keys, ids = fps[order[candidates]], ids[candidates]
        stored = np.empty(len(keys), dtype=np.uint64)
        rows = np.empty((len(keys), self.n_sources), dtype=np.uint8)
        for shard_id, start, end in _groups(ids):
            shard = self._shards[shard_id]
            where = shard.fingerprints.searchsorted(keys[start:end])
            # "clip": past the last fingerprint reads the last one, which then differs.
            shard.fingerprints.take(where, mode="clip", out=stored[start:end])
            shard.meta.take(where, axis=0, mode="clip", out=rows[start:end])
        hit = stored == keys
        return order[candidates[hit]], rows[hit]

    def _bloom_maybe(
        self, keys: npt.NDArray[np.uint64], ids: npt.NDArray[np.intp], num_slices: int
    ) -> npt.NDArray[np.bool_]:
        """`key in bloom` for keys sorted by shard (`ids`), as `bloom.bloom_contains`:
        the positions for the whole batch at once, then a gather per shard."""
        positions = bloom_positions_per_key(keys, self._bits_per_slice[ids], num_slices)
        offsets = (positions >> np.uint64(3)).astype(np.intp)
        octets = np.zeros(offsets.shape, dtype=np.uint8)
        for shard_id, start, end in _groups(ids):
            shard = self._shards[shard_id]
            if len(shard.fingerprints):  # an empty shard's filter holds nothing
                shard.bloom_bits.take(offsets[start:end], out=octets[start:end])
        bits = (octets >> (positions & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
        return np.asarray(bits.all(axis=1), dtype=np.bool_)

    def similar_search(
        self, exact_tags: bytes, places: Sequence[Sequence[tuple[int, int]]]
    ) -> _lookups.Similar | None:
        """The C lookups of a similar query's probes (see `_lookups.c`), None when this
        reader answers with the Python paths."""
        if self._native is None or self.similar.native is None:
            return None
        return _lookups.Similar(self._native, self.similar.native, exact_tags, places)

    def _lookup_one_python(self, fingerprint: int) -> bytes | None:
        """`lookup_one` in plain Python: the same answer as `lookup` (a test holds them
        equal), without numpy: the Bloom positions of `bloom.bloom_positions`, then a
        binary search."""
        if not _LITTLE_ENDIAN:
            row = self.lookup(np.array([fingerprint], dtype=np.uint64))[0]
            return row.tobytes() if row.any() else None
        shard = self._shards[shard_of_one(fingerprint, self.shard_count)]
        fps = shard.fingerprint_view
        if not len(fps) or not bloom_has_one(
                shard.bloom_view, fingerprint, shard.num_slices, shard.bits_per_slice):
            return None
        where = bisect_left(fps, fingerprint)
        if where == len(fps) or fps[where] != fingerprint:
            return None
        n = self.n_sources
        row = bytes(shard.meta_view[where * n : (where + 1) * n])
        return row if any(row) else None

    def _lookup_into(
        self, shard_id: int, fps: npt.NDArray[np.uint64], positions: npt.NDArray[np.intp],
        result: npt.NDArray[np.uint8],
    ) -> None:
        shard = self._shards[shard_id]
        if not len(shard.fingerprints):
            return
        maybe = bloom_contains(shard.bloom_bits, fps, shard.num_slices, shard.bits_per_slice)
        if not maybe.any():
            return
        candidates = fps[maybe]
        where = np.searchsorted(shard.fingerprints, candidates)
        where = np.minimum(where, len(shard.fingerprints) - 1)
        hit = shard.fingerprints[where] == candidates
        if hit.any():
            result[positions[maybe][hit]] = shard.meta[where[hit]]

    def close(self) -> None:
        # The C lookups export the mapped buffers: dropped first, so the maps can close.
        self._native = None
        self.lookup_one = self._lookup_one_python
        self.similar.close()
        self._shards = []
        for mapped in self._maps:
            try:
                mapped.close()
            except BufferError:
                # numpy views still alive (a request in flight): the map is released
                # when they are collected.
                pass
        self._maps = []

