"""The index builder: breach dumps in, a published generation out.

Two passes, memory bounded whatever the input size:
1. *fingerprint*: each dump is cut into blocks of whole rows; worker processes parse,
   normalise and fingerprint them; the parent appends (fingerprint, source, classes)
   triples to one spill file per shard. Spill files hold only keyed fingerprints,
   never identifiers, and live inside the partial generation directory.
2. *shard*: each shard's spill is sorted, merged (a person in a source twice, or in
   two sources, becomes one fingerprint with one meta row) and written as
   `NNN.fp` (sorted uint64), `NNN.meta` (one byte of class bits per source) and
   `NNN.bloom` (pybloom-live format). Memory is one shard at a time per worker.

Then the manifest is written and the generation published atomically. Nothing here
logs or reports row content: faults are counted per reason.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from .bloom import FingerprintBloom
from .dumps import DumpLayout, detect_layout, iter_blocks, parse_block
from .fingerprint import FINGERPRINT_ALGORITHM, Fingerprinter
from .generation import new_partial_generation, publish, remove_partials, shard_file
from .manifest import FORMAT, checksum_bytes, write_manifest
from .records import DATA_CLASSES, record_keys
from .shards import shard_of
from .sources import Source, load_sources

__all__ = ["BuildOptions", "BuildReport", "build_index"]

# (fingerprint, source index << 8 | class bits): 10 bytes per key in the spill.
SPILL_DTYPE: Final = np.dtype([("fp", "<u8"), ("tag", "<u2")])
DEFAULT_SHARDS: Final = 64
DEFAULT_ERROR_RATE: Final = 0.01


@dataclass(frozen=True, slots=True)
class BuildOptions:
    shards: int = DEFAULT_SHARDS
    workers: int = 0  # 0: one per core
    bloom_error_rate: float = DEFAULT_ERROR_RATE
    block_size: int = 4 << 20
    progress: bool = False
    keep_generations: int = 3

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(slots=True)
class SourceCounts:
    rows: int = 0
    indexed: int = 0  # rows with at least one valid key
    keys: int = 0
    bad_rows: int = 0  # rows with at least one fault
    faults: Counter[str] = field(default_factory=Counter)
    classes: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(DATA_CLASSES), dtype=np.int64)
    )


@dataclass(frozen=True, slots=True)
class BuildReport:
    generation: Path
    manifest: dict[str, Any]
    seconds: float

    @property
    def rows(self) -> int:
        return int(self.manifest["totals"]["rows"])


# --- pass 1: fingerprint blocks (runs in worker processes) -----------------------------

_fingerprinter: Fingerprinter | None = None


def _init_worker(pepper: bytes) -> None:
    global _fingerprinter
    _fingerprinter = Fingerprinter(pepper)


BlockResult = tuple[
    bytes, npt.NDArray[np.int64], dict[str, int], int, int, int, int, int, npt.NDArray[np.int64]
]


def _fingerprint_block(
    block: bytes, layout: DumpLayout, source_index: int, shards: int
) -> BlockResult:
    """Spill entries of one block, grouped by shard, plus its counts."""
    assert _fingerprinter is not None, "worker not initialised"
    keys: list[str] = []
    tags: list[int] = []
    row_classes: list[int] = []
    faults: Counter[str] = Counter()
    rows = indexed = bad = 0
    source_tag = source_index << 8
    for row in parse_block(block, layout):
        rows += 1
        if row is None:
            faults["malformed_row"] += 1
            bad += 1
            continue
        row_keys, classes, row_faults = record_keys(row)
        row_classes.append(classes)
        if row_faults:
            bad += 1
            faults.update(row_faults)
        if row_keys:
            indexed += 1
            keys.extend(row_keys)
            tags.extend([source_tag | classes] * len(row_keys))
    entries = np.empty(len(keys), dtype=SPILL_DTYPE)
    entries["fp"] = _fingerprinter.many(keys)
    entries["tag"] = tags
    shard = shard_of(entries["fp"], shards)
    order = np.argsort(shard, kind="stable")
    counts = np.bincount(shard, minlength=shards).astype(np.int64)
    payload = entries[order].tobytes()
    # How many rows expose each data class (for /v1/sources): bit counts of the rows.
    bits = np.array(row_classes, dtype=np.uint8)
    class_counts = np.array(
        [int(np.count_nonzero(bits & (1 << i))) for i in range(len(DATA_CLASSES))],
        dtype=np.int64,
    )
    return payload, counts, dict(faults), rows, indexed, bad, len(keys), len(block), class_counts


# --- pass 2: one shard (runs in worker processes) --------------------------------------


def _build_shard(
    generation: Path, shard: int, n_sources: int, error_rate: float
) -> tuple[int, int, dict[str, dict[str, Any]]]:
    spill_path = generation / "spill" / f"{shard:03d}.bin"
    entries = np.fromfile(spill_path, dtype=SPILL_DTYPE) if spill_path.exists() else None
    if entries is None or len(entries) == 0:
        unique = np.empty(0, dtype=np.uint64)
    else:
        order = np.argsort(entries["fp"], kind="stable")
        entries = entries[order]
        fps = entries["fp"]
        unique = fps[np.concatenate(([True], fps[1:] != fps[:-1]))]
    meta = np.zeros((len(unique), n_sources), dtype=np.uint8)
    if entries is not None and len(entries):
        fps, tags = entries["fp"], entries["tag"]
        sources, classes = (tags >> 8).astype(np.intp), (tags & 0xFF).astype(np.uint8)
        for source in range(n_sources):
            mask = sources == source
            if not mask.any():
                continue
            sel_fp, sel_cls = fps[mask], classes[mask]
            starts = np.flatnonzero(np.concatenate(([True], sel_fp[1:] != sel_fp[:-1])))
            merged = np.bitwise_or.reduceat(sel_cls, starts)
            meta[np.searchsorted(unique, sel_fp[starts]), source] = merged
    bloom = FingerprintBloom.build(unique, error_rate)
    outputs: dict[str, bytes] = {
        shard_file(shard, "fp"): unique.astype("<u8").tobytes(),
        shard_file(shard, "meta"): meta.tobytes(),
        shard_file(shard, "bloom"): _bloom_bytes(bloom),
    }
    files: dict[str, dict[str, Any]] = {}
    for name, payload in outputs.items():
        (generation / name).write_bytes(payload)
        files[name] = {"bytes": len(payload), "xxh3_64": checksum_bytes(payload)}
    if spill_path.exists():
        spill_path.unlink()
    return shard, len(unique), files


def _bloom_bytes(bloom: FingerprintBloom) -> bytes:
    import io

    buffer = io.BytesIO()
    bloom.tofile(buffer)
    return buffer.getvalue()


# --- orchestration ------------------------------------------------------------------------

T = TypeVar("T")


class _InlineExecutor:
    """`workers=1`: run in this process, same code path, easier to profile."""

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        return map(fn, *iterables)


def _bounded_map(
    executor: Executor | _InlineExecutor, fn: Callable[..., T], tasks: Iterable[tuple[Any, ...]],
    window: int,
) -> Iterator[T]:
    """Ordered map that keeps at most `window` tasks in flight (bounded memory)."""
    if isinstance(executor, _InlineExecutor):
        for task in tasks:
            yield fn(*task)
        return
    pending = []
    for task in tasks:
        pending.append(executor.submit(fn, *task))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def build_index(
    sources_toml: Path, index_dir: Path, pepper: bytes, options: BuildOptions | None = None,
    *, log: IO[str] | None = None,
) -> BuildReport:
    """Build and publish a new generation; raise before touching `index_dir` on bad input."""
    options = options or BuildOptions()
    if not 1 <= options.shards <= 4096:
        raise ValueError("--shards must be between 1 and 4096")
    if not 0 < options.bloom_error_rate < 0.5:
        raise ValueError("--bloom-error-rate must be between 0 and 0.5")
    started = time.monotonic()
    sources = load_sources(sources_toml)
    layouts = [detect_layout(source) for source in sources]
    fingerprinter = Fingerprinter(pepper)
    index_dir.mkdir(parents=True, exist_ok=True)
    remove_partials(index_dir)
    generation = new_partial_generation(index_dir)
    (generation / "spill").mkdir()
    counts = [SourceCounts() for _ in sources]
    workers = options.worker_count()
    with ExitStack() as stack:
        executor: Executor | _InlineExecutor
        if workers == 1:
            _init_worker(pepper)
            executor = _InlineExecutor()
        else:
            executor = stack.enter_context(
                ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("fork"),
                    initializer=_init_worker, initargs=(pepper,),
                )
            )
        _fingerprint_pass(executor, generation, layouts, counts, options, workers)
        shard_results = list(
            _progress(
                _bounded_map(
                    executor, _build_shard,
                    ((generation, shard, len(sources), options.bloom_error_rate)
                     for shard in range(options.shards)),
                    window=workers * 2,
                ),
                options.progress, total=options.shards, desc="shards", unit="shard",
            )
        )
    (generation / "spill").rmdir()
    manifest = _manifest(generation, sources, counts, shard_results, fingerprinter, options)
    write_manifest(generation, manifest)
    final = publish(generation, keep=options.keep_generations)
    manifest["generation"] = final.name
    return BuildReport(final, manifest, time.monotonic() - started)


def _fingerprint_pass(
    executor: Executor | _InlineExecutor, generation: Path, layouts: Sequence[DumpLayout],
    counts: list[SourceCounts], options: BuildOptions, workers: int,
) -> None:
    total_bytes = sum(layout.path.stat().st_size - layout.data_offset for layout in layouts)
    spill_dir = generation / "spill"
    with ExitStack() as stack:
        spills = [
            stack.enter_context((spill_dir / f"{shard:03d}.bin").open("ab"))
            for shard in range(options.shards)
        ]
        bar = stack.enter_context(
            tqdm(total=total_bytes, disable=not options.progress, unit="B", unit_scale=True,
                 desc="fingerprint", file=sys.stderr)
        )
        for index, layout in enumerate(layouts):
            tasks = (
                (block, layout, index, options.shards)
                for block in iter_blocks(layout, options.block_size)
            )
            for result in _bounded_map(executor, _fingerprint_block, tasks, window=workers * 3):
                (payload, shard_counts, faults, rows, indexed, bad, n_keys, size,
                 class_counts) = result
                offset = 0
                for shard, count in enumerate(shard_counts.tolist()):
                    if count:
                        end = offset + count * SPILL_DTYPE.itemsize
                        spills[shard].write(payload[offset:end])
                        offset = end
                source = counts[index]
                source.rows += rows
                source.indexed += indexed
                source.bad_rows += bad
                source.keys += n_keys
                source.faults.update(faults)
                source.classes += class_counts
                bar.update(size)


def _progress(items: Iterable[T], enabled: bool, **kwargs: Any) -> Iterable[T]:
    if not enabled:
        return items
    return tqdm(items, file=sys.stderr, **kwargs)


def _manifest(
    generation: Path, sources: Sequence[Source], counts: Sequence[SourceCounts],
    shard_results: Sequence[tuple[int, int, dict[str, dict[str, Any]]]],
    fingerprinter: Fingerprinter, options: BuildOptions,
) -> dict[str, Any]:
    ordered = sorted(shard_results)
    files: dict[str, dict[str, Any]] = {}
    for _, _, shard_files in ordered:
        files.update(shard_files)
    per_shard = [n for _, n, _ in ordered]
    return {
        "format": FORMAT,
        "generation": generation.name.removesuffix(".partial"),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_id": fingerprinter.key_id,
        "fingerprint": {"algorithm": FINGERPRINT_ALGORITHM, "bytes": 8, "byte_order": "little"},
        "shards": {
            "count": options.shards,
            "rule": "((fp >> 32) * count) >> 32",
            "fingerprints": per_shard,
        },
        "bloom": {
            "library": "pybloom-live",
            "error_rate": options.bloom_error_rate,
            "hashing": "double hashing of the fingerprint (see indexer/bloom.py)",
        },
        "data_classes": list(DATA_CLASSES),
        "sources": [
            {
                "id": source.id,
                "title": source.title,
                "breach_date": source.breach_date,
                "description": source.description,
                "rows": count.rows,
                "records_indexed": count.indexed,
                "keys": count.keys,
                "bad_rows": count.bad_rows,
                "faults": dict(sorted(count.faults.items())),
                "classes": dict(zip(DATA_CLASSES, count.classes.tolist(), strict=True)),
            }
            for source, count in zip(sources, counts, strict=True)
        ],
        "totals": {
            "rows": sum(c.rows for c in counts),
            "bad_rows": sum(c.bad_rows for c in counts),
            "fingerprints": sum(per_shard),
        },
        "files": files,
    }
