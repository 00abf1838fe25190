"""`exposure-index build --private`: OPRF outputs of every record key, by bucket.

Blocks of the dumps are evaluated in worker processes; the parent spills (bucket,
value) pairs to files by bucket range, then sorts one range at a time, so memory stays
bounded (docs/private-lookups.md). Spill files hold OPRF outputs, never identifiers.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from indexer.build.dumps import DumpLayout, detect_layout, iter_blocks, parse_block
from indexer.build.executor import bounded_map, worker_pool
from indexer.build.sources import load_sources
from indexer.core.records import record_keys
from indexer.index.manifest import checksum_file
from indexer.private import oprf
from indexer.private.params import (
    DEFAULT_OUTPUT_BYTES,
    ENTRIES_FILE,
    MAX_AUTO_BITS,
    MAX_BUCKET_BITS,
    MIN_OUTPUT_BYTES,
    MODE,
    OFFSETS_FILE,
    PRIVATE_DIR,
    STRONG_KEY_SPACE,
    bucket_size_for,
    default_bucket_bits,
)

_SPILL_FILE_BITS: Final = 8



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
        "bucket_size": bucket_size_for(max_bucket),
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
        executor = worker_pool(stack, workers, _init_worker, (oprf_key,))
        files = [stack.enter_context(path.open("ab")) for path in spills]
        bar = stack.enter_context(tqdm(
            total=total_bytes, disable=not progress, unit="B", unit_scale=True,
            desc="private (OPRF)", file=sys.stderr,
        ))
        width = 4 + output_bytes
        for layout in layouts:
            blocks = iter_blocks(layout, block_size)
            tasks = ((block, layout, spill_bits, output_bytes) for block in blocks)
            for payload, counts, n_rows, n_keys, size in bounded_map(
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


