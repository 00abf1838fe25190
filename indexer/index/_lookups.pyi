from collections.abc import Callable, Sequence
from typing import Any

import numpy.typing as npt

# What the C side reads as a contiguous buffer.
Buffer = bytes | bytearray | memoryview | npt.NDArray[Any]

class Exact:
    """The exact index's shards, mapped: Bloom filter, then binary search."""

    def __init__(
        self, shards: Sequence[tuple[Buffer, Buffer, Buffer, int, int]], n_sources: int
    ) -> None: ...
    def one(self, fp: int, /) -> bytes | None: ...
    def hits(self, fps: Buffer, /) -> tuple[bytes, bytes]: ...

class Tier:
    """The similar tier's shards, mapped: a bucket, then binary search."""

    def __init__(
        self, shards: Sequence[tuple[Buffer, Buffer, Buffer, int, int]], n_sources: int,
        shard_count: int,
    ) -> None: ...
    def one(self, fp: int, /) -> bytes | None: ...
    def hits(self, fps: Buffer, /) -> tuple[bytes, bytes]: ...

class Similar:
    """The lookups of a similar query's probes, per probe kind."""

    def __init__(
        self, exact: Exact, tier: Tier, exact_tags: bytes,
        places: Sequence[Sequence[tuple[int, int]]],
    ) -> None: ...
    def check(
        self, queries: Sequence[Sequence[str]], digests: Callable[[Sequence[str]], bytes],
        similar: Callable[[Sequence[str]], tuple[bytes, bytes]], /,
    ) -> list[bytes]: ...
