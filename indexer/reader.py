"""Reading a published generation: memory-mapped, vectorised lookups.

`IndexReader` maps every shard file read-only (the pages are shared by every worker
process of the service and by the page cache), checks that the manifest's key id is
the pepper's, and answers a batch of fingerprints at once: a Bloom test in numpy, then
a binary search (`searchsorted`) in the sorted fingerprint array of each shard.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .bloom import HEADER_BYTES, FingerprintBloom, bloom_contains
from .fingerprint import Fingerprinter
from .generation import current_generation, shard_file
from .manifest import ManifestError, load_manifest, verify_generation
from .shards import shard_of

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


_EMPTY_U64: Final = np.empty(0, dtype=np.uint64)


class IndexReader:
    """One generation, opened. Immutable; swap readers to change generation."""

    def __init__(self, generation: Path, fingerprinter: Fingerprinter, *, verify: bool = True):
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
        self._shards = [self._open_shard(i) for i in range(self.shard_count)]

    @classmethod
    def open_current(
        cls, index_dir: Path, fingerprinter: Fingerprinter, *, verify: bool = True
    ) -> IndexReader:
        return cls(current_generation(index_dir), fingerprinter, verify=verify)

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
        meta = self._map(shard_file(shard, "meta")).reshape(-1, self.n_sources)
        return _Shard(
            fps if len(fps) else _EMPTY_U64,
            meta,
            self._map(shard_file(shard, "bloom"), HEADER_BYTES),
            num_slices,
            bits_per_slice,
        )

    def lookup(self, fingerprints: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
        """Meta rows (n, n_sources) for the fingerprints: class bits per source, 0 = absent."""
        fps = np.asarray(fingerprints, dtype=np.uint64)
        result = np.zeros((len(fps), self.n_sources), dtype=np.uint8)
        if not len(fps):
            return result
        shard_ids = shard_of(fps, self.shard_count)
        if len(fps) <= 4:
            for i in range(len(fps)):
                self._lookup_into(int(shard_ids[i]), fps[i : i + 1], np.array([i]), result)
            return result
        order = np.argsort(shard_ids, kind="stable")
        sorted_ids = shard_ids[order]
        bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
        for group in np.split(order, bounds):
            self._lookup_into(int(shard_ids[group[0]]), fps[group], group, result)
        return result

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
        self._shards = []
        for mapped in self._maps:
            try:
                mapped.close()
            except BufferError:
                # numpy views still alive (a request in flight): the map is released
                # when they are collected.
                pass
        self._maps = []
