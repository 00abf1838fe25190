"""The similar tier: a compact, memory-mapped set of keyed fingerprints with meta rows.

It holds the entries that `similar` matches look up (docs/design.md §3): each record's
weak keys with one letter of a name deleted, with another given name, with a part of
a compound last name (`records.record_keys`), each fingerprint XORed with its
namespace's keyed mask. About 15 entries a record, so the format is compact (why and
what it costs: docs/matching.md):

    shards/NNN.sim      uint32 little-endian entries, sorted within each bucket:
                        (low `32 - row_bits` bits of the fingerprint) << row_bits | row id
    shards/NNN.simoff   uint32 offsets of the 2**bucket_bits buckets (+1 at the end)
    shards/NNN.simrows  the shard's distinct meta rows (n_rows x n_sources bytes)

A fingerprint's shard is `shard_of`, as in the exact index; its bucket is the next
`bucket_bits` bits of the same multiply-shift. Buckets hold about `BUCKET_ENTRIES`
entries, so an absent fingerprint matches a stored one with probability about
BUCKET_ENTRIES / 2**(32 - row_bits) per lookup, whatever the index size (~1e-6).
The writer and the reader both live here, and `_lookups.c` (the lookups in C, which
`SimilarTier(..., native=False)` replaces with the Python and numpy ones here, the
reference the tests compare it with).
"""

from __future__ import annotations

import mmap
import sys
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from indexer.index import _lookups
from indexer.index.generation import shard_file
from indexer.index.shards import shard_of, shard_of_one

__all__ = [
    "BUCKET_ENTRIES",
    "SIMILAR_KINDS",
    "SimilarShard",
    "found_arrays",
    "similar_shard_files",
    "verify_similar_shard",
]

SIMILAR_KINDS: Final = ("sim", "simoff", "simrows")
BUCKET_ENTRIES: Final = 32
_MAX_ROW_BITS: Final = 12
_LITTLE_ENDIAN: Final = sys.byteorder == "little"


def _bucket_bits(entries: int, shard_count: int) -> int:
    """Bits of bucket so that buckets hold about BUCKET_ENTRIES entries."""
    bits = max(0, int(np.round(np.log2(max(entries, 1) / BUCKET_ENTRIES))))
    # shard and bucket come out of the same 32 high bits of the fingerprint
    return min(bits, 32 - int(np.ceil(np.log2(shard_count))) if shard_count > 1 else 32, 24)


def _buckets(
    fps: npt.NDArray[np.uint64], shard_count: int, bucket_bits: int
) -> npt.NDArray[np.intp]:
    if not bucket_bits:
        return np.zeros(len(fps), dtype=np.intp)
    fraction = ((fps >> np.uint64(32)) * np.uint64(shard_count)) & np.uint64(0xFFFFFFFF)
    return (fraction >> np.uint64(32 - bucket_bits)).astype(np.intp)


def similar_shard_files(
    shard: int, fps: npt.NDArray[np.uint64], meta: npt.NDArray[np.uint8], shard_count: int,
    n_sources: int,
) -> tuple[dict[str, bytes], dict[str, int]]:
    """The files of one shard of the tier, from its unique sorted fingerprints and their
    meta rows (n_sources bytes each, flat), and the shard's manifest entry."""
    rows = meta.reshape(-1, n_sources)
    if not len(rows):
        table, row_ids = np.zeros((0, n_sources), dtype=np.uint8), np.empty(0, dtype=np.intp)
    elif n_sources <= 8:
        # Each row as one integer: np.unique on a flat uint64 array is a plain sort,
        # many times faster than np.unique(axis=0).
        codes = np.zeros(len(rows), dtype=np.uint64)
        for source in range(n_sources):
            codes |= rows[:, source].astype(np.uint64) << np.uint64(8 * source)
        # The row ids as return_inverse gives them, by a search in the few distinct rows:
        # np.unique would argsort all the codes for them, several times slower.
        unique_codes = np.unique(codes)
        row_ids = np.searchsorted(unique_codes, codes)
        table = np.stack([(unique_codes >> np.uint64(8 * source)).astype(np.uint8)
                          for source in range(n_sources)], axis=1)
    else:
        table, row_ids = np.unique(rows, axis=0, return_inverse=True)
    row_bits = max(1, int(np.ceil(np.log2(max(len(table), 2)))))
    if row_bits > _MAX_ROW_BITS:
        raise ValueError(
            f"shard {shard}: {len(table)} distinct combinations of sources and data "
            "classes; the similar tier holds at most 4096 a shard"
        )
    bucket_bits = _bucket_bits(len(fps), shard_count)
    buckets = _buckets(fps, shard_count, bucket_bits)
    low = fps & np.uint64((1 << (32 - row_bits)) - 1)
    values = (low << np.uint64(row_bits)) | row_ids.reshape(-1).astype(np.uint64)
    # Sorted by bucket, then by value: one sort of (bucket << 32 | value), several times
    # faster than np.lexsort of the two (a bucket has at most 24 bits, a value 32).
    ordered = np.sort((buckets.astype(np.uint64) << np.uint64(32)) | values)
    offsets = np.searchsorted(
        ordered >> np.uint64(32), np.arange((1 << bucket_bits) + 1, dtype=np.uint64)
    ).astype("<u4")
    values = (ordered & np.uint64(0xFFFFFFFF)).astype("<u4")
    files = {
        shard_file(shard, "sim"): values.tobytes(),
        shard_file(shard, "simoff"): offsets.tobytes(),
        shard_file(shard, "simrows"): np.ascontiguousarray(table, dtype=np.uint8).tobytes(),
    }
    entry = {"entries": len(values), "bucket_bits": bucket_bits, "row_bits": row_bits,
             "rows": len(table)}
    return files, entry


def verify_similar_shard(generation: Path, shard: int, entry: dict[str, Any],
                         n_sources: int) -> list[str]:
    """Structural faults of one shard of the tier (sizes, offsets, row ids)."""
    faults: list[str] = []
    try:
        entries, bucket_bits = int(entry["entries"]), int(entry["bucket_bits"])
        row_bits, n_rows = int(entry["row_bits"]), int(entry["rows"])
    except (KeyError, TypeError, ValueError):
        return [f"similar shard {shard}: manifest entry malformed"]
    values = np.fromfile(generation / shard_file(shard, "sim"), dtype="<u4")
    offsets = np.fromfile(generation / shard_file(shard, "simoff"), dtype="<u4")
    rows = (generation / shard_file(shard, "simrows")).stat().st_size
    if len(values) != entries:
        faults.append(f"similar shard {shard}: {len(values)} entries, expected {entries}")
    if len(offsets) != (1 << bucket_bits) + 1 or (len(offsets) and (
            int(offsets[0]) != 0 or int(offsets[-1]) != len(values)
            or bool(np.any(np.diff(offsets.astype(np.int64)) < 0)))):
        faults.append(f"similar shard {shard}: bucket offsets inconsistent")
    if rows != n_rows * n_sources:
        faults.append(f"similar shard {shard}: rows table holds {rows} bytes")
    elif len(values) and int((values & np.uint32((1 << row_bits) - 1)).max()) >= max(n_rows, 1):
        faults.append(f"similar shard {shard}: a row id points past the rows table")
    return faults


@dataclass(frozen=True, slots=True)
class SimilarShard:
    """One shard of the tier, mapped."""

    values: npt.NDArray[np.uint32]
    offsets: npt.NDArray[np.uint32]
    rows: npt.NDArray[np.uint8]  # (n_rows, n_sources)
    bucket_bits: int
    row_bits: int
    values_view: memoryview
    offsets_view: memoryview

    @classmethod
    def open(cls, generation: Path, shard: int, entry: dict[str, Any], n_sources: int,
             maps: list[mmap.mmap]) -> SimilarShard:
        def mapped(kind: str) -> npt.NDArray[np.uint8]:
            path = generation / shard_file(shard, kind)
            if not path.stat().st_size:
                return np.empty(0, dtype=np.uint8)
            with path.open("rb") as stream:
                region = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
            maps.append(region)
            return np.frombuffer(region, dtype=np.uint8)

        values = mapped("sim").view("<u4")
        offsets = mapped("simoff").view("<u4")
        rows = mapped("simrows").reshape(-1, n_sources)
        return cls(values, offsets, rows, int(entry["bucket_bits"]), int(entry["row_bits"]),
                   values.data, offsets.data)


def found_arrays(
    found: tuple[bytes, bytes], n_sources: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
    """The (positions, rows) arrays of a C lookup's answer (int64 bytes, row bytes)."""
    positions, rows = found
    return (np.frombuffer(positions, dtype=np.int64).astype(np.intp, copy=False),
            np.frombuffer(rows, dtype=np.uint8).reshape(-1, n_sources))


class SimilarTier:
    """All the shards of the tier: batch and single lookups."""

    def __init__(self, shards: list[SimilarShard], shard_count: int, n_sources: int, *,
                 native: bool = True) -> None:
        """Raises ValueError when a shard's files disagree with its manifest entry."""
        self._shards = shards
        self.shard_count = shard_count
        self.n_sources = n_sources
        self.native = _lookups.Tier(
            [(s.values, s.offsets, s.rows, s.bucket_bits, s.row_bits) for s in shards],
            n_sources, shard_count) if native and _LITTLE_ENDIAN else None
        # The meta row of one fingerprint, None when absent; as `hits`, for one key.
        self.one: Callable[[int], bytes | None] = (
            self.native.one if self.native is not None else self._one_python)

    def close(self) -> None:
        """Let go of the mapped buffers the C lookups hold."""
        self.native = None
        self.one = self._one_python

    def _one_python(self, fingerprint: int) -> bytes | None:
        """`one` in plain Python, without numpy."""
        if not _LITTLE_ENDIAN:
            positions, rows = self.hits(np.array([fingerprint], dtype=np.uint64))
            return rows[0].tobytes() if len(positions) else None
        shard = self._shards[shard_of_one(fingerprint, self.shard_count)]
        bucket = 0
        if shard.bucket_bits:
            fraction = ((fingerprint >> 32) * self.shard_count) & 0xFFFFFFFF
            bucket = fraction >> (32 - shard.bucket_bits)
        offsets = shard.offsets_view
        if not len(offsets):
            return None
        lo, hi = offsets[bucket], offsets[bucket + 1]
        row_bits = shard.row_bits
        low = fingerprint & ((1 << (32 - row_bits)) - 1)
        values = shard.values_view
        where = bisect_left(values, low << row_bits, lo, hi)
        if where == hi or values[where] >> row_bits != low:
            return None
        row: bytes = shard.rows[values[where] & ((1 << row_bits) - 1)].tobytes()
        return row

    def hits(
        self, fingerprints: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
        """(positions, rows) of the fingerprints present, positions ascending."""
        fps = np.asarray(fingerprints, dtype=np.uint64)
        if self.native is not None:
            return found_arrays(self.native.hits(np.ascontiguousarray(fps)), self.n_sources)
        shard_ids = shard_of(fps, self.shard_count)
        order = shard_ids.argsort(kind="stable")
        ids = shard_ids[order]
        found_positions: list[npt.NDArray[np.intp]] = []
        found_rows: list[npt.NDArray[np.uint8]] = []
        if len(ids):
            bounds = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(ids)]
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                shard = self._shards[int(ids[start])]
                if not len(shard.values):
                    continue
                group = order[start:end]
                hit, rows = _search(shard, fps[group], self.shard_count)
                found_positions.append(group[hit])
                found_rows.append(rows)
        if not found_positions:
            return np.empty(0, dtype=np.intp), np.empty((0, self.n_sources), dtype=np.uint8)
        positions = np.concatenate(found_positions)
        rows = np.concatenate(found_rows)
        ascending = positions.argsort()
        return positions[ascending], rows[ascending]


def _search(
    shard: SimilarShard, fps: npt.NDArray[np.uint64], shard_count: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
    """(indices into fps found, their rows): a binary search in every key's bucket at
    once, one numpy step per halving of the largest bucket."""
    buckets = _buckets(fps, shard_count, shard.bucket_bits)
    lo = shard.offsets[buckets].astype(np.intp)
    hi = shard.offsets[buckets + 1].astype(np.intp)
    end = hi.copy()
    row_bits = np.uint64(shard.row_bits)
    low = fps & np.uint64((1 << (32 - shard.row_bits)) - 1)
    target = low << row_bits
    values = shard.values
    last = len(values) - 1
    active = lo < hi
    while active.any():
        mid = (lo + hi) >> 1
        below = values[np.minimum(mid, last)].astype(np.uint64) < target
        lo = np.where(active & below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)
        active = lo < hi
    inside = lo < end
    stored = values[np.minimum(lo, last)].astype(np.uint64)
    hit = np.flatnonzero(inside & ((stored >> row_bits) == low))
    row_ids = (stored[hit] & np.uint64((1 << shard.row_bits) - 1)).astype(np.intp)
    return hit, shard.rows[row_ids]
