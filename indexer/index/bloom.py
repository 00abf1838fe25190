"""Bloom filters over fingerprints, in pybloom-live's own class and file format.

Each shard has a Bloom filter kept in RAM in front of its exact, memory-mapped
fingerprint array: most people checked are *not* in the breach, and the filter
answers them without touching the (possibly cold) mmap.

The filter is a `pybloom_live.BloomFilter`: same slices, same bit layout, same
`tofile`/`fromfile` format, same `add` and `in`. One thing differs: pybloom-live
hashes every key again with SHA/xxh128 in a Python loop (several µs per key), while
our keys are already outputs of a keyed PRF (uniform 64-bit fingerprints). So the
slice offsets are derived from the fingerprint itself by double hashing
(Kirsch-Mitzenmacher), which numpy computes for millions of keys at once. The scalar
pybloom-live path and the vectorised path set and test exactly the same bits (a test
proves it).

The low 32 bits of a fingerprint feed the first hash and a mix of the high 32 bits
the second; the shard is chosen from the high bits (`shard_of`), so the filter's
bits stay uniform inside a shard.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
from pybloom_live import BloomFilter

__all__ = [
    "HEADER_BYTES",
    "FingerprintBloom",
    "bloom_contains",
    "bloom_has_one",
    "bloom_positions",
    "bloom_positions_per_key",
]

# struct '<dQQQQ': error_rate, num_slices, bits_per_slice, capacity, count
HEADER_BYTES: Final = struct.calcsize(BloomFilter.FILE_FMT)
_GOLDEN: Final = 0x9E3779B97F4A7C15
_MASK64: Final = (1 << 64) - 1
_CHUNK: Final = 1 << 18

U64 = npt.NDArray[np.uint64]


def _offsets(fingerprint: int, num_slices: int, bits_per_slice: int) -> Iterator[int]:
    # int(): a numpy uint64 would wrap (and warn) in the multiplication below.
    fingerprint = int(fingerprint)
    h1 = fingerprint & 0xFFFFFFFF
    h2 = (((fingerprint >> 32) * _GOLDEN) & _MASK64) >> 32 | 1
    for i in range(num_slices):
        yield (h1 + i * h2) % bits_per_slice


class FingerprintBloom(BloomFilter):  # type: ignore[misc]
    """A pybloom-live BloomFilter whose keys are 64-bit fingerprints (ints)."""

    def _setup(
        self, error_rate: float, num_slices: int, bits_per_slice: int, capacity: int, count: int
    ) -> None:
        super()._setup(error_rate, num_slices, bits_per_slice, capacity, count)

        def make_hashes(key: int) -> Iterator[int]:
            return _offsets(key, num_slices, bits_per_slice)

        self.make_hashes = make_hashes

    @classmethod
    def build(
        cls, fingerprints: U64, error_rate: float
    ) -> FingerprintBloom:
        """A filter holding `fingerprints` (unique), its bits set by numpy."""
        bloom: FingerprintBloom = cls(max(len(fingerprints), 1), error_rate)
        bits = np.zeros(bloom.num_bits, dtype=np.bool_)
        for start in range(0, len(fingerprints), _CHUNK):
            positions = bloom_positions(
                fingerprints[start : start + _CHUNK], bloom.num_slices, bloom.bits_per_slice
            )
            bits[positions.ravel()] = True
        packed = np.packbits(bits, bitorder="little")
        bloom.bitarray.clear()
        bloom.bitarray.frombytes(packed.tobytes())
        del bloom.bitarray[bloom.num_bits :]
        bloom.count = len(fingerprints)
        return bloom

    def copy(self) -> FingerprintBloom:
        # pybloom-live's copy (and so union and intersection) builds a plain
        # BloomFilter, whose SHA-based hashes would test other bits than ours.
        twin: FingerprintBloom = type(self)(self.capacity, self.error_rate)
        twin.bitarray = self.bitarray.copy()
        twin.count = self.count
        return twin

    def write(self, stream: BinaryIO) -> None:
        self.tofile(stream)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pybloom-live's __setstate__ would put its own SHA-based hashes back: a copy
        # of this filter (pickle, copy.deepcopy) would then test the wrong bits.
        self.__dict__.update(state)
        self._setup(
            self.error_rate, self.num_slices, self.bits_per_slice, self.capacity, self.count
        )


def bloom_positions(fingerprints: U64, num_slices: int, bits_per_slice: int) -> U64:
    """Bit positions (n, num_slices) of each fingerprint, as `FingerprintBloom.add` sets them."""
    fps = np.asarray(fingerprints, dtype=np.uint64)
    h1 = fps & np.uint64(0xFFFFFFFF)
    h2 = ((fps >> np.uint64(32)) * np.uint64(_GOLDEN)) >> np.uint64(32) | np.uint64(1)
    slices = np.arange(num_slices, dtype=np.uint64)
    m = np.uint64(bits_per_slice)
    return (h1[:, None] + slices[None, :] * h2[:, None]) % m + slices[None, :] * m


def bloom_contains(
    bits: npt.NDArray[np.uint8], fingerprints: U64, num_slices: int, bits_per_slice: int
) -> npt.NDArray[np.bool_]:
    """Vectorised `fp in bloom` over the filter's packed (little-endian) bytes."""
    positions = bloom_positions(fingerprints, num_slices, bits_per_slice)
    byte = bits[(positions >> np.uint64(3)).astype(np.intp)]
    hit = (byte >> (positions & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
    return np.asarray(hit.all(axis=1), dtype=np.bool_)


def bloom_positions_per_key(keys: U64, bits_per_slice: U64, num_slices: int) -> U64:
    """`bloom_positions` for keys of filters of different slice sizes (one per key).

    Slice i tests bit (h1 + i * h2) % m of that slice. Rather than a modulo per slice
    (a 64-bit division per key and slice), the position moves from slice to slice by
    h2 % m and wraps once at most: the same bits, computed with two divisions a key.
    """
    m = bits_per_slice
    h1 = keys & np.uint64(0xFFFFFFFF)
    h2 = ((keys >> np.uint64(32)) * np.uint64(_GOLDEN)) >> np.uint64(32) | np.uint64(1)
    step = h2 % m
    position = h1 % m
    positions = np.empty((len(keys), num_slices), dtype=np.uint64)
    positions[:, 0] = position
    base = m.copy()  # slice i starts at bit i * m
    for i in range(1, num_slices):
        position += step
        position -= m * (position >= m)
        positions[:, i] = position + base
        base += m
    return positions


def bloom_has_one(bits: memoryview, fingerprint: int, num_slices: int, bits_per_slice: int) -> bool:
    """`fingerprint in bloom` for one fingerprint over the filter's packed bytes, in plain
    Python (no numpy call: a single lookup would pay more in call overhead)."""
    m = bits_per_slice
    h1 = fingerprint & 0xFFFFFFFF
    h2 = ((((fingerprint >> 32) * _GOLDEN) & _MASK64) >> 32) | 1
    base = 0
    for i in range(num_slices):
        position = (h1 + i * h2) % m + base
        if not (bits[position >> 3] >> (position & 7)) & 1:
            return False
        base += m
    return True
