"""The private part of the index (DESIGN §7): OPRF outputs grouped by public bucket.

A private lookup lets a caller learn whether an identity is in the breach while the
service sees only a short bucket number and a blinded group element. For that the
index holds, for every record's strong key and weak keys (the same canonical keys as
the fingerprints, from `records.record_keys`), the first `output_bytes` bytes of
the RFC 9497 OPRF output under a secret OPRF key, grouped by the public bucket of
`oprf.bucket_of`:

    private/entries.bin   entries sorted by (bucket, value), `output_bytes` wide
    private/offsets.bin   uint64 little-endian, 2**bucket_bits + 1 of them (CSR):
                          bucket b holds entries[offsets[b]:offsets[b + 1]]

and the manifest gains a `private` section (suite, mode, bucket_bits, output_bytes,
bucket_size, key id of the OPRF key, file checksums).

Why an OPRF and not the pepper's fingerprints: a client holding a bucket's entries
can test them only through the service (one rate-limited evaluation per guess),
and the service never sees what it evaluates. The OPRF key is its own secret (its
own file, `--oprf-key-file` or $EXPOSURE_OPRF_KEY_FILE) and never enters the index:
the manifest carries only its key id, a hash of the public key.

Cost. An OPRF evaluation (hash to group + scalar multiplication + SHA-512) takes
60-110 µs of CPU, and a record has ~2.1 keys (a strong key and one weak key per last
name), so the 33 million records of the breach need ~70 million evaluations: about
1.7 CPU-hours (bench/private_bench.py measured ~5,400 records per CPU-second), i.e.
about an hour on 2 idle cores and several hours on a busy machine, against minutes for
the fingerprints. The private part is therefore an optional step of the build
(`exposure-index build --private`), spread over worker processes.

Bucket size and k-anonymity. Unless given, `bucket_bits` is chosen from the number of
distinct entries so that a bucket holds at most 48 on average (`default_bucket_bits`):
the 33 million synthetic records give ~58 million entries, hence 21 bits (2,097,152
buckets, ~28 entries each, a fixed answer of `bucket_size` ≈ 56 entries, ~450 bytes
raw). A bucket is what the service learns of a query, and it is shared by every
possible identity that hashes to it: ~10^11 valid NIRs times ~2^5 dates of birth is
~3×10^12 possible strong keys, so ~1.5 million possible (NIR, date of birth) pairs
per bucket at 21 bits, and more still for the name keys. (Against a register of the
real population, ~70 million people with ~2 keys each, a bucket holds ~65 real keys.)

Memory stays bounded whatever the input: blocks of the dumps are evaluated in worker
processes, and the parent spills (bucket, value) pairs to 256 files by bucket range,
then sorts one range at a time. The spill files hold OPRF outputs and bucket numbers
of `MAX_AUTO_BITS` bits, never an identifier, inside the partial generation.

Never log, print or put into an exception a canonical key, an entry of one person or
the OPRF key.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from . import oprf
from .dumps import DumpLayout, detect_layout, iter_blocks, parse_block
from .manifest import ManifestError, checksum_file, load_manifest
from .records import record_keys
from .secret_files import read_secret_file, resolve_secret_file
from .sources import load_sources

__all__ = [
    "DEFAULT_OUTPUT_BYTES",
    "ENTRIES_FILE",
    "MAX_AUTO_BITS",
    "MODE",
    "OFFSETS_FILE",
    "OPRF_KEY_ENV",
    "NoPrivatePart",
    "OprfKeyError",
    "PrivateBuild",
    "PrivateIndex",
    "PrivateIndexError",
    "PrivateParams",
    "build_private",
    "default_bucket_bits",
    "load_oprf_key",
    "resolve_oprf_key_file",
    "verify_private",
    "write_oprf_key",
]

OPRF_KEY_ENV: Final = "EXPOSURE_OPRF_KEY_FILE"
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
_SPILL_FILE_BITS: Final = 8
_HEX_KEY: Final = re.compile(rb"[0-9a-fA-F]{64}")

T = TypeVar("T")


class OprfKeyError(ValueError):
    """No OPRF key, an unreadable one or not a valid scalar. The message says what to do.

    A ValueError so that both CLIs report it as a usage error (exit 2).
    """


class PrivateIndexError(Exception):
    """A private part that cannot be served: missing, corrupt or inconsistent."""


class NoPrivatePart(PrivateIndexError):
    """The generation was built without `--private`."""


# ------------------------------------------------------------------------- OPRF key

_NEW_KEY_HINT: Final = (
    "create one with: python -c \"from indexer.private import write_oprf_key; "
    "write_oprf_key('oprf.key')\""
)


def resolve_oprf_key_file(flag: str | os.PathLike[str] | None) -> Path:
    """`--oprf-key-file F`, else `$EXPOSURE_OPRF_KEY_FILE`, else an OprfKeyError."""
    return resolve_secret_file(
        flag, OPRF_KEY_ENV,
        f"no OPRF key: pass --oprf-key-file FILE or set {OPRF_KEY_ENV} ({_NEW_KEY_HINT})",
        OprfKeyError,
    )


def load_oprf_key(path: Path) -> bytes:
    """The OPRF secret key: 32 raw bytes or 64 hex digits, a canonical non-zero scalar."""
    raw = read_secret_file(path, "OPRF key file", OprfKeyError)
    stripped = raw.strip()
    if _HEX_KEY.fullmatch(stripped):
        key = bytes.fromhex(stripped.decode("ascii"))
    elif len(raw) == oprf.SCALAR_BYTES:
        key = raw
    else:
        raise OprfKeyError(
            f"the OPRF key file {path} holds {len(raw)} bytes; it needs 32 raw bytes or "
            f"64 hex digits ({_NEW_KEY_HINT})"
        )
    try:
        key = oprf.load_private_key(key)
    except oprf.OprfError:
        # from None: the OprfError says nothing more, and the key must not be chained.
        raise OprfKeyError(
            f"the OPRF key file {path} is not a ristretto255 scalar (32 bytes little-endian, "
            f"below the group order, not zero): random bytes are not; {_NEW_KEY_HINT}"
        ) from None
    return key


def write_oprf_key(path: str | os.PathLike[str]) -> str:
    """Write a fresh OPRF key as 64 hex digits to a new file (mode 0600); its key id."""
    key = oprf.generate_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        stream.write(key.hex() + "\n")
    return oprf.key_id(key)


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


def _bucket_size(max_entries: int) -> int:
    # Rounded up to a multiple of 8 so that the fixed answer size says little about
    # the fullest bucket; never 0, so that every answer holds something to compare.
    return max(8, -(-max_entries // 8) * 8)


# --------------------------------------------------------------------------- build


@dataclass(frozen=True, slots=True)
class PrivateBuild:
    """The `--private` options of a build (for `build.BuildOptions`)."""

    oprf_key: bytes = b""
    bucket_bits: int | None = None
    output_bytes: int = DEFAULT_OUTPUT_BYTES

    def __repr__(self) -> str:
        # The key must never reach a log or a traceback through a repr.
        return f"PrivateBuild(bucket_bits={self.bucket_bits}, output_bytes={self.output_bytes})"


_worker_key: bytes | None = None


def _init_worker(oprf_key: bytes | None) -> None:
    global _worker_key
    _worker_key = oprf_key


def _evaluate_block(
    block: bytes, layout: DumpLayout, spill_bits: int, output_bytes: int
) -> tuple[bytes, list[int], int, int, int]:
    """Spill rows of one block by spill file: (payload, per-file counts, rows, keys, size).

    A spill row is the spill bucket (uint32 big-endian, so that rows sort by bucket
    as bytes) followed by the truncated OPRF output.
    """
    key = _worker_key
    assert key is not None, "worker not initialised"
    buckets: list[int] = []
    values: list[bytes] = []
    rows = 0
    for row in parse_block(block, layout):
        rows += 1
        if row is None:
            continue
        for canonical in record_keys(row)[0]:
            buckets.append(oprf.bucket_of(canonical, spill_bits))
            values.append(oprf.evaluate(key, canonical.encode("utf-8"))[:output_bytes])
    n_files = 1 << min(_SPILL_FILE_BITS, spill_bits)
    width = 4 + output_bytes
    if not buckets:
        return b"", [0] * n_files, rows, 0, len(block)
    spill = np.empty((len(buckets), width), dtype=np.uint8)
    bucket_array = np.array(buckets, dtype=np.uint32)
    spill[:, :4] = bucket_array.astype(">u4").view(np.uint8).reshape(-1, 4)
    spill[:, 4:] = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, output_bytes)
    files = bucket_array >> max(0, spill_bits - _SPILL_FILE_BITS)
    order = np.argsort(files, kind="stable")
    counts = np.bincount(files, minlength=n_files)
    return spill[order].tobytes(), [int(c) for c in counts], rows, len(buckets), len(block)


class _Inline:
    """`workers=1`: evaluate in this process, same code path."""

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args))
        return future


def _bounded(
    executor: ProcessPoolExecutor | _Inline, fn: Callable[..., T],
    tasks: Iterable[tuple[Any, ...]], window: int,
) -> Iterator[T]:
    """Ordered map keeping at most `window` tasks in flight: blocks are 4 MiB each."""
    pending: list[Future[T]] = []
    for task in tasks:
        pending.append(executor.submit(fn, *task))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def build_private(
    sources_toml: Path,
    generation_dir: Path,
    oprf_key: bytes,
    *,
    bucket_bits: int | None = None,
    output_bytes: int = DEFAULT_OUTPUT_BYTES,
    workers: int = 0,
    progress: bool = False,
    block_size: int = 4 << 20,
) -> dict[str, Any]:
    """Write `private/` into a (partial) generation; the manifest's `private` section.

    `bucket_bits=None` chooses it from the number of distinct entries. `workers=0`
    means one process per core. The caller puts the returned section into the
    manifest (key `private`) before publishing the generation. Memory is one spill
    range at a time, except that `bucket_bits` below 8 sorts several ranges together
    (buckets that coarse are only for small test indexes).
    """
    oprf_key = oprf.load_private_key(oprf_key)
    if bucket_bits is not None and not 0 <= bucket_bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket_bits must be between 0 and {MAX_BUCKET_BITS}")
    if not MIN_OUTPUT_BYTES <= output_bytes <= oprf.OUTPUT_BYTES:
        raise ValueError(
            f"output_bytes must be between {MIN_OUTPUT_BYTES} and {oprf.OUTPUT_BYTES}"
        )
    started = time.monotonic()
    layouts = [detect_layout(source) for source in load_sources(sources_toml)]
    spill_bits = MAX_AUTO_BITS if bucket_bits is None else bucket_bits
    private_dir = generation_dir / PRIVATE_DIR
    spill_dir = private_dir / "spill"
    spill_dir.mkdir(parents=True, exist_ok=True)
    n_files = 1 << min(_SPILL_FILE_BITS, spill_bits)
    spills = [spill_dir / f"{i:03d}.bin" for i in range(n_files)]
    workers = workers or os.cpu_count() or 1
    rows, keys = _evaluate_pass(
        layouts, spills, oprf_key, spill_bits, output_bytes, workers, progress, block_size
    )
    width = 4 + output_bytes
    distinct = sum(_dedupe_spill(path, width) for path in spills)
    bits = default_bucket_bits(distinct) if bucket_bits is None else bucket_bits
    counts = _write_entries(generation_dir, spills, spill_bits, bits, output_bytes)
    spill_dir.rmdir()
    offsets = np.zeros(len(counts) + 1, dtype="<u8")
    np.cumsum(counts, out=offsets[1:])
    (generation_dir / OFFSETS_FILE).write_bytes(offsets.tobytes())
    max_bucket = int(counts.max()) if len(counts) else 0
    return {
        "suite": oprf.SUITE,
        "mode": MODE,
        "key_id": oprf.key_id(oprf_key),
        "bucket_bits": bits,
        "output_bytes": output_bytes,
        "bucket_size": _bucket_size(max_bucket),
        "bucket_rule": "SHA-256('exposure-bucket-v1|' + input)[:4] big-endian "
        ">> (32 - bucket_bits)",
        "rows": rows,
        "keys": keys,
        "entries": int(offsets[-1]),
        "max_bucket_entries": max_bucket,
        "strong_keys_per_bucket": STRONG_KEY_SPACE >> bits,
        "seconds": round(time.monotonic() - started, 1),
        "files": {
            name: {"bytes": (generation_dir / name).stat().st_size,
                   "xxh3_64": checksum_file(generation_dir / name)}
            for name in (ENTRIES_FILE, OFFSETS_FILE)
        },
    }


def _evaluate_pass(
    layouts: list[DumpLayout], spills: list[Path], oprf_key: bytes, spill_bits: int,
    output_bytes: int, workers: int, progress: bool, block_size: int,
) -> tuple[int, int]:
    total_bytes = sum(layout.path.stat().st_size - layout.data_offset for layout in layouts)
    rows = keys = 0
    with ExitStack() as stack:
        executor: ProcessPoolExecutor | _Inline
        if workers == 1:
            _init_worker(oprf_key)
            executor = _Inline()
        else:
            executor = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker, initargs=(oprf_key,),
            ))
        files = [stack.enter_context(path.open("ab")) for path in spills]
        bar = stack.enter_context(tqdm(
            total=total_bytes, disable=not progress, unit="B", unit_scale=True,
            desc="private (OPRF)", file=sys.stderr,
        ))
        width = 4 + output_bytes
        for layout in layouts:
            blocks = iter_blocks(layout, block_size)
            tasks = ((block, layout, spill_bits, output_bytes) for block in blocks)
            for payload, counts, n_rows, n_keys, size in _bounded(
                executor, _evaluate_block, tasks, window=workers * 2
            ):
                offset = 0
                for index, count in enumerate(counts):
                    if count:
                        end = offset + count * width
                        files[index].write(payload[offset:end])
                        offset = end
                rows += n_rows
                keys += n_keys
                bar.update(size)
        if workers == 1:
            _init_worker(None)  # do not keep the key in a module global longer than needed
    return rows, keys


def _dedupe_spill(path: Path, width: int) -> int:
    """Sort one spill file and drop duplicates (a person in both dumps); rows left."""
    rows = np.fromfile(path, dtype=np.dtype((np.void, width)))
    unique = np.unique(rows)
    unique.tofile(path)
    return len(unique)


def _write_entries(
    generation_dir: Path, spills: list[Path], spill_bits: int, bits: int, output_bytes: int
) -> npt.NDArray[np.uint64]:
    """Coarsen spill buckets to `bits`, sort each bucket range, append; counts per bucket."""
    width = 4 + output_bytes
    file_bits = min(_SPILL_FILE_BITS, spill_bits)
    shift = spill_bits - bits
    group = 1 << max(0, file_bits - bits)  # spill files per bucket range
    counts = np.zeros(1 << bits, dtype=np.uint64)
    with (generation_dir / ENTRIES_FILE).open("wb") as out:
        for first in range(0, len(spills), group):
            paths = spills[first : first + group]
            lo = (first << (spill_bits - file_bits)) >> shift
            hi = ((first + group) << (spill_bits - file_bits)) >> shift
            parts = [np.fromfile(path, dtype=np.uint8).reshape(-1, width) for path in paths]
            rows = np.concatenate(parts) if parts else np.empty((0, width), dtype=np.uint8)
            for path in paths:
                path.unlink()
            if not len(rows):
                continue
            coarse = rows[:, :4].copy().view(">u4").ravel() >> np.uint32(shift)
            rows[:, :4] = coarse.astype(">u4").view(np.uint8).reshape(-1, 4)
            ordered = np.unique(np.ascontiguousarray(rows).view(np.dtype((np.void, width))))
            ordered_rows = ordered.view(np.uint8).reshape(-1, width)
            buckets = ordered_rows[:, :4].copy().view(">u4").ravel().astype(np.int64)
            counts[lo:hi] = np.bincount(buckets - lo, minlength=hi - lo)
            out.write(np.ascontiguousarray(ordered_rows[:, 4:]).tobytes())
    return counts


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
