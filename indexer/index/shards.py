"""Which shard a fingerprint lives in.

The shard is taken from the high 32 bits by multiply-shift (Lemire's fast range):
uniform for any shard count, no modulo bias, and monotone in the fingerprint, so
shard k holds one contiguous range of fingerprints and the shards concatenated are
globally sorted. The Bloom filter hashes use the low bits, independent of the shard.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["shard_of", "shard_of_one"]


def shard_of(fingerprints: npt.NDArray[np.uint64], shards: int) -> npt.NDArray[np.intp]:
    high = np.asarray(fingerprints, dtype=np.uint64) >> np.uint64(32)
    result: npt.NDArray[np.intp] = ((high * np.uint64(shards)) >> np.uint64(32)).astype(np.intp)
    return result


def shard_of_one(fingerprint: int, shards: int) -> int:
    return ((fingerprint >> 32) * shards) >> 32
