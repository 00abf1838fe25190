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

Then the manifest is written and the generation published atomically. One build at a
time per index directory (a lock the kernel drops if the builder dies); a build that
fails removes its partial generation, one that is killed leaves it to the next build,
and its workers die with it. Nothing here logs or reports row content: faults are
counted per reason.

Cost (1M synthetic rows, `--workers 1`, medians of 3 runs; docs/matching.md): ~24 CPU-s,
~24 µs a row (~37 before the similar tier's deletions went to `Fingerprinter.many` as
drops), of which (py-spy) `record_keys` ~45% (its similar-tier entries ~15%), the ~18
keyed BLAKE2b a row in C ~22% (~0.3 µs a key), parsing the CSV ~10%, the shard pass
~10%, the rest this module's loop and numpy.
`bench/build_bench.py` measures the whole build.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import gc
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from indexer.build.dumps import DumpLayout, detect_layout, iter_blocks, parse_block
from indexer.build.executor import InlineExecutor, bounded_map, worker_pool
from indexer.build.sources import Source, load_sources
from indexer.core.fingerprint import FINGERPRINT_ALGORITHM, Fingerprinter
from indexer.core.records import DATA_CLASSES, NAMESPACES, SimilarEntries, record_keys
from indexer.index.bloom import FingerprintBloom
from indexer.index.generation import new_partial_generation, publish, remove_partials, shard_file
from indexer.index.manifest import FORMAT, checksum_bytes, write_manifest
from indexer.index.shards import shard_of
from indexer.index.similar import similar_shard_files

if TYPE_CHECKING:  # the OPRF stack (ctypes loads libsodium) only when --private is used
    from indexer.build.private import PrivateBuild

__all__ = ["BuildLocked", "BuildOptions", "BuildReport", "build_index"]

# (fingerprint, source index << 8 | class bits): 10 bytes per key in the spill. The
# seven data classes leave bit 7 free: it marks an entry of the similar tier.
SPILL_DTYPE: Final = np.dtype([("fp", "<u8"), ("tag", "<u2")])
SIMILAR_TAG: Final = 0x80
CLASS_MASK: Final = 0x7F
DEFAULT_SHARDS: Final = 64
MAX_SOURCES: Final = 256
DEFAULT_ERROR_RATE: Final = 0.01


@dataclass(frozen=True, slots=True)
class BuildOptions:
    shards: int = DEFAULT_SHARDS
    workers: int = 0  # 0: one per core
    bloom_error_rate: float = DEFAULT_ERROR_RATE
    block_size: int = 4 << 20
    progress: bool = False
    keep_generations: int = 3
    private: PrivateBuild | None = None  # also build the private part (docs/design.md §7)

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

    def add(self, spilled: BlockSpill) -> None:
        """Count one fingerprinted block of this source (its payload is not read)."""
        self.rows += spilled.rows
        self.indexed += spilled.indexed
        self.bad_rows += spilled.bad_rows
        self.keys += spilled.keys
        self.faults.update(spilled.faults)
        self.classes += spilled.class_counts


@dataclass(frozen=True, slots=True)
class BuildReport:
    generation: Path
    manifest: dict[str, Any]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per build phase

    @property
    def rows(self) -> int:
        return int(self.manifest["totals"]["rows"])


# --- pass 1: fingerprint blocks (runs in worker processes) -----------------------------

_fingerprinter: Fingerprinter | None = None


def _init_worker(pepper: bytes) -> None:
    global _fingerprinter
    _fingerprinter = Fingerprinter(pepper)


class BlockSpill(NamedTuple):
    """What a worker sends back for one block: spill entries grouped by shard, counts."""

    source_index: int
    payload: bytes  # SPILL_DTYPE entries, shard 0's first
    per_shard: npt.NDArray[np.int64]
    faults: dict[str, int]
    rows: int
    indexed: int
    bad_rows: int
    keys: int
    block_bytes: int
    class_counts: npt.NDArray[np.int64]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a block's rows are processed.

    Every row allocates a few tuples and lists, so the collector would run every few
    hundred rows and walk the young objects for nothing: the row path creates no
    reference cycles (refcounting frees it all). Pausing it saves 0.5-0.8 µs of the
    ~9 µs a row costs.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fingerprint_block(
    block: bytes, layout: DumpLayout, source_index: int, shards: int
) -> BlockSpill:
    """`fingerprint_block` with the fingerprinter of this worker process."""
    assert _fingerprinter is not None, "worker not initialised"
    return fingerprint_block(block, layout, source_index, shards, _fingerprinter)


def fingerprint_block(
    block: bytes, layout: DumpLayout, source_index: int, shards: int,
    fingerprinter: Fingerprinter,
) -> BlockSpill:
    """Spill entries of one block, grouped by shard, plus its counts.

    Shared by both engines: the local one calls it in its worker processes, the Dask
    one (dask_build.py) on the cluster's workers.

    The row loop does only what must be done per row (parse, `record_keys`, three
    appends); tags, counts and the shard grouping are then computed by numpy for the
    whole block. Rows are streamed, not materialised first: a block's rows held at
    once cost more in cache misses than the loop saves.
    """
    keys: list[str] = []
    key_counts: list[int] = []
    row_classes: list[int] = []
    fault_lists: list[list[str]] = []
    similar = SimilarEntries()
    similar_keys = similar.keys
    similar_counts: list[int] = []
    add_keys, add_count, add_classes = keys.extend, key_counts.append, row_classes.append
    add_similar_count = similar_counts.append
    malformed = 0
    with _gc_paused():
        for row in parse_block(block, layout):
            if row is None:
                malformed += 1
                continue
            before = len(similar_keys)
            row_keys, classes, row_faults = record_keys(row, similar)
            add_keys(row_keys)
            add_count(len(row_keys))
            add_classes(classes)
            add_similar_count(len(similar_keys) - before)
            if row_faults:
                fault_lists.append(row_faults)
        exact = fingerprinter.many(keys)
        # The similar tier's entries, each under its namespace's mask; they travel in
        # the same spill, told apart by the SIMILAR_TAG bit of their tag.
        masks = np.array(fingerprinter.namespace_masks, dtype=np.uint64)
        tier = fingerprinter.many(similar.keys, similar.drops) ^ masks[similar.namespaces()]
        # Freed before the collector is back: it would otherwise walk these lists (~20
        # entries a row) at its first pass.
        del keys, similar, similar_keys
    fingerprints = np.concatenate([exact, tier])
    faults = Counter(chain.from_iterable(fault_lists))
    if malformed:
        faults["malformed_row"] += malformed
    counts_per_row = np.array(key_counts, dtype=np.intp)
    class_bits = np.array(row_classes, dtype=np.uint16)
    row_tags = class_bits | np.uint16(source_index << 8)
    tags = np.concatenate([
        np.repeat(row_tags, counts_per_row),
        np.repeat(row_tags | np.uint16(SIMILAR_TAG), np.array(similar_counts, dtype=np.intp)),
    ])
    # --shards is at most 4096: as uint16 the stable argsort is a radix sort, ~10x
    # faster than on intp.
    shard = shard_of(fingerprints, shards).astype(np.uint16)
    order = np.argsort(shard, kind="stable")
    # Each field gathered apart: three times faster than gathering 10-byte records.
    entries = np.empty(len(fingerprints), dtype=SPILL_DTYPE)
    entries["fp"] = fingerprints[order]
    entries["tag"] = tags[order]
    # How many rows expose each data class (for /v1/sources): bit counts of the rows.
    class_counts = np.array(
        [int(np.count_nonzero(class_bits & (1 << i))) for i in range(len(DATA_CLASSES))],
        dtype=np.int64,
    )
    return BlockSpill(
        source_index=source_index,
        payload=entries.tobytes(),
        per_shard=np.bincount(shard, minlength=shards).astype(np.int64),
        faults=dict(faults),
        rows=len(row_classes) + malformed,
        indexed=int(np.count_nonzero(counts_per_row)),
        bad_rows=len(fault_lists) + malformed,
        keys=len(exact),
        block_bytes=len(block),
        class_counts=class_counts,
    )


# --- pass 2: one shard (runs in worker processes) --------------------------------------

# What a shard pass returns: the shard, its fingerprint count, its files' manifest
# entries, and its entry in the manifest's similar tier.
ShardResult = tuple[int, int, dict[str, dict[str, Any]], dict[str, int]]


def _build_shard(
    generation: Path, shard: int, n_sources: int, error_rate: float, shard_count: int
) -> ShardResult:
    """Sort, merge and write one shard from its spill; the spill is then deleted."""
    spill_path = generation / "spill" / f"{shard:03d}.bin"
    entries = (
        np.fromfile(spill_path, dtype=SPILL_DTYPE) if spill_path.exists()
        else np.empty(0, dtype=SPILL_DTYPE)
    )
    result = write_shard(generation, shard, entries, n_sources, error_rate, shard_count)
    spill_path.unlink(missing_ok=True)
    return result


def write_shard(
    generation: Path, shard: int, entries: npt.NDArray[np.void], n_sources: int,
    error_rate: float, shard_count: int,
) -> ShardResult:
    """Sort and merge one shard's spill entries (in any order) and write its files:
    those of the exact index and those of the similar tier.

    The output depends only on the set of entries, not on their order (a sort, then
    an OR per cell): that is what makes the files byte-identical whatever the
    engine, the number of workers and the block size.
    """
    in_tier = (entries["tag"] & np.uint16(SIMILAR_TAG)) != 0
    unique, meta = _merged(entries[~in_tier], n_sources)
    tier_fps, tier_meta = _merged(entries[in_tier], n_sources)
    del entries, in_tier
    bloom = FingerprintBloom.build(unique, error_rate)
    outputs: dict[str, bytes] = {
        shard_file(shard, "fp"): unique.astype("<u8").tobytes(),
        shard_file(shard, "meta"): meta.tobytes(),
        shard_file(shard, "bloom"): _bloom_bytes(bloom),
    }
    tier_files, tier_entry = similar_shard_files(
        shard, tier_fps, tier_meta, shard_count, n_sources)
    outputs.update(tier_files)
    files: dict[str, dict[str, Any]] = {}
    for name, payload in outputs.items():
        (generation / name).write_bytes(payload)
        files[name] = {"bytes": len(payload), "xxh3_64": checksum_bytes(payload)}
    return shard, len(unique), files, tier_entry


def _merged(
    entries: npt.NDArray[np.void], n_sources: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    """(unique fingerprints sorted, their meta rows flat) of spill entries."""
    # Any order of equal fingerprints gives the same rows (an OR): no stable sort needed,
    # and numpy's default one is twice as fast.
    order = np.argsort(entries["fp"])
    fps, tags = entries["fp"][order], entries["tag"][order]
    del entries, order
    first = np.ones(len(fps), dtype=np.bool_)
    np.not_equal(fps[1:], fps[:-1], out=first[1:])
    unique = fps[first]
    # Every entry ORs its class bits into the meta cell (its fingerprint, its source):
    # a person twice in a source, or in both, ends up as one row of the union of bits.
    row = np.cumsum(first, dtype=np.intp) - 1
    cells = row * n_sources + (tags >> 8).astype(np.intp)
    meta = np.zeros(len(unique) * n_sources, dtype=np.uint8)
    np.bitwise_or.at(meta, cells, (tags & CLASS_MASK).astype(np.uint8))
    return unique, meta


def _bloom_bytes(bloom: FingerprintBloom) -> bytes:
    import io

    buffer = io.BytesIO()
    bloom.tofile(buffer)
    return buffer.getvalue()


# --- orchestration ------------------------------------------------------------------------

T = TypeVar("T")

LOCK_FILE: Final = ".build.lock"


class BuildLocked(Exception):
    """Another build is publishing into the same index directory."""


@contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index directory.

    A second build would otherwise remove the first one's partial generation as
    "left by a killed build". A POSIX record lock belongs to the process: the kernel
    drops it when the builder dies, even by SIGKILL, and forked workers do not hold it.
    """
    fd = os.open(index_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BuildLocked(
                f"another build is running in {index_dir}; wait for it to finish"
            ) from exc
        yield
    finally:
        os.close(fd)


def build_index(
    sources_toml: Path, index_dir: Path, pepper: bytes, options: BuildOptions | None = None,
    *, log: IO[str] | None = None,
) -> BuildReport:
    """Build and publish a new generation; raise before touching `index_dir` on bad input.

    A build that fails removes its partial generation; one that is killed leaves it to
    the next build, which removes it first. `current` only ever moves to a complete,
    fsynced generation.
    """
    options = options or BuildOptions()
    started = time.monotonic()
    plan = plan_build(sources_toml, pepper, options)
    return publish_build(
        index_dir, started,
        lambda generation: _build_generation(generation, plan, pepper, options),
    )


class BuildPlan(NamedTuple):
    """What a build reads before it touches the index directory."""

    sources_toml: Path
    sources: Sequence[Source]
    layouts: Sequence[DumpLayout]
    fingerprinter: Fingerprinter


GenerationBuilt = tuple[Path, dict[str, Any], dict[str, float]]  # final dir, manifest, phases


def plan_build(sources_toml: Path, pepper: bytes, options: BuildOptions) -> BuildPlan:
    """Check the options, the sources and the dumps' headers (both engines)."""
    if not 1 <= options.shards <= 4096:
        raise ValueError("--shards must be between 1 and 4096")
    if not 0 < options.bloom_error_rate < 0.5:
        raise ValueError("--bloom-error-rate must be between 0 and 0.5")
    if options.workers < 0:
        raise ValueError("--workers must be 0 (one per core) or more")
    sources = load_sources(sources_toml)
    if len(sources) > MAX_SOURCES:
        # A spill tag holds the source in one byte, and a meta row one byte per source.
        raise ValueError(f"at most {MAX_SOURCES} sources per index")
    layouts = [detect_layout(source) for source in sources]
    return BuildPlan(sources_toml, sources, layouts, Fingerprinter(pepper))


def publish_build(
    index_dir: Path, started: float, build: Callable[[Path], GenerationBuilt]
) -> BuildReport:
    """Run `build` on a new partial generation, under the build lock (both engines).

    What interrupted builds left is removed first; if `build` fails, its partial
    generation is removed too. `build` ends by publishing (`finish_generation`).
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(index_dir):
        remove_partials(index_dir)
        generation = new_partial_generation(index_dir)
        try:
            final, manifest, phases = build(generation)
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
    return BuildReport(final, manifest, time.monotonic() - started, phases)


def _build_generation(
    generation: Path, plan: BuildPlan, pepper: bytes, options: BuildOptions
) -> GenerationBuilt:
    phases: dict[str, float] = {}
    clock = time.monotonic()
    (generation / "spill").mkdir()
    counts = [SourceCounts() for _ in plan.sources]
    workers = options.worker_count()
    with ExitStack() as stack:
        executor = worker_pool(stack, workers, _init_worker, (pepper,))
        _fingerprint_pass(executor, generation, plan.layouts, counts, options, workers)
        phases["fingerprint"], clock = time.monotonic() - clock, time.monotonic()
        shard_results = list(
            _progress(
                bounded_map(
                    executor, _build_shard,
                    ((generation, shard, len(plan.sources), options.bloom_error_rate,
                      options.shards)
                     for shard in range(options.shards)),
                    window=workers * 2,
                ),
                options.progress, total=options.shards, desc="shards", unit="shard",
            )
        )
        phases["shards"] = time.monotonic() - clock
    (generation / "spill").rmdir()
    return finish_generation(generation, plan, counts, shard_results, options, phases, workers)


def finish_generation(
    generation: Path, plan: BuildPlan, counts: Sequence[SourceCounts],
    shard_results: Sequence[ShardResult], options: BuildOptions, phases: dict[str, float],
    workers: int,
) -> GenerationBuilt:
    """Write the manifest (and the private part) and publish: the end of both engines."""
    clock = time.monotonic()
    manifest = _manifest(
        generation, plan.sources, counts, shard_results, plan.fingerprinter, options
    )
    if options.private is not None:
        # Inside the same partial generation, so the index and its private part are
        # published together or not at all.
        from indexer.build.private import build_private

        manifest["private"] = build_private(
            plan.sources_toml, generation, options.private.oprf_key,
            bucket_bits=options.private.bucket_bits, output_bytes=options.private.output_bytes,
            workers=workers, progress=options.progress, block_size=options.block_size,
        )
        phases["private"], clock = time.monotonic() - clock, time.monotonic()
    write_manifest(generation, manifest)
    final = publish(generation, keep=options.keep_generations)
    manifest["generation"] = final.name
    phases["publish"] = time.monotonic() - clock
    return final, manifest, phases


def _fingerprint_pass(
    executor: Executor | InlineExecutor, generation: Path, layouts: Sequence[DumpLayout],
    counts: list[SourceCounts], options: BuildOptions, workers: int,
) -> None:
    total_bytes = sum(layout.path.stat().st_size - layout.data_offset for layout in layouts)
    spill_dir = generation / "spill"
    entry_bytes = SPILL_DTYPE.itemsize
    # The blocks of every source go through one ordered window, so that the workers
    # never idle at the boundary between two sources.
    tasks = (
        (block, layout, index, options.shards)
        for index, layout in enumerate(layouts)
        for block in iter_blocks(layout, options.block_size)
    )
    with ExitStack() as stack:
        spills = [
            stack.enter_context((spill_dir / f"{shard:03d}.bin").open("ab"))
            for shard in range(options.shards)
        ]
        bar = stack.enter_context(
            tqdm(total=total_bytes, disable=not options.progress, unit="B", unit_scale=True,
                 desc="fingerprint", file=sys.stderr)
        )
        spilled: BlockSpill
        for spilled in bounded_map(executor, _fingerprint_block, tasks, window=workers * 3):
            view = memoryview(spilled.payload)
            offset = 0
            for shard, count in enumerate(spilled.per_shard.tolist()):
                if count:
                    end = offset + count * entry_bytes
                    spills[shard].write(view[offset:end])
                    offset = end
            counts[spilled.source_index].add(spilled)
            bar.update(spilled.block_bytes)


def _progress(items: Iterable[T], enabled: bool, **kwargs: Any) -> Iterable[T]:
    if not enabled:
        return items
    return tqdm(items, file=sys.stderr, **kwargs)


def _manifest(
    generation: Path, sources: Sequence[Source], counts: Sequence[SourceCounts],
    shard_results: Sequence[ShardResult], fingerprinter: Fingerprinter, options: BuildOptions,
) -> dict[str, Any]:
    ordered = sorted(shard_results, key=lambda result: result[0])
    files: dict[str, dict[str, Any]] = {}
    for _, _, shard_files, _ in ordered:
        files.update(shard_files)
    per_shard = [n for _, n, _, _ in ordered]
    tier = [entry for _, _, _, entry in ordered]
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
        "similar": {
            "namespaces": NAMESPACES,
            "entries": sum(entry["entries"] for entry in tier),
            "layout": "see indexer/index/similar.py",
            "shards": tier,
        },
        "bloom": {
            "library": "pybloom-live",
            "error_rate": options.bloom_error_rate,
            "hashing": "double hashing of the fingerprint (see indexer/index/bloom.py)",
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
