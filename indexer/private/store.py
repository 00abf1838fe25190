"""The private part of a generation, read: memory-mapped buckets of OPRF entries.

Opens and verifies `private/entries.bin` and `private/offsets.bin` (format in
docs/private-lookups.md). Never log an entry of one person or the OPRF key.
"""

from __future__ import annotations

import mmap
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from indexer.index.manifest import ManifestError, checksum_file, load_manifest
from indexer.private import oprf
from indexer.private.params import (
    ENTRIES_FILE,
    MAX_BUCKET_BITS,
    MIN_OUTPUT_BYTES,
    MODE,
    OFFSETS_FILE,
    PrivateParams,
)


class PrivateIndexError(Exception):
    """A private part that cannot be served: missing, corrupt or inconsistent."""


class NoPrivatePart(PrivateIndexError):
    """The generation was built without `--private`."""



# -------------------------------------------------------------------------- reader


class PrivateIndex:
    """The private part of one generation, memory-mapped. Immutable.

    `entries(bucket)` is what the service answers for a bucket: its stored entries
    plus random values of the same width, `bucket_size` in all, sorted, so that every
    answer has the same size and the padding cannot be told apart by position.
    """

    def __init__(self, generation: Path, *, verify: bool = True) -> None:
        try:
            manifest = load_manifest(generation)
        except ManifestError as exc:
            raise PrivateIndexError(str(exc)) from exc
        section = manifest.get("private")
        if section is None:
            raise NoPrivatePart(
                f"the generation {generation.name} has no private part "
                "(build it with: exposure-index build --private --oprf-key-file F)"
            )
        faults = _check_section(generation, section, checksums=verify)
        if faults:
            raise PrivateIndexError(
                f"the private part of {generation.name} is unusable: {'; '.join(faults[:3])}"
            )
        self.path = generation
        self.section: dict[str, Any] = section
        self.params = PrivateParams(
            bucket_bits=int(section["bucket_bits"]),
            output_bytes=int(section["output_bytes"]),
            bucket_size=int(section["bucket_size"]),
            key_id=str(section["key_id"]),
        )
        self._maps: list[mmap.mmap] = []
        self._entries = self._map(ENTRIES_FILE)
        self._offsets = np.frombuffer(self._map(OFFSETS_FILE), dtype="<u8")

    def _map(self, name: str) -> memoryview | bytes:
        path = self.path / name
        if path.stat().st_size == 0:
            return b""  # mmap refuses empty files
        with path.open("rb") as stream:
            mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(mapped)
        return memoryview(mapped)

    @property
    def bucket_count(self) -> int:
        return self.params.bucket_count

    def stored(self, bucket: int) -> list[bytes]:
        """The real entries of `bucket`, sorted (for verification and tests)."""
        if not 0 <= bucket < self.bucket_count:
            raise IndexError("bucket out of range")
        width = self.params.output_bytes
        start, end = int(self._offsets[bucket]) * width, int(self._offsets[bucket + 1]) * width
        raw = bytes(self._entries[start:end])
        return [raw[i : i + width] for i in range(0, len(raw), width)]

    def entries(self, bucket: int) -> list[bytes]:
        """`bucket_size` entries: the stored ones and fresh random padding, sorted."""
        real = self.stored(bucket)
        width = self.params.output_bytes
        padding = secrets.token_bytes((self.params.bucket_size - len(real)) * width)
        real.extend(padding[i : i + width] for i in range(0, len(padding), width))
        real.sort()
        return real

    def close(self) -> None:
        self._entries = b""
        self._offsets = np.empty(0, dtype="<u8")
        for mapped in self._maps:
            try:
                mapped.close()
            except BufferError:
                pass  # a view is still alive (a request in flight): freed with it
        self._maps = []


def _check_section(generation: Path, section: Any, *, checksums: bool) -> list[str]:
    """Faults of a private section and its files (cheap structure; checksums if asked)."""
    if not isinstance(section, dict):
        return ["the manifest's private section is not an object"]
    try:
        if section["suite"] != oprf.SUITE or section["mode"] != MODE:
            return [f"suite {section['suite']!r} mode {section['mode']!r}, not {oprf.SUITE} oprf"]
        bits, width = int(section["bucket_bits"]), int(section["output_bytes"])
        size = int(section["bucket_size"])
        files = section["files"]
        str(section["key_id"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"the manifest's private section is malformed ({type(exc).__name__})"]
    if not 0 <= bits <= MAX_BUCKET_BITS or not MIN_OUTPUT_BYTES <= width <= oprf.OUTPUT_BYTES:
        return ["bucket_bits or output_bytes out of range"]
    faults: list[str] = []
    for name in (ENTRIES_FILE, OFFSETS_FILE):
        entry = files.get(name) if isinstance(files, dict) else None
        path = generation / name
        if entry is None:
            faults.append(f"{name}: not in the manifest")
        elif not path.is_file():
            faults.append(f"{name}: missing")
        elif path.stat().st_size != int(entry["bytes"]):
            faults.append(f"{name}: size {path.stat().st_size}, manifest says {entry['bytes']}")
        elif checksums and checksum_file(path) != entry["xxh3_64"]:
            faults.append(f"{name}: checksum mismatch (corrupted)")
    if faults:
        return faults
    offsets = np.fromfile(generation / OFFSETS_FILE, dtype="<u8")
    entries_bytes = (generation / ENTRIES_FILE).stat().st_size
    if len(offsets) != (1 << bits) + 1:
        return [f"{OFFSETS_FILE}: {len(offsets)} offsets for {1 << bits} buckets"]
    counts = np.diff(offsets.astype(np.int64))
    if offsets[0] != 0 or bool((counts < 0).any()):
        faults.append(f"{OFFSETS_FILE}: offsets do not start at 0 and grow")
    elif int(offsets[-1]) * width != entries_bytes:
        faults.append(f"{ENTRIES_FILE}: {entries_bytes} bytes, offsets say {offsets[-1]} entries")
    elif len(counts) and int(counts.max()) > size:
        faults.append("a bucket holds more entries than bucket_size")
    return faults


def verify_private(generation: Path, *, deep: bool = True) -> list[str]:
    """Faults of a generation's private part (empty when sound or absent).

    Checks sizes, checksums, the offsets, and (deep) that every bucket is sorted,
    unique and holds only entries whose stored order is consistent.
    """
    try:
        section = load_manifest(generation).get("private")
    except ManifestError as exc:
        return [str(exc)]
    if section is None:
        return []
    faults = _check_section(generation, section, checksums=True)
    if faults or not deep:
        return faults
    width = int(section["output_bytes"])
    offsets = np.fromfile(generation / OFFSETS_FILE, dtype="<u8").astype(np.int64)
    rows = np.fromfile(generation / ENTRIES_FILE, dtype=np.uint8).reshape(-1, width)
    if len(rows) > 1:
        # Each entry must be greater (as bytes) than the one before it, except across a
        # bucket boundary: compare each pair at its first differing byte.
        before, after = rows[:-1], rows[1:]
        differs = before != after
        first = differs.argmax(axis=1)
        pairs = np.arange(len(before))
        increasing = differs.any(axis=1) & (after[pairs, first] > before[pairs, first])
        boundary = np.zeros(len(before), dtype=bool)
        starts = offsets[1:-1]
        boundary[starts[(starts > 0) & (starts < len(rows))] - 1] = True
        if not bool((increasing | boundary).all()):
            faults.append(f"{ENTRIES_FILE}: a bucket is not sorted and unique")
    return faults


def stored_entry(oprf_key: bytes, canonical: str, output_bytes: int) -> bytes:
    """The entry of one canonical key, as the build computes it (for tests and tools)."""
    return oprf.evaluate(oprf_key, canonical.encode("utf-8"))[:output_bytes]
