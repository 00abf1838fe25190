"""The public parameters of private lookups: bucket bits, entry width, bucket size.

What a client needs (GET /v1/private/params) and what the build chooses; the reasoning
behind the sizes is in docs/private-lookups.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from indexer.private import oprf

MODE: Final = "oprf"
PRIVATE_DIR: Final = "private"
ENTRIES_FILE: Final = "private/entries.bin"
OFFSETS_FILE: Final = "private/offsets.bin"

# 8 bytes = 64 bits of the OPRF output: a query tests its value against one bucket's
# `bucket_size` (~56) entries, so a person not in the breach is falsely found with
# probability ~56 / 2^64 ~ 3e-18 per key; 64 bits also keep answers small.
DEFAULT_OUTPUT_BYTES: Final = 8
MIN_OUTPUT_BYTES: Final = 4
# A bucket should hold at most this many entries on average: big enough that a bucket
# covers millions of possible identities, small enough that an answer stays < 1 KiB.
TARGET_MEAN_ENTRIES: Final = 48
# Auto-chosen buckets never go finer than 2^24 (16 M buckets, offsets 128 MiB); spill
# files carry bucket numbers at this resolution, coarsened once the count is known.
MAX_AUTO_BITS: Final = 24
MAX_BUCKET_BITS: Final = 28
# Possible strong keys, for the k-anonymity estimate of the manifest: ~10^11 valid
# NIRs times ~2^5 days of birth (the NIR already fixes year and month).
STRONG_KEY_SPACE: Final = 10**11 * 2**5


# -------------------------------------------------------------------------- params


@dataclass(frozen=True, slots=True)
class PrivateParams:
    """What a client needs to run a private lookup: the body of GET /v1/private/params."""

    bucket_bits: int
    output_bytes: int
    bucket_size: int
    key_id: str
    suite: str = oprf.SUITE
    mode: str = MODE

    @property
    def bucket_count(self) -> int:
        return 1 << self.bucket_bits

    def as_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "mode": self.mode,
            "bucket_bits": self.bucket_bits,
            "output_bytes": self.output_bytes,
            "bucket_size": self.bucket_size,
            "key_id": self.key_id,
        }


def default_bucket_bits(entries: int) -> int:
    """The fewest bucket bits that keep the mean bucket at most TARGET_MEAN_ENTRIES."""
    bits = 0
    while bits < MAX_AUTO_BITS and entries > TARGET_MEAN_ENTRIES << bits:
        bits += 1
    return bits


def bucket_size_for(max_entries: int) -> int:
    # Rounded up to a multiple of 8 so that the fixed answer size says little about
    # the fullest bucket; never 0, so that every answer holds something to compare.
    return max(8, -(-max_entries // 8) * 8)


